package transport

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
)

// CertReloader holds a server's certificate and key, and the CAs it
// trusts, read from PEM files, and reads them again on Reload: so a
// server's certificate, or the cluster's CAs, change without a restart.
// New connections, either way, use what it last read; those open go on.
type CertReloader struct {
	caFile, certFile, keyFile string

	mu   sync.Mutex
	cert *tls.Certificate
	cfg  *tls.Config // TLSConfig of the files' contents
}

// NewCertReloader reads the CA certificates in caFile and the certificate
// and key in certFile and keyFile.
func NewCertReloader(caFile, certFile, keyFile string) (*CertReloader, error) {
	r := &CertReloader{caFile: caFile, certFile: certFile, keyFile: keyFile}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload reads the files again. If they do not make a valid set (a
// certificate that names a server by ServerURI and that the CAs verify),
// it fails and keeps what it had.
func (r *CertReloader) Reload() error {
	caPEM, err := os.ReadFile(r.caFile)
	if err != nil {
		return fmt.Errorf("transport: load TLS CA: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("transport: load TLS certificate %s and key %s: %w", r.certFile, r.keyFile, err)
	}
	leaf := cert.Leaf
	if _, err := ServerID(leaf); err != nil {
		return fmt.Errorf("transport: TLS certificate %s: %w", r.certFile, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("transport: load TLS CA: no PEM certificate in %s", r.caFile)
	}
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}); err != nil {
		return fmt.Errorf("transport: TLS certificate %s does not verify against the CAs in %s: %w", r.certFile, r.caFile, err)
	}
	cfg, err := TLSConfig(caPEM, r.Certificate)
	if err != nil {
		return fmt.Errorf("transport: load TLS CA %s: %w", r.caFile, err)
	}
	r.mu.Lock()
	r.cert, r.cfg = &cert, cfg
	r.mu.Unlock()
	return nil
}

// Certificate returns the certificate last read.
func (r *CertReloader) Certificate() (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cert, nil
}

// TLSConfig returns a config for Config.TLS that uses, on each
// handshake, the certificate and CAs last read (through its
// GetConfigForClient, which the transport calls for its dials too).
func (r *CertReloader) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			r.mu.Lock()
			defer r.mu.Unlock()
			return r.cfg, nil
		},
	}
}
