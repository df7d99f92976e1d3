package main

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftkit/raft/internal/certs"
)

// SIGHUP to a running replica makes it serve new certificates on its
// Raft port and its HTTP port, without a restart.
func TestSIGHUPReloadsCertificates(t *testing.T) {
	ca, err := certs.LoadCA(testSec.ca, filepath.Join(testSec.dir, certs.CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	issue := func() {
		c, k, err := ca.Issue(certs.Leaf{ServerID: 1, Hosts: []string{"127.0.0.1"}, ValidFor: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(certFile, c, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, k, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	issue()
	ports := freePorts(t, 2)
	raftAddr, httpAddr := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	r := &replicaProc{id: 1, out: &syncBuffer{}, args: []string{"serve", "-id", "1",
		"-peers", "1=" + raftAddr, "-http-peers", "1=" + httpAddr, "-data", filepath.Join(dir, "data"),
		"-tls-ca", testSec.ca, "-tls-cert", certFile, "-tls-key", keyFile, "-http-tokens", testSec.tokens}}
	r.start(t)
	defer r.kill()

	// served returns the serial number of the certificate served at addr.
	client, err := tls.X509KeyPair(mustRead(t, certFile), mustRead(t, keyFile))
	if err != nil {
		t.Fatal(err)
	}
	served := func(addr string) string {
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{client}})
		if err != nil {
			return ""
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	var raftBefore, httpBefore string
	if !waitUntil(20*time.Second, func() bool {
		raftBefore, httpBefore = served(raftAddr), served(httpAddr)
		return raftBefore != "" && httpBefore != ""
	}) {
		t.Fatalf("the replica serves no TLS:\n%s", r.out.String())
	}
	issue()
	if got := served(raftAddr); got != raftBefore {
		t.Fatalf("the Raft port serves the new certificate before SIGHUP")
	}
	if err := r.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !waitUntil(20*time.Second, func() bool {
		return served(raftAddr) != raftBefore && served(httpAddr) != httpBefore
	}) {
		t.Fatalf("the old certificates are still served after SIGHUP:\n%s", r.out.String())
	}
	if !strings.Contains(r.out.String(), "reloaded the TLS certificates") {
		t.Errorf("no log line for the reload:\n%s", r.out.String())
	}
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
