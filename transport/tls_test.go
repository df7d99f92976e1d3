package transport

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftkit/raft/core"
	"github.com/raftkit/raft/internal/certs"
)

// pki is a CA of the tests, and the certificates it issued.
type pki struct {
	t  *testing.T
	ca *certs.CA
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	ca, err := certs.NewCA("transport test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &pki{t: t, ca: ca}
}

// cert issues the certificate of l, valid for an hour unless l says.
func (p *pki) cert(l certs.Leaf) tls.Certificate {
	p.t.Helper()
	if l.ValidFor == 0 {
		l.ValidFor = time.Hour
	}
	certPEM, keyPEM, err := p.ca.Issue(l)
	if err != nil {
		p.t.Fatal(err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		p.t.Fatal(err)
	}
	return c
}

// config returns the TLSConfig of server id.
func (p *pki) config(id int) *tls.Config {
	p.t.Helper()
	c := p.cert(certs.Leaf{ServerID: id})
	cfg, err := TLSConfig(p.ca.CertPEM(), func() (*tls.Certificate, error) { return &c, nil })
	if err != nil {
		p.t.Fatal(err)
	}
	return cfg
}

// newTLSCluster is a cluster of servers 1 to n over mutual TLS, with
// certificates of p.
func newTLSCluster(t *testing.T, p *pki, n int, tune func(cfg *Config)) *cluster {
	t.Helper()
	ids := make([]int, n)
	for i := range ids {
		ids[i] = i + 1
	}
	return newClusterOf(t, ids, func(cfg *Config) {
		cfg.Insecure, cfg.TLS = false, p.config(cfg.ID)
		if tune != nil {
			tune(cfg)
		}
	})
}

// probeFrom calls Probe from one server to another and returns the caller
// ID the server's handler saw (fakeReply answers it in Term).
func (c *cluster) probeFrom(from, to int) (int, error) {
	var reply core.ProbeReply
	err := c.peer(from, to).call(methodProbe, &core.ProbeArgs{}, &reply)
	return reply.Term, err
}

func TestTLSCluster(t *testing.T) {
	c := newTLSCluster(t, newPKI(t), 3, nil)
	for from := 1; from <= 3; from++ {
		for to := 1; to <= 3; to++ {
			if from == to {
				continue
			}
			c.mustCall(from, to)
			if got, err := c.probeFrom(from, to); err != nil || got != from {
				t.Errorf("probe %d→%d: the handler saw caller %d, %v", from, to, got, err)
			}
		}
	}
	if err := c.installSnapshot(1, 2, 0, 100<<10); err != nil {
		t.Error(err)
	}
}

// forged is what an attacker sends: a hello claiming to be server 2, then
// an AppendEntries of a high term, as in issue 14.
func forged() []byte {
	b := appendHello(nil, 2, 1)
	frame, _, err := appendRequest(nil, 1, &core.AppendEntriesArgs{Term: 1 << 40, LeaderID: 2, LeaderCommit: 1 << 40})
	if err != nil {
		panic(err)
	}
	return append(b, frame...)
}

// attack connects to server 1 at addr, with TLS as cfg says (none if cfg
// is nil), sends forged() and returns the AppendEntries reply it got, if
// any, or the error that ended it.
func attack(addr string, cfg *tls.Config) (*core.AppendEntriesReply, error) {
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(waitBound))
	conn := raw
	if cfg != nil {
		tc := tls.Client(raw, cfg)
		if err := tc.Handshake(); err != nil {
			return nil, err
		}
		conn = tc
	}
	if _, err := conn.Write(forged()); err != nil {
		return nil, err
	}
	br := bufio.NewReader(conn)
	ans := make([]byte, answerLen)
	if _, err := io.ReadFull(br, ans); err != nil {
		return nil, err
	}
	if st := ans[answerLen-1]; st != statusOK {
		return nil, errors.New(statusText(st))
	}
	in, err := newFrameReader(br, DefaultMaxMessageBytes).readReply()
	if err != nil {
		return nil, err
	}
	reply, _ := in.reply.(*core.AppendEntriesReply)
	return reply, nil
}

// attackerTLS is the config of a client presenting certs (none if nil),
// and not checking the server's.
// It presents its certificate whatever CAs the server asks for.
func attackerTLS(certs ...tls.Certificate) *tls.Config {
	return &tls.Config{
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if len(certs) == 0 {
				return new(tls.Certificate), nil
			}
			return &certs[0], nil
		},
	}
}

