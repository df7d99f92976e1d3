package kv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	tokenA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	tokenB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	tokenC = "cccccccccccccccccccccccccccccccc"
)

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// writeTokens writes a token file holding content, its modification time
// t (so that a rewrite is seen as a change whatever the file system's
// time granularity).
func writeTokens(t *testing.T, path, content string, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// newAuthCluster is a cluster whose replicas take the tokens of their
// token file, by replica: files[id]'s content.
func newAuthCluster(t *testing.T, files map[int]string, good string) (*htCluster, map[int]*TokenFile, map[int]string) {
	t.Helper()
	dir := t.TempDir()
	tfs, paths := map[int]*TokenFile{}, map[int]string{}
	for id, content := range files {
		paths[id] = filepath.Join(dir, "tokens"+strconv.Itoa(id))
		writeTokens(t, paths[id], content, time.Now().Add(-time.Hour))
		tf, err := LoadTokenFile(paths[id], quietLog)
		if err != nil {
			t.Fatal(err)
		}
		tfs[id] = tf
	}
	auths := map[int]*Auth{}
	for id, tf := range tfs {
		auths[id] = &Auth{Tokens: tf}
	}
	c := newHTClusterWith(t, htSetup{authOf: auths, auth: bearer(good)})
	return c, tfs, paths
}

// storeGet reads key from replica id's store, through Raft, past the HTTP
// API.
func (c *htCluster) storeGet(id int, key string) Result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := c.nodes[id].kv.Do(ctx, Op{Kind: Get, Key: key})
	if err != nil {
		c.t.Fatalf("Get %q at replica %d: %v", key, id, err)
	}
	return res
}

// TestHTTPAuthRefuses: without a valid token, no route answers but with
// 401 (WWW-Authenticate: Bearer, a JSON error), at the leader and at a
// follower, and nothing takes effect.
func TestHTTPAuthRefuses(t *testing.T) {
	all := "# the cluster's tokens\n\nalice:" + tokenA + "\n"
	c, _, _ := newAuthCluster(t, map[int]string{1: all, 2: all, 3: all}, tokenA)
	l := c.leader()
	f := c.followers(l)[0]
	if code, _, m := htDo(t, "PUT", c.urls[l]+"/kv/keep", `{"value":"v1"}`, c.auth); code != 200 {
		t.Fatalf("PUT keep with the token: %d %v", code, m)
	}
	creds := []struct {
		name string
		hdr  map[string]string
	}{
		{"no credentials", nil},
		{"wrong token", bearer(tokenB)},
		{"token prefix", bearer(tokenA[:20])},
		{"token and more", bearer(tokenA + "x")},
		{"empty bearer", map[string]string{"Authorization": "Bearer "}},
		{"basic", map[string]string{"Authorization": "Basic " + tokenA}},
		{"token as the name", bearer("alice")},
	}
	reqs := []struct{ method, path, body string }{
		{"PUT", "/kv/new", `{"value":"x"}`},
		{"PUT", "/kv/keep", `{"value":"changed"}`},
		{"POST", "/kv/keep/append", `{"value":"more"}`},
		{"POST", "/kv/new/append", `{"value":"x"}`},
		{"DELETE", "/kv/keep", ""},
		{"GET", "/kv/keep", ""},
		{"GET", "/status", ""},
		{"GET", "/nope", ""},
	}
	for _, id := range []int{l, f} {
		for _, cr := range creds {
			for _, rq := range reqs {
				code, hdr, m := htDo(t, rq.method, c.urls[id]+rq.path, rq.body, cr.hdr)
				if code != http.StatusUnauthorized || m["code"] != CodeUnauthorized || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("%s %s at replica %d with %s: %d %v (WWW-Authenticate %q); want 401 unauthorized with a Bearer challenge",
						rq.method, rq.path, id, cr.name, code, m, hdr.Get("WWW-Authenticate"))
				}
				if by := hdr.Get(HeaderServedBy); by != strconv.Itoa(id) {
					t.Errorf("%s %s at replica %d with %s: answered by %q; want the replica asked, not the leader", rq.method, rq.path, id, cr.name, by)
				}
			}
		}
	}
	if res := c.storeGet(l, "keep"); !res.Found || res.Value != "v1" {
		t.Errorf("store: keep = %+v; want v1, untouched", res)
	}
	if res := c.storeGet(l, "new"); res.Found {
		t.Errorf("store: new = %+v; want none: a refused request took effect", res)
	}

	// The body of a refused request is not read: a client that sends the
	// headers alone gets its 401 at once, not a wait for the body.
	conn := rawRequest(t, c.urls[f], "slow", 1000, `{"value":"`)
	if code, err := readStatus(conn, 5*time.Second); code != http.StatusUnauthorized {
		t.Errorf("PUT with its body held back: status %d (%v); want 401 before the body", code, err)
	}

	// With the token, the requests go through, through the follower too.
	if code, _, m := htDo(t, "POST", c.urls[f]+"/kv/keep/append", `{"value":"2"}`, c.auth); code != 200 || m["value"] != "v12" {
		t.Fatalf("append with the token at the follower: %d %v", code, m)
	}
	if code, _, m := htDoSettled(t, "GET", c.urls[f]+"/status", "", c.auth); code != 200 || m["id"] != float64(f) {
		t.Fatalf("status with the token: %d %v", code, m)
	}
}

