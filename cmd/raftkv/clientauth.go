package main

// How the client commands (put, get, append, del, status, bench) reach
// the replicas: their addresses, the CA they trust and the token they
// send.

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/raftkit/raft/internal/certs"
	"github.com/raftkit/raft/kv"
)

// Environment variables that stand for -ca and -token-file.
const (
	envCA        = "RAFTKV_CA"
	envTokenFile = "RAFTKV_TOKEN_FILE"
)

// defaultDataDir is the local launcher's data directory by default; the
// client commands find its cluster's CA and token there.
const defaultDataDir = "raftkv-data"

// localCA and localTokens are where the local launcher keeps its
// cluster's CA certificate and token file, under its data directory.
func localCA(data string) string     { return filepath.Join(data, "certs", certs.CACertFile) }
func localTokens(data string) string { return filepath.Join(data, "tokens") }

// clientFlags are the client commands' connection flags.
type clientFlags struct {
	addr, ca, tokenFile *string
}

func addClientFlags(fs *flag.FlagSet) *clientFlags {
	return &clientFlags{addr: fs.String("addr", "", ""), ca: fs.String("ca", "", ""), tokenFile: fs.String("token-file", "", "")}
}

// clientConn is how a client command talks to the replicas.
type clientConn struct {
	addrs  []string // base URLs
	tr     *http.Transport
	client *http.Client
	token  string // "" for none
}

// connect checks a command's -timeout and resolves the flags (see
// setup): it returns the connection and a context bounded by the timeout,
// or, having said why on stderr, the exit code of a usage error.
func (f *clientFlags) connect(cmd string, timeout time.Duration, stderr io.Writer) (*clientConn, context.Context, context.CancelFunc, int) {
	if timeout <= 0 {
		fmt.Fprintf(stderr, "raftkv %s: -timeout %v: want a positive duration\n", cmd, timeout)
		return nil, nil, nil, exitUsage
	}
	cc, err := f.setup()
	if err != nil {
		fmt.Fprintf(stderr, "raftkv %s: %v\n", cmd, err)
		return nil, nil, nil, exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	return cc, ctx, cancel, exitOK
}

// setup resolves the flags: -ca and -token-file, else $RAFTKV_CA and
// $RAFTKV_TOKEN_FILE, else, with the default addresses, the local
// cluster's files under ./raftkv-data if they are there. An address
// without a scheme is https with a CA or a token, http otherwise.
func (f *clientFlags) setup() (*clientConn, error) {
	ca, tokenFile := *f.ca, *f.tokenFile
	if ca == "" {
		ca = os.Getenv(envCA)
	}
	if tokenFile == "" {
		tokenFile = os.Getenv(envTokenFile)
	}
	if *f.addr == "" && ca == "" && tokenFile == "" && fileExists(localCA(defaultDataDir)) && fileExists(localTokens(defaultDataDir)) {
		ca, tokenFile = localCA(defaultDataDir), localTokens(defaultDataDir)
	}
	secure := ca != "" || tokenFile != ""
	var addrs []string
	if *f.addr == "" {
		for _, a := range defaultAddrs {
			addrs = append(addrs, withScheme(a, secure))
		}
	} else {
		for _, a := range strings.Split(*f.addr, ",") {
			if a = strings.TrimSpace(a); a != "" {
				addrs = append(addrs, withScheme(a, secure))
			}
		}
		if len(addrs) == 0 {
			return nil, fmt.Errorf("-addr is empty")
		}
	}
	cc := &clientConn{addrs: addrs}
	client, err := kv.NewHTTPClient(ca, "", "")
	if err != nil {
		return nil, fmt.Errorf("-ca: %w", err)
	}
	cc.tr = client.Transport.(*http.Transport)
	cc.client = &http.Client{Transport: cc.tr}
	if tokenFile != "" {
		if cc.token, err = kv.ReadClientToken(tokenFile); err != nil {
			return nil, fmt.Errorf("-token-file: %w", err)
		}
	}
	return cc, nil
}

// withScheme returns addr as a base URL: https:// or http:// first if it
// has no scheme.
func withScheme(addr string, secure bool) string {
	switch {
	case strings.Contains(addr, "://"):
		return addr
	case secure:
		return "https://" + addr
	}
	return "http://" + addr
}

// conns returns a Conn for each replica, knowing each other for leader
// hints, over client (cc's if nil).
func (cc *clientConn) conns(client *http.Client) []*kv.HTTPConn {
	if client == nil {
		client = cc.client
	}
	conns := make([]*kv.HTTPConn, len(cc.addrs))
	for i, a := range cc.addrs {
		conns[i] = &kv.HTTPConn{Addr: a, Addrs: cc.addrs, Client: client, Token: cc.token}
	}
	return conns
}

// status returns the replica's /status.
func (cc *clientConn) status(ctx context.Context, addr string) (*kv.StatusReply, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(urlOf(addr), "/")+"/status", nil)
	if err != nil {
		return nil, err
	}
	if cc.token != "" {
		req.Header.Set("Authorization", "Bearer "+cc.token)
	}
	resp, err := cc.client.Do(req)
	if err != nil {
		return nil, shortErr(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		json.NewDecoder(resp.Body).Decode(&e)
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, e.Error)
	}
	var st kv.StatusReply
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("bad answer: %v", err)
	}
	return &st, nil
}

// plainClientConn reaches addrs over plain HTTP (or HTTPS trusting the
// system's CAs), with no token.
func plainClientConn(addrs []string) *clientConn {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	return &clientConn{addrs: addrs, tr: tr, client: &http.Client{Transport: tr}}
}