// selfSigned returns a certificate naming server 2, for client and server
// authentication, signed by its own key.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "raft server 2"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		URIs:         []*url.URL{ServerURI(2)},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestTLSRefusesForgedPeers(t *testing.T) {
	p := newPKI(t)
	other := newPKI(t)
	for _, tc := range []struct {
		name string
		cfg  *tls.Config
		log  string // in server 1's log
	}{
		{"plain TCP", nil, "TLS handshake"},
		{"no certificate", attackerTLS(), "TLS handshake"},
		{"self-signed", attackerTLS(selfSigned(t)), "does not verify"},
		{"another CA", attackerTLS(other.cert(certs.Leaf{ServerID: 2})), "does not verify"},
		{"expired", attackerTLS(p.cert(certs.Leaf{ServerID: 2, NotBefore: time.Now().Add(-2 * time.Hour), ValidFor: time.Hour})), "expired"},
		{"server not in Peers", attackerTLS(p.cert(certs.Leaf{ServerID: 9})), "names server 9, which is not among the peers"},
		{"client certificate", attackerTLS(p.cert(certs.Leaf{ClientName: "ops"})), "raft://client/ops"},
		{"server 3 claiming 2", attackerTLS(p.cert(certs.Leaf{ServerID: 3})), "claims to be server 2, but its certificate says raft://server/3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTLSCluster(t, p, 3, nil)
			reply, err := attack(c.peers[1], tc.cfg)
			if err == nil {
				t.Fatalf("the attack got reply %+v", reply)
			}
			if reply != nil && reply.Success {
				t.Fatalf("the forged AppendEntries got Success")
			}
			waitFor(t, "server 1 to log the refusal", func() bool { return c.logs[1].has("rejected connection") })
			var line string
			for l := range strings.SplitSeq(c.logs[1].String(), "\n") {
				if strings.Contains(l, "rejected connection") {
					line = l
				}
			}
			for _, want := range []string{"level=WARN", "remote=127.0.0.1:", tc.log} {
				if !strings.Contains(line, want) {
					t.Errorf("the log line of the refusal lacks %q: %s", want, line)
				}
			}
			if n := c.h[1].calls.Load(); n != 0 {
				t.Errorf("server 1's handler ran %d times for forged requests", n)
			}
			// The servers serve on.
			c.mustCall(2, 1)
			c.mustCall(3, 1)
		})
	}
}

