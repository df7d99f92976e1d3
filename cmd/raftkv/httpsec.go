package main

// The security of a replica's HTTP API: HTTPS with a certificate reloaded
// on SIGHUP, and clients authenticated by bearer token or client
// certificate (kv.Auth). See docs/security.md.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/raftkit/raft/kv"
	"github.com/raftkit/raft/transport"
)

// httpSecFlags are serve's flags for the HTTP API's security.
type httpSecFlags struct {
	tokens, cert, key, ca *string
	openStatus, insecure  *bool
}

func addHTTPSecFlags(fs *flag.FlagSet) *httpSecFlags {
	return &httpSecFlags{
		tokens:     fs.String("http-tokens", "", ""),
		cert:       fs.String("http-tls-cert", "", ""),
		key:        fs.String("http-tls-key", "", ""),
		ca:         fs.String("http-ca", "", ""),
		openStatus: fs.Bool("http-open-status", false, ""),
		insecure:   fs.Bool("insecure-http", false, ""),
	}
}

// httpSecurity is how a replica secures its HTTP API.
type httpSecurity struct {
	insecure bool // plain HTTP, no authentication
	tokens   string
	// The API's certificate and key, and the CAs it trusts for client
	// certificates and its peers' HTTPS ("" for none, and the system's
	// roots for peers).
	cert, key, ca string
	openStatus    bool // /status and /metrics need no credentials
}

// config checks the flags; the Raft TLS files (given or "") are the
// defaults of the certificate, key and CA.
func (f *httpSecFlags) config(raftCA, raftCert, raftKey string) (httpSecurity, error) {
	sec := httpSecurity{insecure: *f.insecure, tokens: *f.tokens, cert: *f.cert, key: *f.key, ca: *f.ca, openStatus: *f.openStatus}
	if sec.insecure {
		var given []string
		for _, g := range []struct {
			name string
			set  bool
		}{{"-http-tokens", sec.tokens != ""}, {"-http-tls-cert", sec.cert != ""}, {"-http-tls-key", sec.key != ""}, {"-http-ca", sec.ca != ""}, {"-http-open-status", sec.openStatus}} {
			if g.set {
				given = append(given, g.name)
			}
		}
		if len(given) > 0 {
			return sec, fmt.Errorf("-insecure-http serves plain HTTP without authentication, and so takes no %s", strings.Join(given, ", "))
		}
		return sec, nil
	}
	if sec.cert == "" && sec.key == "" {
		sec.cert, sec.key = raftCert, raftKey
	}
	if sec.ca == "" {
		sec.ca = raftCA
	}
	switch {
	case sec.cert == "" && sec.key == "":
		return sec, errors.New("the HTTP API serves HTTPS and needs a certificate: give -http-tls-cert and -http-tls-key (default: the Raft certificate, -tls-cert and -tls-key), or -insecure-http for plain HTTP without authentication (a trusted network only)")
	case sec.cert == "" || sec.key == "":
		return sec, errors.New("-http-tls-cert and -http-tls-key go together: give both")
	case sec.tokens == "" && sec.ca == "":
		return sec, errors.New("the HTTP API would accept no credentials: give -http-tokens FILE (bearer tokens), and/or -http-ca FILE (default -tls-ca) to accept client certificates of that CA")
	}
	return sec, nil
}

// httpTLS holds the HTTP API's certificate and the CAs it trusts, read
// from their files again by reload.
type httpTLS struct {
	sec httpSecurity

	mu     sync.Mutex
	cert   *tls.Certificate
	server bool           // cert names a Raft server (so peers take it as a client certificate)
	pool   *x509.CertPool // nil: no client certificates, the system's roots for peers
}

func newHTTPTLS(sec httpSecurity) (*httpTLS, error) {
	h := &httpTLS{sec: sec}
	if err := h.reload(); err != nil {
		return nil, err
	}
	return h, nil
}

// reload reads the files again; on error it keeps what it had.
func (h *httpTLS) reload() error {
	var pool *x509.CertPool
	var err error
	if h.sec.ca != "" {
		if pool, err = kv.LoadCertPool(h.sec.ca); err != nil {
			return fmt.Errorf("HTTP CA: %w", err)
		}
	}
	cert, err := tls.LoadX509KeyPair(h.sec.cert, h.sec.key)
	if err != nil {
		return fmt.Errorf("HTTP TLS certificate %s and key %s: %w", h.sec.cert, h.sec.key, err)
	}
	_, err = transport.ServerID(cert.Leaf)
	server := err == nil
	h.mu.Lock()
	h.cert, h.server, h.pool = &cert, server, pool
	h.mu.Unlock()
	return nil
}

