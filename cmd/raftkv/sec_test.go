package main

// The tests' credentials: one CA and token for every cluster the tests
// start (but the launcher's, which makes its own), which the client
// commands they run find in $RAFTKV_CA and $RAFTKV_TOKEN_FILE.

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftkit/raft/internal/certs"
	"github.com/raftkit/raft/kv"
)

// testSec is where the tests' credentials are.
var testSec struct {
	dir, ca, tokens, token string
	transport              *http.Transport
}

// httpClient talks to the tests' clusters (over HTTPS, with the token).
var httpClient *http.Client

// setupTestSecurity makes the tests' credentials under dir, for replicas
// 1 to 5.
func setupTestSecurity(dir string) error {
	testSec.dir = filepath.Join(dir, "certs")
	if err := certs.WriteLocalCluster(testSec.dir, []int{1, 2, 3, 4, 5}, nil); err != nil {
		return err
	}
	testSec.ca = filepath.Join(testSec.dir, certs.CACertFile)
	testSec.tokens = filepath.Join(dir, "tokens")
	if err := writeTokenFile(testSec.tokens); err != nil {
		return err
	}
	var err error
	if testSec.token, err = kv.ReadClientToken(testSec.tokens); err != nil {
		return err
	}
	client, err := kv.NewHTTPClient(testSec.ca, "", "")
	if err != nil {
		return err
	}
	testSec.transport = client.Transport.(*http.Transport)
	httpClient = &http.Client{Timeout: 3 * time.Second, Transport: withToken{testSec.transport, testSec.token}}
	os.Setenv(envCA, testSec.ca)
	os.Setenv(envTokenFile, testSec.tokens)
	return nil
}

// withToken adds the bearer token to requests that have no Authorization.
type withToken struct {
	rt    http.RoundTripper
	token string
}

func (w withToken) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get("Authorization") == "" {
		req = req.Clone(req.Context())
		req.Header.Set("Authorization", "Bearer "+w.token)
	}
	return w.rt.RoundTrip(req)
}

// testSecFlags are replica id's serve flags for the tests' credentials.
func testSecFlags(id int) []string {
	return localSecurity{certDir: testSec.dir, ca: testSec.ca, tokens: testSec.tokens}.serveFlags(id)
}

// testConns are Conns to the tests' clusters, with the token.
func testConns(addrs ...string) []kv.Conn {
	return kv.HTTPConnsAuth(&http.Client{Transport: testSec.transport}, testSec.token, addrs...)
}

// testClientConn is the client commands' clientConn for the tests'
// clusters.
func testClientConn(addrs []string) *clientConn {
	return &clientConn{addrs: addrs, tr: testSec.transport, client: &http.Client{Transport: testSec.transport}, token: testSec.token}
}

// localEnv is the environment in which the client commands find the
// credentials of the local cluster with data directory data.
func localEnv(data string) []string {
	return []string{envCA + "=" + localCA(data), envTokenFile + "=" + localTokens(data)}
}

// localClient talks to the local cluster with data directory data.
func localClient(t *testing.T, data string) *http.Client {
	t.Helper()
	cc, err := localClientConn(localSecurity{ca: localCA(data), tokens: localTokens(data)})
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Timeout: 3 * time.Second, Transport: withToken{cc.tr, cc.token}}
}

// TestHTTPSecurityInProc: a replica serves HTTPS alone, and wants
// credentials on every route, /metrics and pprof too (bar /status and
// /metrics with -http-open-status); the client commands find the local
// cluster's CA and token in ./raftkv-data.
func TestHTTPSecurityInProc(t *testing.T) {
	c := startInProc(t, 1, "-pprof")
	c.waitLeader(t)
	u := c.urls[1]
	plain := &http.Client{Timeout: 3 * time.Second}
	if resp, err := plain.Get(u + "/status"); err == nil {
		resp.Body.Close()
		t.Fatalf("GET /status without the CA: %s; want a certificate error", resp.Status)
	}
	noToken := &http.Client{Timeout: 3 * time.Second, Transport: testSec.transport}
	for _, p := range []string{"/status", "/metrics", "/debug/pprof/cmdline", "/kv/k"} {
		resp, err := noToken.Get(u + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without a token: %s; want 401", p, resp.Status)
		}
		if code, _ := get(t, u+p); code == http.StatusUnauthorized {
			t.Errorf("GET %s with the token: 401", p)
		}
	}
	resp, err := noToken.Post(u+"/admin/transfer", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST /admin/transfer without a token: %s; want 401", resp.Status)
	}

	open := startInProc(t, 1, "-http-open-status")
	for p, want := range map[string]int{"/status": 200, "/metrics": 200, "/kv/k": 401} {
		resp, err := noToken.Get(open.urls[1] + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("-http-open-status: GET %s without a token: %s; want %d", p, resp.Status, want)
		}
	}

	// The defaults: the local cluster's files, in ./raftkv-data.
	dir := t.TempDir()
	t.Chdir(dir)
	t.Setenv(envCA, "")
	t.Setenv(envTokenFile, "")
	if _, err := prepareLocalSecurity(filepath.Join(dir, defaultDataDir), 3, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	empty := ""
	cc, err := (&clientFlags{addr: &empty, ca: &empty, tokenFile: &empty}).setup()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(localTokens(defaultDataDir))
	if cc.token != strings.TrimSpace(string(b)) || len(cc.token) != 64 || fmt.Sprint(cc.addrs) != "[https://127.0.0.1:8001 https://127.0.0.1:8002 https://127.0.0.1:8003]" {
		t.Errorf("client defaults with ./raftkv-data: token %q, addrs %v; want the local token and https", cc.token, cc.addrs)
	}
	if fi, err := os.Stat(localTokens(defaultDataDir)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("token file: %v, %v; want mode 0600", fi.Mode(), err)
	}
}
