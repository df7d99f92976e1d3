package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/raftkit/raft/internal/certs"
	"github.com/raftkit/raft/transport"
)

func TestServeNeedsTLSOrInsecure(t *testing.T) {
	base := []string{"serve", "-id", "1", "-peers", "1=127.0.0.1:0", "-http", "127.0.0.1:0", "-data", t.TempDir()}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "no TLS for the Raft transport: give -tls-ca, -tls-cert and -tls-key"},
		{[]string{"-tls-ca", "ca.crt"}, "needs all three of -tls-ca, -tls-cert and -tls-key"},
		{[]string{"-insecure", "-tls-ca", "a", "-tls-cert", "b", "-tls-key", "c"}, "give either the TLS flags or -insecure"},
	} {
		code, _, stderr := runCmd(t, append(base, tc.args...)...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("serve %q: exit %d, stderr %q; want %d saying %q", tc.args, code, stderr, exitUsage, tc.want)
		}
	}
	// Files that are not there: a clear error naming them.
	dir := t.TempDir()
	code, _, stderr := runCmd(t, append(base, localTLSArgs(dir, 1)...)...)
	if code != exitError || !strings.Contains(stderr, filepath.Join(dir, "ca.crt")) {
		t.Errorf("serve with missing certificate files: exit %d, stderr %q", code, stderr)
	}
}

func TestInsecureWarnsOffLoopback(t *testing.T) {
	for addr, warn := range map[string]bool{"127.0.0.1:9001": false, "localhost:9001": false, "[::1]:9001": false, "0.0.0.0:9001": true, "10.1.2.3:9001": true, ":9001": true} {
		var buf bytes.Buffer
		cfg := transport.Config{ID: 1, Peers: map[int]string{1: addr}}
		f := raftTLS{insecure: true}
		if _, err := f.apply(&cfg, slog.New(slog.NewTextHandler(&buf, nil))); err != nil || !cfg.Insecure {
			t.Fatalf("%s: apply: %v, Insecure %v", addr, err, cfg.Insecure)
		}
		if got := strings.Contains(buf.String(), "level=WARN") && strings.Contains(buf.String(), "plain TCP"); got != warn {
			t.Errorf("%s: warned %v, want %v: %q", addr, got, warn, buf.String())
		}
	}
}

func TestCertsCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	code, stdout, stderr := runCmd(t, "certs", "-dir", dir, "-ids", "1,2", "-hosts", "db.example, 10.0.0.5")
	if code != exitOK {
		t.Fatalf("certs: exit %d, %s", code, stderr)
	}
	if !strings.Contains(stdout, dir) {
		t.Errorf("stdout %q does not say where", stdout)
	}
	for _, name := range []string{certs.CACertFile, certs.CAKeyFile, certs.ClientCertFile, certs.ClientKeyFile,
		certs.ServerCertFile(1), certs.ServerKeyFile(1), certs.ServerCertFile(2), certs.ServerKeyFile(2)} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Error(err)
		}
	}
	// What it wrote is what serve takes.
	f := raftTLS{ca: filepath.Join(dir, certs.CACertFile), cert: filepath.Join(dir, certs.ServerCertFile(2)), key: filepath.Join(dir, certs.ServerKeyFile(2))}
	cfg := transport.Config{ID: 2, Peers: map[int]string{2: "127.0.0.1:0"}}
	if r, err := f.apply(&cfg, slog.Default()); err != nil || r == nil || cfg.TLS == nil {
		t.Errorf("apply of the certificates written: %v", err)
	}
	for _, args := range [][]string{{"certs"}, {"certs", "-dir", dir, "-ids", "1,x"}, {"certs", "-dir", dir, "-ids", "0"}} {
		if code, _, _ := runCmd(t, args...); code != exitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, exitUsage)
		}
	}
}