// TestHTTPAuthOpen: Auth.Open serves the routes it names without
// credentials, and only those.
func TestHTTPAuthOpen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens")
	writeTokens(t, path, tokenA+"\n", time.Now())
	tf, err := LoadTokenFile(path, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	var got Identity
	h := (&Auth{Tokens: tf, Open: func(r *http.Request) bool { return r.URL.Path == "/status" }}).Wrap(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got, _ = RequestIdentity(r.Context()) }))
	for _, tc := range []struct {
		path string
		hdr  map[string]string
		code int
		via  string
	}{
		{"/status", nil, 200, ViaOpen},
		{"/status", bearer(tokenA), 200, ViaToken},
		{"/status", bearer(tokenB), 200, ViaOpen}, // open: a bad token does not close it
		{"/kv/k", nil, 401, ""},
		{"/metrics", nil, 401, ""},
	} {
		got = Identity{}
		req := httptest.NewRequest("GET", tc.path, nil)
		for k, v := range tc.hdr {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.code || got.Via != tc.via {
			t.Errorf("GET %s with %v: %d, identity %+v; want %d via %q", tc.path, tc.hdr, rec.Code, got, tc.code, tc.via)
		}
	}
}

// TestHTTPAuthTokenRotation: rewriting the token file changes the tokens
// accepted, without a restart: at once on Reload (SIGHUP), and within
// about TokenCheckInterval otherwise. A file that does not parse leaves
// the tokens in force.
func TestHTTPAuthTokenRotation(t *testing.T) {
	c, tfs, paths := newAuthCluster(t, map[int]string{1: tokenA, 2: tokenA, 3: tokenA}, tokenA)
	l := c.leader()
	put := func(tok, value string) int {
		code, _, _ := htDoSettled(t, "PUT", c.urls[l]+"/kv/k", `{"value":"`+value+`"}`, bearer(tok))
		return code
	}
	if code := put(tokenA, "a"); code != 200 {
		t.Fatalf("PUT with token A: %d", code)
	}

	// Rewritten: the new token is taken within the check interval, and the
	// old one refused from then on.
	next := time.Now()
	for id := 1; id <= 3; id++ {
		writeTokens(t, paths[id], "new:"+tokenB+"\n", next)
	}
	deadline := time.Now().Add(10 * TokenCheckInterval)
	for put(tokenB, "b") != 200 {
		if time.Now().After(deadline) {
			t.Fatalf("token B still refused %v after the token file was rewritten", 10*TokenCheckInterval)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code := put(tokenA, "a2"); code != http.StatusUnauthorized {
		t.Fatalf("PUT with the old token A after the rotation: %d; want 401", code)
	}

	// Reload takes the file at once, mtime or not.
	for id := 1; id <= 3; id++ {
		writeTokens(t, paths[id], tokenC+"\n", next) // the same mtime and size
		if err := tfs[id].Reload(); err != nil {
			t.Fatal(err)
		}
	}
	if code := put(tokenB, "b2"); code != http.StatusUnauthorized {
		t.Fatalf("PUT with token B after Reload of a file with C alone: %d; want 401", code)
	}
	if code := put(tokenC, "c"); code != 200 {
		t.Fatalf("PUT with token C after Reload: %d", code)
	}

	// A bad file: the tokens in force stay.
	for id := 1; id <= 3; id++ {
		writeTokens(t, paths[id], "short\n", next.Add(time.Hour))
		if err := tfs[id].Reload(); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Fatalf("Reload of a file with a short token: %v; want an error naming line 1", err)
		}
	}
	if code := put(tokenC, "c2"); code != 200 {
		t.Fatalf("PUT with token C after a failed reload: %d", code)
	}
	if res := c.storeGet(l, "k"); res.Value != "c2" {
		t.Fatalf("k = %+v; want c2: a refused request took effect, or an accepted one did not", res)
	}
}

// TestHTTPAuthForwarding: a follower forwards the client's token to the
// leader, which checks it again; a request without one is refused at the
// follower.
func TestHTTPAuthForwarding(t *testing.T) {
	both := "a:" + tokenA + "\nb:" + tokenB + "\n"
	// Every replica takes A; token B the followers alone, whichever leads.
	c, tfs, paths := newAuthCluster(t, map[int]string{1: both, 2: both, 3: both}, tokenA)
	l := c.leader()
	writeTokens(t, paths[l], tokenA+"\n", time.Now())
	if err := tfs[l].Reload(); err != nil {
		t.Fatal(err)
	}
	f := c.followers(l)[0]

	code, hdr, m := htDoSettled(t, "PUT", c.urls[f]+"/kv/fw", `{"value":"1"}`, bearer(tokenA))
	if code != 200 || hdr.Get(HeaderServedBy) != strconv.Itoa(l) {
		t.Fatalf("PUT with a valid token at follower %d: %d %v, served by %q; want 200 from the leader %d", f, code, m, hdr.Get(HeaderServedBy), l)
	}
	code, hdr, m = htDo(t, "PUT", c.urls[f]+"/kv/fw", `{"value":"2"}`, nil)
	if code != http.StatusUnauthorized || hdr.Get(HeaderServedBy) != strconv.Itoa(f) {
		t.Fatalf("PUT without a token at follower %d: %d %v, served by %q; want 401 from the follower", f, code, m, hdr.Get(HeaderServedBy))
	}
	// B gets past the follower, not past the leader: the leader judges the
	// client's token, not the follower's word.
	code, hdr, m = htDoSettled(t, "PUT", c.urls[f]+"/kv/fw", `{"value":"3"}`, bearer(tokenB))
	if code != http.StatusUnauthorized || hdr.Get(HeaderServedBy) != strconv.Itoa(l) || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("PUT with a token the leader does not take, at follower %d: %d %v, served by %q; want 401 from the leader %d", f, code, m, hdr.Get(HeaderServedBy), l)
	}
	// A client claiming another's name with HeaderClient is not believed.
	code, _, m = htDo(t, "PUT", c.urls[f]+"/kv/fw", `{"value":"4"}`, map[string]string{HeaderClient: "alice"})
	if code != http.StatusUnauthorized {
		t.Fatalf("PUT with %s alone: %d %v; want 401", HeaderClient, code, m)
	}
	if res := c.storeGet(l, "fw"); res.Value != "1" {
		t.Fatalf("fw = %+v; want 1: a refused request took effect", res)
	}

	// HTTPConn sends its Token; a Clerk through a follower gets through.
	ck := NewClerk(HTTPConnsAuth(nil, tokenA, c.urls[f]))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ck.Put(ctx, "ck", "v"); err != nil {
		t.Fatalf("Clerk with the token: %v", err)
	}
	_, _, err := (&HTTPConn{Addr: c.urls[f]}).Do(ctx, Op{Kind: Put, Key: "ck", Value: "w"})
	if !Refused(err) || !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("HTTPConn without a token: %v; want a refusal wrapping ErrUnauthorized", err)
	}
}

