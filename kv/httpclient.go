package kv

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// NewHTTPClient returns an HTTP client for the API over TLS: it trusts the
// CA certificates in the PEM file caFile (the system's if caFile is ""),
// and presents the client certificate in certFile and keyFile if they are
// given. It speaks TLS 1.2 or later.
func NewHTTPClient(caFile, certFile, keyFile string) (*http.Client, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := LoadCertPool(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if certFile != "" || keyFile != "" {
		if certFile == "" || keyFile == "" {
			return nil, errors.New("kv: a client certificate needs both its certificate and its key file")
		}
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("kv: client certificate %s, key %s: %w", certFile, keyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	tr := newHTTPTransport()
	tr.TLSClientConfig = cfg
	return &http.Client{Transport: tr}, nil
}

// LoadCertPool reads the PEM certificates of file into a pool.
func LoadCertPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("kv: CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("kv: CA file %s holds no PEM certificate", file)
	}
	return pool, nil
}

// ReadClientToken returns the first token of a token file (as TokenFile
// reads them: "name:token" or a token alone a line, # comments), for a
// client to send.
func ReadClientToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("kv: token file: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if _, tok, named := strings.Cut(line, ":"); named {
			line = strings.TrimSpace(tok)
		}
		if line == "" {
			break
		}
		return line, nil
	}
	return "", fmt.Errorf("kv: token file %s holds no token", path)
}
