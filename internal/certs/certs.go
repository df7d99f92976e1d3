// Package certs makes the certificates of a Raft cluster's mutual TLS: a
// certificate authority, and the certificates it issues to servers (named
// by the URI SAN raft://server/<id>) and to clients (raft://client/<name>).
// It is for local clusters, tests and small deployments; it uses the
// standard library only (ECDSA P-256 keys, PEM files).
package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"
)

// ServerURI returns the URI SAN naming server id: raft://server/<id>, as
// transport.ServerURI does. (The transport's tests use this package, so it
// does not import the transport; its tests check the two agree.)
func ServerURI(id int) *url.URL {
	return &url.URL{Scheme: "raft", Host: "server", Path: "/" + strconv.Itoa(id)}
}

// ClientURI returns the URI SAN naming client name: raft://client/<name>,
// as transport.ClientURI does.
func ClientURI(name string) *url.URL {
	return &url.URL{Scheme: "raft", Host: "client", Path: "/" + name}
}

// backdate is how far before now a certificate's validity starts when the
// caller does not say, to allow for clocks a little apart.
const backdate = time.Minute

// CA is a certificate authority: a self-signed certificate and its key.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer
	keyPEM  []byte
}

// Leaf describes a certificate for CA.Issue to make.
type Leaf struct {
	// ServerID, if not 0, makes a server certificate naming server
	// ServerID (URI SAN raft://server/<id>), for both server and client
	// authentication.
	ServerID int
	// ClientName, for a certificate that is not a server's, names the
	// client (URI SAN raft://client/<name>); it is for client
	// authentication only.
	ClientName string
	// Hosts are the DNS names and IP addresses the certificate is valid
	// for (its DNS and IP SANs).
	Hosts []string
	// ValidFor is how long the certificate is valid, from NotBefore.
	ValidFor time.Duration
	// NotBefore is the start of the validity; zero means a minute ago.
	NotBefore time.Time
}

// NewCA makes a CA named name whose certificate is valid for validFor
// from a minute ago.
func NewCA(name string, validFor time.Duration) (*CA, error) {
	if validFor <= 0 {
		return nil, fmt.Errorf("certs: new CA %q: validity %v is not positive", name, validFor)
	}
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, fmt.Errorf("certs: new CA %q: %w", name, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("certs: new CA %q: %w", name, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validFor),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("certs: new CA %q: create certificate: %w", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: new CA %q: parse the certificate made: %w", name, err)
	}
	return &CA{cert: cert, certPEM: encodePEM("CERTIFICATE", der), key: key, keyPEM: keyPEM}, nil
}

// LoadCA reads a CA's certificate and key from PEM files, as WriteFiles
// writes them.
func LoadCA(certFile, keyFile string) (*CA, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("certs: load CA: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("certs: load CA: %w", err)
	}
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("certs: load CA: %s: %w", certFile, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("certs: load CA: %s: the certificate is not a CA's", certFile)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("certs: load CA: %s: %w", keyFile, err)
	}
	if !publicKeysEqual(key.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("certs: load CA: the key in %s is not that of the certificate in %s", keyFile, certFile)
	}
	return &CA{cert: cert, certPEM: certPEM, key: key, keyPEM: keyPEM}, nil
}

// CertPEM returns the CA's certificate, PEM-encoded: what the servers and
// clients trust.
func (ca *CA) CertPEM() []byte { return bytes.Clone(ca.certPEM) }

// WriteFiles writes the CA's certificate and key to new files,
// PEM-encoded; the key file is readable by its owner only (0600). It
// replaces no file: it fails if either exists.
func (ca *CA) WriteFiles(certFile, keyFile string) error {
	return writePair(certFile, ca.certPEM, keyFile, ca.keyPEM)
}

// writePair writes a certificate and its key to new files, the key
// readable by its owner only; it fails, writing nothing, if either exists.
func writePair(certFile string, certPEM []byte, keyFile string, keyPEM []byte) error {
	for _, name := range []string{certFile, keyFile} {
		if _, err := os.Lstat(name); err == nil {
			return fmt.Errorf("certs: write %s: %w (not replacing it)", name, fs.ErrExist)
		}
	}
	if err := writeFile(keyFile, keyPEM, 0o600); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	if err := writeFile(certFile, certPEM, 0o644); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	return nil
}

// Issue makes a certificate signed by the CA, as opts describes, and
// returns it and its new key, PEM-encoded.
func (ca *CA) Issue(opts Leaf) (certPEM, keyPEM []byte, err error) {
	what := fmt.Sprintf("server %d", opts.ServerID)
	if opts.ServerID == 0 {
		what = fmt.Sprintf("client %q", opts.ClientName)
	}
	switch {
	case opts.ServerID == 0 && opts.ClientName == "":
		return nil, nil, errors.New("certs: issue: Leaf has neither a ServerID nor a ClientName")
	case opts.ServerID != 0 && opts.ClientName != "":
		return nil, nil, fmt.Errorf("certs: issue %s: Leaf has both a ServerID and a ClientName %q", what, opts.ClientName)
	case opts.ServerID < 0:
		return nil, nil, fmt.Errorf("certs: issue %s: negative ServerID", what)
	case opts.ValidFor <= 0:
		return nil, nil, fmt.Errorf("certs: issue %s: ValidFor %v is not positive", what, opts.ValidFor)
	}
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, nil, fmt.Errorf("certs: issue %s: %w", what, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, fmt.Errorf("certs: issue %s: %w", what, err)
	}
	notBefore := opts.NotBefore
	if notBefore.IsZero() {
		notBefore = time.Now().Add(-backdate)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    notBefore,
		NotAfter:     notBefore.Add(opts.ValidFor),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if opts.ServerID != 0 {
		tmpl.Subject = pkix.Name{CommonName: fmt.Sprintf("raft server %d", opts.ServerID)}
		tmpl.URIs = []*url.URL{ServerURI(opts.ServerID)}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	} else {
		tmpl.Subject = pkix.Name{CommonName: "raft client " + opts.ClientName}
		tmpl.URIs = []*url.URL{ClientURI(opts.ClientName)}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	for _, h := range opts.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: issue %s: create certificate: %w", what, err)
	}
	return encodePEM("CERTIFICATE", der), keyPEM, nil
}

func newKey() (crypto.Signer, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encode key: %w", err)
	}
	return key, encodePEM("PRIVATE KEY", der), nil
}

func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func encodePEM(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func parseCert(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	return cert, nil
}

func parseKey(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block of type %q, want PRIVATE KEY or EC PRIVATE KEY", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("a key of type %T cannot sign", key)
	}
	return signer, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

// writeFile writes data to a new file name with permissions perm; it does
// not replace a file that exists.
func writeFile(name string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", name, err)
	}
	return nil
}