// TestAuthCertIdentity: a verified client certificate names the client; a
// server's names the server, and lets it name the client it forwards for
// (HeaderClient), which nobody else can; a token judges a request alone.
func TestAuthCertIdentity(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens")
	writeTokens(t, path, "tok:"+tokenA+"\n", time.Now())
	tf, err := LoadTokenFile(path, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	cert := func(uris ...string) *tls.ConnectionState {
		c := &x509.Certificate{}
		for _, s := range uris {
			u, _ := url.Parse(s)
			c.URIs = append(c.URIs, u)
		}
		return &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{c}}}
	}
	for _, tc := range []struct {
		name  string
		certs bool
		tls   *tls.ConnectionState
		hdr   map[string]string
		want  Identity // zero: 401
	}{
		{"client cert", true, cert("raft://client/alice"), nil, Identity{Name: "alice", Via: ViaCert}},
		{"client cert claiming another", true, cert("raft://client/alice"), map[string]string{HeaderClient: "bob"}, Identity{Name: "alice", Via: ViaCert}},
		{"server cert", true, cert("raft://server/2"), nil, Identity{Name: "server 2", Via: ViaServer, Server: 2}},
		{"server forwarding", true, cert("raft://server/2"), map[string]string{HeaderClient: "bob"}, Identity{Name: "bob", Via: ViaForwarded, Server: 2}},
		{"certs not accepted", false, cert("raft://client/alice"), nil, Identity{}},
		{"cert naming nobody", true, cert("https://example.com"), nil, Identity{}},
		{"cert naming two clients", true, cert("raft://client/a", "raft://client/b"), nil, Identity{}},
		{"bad server ID", true, cert("raft://server/x"), nil, Identity{}},
		{"unverified", true, &tls.ConnectionState{}, nil, Identity{}},
		{"token with a client cert", true, cert("raft://client/alice"), bearer(tokenA), Identity{Name: "tok", Via: ViaToken}},
		{"bad token with a server cert", true, cert("raft://server/2"), bearer(tokenB), Identity{}},
		{"token claiming a name", true, nil, map[string]string{"Authorization": "Bearer " + tokenA, HeaderClient: "bob"}, Identity{Name: "tok", Via: ViaToken}},
	} {
		var got Identity
		var sawClient string
		fwd := httptest.NewRequest("GET", "/kv/k", nil)
		h := (&Auth{Tokens: tf, Certs: tc.certs}).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got, _ = RequestIdentity(r.Context())
			sawClient = r.Header.Get(HeaderClient)
			forwardIdentity(fwd, r)
		}))
		req := httptest.NewRequest("GET", "/kv/k", nil)
		req.TLS = tc.tls
		for k, v := range tc.hdr {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		wantCode := 200
		if tc.want == (Identity{}) {
			wantCode = 401
		}
		if rec.Code != wantCode || got != tc.want {
			t.Errorf("%s: %d, identity %+v; want %d, %+v", tc.name, rec.Code, got, wantCode, tc.want)
		}
		if sawClient != "" {
			t.Errorf("%s: the handler sees %s %q; want it removed", tc.name, HeaderClient, sawClient)
		}
		// Forwarded, the request carries the token, or the name (a request
		// forwarded already is not forwarded again).
		switch tc.want.Via {
		case ViaForwarded, "":
		case ViaToken:
			if fwd.Header.Get("Authorization") != tc.hdr["Authorization"] || fwd.Header.Get(HeaderClient) != "" {
				t.Errorf("%s: forwarded with Authorization %q and %s %q; want the token alone", tc.name, fwd.Header.Get("Authorization"), HeaderClient, fwd.Header.Get(HeaderClient))
			}
		default:
			if fwd.Header.Get(HeaderClient) != tc.want.Name || fwd.Header.Get("Authorization") != "" {
				t.Errorf("%s: forwarded with %s %q; want %q", tc.name, HeaderClient, fwd.Header.Get(HeaderClient), tc.want.Name)
			}
		}
	}
}

