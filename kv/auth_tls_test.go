package kv

import (
	"context"
	"crypto/tls"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkit/raft/internal/certs"
)

// TestHTTPTLS: over HTTPS, a client that does not trust the cluster's CA
// cannot talk to it; one that does gets in with a token or with a client
// certificate of the CA, also through a follower, which forwards under
// its server certificate; a certificate of another CA is refused.
func TestHTTPTLS(t *testing.T) {
	dir := t.TempDir()
	ids := []int{1, 2, 3}
	if err := certs.WriteLocalCluster(dir, ids, nil); err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	if err := certs.WriteLocalCluster(other, []int{1}, nil); err != nil {
		t.Fatal(err)
	}
	f := func(name string) string { return filepath.Join(dir, name) }
	caFile := f(certs.CACertFile)
	pool, err := LoadCertPool(caFile)
	if err != nil {
		t.Fatal(err)
	}
	tokPath := filepath.Join(dir, "tokens")
	writeTokens(t, tokPath, tokenA+"\n", time.Now())
	tf, err := LoadTokenFile(tokPath, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	setup := htSetup{authOf: map[int]*Auth{}, serverTLS: map[int]*tls.Config{}, fwdClient: map[int]*http.Client{}, auth: bearer(tokenA)}
	for _, id := range ids {
		cert, err := tls.LoadX509KeyPair(f(certs.ServerCertFile(id)), f(certs.ServerKeyFile(id)))
		if err != nil {
			t.Fatal(err)
		}
		setup.serverTLS[id] = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool, MinVersion: tls.VersionTLS12}
		if setup.fwdClient[id], err = NewHTTPClient(caFile, f(certs.ServerCertFile(id)), f(certs.ServerKeyFile(id))); err != nil {
			t.Fatal(err)
		}
		setup.authOf[id] = &Auth{Tokens: tf, Certs: true}
	}
	if setup.client, err = NewHTTPClient(caFile, "", ""); err != nil {
		t.Fatal(err)
	}
	c := newHTClusterWith(t, setup)
	l := c.leader()
	fw := c.urls[c.followers(l)[0]]

	// No CA: the handshake fails, and nothing is sent.
	if resp, err := http.Post(fw+"/kv/x", "application/json", strings.NewReader(`{"value":"1"}`)); err == nil {
		resp.Body.Close()
		t.Fatalf("PUT without the CA: %s; want a certificate error", resp.Status)
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("PUT without the CA: %v; want a certificate error", err)
	}
	// Plain HTTP to the HTTPS port: no.
	if code, _, _ := htDo(t, "PUT", strings.Replace(fw, "https://", "http://", 1)+"/kv/x", `{"value":"1"}`, bearer(tokenA)); code != http.StatusBadRequest {
		t.Fatalf("plain HTTP to the HTTPS port: %d; want 400", code)
	}
	// TLS 1.1: refused.
	old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11}}}
	if resp, err := old.Get(fw + "/status"); err == nil {
		resp.Body.Close()
		t.Fatalf("GET over TLS 1.1: %s; want a handshake failure", resp.Status)
	}

	// The CA and the token: in, through the follower.
	if code, _, m := htDoClient(t, c.client, "PUT", fw+"/kv/x", `{"value":"1"}`, bearer(tokenA)); code != 200 {
		t.Fatalf("PUT with the CA and the token at a follower: %d %v", code, m)
	}
	// The CA alone: 401.
	if code, _, m := htDoClient(t, c.client, "PUT", fw+"/kv/x", `{"value":"2"}`, nil); code != http.StatusUnauthorized {
		t.Fatalf("PUT with the CA and no credentials: %d %v; want 401", code, m)
	}

	// A client certificate of the CA: in, at the leader and through a
	// follower.
	mtls, err := NewHTTPClient(caFile, f(certs.ClientCertFile), f(certs.ClientKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, u := range []string{c.urls[l], fw} {
		code, hdr, m := htDoClient(t, mtls, "POST", u+"/kv/x/append", `{"value":"c"}`, nil)
		if code != 200 || hdr.Get(HeaderServedBy) != strconv.Itoa(l) {
			t.Fatalf("append with a client certificate at %s: %d %v, served by %q; want 200 from the leader %d", u, code, m, hdr.Get(HeaderServedBy), l)
		}
	}
	if res := c.storeGet(l, "x"); res.Value != "1cc" {
		t.Fatalf("x = %+v; want 1cc", res)
	}
	// A client certificate of another CA: the handshake fails.
	stranger, err := NewHTTPClient(caFile, filepath.Join(other, certs.ClientCertFile), filepath.Join(other, certs.ClientKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := (&HTTPConn{Addr: fw, Client: stranger}).Do(ctx, Op{Kind: Put, Key: "x", Value: "s"}); err == nil {
		t.Fatal("PUT with a client certificate of another CA succeeded")
	}
	if res := c.storeGet(l, "x"); res.Value != "1cc" {
		t.Fatalf("x = %+v; want 1cc: a refused request took effect", res)
	}
}
