package raft

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/raftkit/raft/internal/certs"
	"github.com/raftkit/raft/transport"
)

// testTLS returns the mutual TLS configs of servers ids, for
// transport.Config.TLS, with certificates of a new CA.
func testTLS(t *testing.T, ids []int) map[int]*tls.Config {
	t.Helper()
	ca, err := certs.NewCA("raft test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfgs := make(map[int]*tls.Config, len(ids))
	for _, id := range ids {
		certPEM, keyPEM, err := ca.Issue(certs.Leaf{ServerID: id, ValidFor: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		cfgs[id], err = transport.TLSConfig(ca.CertPEM(), func() (*tls.Certificate, error) { return &cert, nil })
		if err != nil {
			t.Fatal(err)
		}
	}
	return cfgs
}