// serverConfig is the HTTPS server's config: TLS 1.2 or later, the
// certificate last read, and client certificates verified against the
// CAs, if any, when given.
func (h *httpTLS) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			h.mu.Lock()
			defer h.mu.Unlock()
			c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*h.cert}}
			if h.pool != nil {
				c.ClientAuth, c.ClientCAs = tls.VerifyClientCertIfGiven, h.pool
			}
			return c, nil
		},
	}
}

// clientConfig is the config of the replica's requests to its peers: it
// trusts the CAs (the system's if none), and presents the certificate if
// it is a server's, which peers take for a server's word (HeaderClient).
func (h *httpTLS) clientConfig() *tls.Config {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: h.pool}
	if h.server {
		cert := h.cert
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return c
}

// forwardClient is the client that forwards requests to the leader, over
// HTTPS with clientConfig (as it is at each dial).
func (h *httpTLS) forwardClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	tr.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := tls.Dialer{Config: h.clientConfig()}
		return d.DialContext(ctx, network, addr)
	}
	return &http.Client{Timeout: kv.DefaultHTTPWait + time.Second, Transport: tr}
}

// httpURLs turns the peers' HTTP addresses into https URLs (those given
// as URLs stay).
func httpsURLs(addrs map[int]string) map[int]string {
	m := make(map[int]string, len(addrs))
	for id, a := range addrs {
		if !strings.Contains(a, "://") {
			a = "https://" + a
		}
		m[id] = a
	}
	return m
}

// httpGuard is what secures a running replica's HTTP API.
type httpGuard struct {
	tls    *httpTLS      // nil with -insecure-http
	tokens *kv.TokenFile // nil without -http-tokens
	auth   *kv.Auth      // nil with -insecure-http
}

// newHTTPGuard loads what sec names; with -insecure-http, it warns if the
// API listens on addresses other than loopback ones.
func newHTTPGuard(sec httpSecurity, ln net.Listener, log *slog.Logger) (*httpGuard, error) {
	g := &httpGuard{}
	if sec.insecure {
		if ip := listenIP(ln); ip == nil || !ip.IsLoopback() {
			log.Warn("WARNING: -insecure-http: the HTTP API serves plain HTTP WITHOUT AUTHENTICATION on a non-loopback address: anyone who can reach it can read and write every key", "addr", ln.Addr().String())
		}
		return g, nil
	}
	var err error
	if g.tls, err = newHTTPTLS(sec); err != nil {
		return nil, err
	}
	if sec.tokens != "" {
		if g.tokens, err = kv.LoadTokenFile(sec.tokens, log); err != nil {
			return nil, err
		}
	}
	g.auth = &kv.Auth{Tokens: g.tokens, Certs: sec.ca != ""}
	if sec.openStatus {
		g.auth.Open = func(r *http.Request) bool { return r.URL.Path == "/status" || r.URL.Path == "/metrics" }
	}
	return g, nil
}

func listenIP(ln net.Listener) net.IP {
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		return a.IP
	}
	return nil
}

// reload reads the token file and the certificates again (on SIGHUP); what
// fails to load is logged, and what was in force stays.
func (g *httpGuard) reload(log *slog.Logger) {
	if g.tokens != nil {
		if err := g.tokens.Reload(); err != nil {
			log.Error("raftkv serve: reload: the tokens loaded before stay in force", "err", err)
		}
	}
	if g.tls != nil {
		if err := g.tls.reload(); err != nil {
			log.Error("raftkv serve: reload: the HTTP certificate and CA loaded before stay in force", "err", err)
		} else {
			log.Info("raftkv serve: HTTP certificate and CA reloaded", "cert", g.tls.sec.cert, "ca", g.tls.sec.ca)
		}
	}
}

// fileExists tells whether name is there (any error but "not found"
// counts as there, for the caller's use to report it).
func fileExists(name string) bool {
	_, err := os.Stat(name)
	return !errors.Is(err, os.ErrNotExist)
}
