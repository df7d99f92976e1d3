package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftkit/raft/transport"
)

func mustCA(t *testing.T) *CA {
	t.Helper()
	ca, err := NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func pool(t *testing.T, pems ...[]byte) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	for _, b := range pems {
		if !p.AppendCertsFromPEM(b) {
			t.Fatalf("no certificate in %q", b)
		}
	}
	return p
}

// leaf parses a certificate and its key as tls would, checking they match.
func leaf(t *testing.T, certPEM, keyPEM []byte) *x509.Certificate {
	t.Helper()
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("X509KeyPair: %v", err)
	}
	return c.Leaf
}

func verify(cert *x509.Certificate, roots *x509.CertPool, usage x509.ExtKeyUsage) error {
	_, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}})
	return err
}

func TestIssueServer(t *testing.T) {
	ca := mustCA(t)
	certPEM, keyPEM, err := ca.Issue(Leaf{ServerID: 7, Hosts: []string{"node7.example", "10.0.0.7"}, ValidFor: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c := leaf(t, certPEM, keyPEM)
	roots := pool(t, ca.CertPEM())
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if err := verify(c, roots, u); err != nil {
			t.Errorf("verify for usage %v: %v", u, err)
		}
	}
	if id, err := transport.ServerID(c); err != nil || id != 7 {
		t.Errorf("ServerID = %d, %v; want 7", id, err)
	}
	if len(c.URIs) != 1 || c.URIs[0].String() != "raft://server/7" {
		t.Errorf("URIs = %v, want [raft://server/7]", c.URIs)
	}
	if err := c.VerifyHostname("node7.example"); err != nil {
		t.Error(err)
	}
	if err := c.VerifyHostname("10.0.0.7"); err != nil {
		t.Error(err)
	}
	if err := verify(c, pool(t, mustCA(t).CertPEM()), x509.ExtKeyUsageServerAuth); err == nil {
		t.Error("a certificate verified against another CA")
	}
}

func TestURIsAgreeWithTransport(t *testing.T) {
	for _, id := range []int{1, 42} {
		if a, b := ServerURI(id).String(), transport.ServerURI(id).String(); a != b {
			t.Errorf("ServerURI(%d) = %s, transport's %s", id, a, b)
		}
	}
	if a, b := ClientURI("ops").String(), transport.ClientURI("ops").String(); a != b {
		t.Errorf("ClientURI = %s, transport's %s", a, b)
	}
}

func TestIssueClient(t *testing.T) {
	ca := mustCA(t)
	certPEM, keyPEM, err := ca.Issue(Leaf{ClientName: "ops", ValidFor: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c := leaf(t, certPEM, keyPEM)
	roots := pool(t, ca.CertPEM())
	if err := verify(c, roots, x509.ExtKeyUsageClientAuth); err != nil {
		t.Errorf("verify for client auth: %v", err)
	}
	if err := verify(c, roots, x509.ExtKeyUsageServerAuth); err == nil {
		t.Error("a client certificate verified for server auth")
	}
	if id, err := transport.ServerID(c); err == nil {
		t.Errorf("ServerID of a client certificate = %d, want an error", id)
	}
	if len(c.URIs) != 1 || c.URIs[0].String() != "raft://client/ops" {
		t.Errorf("URIs = %v, want [raft://client/ops]", c.URIs)
	}
}

func TestIssueValidity(t *testing.T) {
	ca := mustCA(t)
	start := time.Now().Add(-3 * time.Hour)
	certPEM, keyPEM, err := ca.Issue(Leaf{ServerID: 1, ValidFor: time.Hour, NotBefore: start})
	if err != nil {
		t.Fatal(err)
	}
	c := leaf(t, certPEM, keyPEM)
	if !c.NotBefore.Equal(start.Truncate(time.Second)) || !c.NotAfter.Equal(start.Add(time.Hour).Truncate(time.Second)) {
		t.Errorf("validity [%v, %v], want [%v, %v]", c.NotBefore, c.NotAfter, start, start.Add(time.Hour))
	}
	var invalid x509.CertificateInvalidError
	if err := verify(c, pool(t, ca.CertPEM()), x509.ExtKeyUsageServerAuth); !errors.As(err, &invalid) || invalid.Reason != x509.Expired {
		t.Errorf("verify an expired certificate: %v, want Expired", err)
	}
}

func TestIssueBadLeaf(t *testing.T) {
	ca := mustCA(t)
	for _, l := range []Leaf{
		{ValidFor: time.Hour},
		{ServerID: 1, ClientName: "x", ValidFor: time.Hour},
		{ServerID: -1, ValidFor: time.Hour},
		{ServerID: 1},
	} {
		if _, _, err := ca.Issue(l); err == nil {
			t.Errorf("Issue(%+v) succeeded", l)
		}
	}
	if _, err := NewCA("x", 0); err == nil {
		t.Error("NewCA with no validity succeeded")
	}
}

func TestWriteLoadCA(t *testing.T) {
	dir := t.TempDir()
	ca := mustCA(t)
	cf, kf := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if err := ca.WriteFiles(cf, kf); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(kf); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if err := ca.WriteFiles(cf, kf); !errors.Is(err, fs.ErrExist) {
		t.Errorf("WriteFiles over existing files: %v, want ErrExist", err)
	}
	loaded, err := LoadCA(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(loaded.CertPEM(), ca.CertPEM()) {
		t.Error("the loaded CA's certificate differs")
	}
	certPEM, keyPEM, err := loaded.Issue(Leaf{ServerID: 2, ValidFor: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(leaf(t, certPEM, keyPEM), pool(t, ca.CertPEM()), x509.ExtKeyUsageServerAuth); err != nil {
		t.Errorf("a certificate of the loaded CA does not verify against the original: %v", err)
	}

	// A key that is not the certificate's.
	other := mustCA(t)
	of := filepath.Join(dir, "other.key")
	if err := os.WriteFile(of, other.keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(cf, of); err == nil || !strings.Contains(err.Error(), "is not that of the certificate") {
		t.Errorf("LoadCA with another key: %v", err)
	}
	// A leaf is not a CA.
	lf := filepath.Join(dir, "leaf.crt")
	if err := os.WriteFile(lf, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(lf, kf); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Errorf("LoadCA of a leaf: %v", err)
	}
	if _, err := LoadCA(filepath.Join(dir, "missing.crt"), kf); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadCA of a missing file: %v", err)
	}
}

func TestWriteLocalCluster(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	if err := WriteLocalCluster(dir, []int{1, 2, 3}, []string{"db.example"}); err != nil {
		t.Fatal(err)
	}
	read := func(name string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	roots := pool(t, read(CACertFile))
	for _, id := range []int{1, 2, 3} {
		c := leaf(t, read(ServerCertFile(id)), read(ServerKeyFile(id)))
		if err := verify(c, roots, x509.ExtKeyUsageServerAuth); err != nil {
			t.Errorf("server %d: %v", id, err)
		}
		if got, err := transport.ServerID(c); err != nil || got != id {
			t.Errorf("server %d's certificate names %d, %v", id, got, err)
		}
		for _, h := range []string{"localhost", "127.0.0.1", "db.example"} {
			if err := c.VerifyHostname(h); err != nil {
				t.Errorf("server %d: %v", id, err)
			}
		}
	}
	client := leaf(t, read(ClientCertFile), read(ClientKeyFile))
	if err := verify(client, roots, x509.ExtKeyUsageClientAuth); err != nil {
		t.Errorf("client: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, ServerKeyFile(1))); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}

	// Again, with a server more: the files there stay, the new one is of
	// the same CA.
	before := read(ServerCertFile(1))
	caBefore := read(CACertFile)
	if err := WriteLocalCluster(dir, []int{1, 2, 3, 4}, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(read(ServerCertFile(1)), before) || !bytes.Equal(read(CACertFile), caBefore) {
		t.Error("WriteLocalCluster replaced existing files")
	}
	if err := verify(leaf(t, read(ServerCertFile(4)), read(ServerKeyFile(4))), roots, x509.ExtKeyUsageServerAuth); err != nil {
		t.Errorf("server 4: %v", err)
	}

	// Half a pair is an error, and nothing is replaced.
	if err := os.Remove(filepath.Join(dir, ServerKeyFile(2))); err != nil {
		t.Fatal(err)
	}
	err := WriteLocalCluster(dir, []int{1, 2, 3}, nil)
	if err == nil || !strings.Contains(err.Error(), ServerCertFile(2)) {
		t.Errorf("WriteLocalCluster with half a pair: %v", err)
	}
	if err := WriteLocalCluster(dir, []int{0}, nil); err == nil {
		t.Error("WriteLocalCluster with server ID 0 succeeded")
	}
}
