package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
)

// Mutual TLS. With Config.TLS set, every connection, either way, runs a
// TLS handshake in which both ends present a certificate, before the
// hello of handshake.go. The transport verifies the peer's chain itself,
// against the config's RootCAs when dialing and its ClientCAs when
// serving, and takes the peer's server ID from the URI SAN
// raft://server/<id> of its certificate (ServerID); host names play no
// part. A server refuses a certificate that names no server, or one not
// in Config.Peers, and a hello claiming another ID than the certificate's;
// a dialer refuses a server whose certificate names another server than
// the one it meant to reach.

// TLSConfig returns a config for Config.TLS: mutual TLS 1.3, trusting the
// CAs in caPEM (PEM certificates) on both sides, and presenting the
// certificate getCert returns, which it calls on every handshake (so it
// may change it: see CertReloader).
func TLSConfig(caPEM []byte, getCert func() (*tls.Certificate, error)) (*tls.Config, error) {
	if getCert == nil {
		return nil, errors.New("transport: TLSConfig: nil getCert")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("transport: TLSConfig: no PEM certificate in the CA bytes")
	}
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		RootCAs:              pool,
		ClientCAs:            pool,
		ClientAuth:           tls.RequireAndVerifyClientCert,
		GetCertificate:       func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return getCert() },
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return getCert() },
	}, nil
}

// checkTLS checks the config of Config.TLS.
func checkTLS(c *tls.Config) error {
	if c.GetConfigForClient != nil {
		return nil // checked on each handshake
	}
	switch {
	case c.RootCAs == nil:
		return errors.New("TLS config has no RootCAs (the CAs that sign the servers' certificates); see transport.TLSConfig")
	case c.ClientCAs == nil:
		return errors.New("TLS config has no ClientCAs (the CAs that sign the servers' certificates); see transport.TLSConfig")
	case len(c.Certificates) == 0 && c.GetCertificate == nil:
		return errors.New("TLS config has no certificate to serve with (Certificates or GetCertificate); see transport.TLSConfig")
	case len(c.Certificates) == 0 && c.GetClientCertificate == nil:
		return errors.New("TLS config has no certificate to dial with (Certificates or GetClientCertificate); see transport.TLSConfig")
	}
	return nil
}

// dialConfig returns the config in effect for a dial: that
// GetConfigForClient returns, if set, for both sides.
func dialConfig(base *tls.Config) (*tls.Config, error) {
	if base.GetConfigForClient == nil {
		return base, nil
	}
	c, err := base.GetConfigForClient(&tls.ClientHelloInfo{})
	if err != nil {
		return nil, fmt.Errorf("get TLS config: %w", err)
	}
	if c == nil {
		return base, nil
	}
	return c, nil
}

// clientTLS returns the config to dial server to with.
func (t *TCP) clientTLS(to int) (*tls.Config, error) {
	eff, err := dialConfig(t.tls)
	if err != nil {
		return nil, err
	}
	c := eff.Clone()
	c.GetConfigForClient = nil
	// The transport verifies the chain itself, by the server ID in the
	// certificate rather than by host name (verifyConnection).
	c.InsecureSkipVerify = true
	c.ServerName = ""
	userVerify := eff.VerifyConnection
	pool := eff.RootCAs
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		id, err := verifyChain(cs, pool, "RootCAs", x509.ExtKeyUsageServerAuth)
		if err != nil {
			return err
		}
		if id != to {
			return fmt.Errorf("the server's certificate names server %d, not server %d which we meant to reach (check the peer addresses)", id, to)
		}
		if userVerify != nil {
			return userVerify(cs)
		}
		return nil
	}
	return c, nil
}

// serverTLS returns the config to serve with.
func (t *TCP) serverTLS() *tls.Config {
	c := t.serverSide(t.tls)
	if get := t.tls.GetConfigForClient; get != nil {
		c.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			eff, err := get(h)
			if err != nil || eff == nil {
				return nil, err
			}
			sc := t.serverSide(eff)
			sc.GetConfigForClient = nil
			return sc, nil
		}
	}
	return c
}

// serverSide returns a copy of c that requires a client certificate and
// verifies it as the certificate of a server in Config.Peers.
func (t *TCP) serverSide(c *tls.Config) *tls.Config {
	c = c.Clone()
	c.ClientAuth = tls.RequireAnyClientCert // verified below
	userVerify := c.VerifyConnection
	pool := c.ClientCAs
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		id, err := verifyChain(cs, pool, "ClientCAs", x509.ExtKeyUsageClientAuth)
		if err != nil {
			return err
		}
		if !t.known(id) || id == t.id {
			return fmt.Errorf("the caller's certificate names server %d, which is not among the peers: %s", id, certSays(cs.PeerCertificates[0]))
		}
		if userVerify != nil {
			return userVerify(cs)
		}
		return nil
	}
	return c
}

// verifyChain verifies the peer's certificate chain against pool, for
// usage, and returns the server ID its certificate names.
func verifyChain(cs tls.ConnectionState, pool *x509.CertPool, poolName string, usage x509.ExtKeyUsage) (int, error) {
	if len(cs.PeerCertificates) == 0 {
		return 0, errors.New("the peer presented no certificate")
	}
	if pool == nil {
		// x509 would verify against the system's roots: never here.
		return 0, fmt.Errorf("the TLS config has no %s to verify the peer's certificate against", poolName)
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return 0, fmt.Errorf("the peer's certificate does not verify: %w; it says %s", err, certSays(leaf))
	}
	id, err := ServerID(leaf)
	if err != nil {
		return 0, fmt.Errorf("%w; it says %s", err, certSays(leaf))
	}
	return id, nil
}

// tlsConn is a TLS connection whose Close closes the TCP connection at
// once, without the close_notify alert that tls.Conn.Close writes (which
// may wait for a write in progress, for up to a call timeout).
type tlsConn struct {
	*tls.Conn
	raw net.Conn
}

func (c *tlsConn) Close() error { return c.raw.Close() }

// tlsHandshake runs the TLS handshake on conn, as the client if client
// is set, within ctx, and returns the TLS connection, the peer's server
// ID as its certificate names it, and the certificate.
func tlsHandshake(ctx context.Context, conn net.Conn, cfg *tls.Config, client bool) (net.Conn, int, *x509.Certificate, error) {
	var tc *tls.Conn
	if client {
		tc = tls.Client(conn, cfg)
	} else {
		tc = tls.Server(conn, cfg)
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, 0, nil, fmt.Errorf("TLS handshake: %w", err)
	}
	// The config's VerifyConnection checked the chain and the ID.
	cert := tc.ConnectionState().PeerCertificates[0]
	id, err := ServerID(cert)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return &tlsConn{Conn: tc, raw: conn}, id, cert, nil
}

// tlsHandshake runs the dialer's TLS handshake on conn, within ctx.
func (p *Peer) tlsHandshake(ctx context.Context, conn net.Conn) (net.Conn, error) {
	cfg, err := p.t.clientTLS(p.id)
	if err != nil {
		return nil, err
	}
	tc, _, _, err := tlsHandshake(ctx, conn, cfg, true)
	return tc, err
}