func TestTLSDialerChecksServer(t *testing.T) {
	p := newPKI(t)
	c := newTLSCluster(t, p, 3, nil)
	// Server 1 thinks server 2 listens where server 3 does.
	lns, peers, err := ListenLocal(1)
	if err != nil {
		t.Fatal(err)
	}
	peers[2], peers[3] = c.peers[3], c.peers[3]
	logs := new(logBuf)
	lost, err := New(Config{ID: 1, Peers: peers, Listener: lns[1], TLS: p.config(1), Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer lost.Close()
	pe, _ := lost.Peer(2)
	err = pe.call(methodProbe, &core.ProbeArgs{}, new(core.ProbeReply))
	if err == nil || !strings.Contains(err.Error(), "names server 3, not server 2") {
		t.Errorf("call to the wrong server: %v, want a refusal", err)
	}
	if !logs.has("cannot reach peer") || !logs.has("names server 3") {
		t.Errorf("no warning of the wrong server:\n%s", logs)
	}
	if n := c.h[3].calls.Load(); n != 0 {
		t.Errorf("server 3's handler ran %d times", n)
	}
	pe, _ = lost.Peer(3)
	if err := pe.call(methodProbe, &core.ProbeArgs{}, new(core.ProbeReply)); err != nil {
		t.Errorf("call to server 3: %v", err)
	}
}

// TestTLSHandshakeBounded checks that connections stalled in the TLS
// handshake count against the handshake limit, and are closed after a
// call timeout.
func TestTLSHandshakeBounded(t *testing.T) {
	const timeout = 500 * time.Millisecond
	p := newPKI(t)
	c := newTLSCluster(t, p, 2, func(cfg *Config) { cfg.CallTimeout = timeout })
	c.mustCall(2, 1)
	// A TLS record header announcing a ClientHello that never comes.
	stall := []byte{22, 3, 1, 0x02, 0x00}
	var conns []net.Conn
	defer func() {
		for _, conn := range conns {
			conn.Close()
		}
	}()
	for range maxHandshakes + 5 {
		conn, err := net.Dial("tcp", c.peers[1])
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
		conn.Write(stall)
	}
	waitFor(t, "the handshakes to fill up", func() bool { return handshakes(c.tr[1]) == maxHandshakes })
	// The real peer's connection serves on.
	c.mustCall(2, 1)
	for i, conn := range conns {
		if !closedByServer(conn) {
			t.Fatalf("stalled connection %d is open after %v", i, waitBound)
		}
	}
	waitFor(t, "the handshakes to end", func() bool { return handshakes(c.tr[1]) == 0 })
	c.mustCall(2, 1)
}

// writePair writes a certificate and key of p's to dir/name.crt and .key,
// replacing them, and returns the certificate.
func (p *pki) writePair(dir, name string, l certs.Leaf) *x509.Certificate {
	p.t.Helper()
	if l.ValidFor == 0 {
		l.ValidFor = time.Hour
	}
	certPEM, keyPEM, err := p.ca.Issue(l)
	if err != nil {
		p.t.Fatal(err)
	}
	writeFile(p.t, filepath.Join(dir, name+".key"), keyPEM)
	writeFile(p.t, filepath.Join(dir, name+".crt"), certPEM)
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		p.t.Fatal(err)
	}
	return c.Leaf
}

func writeFile(t *testing.T, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(name, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// servedCert returns the certificate the server at addr presents, dialing
// with cert.
func servedCert(t *testing.T, addr string, cert tls.Certificate) (*x509.Certificate, error) {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, attackerTLS(cert))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// helloAs runs the handshake to server 1 at addr over TLS with cert,
// claiming to be from, and returns the server's refusal, if any.
func helloAs(addr string, cert tls.Certificate, from int) error {
	conn, err := tls.Dial("tcp", addr, attackerTLS(cert))
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = clientHandshake(conn, from, 1, DefaultMaxMessageBytes, time.Now().Add(waitBound))
	return err
}

func TestCertReloader(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t)
	caFile := filepath.Join(dir, "ca.crt")
	writeFile(t, caFile, p.ca.CertPEM())
	v1 := p.writePair(dir, "server-1", certs.Leaf{ServerID: 1})
	r, err := NewCertReloader(caFile, filepath.Join(dir, "server-1.crt"), filepath.Join(dir, "server-1.key"))
	if err != nil {
		t.Fatal(err)
	}
	c := newTLSCluster(t, p, 2, func(cfg *Config) {
		if cfg.ID == 1 {
			cfg.TLS = r.TLSConfig()
		}
	})
	c.mustCall(2, 1)
	c.mustCall(1, 2)
	two := p.cert(certs.Leaf{ServerID: 2})
	if got, err := servedCert(t, c.peers[1], two); err != nil || !got.Equal(v1) {
		t.Fatalf("server 1 presents serial %v, %v; want %v", got.SerialNumber, err, v1.SerialNumber)
	}

	// A new certificate: new connections get it, the open ones go on.
	v2 := p.writePair(dir, "server-1", certs.Leaf{ServerID: 1})
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if got, err := servedCert(t, c.peers[1], two); err != nil || !got.Equal(v2) {
		t.Errorf("after Reload server 1 presents serial %v, %v; want %v", got.SerialNumber, err, v2.SerialNumber)
	}
	c.mustCall(2, 1)
	c.mustCall(1, 2)
	if d1, d2 := dials(c.peer(1, 2)), dials(c.peer(2, 1)); d1 != 1 || d2 != 1 {
		t.Errorf("servers dialed %d and %d times, want once each: the open connections broke", d1, d2)
	}

	// Files that do not make a valid set are refused, and the last good
	// ones stay.
	writeFile(t, filepath.Join(dir, "server-1.crt"), []byte("not a certificate"))
	if err := r.Reload(); err == nil {
		t.Error("Reload of a broken certificate succeeded")
	}
	other := newPKI(t)
	other.writePair(dir, "server-1", certs.Leaf{ServerID: 1})
	if err := r.Reload(); err == nil || !strings.Contains(err.Error(), "does not verify against the CAs") {
		t.Errorf("Reload of a certificate of another CA: %v", err)
	}
	if got, err := servedCert(t, c.peers[1], two); err != nil || !got.Equal(v2) {
		t.Errorf("after failed Reloads server 1 presents serial %v, %v; want %v", got.SerialNumber, err, v2.SerialNumber)
	}

	// CA rotation: trust both CAs, then the new one only.
	p.writePair(dir, "server-1", certs.Leaf{ServerID: 1})
	writeFile(t, caFile, append(p.ca.CertPEM(), other.ca.CertPEM()...))
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	newTwo := other.cert(certs.Leaf{ServerID: 2})
	if err := helloAs(c.peers[1], newTwo, 2); err != nil {
		t.Errorf("server 2 with a certificate of the new CA: %v", err)
	}
	if err := helloAs(c.peers[1], two, 2); err != nil {
		t.Errorf("server 2 with a certificate of the old CA, both trusted: %v", err)
	}
	other.writePair(dir, "server-1", certs.Leaf{ServerID: 1})
	writeFile(t, caFile, other.ca.CertPEM())
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := helloAs(c.peers[1], two, 2); err == nil {
		t.Error("server 2 with a certificate of the old CA got in after the CA was dropped")
	}
	if err := helloAs(c.peers[1], newTwo, 2); err != nil {
		t.Errorf("server 2 with a certificate of the new CA: %v", err)
	}
}