// TestTokenFileErrors: a token file that does not parse is refused with
// the file and the line.
func TestTokenFileErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ content, want string }{
		{"short\n", "line 1: token of 5 bytes, under the minimum"},
		{"# c\n:" + tokenA + "\n", "line 2: empty name"},
		{"a:" + tokenA + "\na:" + tokenB + "\n", `line 2: name "a" already used on line 1`},
		{"a:" + tokenA + " " + tokenB + "\n", "line 1: the token contains a space"},
	} {
		path := filepath.Join(dir, "tokens")
		writeTokens(t, path, tc.content, time.Now())
		_, err := LoadTokenFile(path, quietLog)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("token file %q: %v; want an error naming %s and saying %q", tc.content, err, path, tc.want)
		}
	}
	if _, err := LoadTokenFile(filepath.Join(dir, "missing"), quietLog); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing token file: %v; want a not-exist error", err)
	}
	path := filepath.Join(dir, "ok")
	writeTokens(t, path, "# comment\n\n  x:"+tokenA+"  \n"+tokenB+"\n", time.Now())
	tf, err := LoadTokenFile(path, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := tf.Check(tokenA); !ok || n != "x" {
		t.Errorf("Check(A) = %q, %v; want x", n, ok)
	}
	if n, ok := tf.Check(tokenB); !ok || n != "line 4" {
		t.Errorf("Check(B) = %q, %v; want line 4", n, ok)
	}
	if tok, err := ReadClientToken(path); err != nil || tok != tokenA {
		t.Errorf("ReadClientToken = %q, %v; want the first token", tok, err)
	}
}
