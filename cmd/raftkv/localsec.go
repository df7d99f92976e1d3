package main

// The local launcher's security: it makes the cluster's certificates and
// a token file under its data directory (keeping those that exist), and
// its replicas serve HTTPS and want the token.

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/raftkit/raft/internal/certs"
	"github.com/raftkit/raft/kv"
)

// localSecurity is where the local cluster's credentials are.
type localSecurity struct {
	certDir string // certs.WriteLocalCluster's files
	ca      string // the CA certificate
	tokens  string // the token file: one token, alone on its line
}

// prepareLocalSecurity makes, under data, the certificates of replicas 1
// to n (valid for host too, if it is a name or a specific address) and a
// token file, unless they exist.
func prepareLocalSecurity(data string, n int, host string) (localSecurity, error) {
	sec := localSecurity{certDir: filepath.Join(data, "certs"), ca: localCA(data), tokens: localTokens(data)}
	ids := make([]int, n)
	for i := range ids {
		ids[i] = i + 1
	}
	var hosts []string
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		hosts = append(hosts, host)
	}
	if err := os.MkdirAll(data, 0o755); err != nil {
		return sec, fmt.Errorf("data directory: %w", err)
	}
	if err := certs.WriteLocalCluster(sec.certDir, ids, hosts); err != nil {
		return sec, err
	}
	if err := writeTokenFile(sec.tokens); err != nil {
		return sec, err
	}
	return sec, nil
}

// writeTokenFile writes a new random token (32 bytes, in hex) to the file
// name, readable by its owner only, unless the file exists.
func writeTokenFile(name string) error {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Errorf("token file %s: %w", name, err)
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("token file: %w", err)
	}
	if _, err := f.WriteString(hex.EncodeToString(b[:]) + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("token file %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("token file %s: %w", name, err)
	}
	return nil
}

// serveFlags are the flags of replica id's serve command for this
// security.
func (s localSecurity) serveFlags(id int) []string {
	return []string{
		"-http-tls-cert", filepath.Join(s.certDir, certs.ServerCertFile(id)),
		"-http-tls-key", filepath.Join(s.certDir, certs.ServerKeyFile(id)),
		"-http-ca", s.ca,
		"-http-tokens", s.tokens,
	}
}

// localClientConn is how the launcher asks its replicas for their status.
func localClientConn(s localSecurity) (*clientConn, error) {
	client, err := kv.NewHTTPClient(s.ca, "", "")
	if err != nil {
		return nil, err
	}
	token, err := kv.ReadClientToken(s.tokens)
	if err != nil {
		return nil, err
	}
	tr := client.Transport.(*http.Transport)
	return &clientConn{tr: tr, client: &http.Client{Transport: tr, Timeout: time.Second}, token: token}, nil
}

// printHints shows how to talk to the new cluster.
func printHints(stdout io.Writer, exe string, httpAddrs map[int]string, data string, sec *localSecurity) {
	name := shellJoin(selfCommand(exe))
	scheme := "http"
	if sec != nil {
		scheme = "https"
	}
	flags := ""
	if httpAddrs[1] != "127.0.0.1:8001" {
		flags = " -addr " + scheme + "://" + httpAddrs[1]
		for i := 2; i <= len(httpAddrs); i++ {
			flags += "," + scheme + "://" + httpAddrs[i]
		}
	}
	// The client commands find the CA and token of ./raftkv-data alone.
	if rel, err := filepath.Rel(mustGetwd(), data); sec != nil && (err != nil || rel != defaultDataDir || flags != "") {
		flags += " -ca " + shellQuote(sec.ca) + " -token-file " + shellQuote(sec.tokens)
	}
	fmt.Fprintf(stdout, "raftkv: ready; Ctrl-C stops the cluster. Try, from another terminal:\n")
	fmt.Fprintf(stdout, "  %s put%s hello world\n", name, flags)
	fmt.Fprintf(stdout, "  %s get%s hello\n", name, flags)
	fmt.Fprintf(stdout, "  %s status%s\n", name, flags)
	if sec == nil {
		fmt.Fprintf(stdout, "  curl -X PUT http://%s/kv/hello -d '{\"value\": \"world\"}'\n", httpAddrs[1])
		return
	}
	fmt.Fprintf(stdout, "  curl --cacert %s -H \"Authorization: Bearer $(cat %s)\" -X PUT https://%s/kv/hello -d '{\"value\": \"world\"}'\n",
		shellQuote(sec.ca), shellQuote(sec.tokens), httpAddrs[1])
	fmt.Fprintf(stdout, "raftkv: the API serves HTTPS and wants the token of %s (see docs/security.md)\n", sec.tokens)
}

// mustGetwd is the working directory, or "" if it cannot be known.
func mustGetwd() string {
	wd, _ := os.Getwd()
	return wd
}
