package kv

// Tests of the HTTP API over an in-process cluster of three replicas on
// the real transport (loopback TCP) and storage (a WAL in a temporary
// directory each).

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/core"
	"github.com/raftkit/raft/storage"
	"github.com/raftkit/raft/transport"
)

// htCluster is a cluster serving the HTTP API.
type htCluster struct {
	t      *testing.T
	faults *transport.Faults
	nodes  map[int]*htNode
	urls   map[int]string
	auth   map[string]string // headers that authenticate a request, if it takes some
	client *http.Client      // for leader and mustGet
}

type htNode struct {
	id  int
	rf  *raft.Raft
	kv  *Server
	h   http.Handler
	srv *http.Server
	url string
}

// htSetup is how newHTClusterWith builds the cluster.
type htSetup struct {
	opts            HTTPOptions
	maxCommandBytes int // raft.Config.MaxCommandBytes
	snapshotBytes   int // raft.Config.SnapshotBytes
	// storage, if set, wraps each replica's storage; rf is set once the
	// replica's Raft server exists.
	storage func(id int, s raft.Storage, rf *atomic.Pointer[raft.Raft]) raft.Storage
	// authOf, if set, is each replica's HTTPOptions.Auth, and auth are
	// the headers that get a request through.
	authOf map[int]*Auth
	auth   map[string]string
	// serverTLS, if set, is each replica's TLS configuration: it serves
	// HTTPS, and its peers' addresses are https URLs; client is the
	// client that leader and mustGet use (default http.DefaultClient).
	serverTLS map[int]*tls.Config
	client    *http.Client
	// fwdClient, if set, is each replica's HTTPOptions.Client.
	fwdClient map[int]*http.Client
	// followerReads and leaderLease are each replica's
	// raft.Config.FollowerReads and LeaderLease.
	followerReads, leaderLease bool
}

func newHTCluster(t *testing.T, opts HTTPOptions) *htCluster {
	t.Helper()
	return newHTClusterWith(t, htSetup{opts: opts})
}

func newHTClusterWith(t *testing.T, setup htSetup) *htCluster {
	t.Helper()
	opts := setup.opts
	ids := []int{1, 2, 3}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	lns, peers, err := transport.ListenLocal(ids...)
	if err != nil {
		t.Fatal(err)
	}
	c := &htCluster{t: t, faults: transport.NewFaults(1), nodes: map[int]*htNode{}, urls: map[int]string{}, auth: setup.auth, client: setup.client}
	if c.client == nil {
		c.client = http.DefaultClient
	}
	httpLns := map[int]net.Listener{}
	httpAddrs := map[int]string{}
	for _, id := range ids {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		httpLns[id], httpAddrs[id] = ln, ln.Addr().String()
		c.urls[id] = "http://" + ln.Addr().String()
		if setup.serverTLS != nil {
			c.urls[id] = "https://" + ln.Addr().String()
			httpAddrs[id] = c.urls[id]
		}
	}
	opts.Logger = quiet
	for _, id := range ids {
		wal, err := storage.Open(t.TempDir(), storage.Options{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		var store raft.Storage = wal
		var self atomic.Pointer[raft.Raft]
		if setup.storage != nil {
			store = setup.storage(id, store, &self)
		}
		tr, err := transport.New(transport.Config{Insecure: true, ID: id, Peers: peers, Listener: lns[id], Faults: c.faults, Logger: quiet, DialBackoffMax: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		s := NewServer(ServerOptions{Logger: quiet})
		rf, err := raft.New(raft.Config{
			ID: id, Peers: peers, Transport: raft.TCP(tr), Storage: store, StateMachine: s, Bootstrap: true,
			ElectionTimeout: 200 * time.Millisecond, HeartbeatInterval: 40 * time.Millisecond, Logger: quiet,
			MaxCommandBytes: setup.maxCommandBytes, SnapshotBytes: setup.snapshotBytes,
			FollowerReads: setup.followerReads, LeaderLease: setup.leaderLease,
		})
		if err != nil {
			t.Fatal(err)
		}
		self.Store(rf)
		s.Attach(rf)
		opts.Auth = setup.authOf[id]
		opts.Client = setup.fwdClient[id]
		h := NewHTTPHandler(s, rf, id, httpAddrs, opts)
		srv := &http.Server{Handler: h, TLSConfig: setup.serverTLS[id], ErrorLog: log.New(io.Discard, "", 0)}
		if srv.TLSConfig != nil {
			go srv.ServeTLS(httpLns[id], "", "")
		} else {
			go srv.Serve(httpLns[id])
		}
		n := &htNode{id: id, rf: rf, kv: s, h: h, srv: srv, url: c.urls[id]}
		c.nodes[id] = n
		t.Cleanup(func() {
			srv.Close()
			s.Stop()
			rf.Close()
		})
	}
	return c
}

// leader waits until a replica leads and has committed an entry of its
// term (a put through it succeeds), and returns it.
func (c *htCluster) leader() int {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for id, n := range c.nodes {
			st, ok := n.rf.Status()
			fs := c.followers(id)
			if !ok || st.Role != core.Leader || !c.faults.Connected(id, fs[0]) && !c.faults.Connected(id, fs[1]) {
				continue
			}
			code, _, _ := htDoClient(c.t, c.client, "PUT", n.url+"/kv/_probe", `{"value":"x"}`, c.auth)
			if code == http.StatusOK {
				return id
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatal("no leader within 10s")
	return 0
}

// followers returns the replicas other than l.
func (c *htCluster) followers(l int) []int {
	var f []int
	for id := 1; id <= 3; id++ {
		if id != l {
			f = append(f, id)
		}
	}
	return f
}

// htDo sends a request and returns the status, the headers and the JSON
// body (nil if it is not JSON).
func htDo(t *testing.T, method, url, body string, hdr map[string]string) (int, http.Header, map[string]any) {
	t.Helper()
	return htDoClient(t, http.DefaultClient, method, url, body, hdr)
}

// htDoClient is htDo with client.
func htDoClient(t *testing.T, client *http.Client, method, url, body string, hdr map[string]string) (int, http.Header, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := client.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	var m map[string]any
	if json.Unmarshal(data, &m) != nil {
		m = nil
	}
	return resp.StatusCode, resp.Header, m
}

// htDoSettled is htDo, again while the answer is 503 (no leader yet, or
// leadership changing), up to 10 s: for requests that a retry cannot make
// take effect twice (reads, refusals, requests with a client identity).
func htDoSettled(t *testing.T, method, url, body string, hdr map[string]string) (int, http.Header, map[string]any) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		code, h, m := htDo(t, method, url, body, hdr)
		if code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			return code, h, m
		}
	}
}

// mustGet checks that key has value want, asking replica u (again while
// it answers 503: a replica may not know the new leader yet).
func (c *htCluster) mustGet(u, key, want string) {
	c.t.Helper()
	var code int
	var m map[string]any
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		code, _, m = htDoClient(c.t, c.client, "GET", u+"/kv/"+url.PathEscape(key), "", c.auth)
		if code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			break
		}
	}
	if code != http.StatusOK || m["value"] != want || m["key"] != key {
		c.t.Fatalf("GET %s at %s: %d %v; want 200 with value %q", key, u, code, m, want)
	}
}

func TestHTTPBadRequests(t *testing.T) {
	c := newHTCluster(t, HTTPOptions{MaxValueBytes: 100, MaxKeyBytes: 64})
	l := c.leader()
	f := c.followers(l)[0]
	c.mustGet(c.urls[l], "_probe", "x")
	if code, _, m := htDo(t, "PUT", c.urls[l]+"/kv/keep", `{"value":"v1"}`, nil); code != 200 {
		t.Fatalf("PUT keep: %d %v", code, m)
	}

	cases := []struct {
		name, method, path, body string
		hdr                      map[string]string
		code                     int
		allow                    string
	}{
		{"empty key put", "PUT", "/kv/", `{"value":"x"}`, nil, 400, ""},
		{"empty key get", "GET", "/kv/", "", nil, 400, ""},
		{"empty key no slash", "DELETE", "/kv", "", nil, 400, ""},
		{"empty key append", "POST", "/kv//append", `{"value":"x"}`, nil, 400, ""},
		{"key too long", "PUT", "/kv/" + strings.Repeat("k", 65), `{"value":"x"}`, nil, 414, ""},
		{"value over the limit", "PUT", "/kv/bad", `{"value":"` + strings.Repeat("v", 101) + `"}`, nil, 413, ""},
		{"append value over the limit", "POST", "/kv/bad/append", `{"value":"` + strings.Repeat("v", 101) + `"}`, nil, 413, ""},
		{"body over the limit", "PUT", "/kv/bad", `{"value":"` + strings.Repeat("v", 8000) + `"}`, nil, 413, ""},
		{"malformed JSON", "PUT", "/kv/bad", `{"value":`, nil, 400, ""},
		{"not JSON", "PUT", "/kv/bad", `hello`, nil, 400, ""},
		{"value not a string", "PUT", "/kv/bad", `{"value":5}`, nil, 400, ""},
		{"no body", "PUT", "/kv/bad", "", nil, 400, ""},
		{"no value", "POST", "/kv/bad/append", `{}`, nil, 400, ""},
		{"unknown field", "PUT", "/kv/bad", `{"value":"x","colour":"red"}`, nil, 400, ""},
		{"two objects", "PUT", "/kv/bad", `{"value":"x"}{"value":"y"}`, nil, 400, ""},
		{"value on GET", "GET", "/kv/keep", `{"value":"x"}`, nil, 400, ""},
		{"value on DELETE", "DELETE", "/kv/keep", `{"value":"x"}`, nil, 400, ""},
		{"client ID without seq", "PUT", "/kv/bad", `{"value":"x"}`, map[string]string{HeaderClientID: "5"}, 400, ""},
		{"seq without client ID", "PUT", "/kv/bad", `{"value":"x","seq":3}`, nil, 400, ""},
		{"seq not a number", "PUT", "/kv/bad", `{"value":"x"}`, map[string]string{HeaderClientID: "5", HeaderSeq: "three"}, 400, ""},
		{"seq negative", "PUT", "/kv/bad", `{"value":"x","clientId":5,"seq":-1}`, nil, 400, ""},
		{"unknown route", "GET", "/nope", "", nil, 404, ""},
		{"root", "GET", "/", "", nil, 404, ""},
		{"kv prefix only", "GET", "/kvx/keep", "", nil, 404, ""},
		{"wrong method on a key", "PATCH", "/kv/keep", "", nil, 405, "GET, PUT, DELETE"},
		{"POST without append", "POST", "/kv/keep", `{"value":"x"}`, nil, 405, "GET, PUT, DELETE"},
		{"GET on append", "GET", "/kv/keep/append", "", nil, 405, "POST"},
		{"PUT on append", "PUT", "/kv/keep/append", `{"value":"x"}`, nil, 405, "POST"},
		{"POST on status", "POST", "/status", "", nil, 405, "GET"},
	}
	for _, id := range []int{l, f} {
		for _, tc := range cases {
			code, hdr, m := htDo(t, tc.method, c.urls[id]+tc.path, tc.body, tc.hdr)
			where := fmt.Sprintf("%s (%s %s at replica %d)", tc.name, tc.method, tc.path, id)
			if code != tc.code {
				t.Errorf("%s: status %d %v, want %d", where, code, m, tc.code)
				continue
			}
			if ct := hdr.Get("Content-Type"); ct != "application/json" {
				t.Errorf("%s: Content-Type %q", where, ct)
			}
			if s, _ := m["error"].(string); s == "" {
				t.Errorf("%s: reply %v has no \"error\"", where, m)
			}
			if tc.allow != "" && hdr.Get("Allow") != tc.allow {
				t.Errorf("%s: Allow %q, want %q", where, hdr.Get("Allow"), tc.allow)
			}
		}
	}

	// A 413 for a body the server did not read to its end must leave the
	// connection usable or closed, not confused: the next requests work.
	for _, id := range []int{l, f} {
		c.mustGet(c.urls[id], "keep", "v1")
		if code, _, m := htDo(t, "GET", c.urls[id]+"/kv/bad", "", nil); code != 404 || m["error"] != "not found" || m["key"] != "bad" {
			t.Fatalf("GET bad at %d: %d %v; want 404 not found: a bad request took effect", id, code, m)
		}
	}
	if code, _, m := htDo(t, "PUT", c.urls[f]+"/kv/after", `{"value":"ok"}`, nil); code != 200 {
		t.Fatalf("PUT after the bad requests: %d %v", code, m)
	}
	c.mustGet(c.urls[l], "after", "ok")
	// A value at the limit is fine.
	v := strings.Repeat("<", 100) // JSON escapes each into 6 bytes
	b, _ := json.Marshal(map[string]string{"value": v})
	if code, _, m := htDo(t, "PUT", c.urls[l]+"/kv/big", string(b), nil); code != 200 {
		t.Fatalf("PUT of a value at the limit: %d %v", code, m)
	}
	c.mustGet(c.urls[f], "big", v)
}

func TestHTTPForwarding(t *testing.T) {
	c := newHTCluster(t, HTTPOptions{})
	l := c.leader()
	fs := c.followers(l)
	f1, f2 := c.urls[fs[0]], c.urls[fs[1]]

	code, hdr, m := htDo(t, "PUT", f1+"/kv/a%2Fb", `{"value":"1"}`, nil)
	if code != 200 || m["found"] != false || m["value"] != "1" {
		t.Fatalf("PUT via follower: %d %v", code, m)
	}
	if by := hdr.Get(HeaderServedBy); by != strconv.Itoa(l) {
		t.Errorf("PUT via follower %d served by %q; want the leader %d", fs[0], by, l)
	}
	c.mustGet(f2, "a/b", "1")
	code, _, m = htDo(t, "POST", f2+"/kv/a%2Fb/append", `{"value":"2"}`, nil)
	if code != 200 || m["value"] != "12" || m["previous"] != "1" || m["found"] != true {
		t.Fatalf("append via follower: %d %v", code, m)
	}
	// A slash in a key sent unescaped is part of the key.
	c.mustGet(c.urls[l], "a/b", "12")
	code, _, m = htDo(t, "DELETE", f1+"/kv/a/b", "", nil)
	if code != 200 || m["found"] != true || m["previous"] != "12" {
		t.Fatalf("DELETE via follower: %d %v", code, m)
	}
	code, _, m = htDo(t, "DELETE", f1+"/kv/a/b", "", nil)
	if code != 200 || m["found"] != false {
		t.Fatalf("second DELETE: %d %v", code, m)
	}
	if code, _, m := htDo(t, "GET", f1+"/kv/a/b", "", nil); code != 404 || m["key"] != "a/b" {
		t.Fatalf("GET of a deleted key via follower: %d %v", code, m)
	}

	// The client identity survives the hop: a retry through another
	// follower takes effect once.
	hdrs := map[string]string{HeaderClientID: "4242", HeaderSeq: "1"}
	for _, u := range []string{f1, f2, c.urls[l]} {
		code, _, m := htDo(t, "POST", u+"/kv/once/append", `{"value":"x"}`, hdrs)
		if code != 200 || m["value"] != "x" || m["previous"] != "" {
			t.Fatalf("append retry via %s: %d %v; want the first try's answer", u, code, m)
		}
	}
	c.mustGet(f1, "once", "x")

	// One hop only: a forwarded request that reaches a follower is refused.
	code, hdr, m = htDo(t, "GET", f1+"/kv/once", "", map[string]string{HeaderForwarded: "9"})
	if code != 503 || m["code"] != CodeNotLeader || hdr.Get("Retry-After") == "" || m["leader"] != float64(l) || m["leaderHTTP"] == "" {
		t.Fatalf("forwarded request at a follower: %d %v (Retry-After %q); want 503 not_leader naming leader %d", code, m, hdr.Get("Retry-After"), l)
	}
}

func TestHTTPStatus(t *testing.T) {
	c := newHTCluster(t, HTTPOptions{})
	l := c.leader()
	leaders := 0
	for id := 1; id <= 3; id++ {
		// Followers learn the commit index with the next heartbeat.
		var m map[string]any
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			var code int
			code, _, m = htDo(t, "GET", c.urls[id]+"/status", "", nil)
			if code != 200 {
				t.Fatalf("status of %d: %d %v", id, code, m)
			}
			if m["applied"].(float64) >= 1 {
				break
			}
		}
		for _, k := range []string{"id", "http", "term", "role", "leader", "leaderHTTP", "commit", "applied", "lastLog", "match", "peers",
			"snapshotIndex", "snapshotTerm", "logEntries", "logBytes"} {
			if _, ok := m[k]; !ok {
				t.Errorf("status of %d has no %q: %v", id, k, m)
			}
		}
		if m["id"] != float64(id) || m["leader"] != float64(l) || m["leaderHTTP"] != strings.TrimPrefix(c.urls[l], "http://") {
			t.Errorf("status of %d: %v; want id %d, leader %d at %s", id, m, id, l, c.urls[l])
		}
		if m["applied"].(float64) < 1 || m["commit"].(float64) < 1 || m["lastLog"].(float64) < 1 {
			t.Errorf("status of %d: %v; want commit, applied and lastLog at least 1", id, m)
		}
		if len(m["peers"].(map[string]any)) != 3 {
			t.Errorf("status of %d: peers %v", id, m["peers"])
		}
		match := m["match"].(map[string]any)
		if m["role"] == "leader" {
			leaders++
			if len(match) != 3 {
				t.Errorf("leader's match %v: want an index for each of 3 replicas", match)
			}
		} else if m["role"] != "follower" || len(match) != 0 {
			t.Errorf("status of %d: role %v, match %v; want a follower with no match", id, m["role"], match)
		}
	}
	if leaders != 1 {
		t.Errorf("%d leaders, want 1", leaders)
	}
}

// TestHTTPStatusSnapshot: with snapshots every 512 bytes of commands,
// /status shows each replica's snapshot, and a log after it that holds
// less than that.
func TestHTTPStatusSnapshot(t *testing.T) {
	const snapBytes = 512
	c := newHTClusterWith(t, htSetup{snapshotBytes: snapBytes})
	l := c.leader()
	value := strings.Repeat("v", 100)
	for i := range 60 {
		if code, _, m := htDo(t, "PUT", fmt.Sprintf("%s/kv/k%d", c.urls[l], i%7), fmt.Sprintf(`{"value":%q}`, value), nil); code != 200 {
			t.Fatalf("put %d: %d %v", i, code, m)
		}
	}
	for id := 1; id <= 3; id++ {
		var st StatusReply
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			code, _, m := htDo(t, "GET", c.urls[id]+"/status", "", nil)
			if code != 200 {
				t.Fatalf("status of %d: %d %v", id, code, m)
			}
			b, _ := json.Marshal(m)
			st = StatusReply{}
			if err := json.Unmarshal(b, &st); err != nil {
				t.Fatal(err)
			}
			if st.Applied >= 61 && st.LogBytes < snapBytes || time.Now().After(deadline) {
				break
			}
		}
		if st.SnapshotIndex < 1 || st.SnapshotTerm < 1 || st.SnapshotIndex > st.Applied {
			t.Errorf("status of %d: snapshot %d/%d, applied %d; want a snapshot, of what was applied", id, st.SnapshotIndex, st.SnapshotTerm, st.Applied)
		}
		if st.LogEntries != st.LastLog-st.SnapshotIndex {
			t.Errorf("status of %d: %d log entries, with the last log index %d and the snapshot's %d", id, st.LogEntries, st.LastLog, st.SnapshotIndex)
		}
		if st.LogBytes >= snapBytes || st.Applied < 61 {
			t.Errorf("status of %d: applied %d, the log after the snapshot holds %d bytes; want all 61 puts applied and under %d bytes left", id, st.Applied, st.LogBytes, snapBytes)
		}
	}
}

func TestHTTPNoLeader(t *testing.T) {
	c := newHTCluster(t, HTTPOptions{RetryAfter: 300 * time.Millisecond})
	l := c.leader()
	f := c.followers(l)[0]
	c.faults.Isolate(f)
	// The isolated follower gives up on the leader at its next election
	// timeout and knows none from then on.
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, _ := c.nodes[f].rf.Status()
		if st.Leader == core.None {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("isolated follower %d still follows %d", f, st.Leader)
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, hdr, m := htDo(t, "PUT", c.urls[f]+"/kv/x", `{"value":"1"}`, nil)
	if code != 503 || m["code"] != CodeNoLeader || m["error"] != "no leader" || m["retryAfterMs"] != float64(300) || hdr.Get("Retry-After") != "1" {
		t.Fatalf("PUT at a replica with no leader: %d %v (Retry-After %q); want 503 no leader with a retry hint", code, m, hdr.Get("Retry-After"))
	}
	if m["outcomeUnknown"] == true {
		t.Errorf("no leader: %v says the outcome is unknown, but the request was not started", m)
	}
	// The majority serves on.
	if code, _, m := htDo(t, "PUT", c.urls[l]+"/kv/x", `{"value":"2"}`, nil); code != 200 {
		t.Fatalf("PUT at the leader of the majority: %d %v", code, m)
	}
	c.faults.Rejoin(f)
	l = c.leader()
	c.mustGet(c.urls[f], "x", "2")
}

func TestHTTPOutcomeUnknown(t *testing.T) {
	c := newHTCluster(t, HTTPOptions{Wait: 400 * time.Millisecond})
	l := c.leader()
	c.faults.Isolate(l)
	// The isolated leader takes the request but cannot commit it.
	code, hdr, m := htDo(t, "PUT", c.urls[l]+"/kv/x", `{"value":"1"}`, map[string]string{HeaderClientID: "7", HeaderSeq: "1"})
	if code != 503 || (m["code"] != CodeTimeout && m["code"] != CodeLeadershipLost) || m["outcomeUnknown"] != true ||
		!strings.Contains(m["error"].(string), "outcome unknown") || hdr.Get("Retry-After") == "" || m["retryAfterMs"] == nil {
		t.Fatalf("PUT at an isolated leader: %d %v; want 503 timeout, outcome unknown, with a retry hint", code, m)
	}
	c.faults.Rejoin(l)
	// A retry with the same identity applies it once, wherever it lands.
	for _, id := range []int{1, 2, 3} {
		var code int
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if code, _, m = htDo(t, "PUT", c.urls[id]+"/kv/x", `{"value":"1","clientId":7,"seq":1}`, nil); code == 200 {
				break
			}
		}
		if code != 200 || m["previous"] != "" || m["found"] != false {
			t.Fatalf("retry at %d: %d %v", id, code, m)
		}
	}
}

func TestHTTPConnClerk(t *testing.T) {
	c := newHTCluster(t, HTTPOptions{MaxValueBytes: 1000})
	l := c.leader()
	var urls []string
	for id := 1; id <= 3; id++ {
		urls = append(urls, c.urls[id])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ck := NewClerk(HTTPConns(nil, urls...))
	if err := ck.Put(ctx, "k", "a"); err != nil {
		t.Fatal(err)
	}
	if err := ck.Append(ctx, "k", "b/c"); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"k", "k/append", "a key with spaces?&%"} {
		if err := ck.Put(ctx, key, "v:"+key); err != nil {
			t.Fatalf("put %q: %v", key, err)
		}
	}
	if v, ok, err := ck.Get(ctx, "k/append"); err != nil || !ok || v != "v:k/append" {
		t.Fatalf("get k/append = %q, %v, %v", v, ok, err)
	}
	if v, ok, err := ck.Get(ctx, "a key with spaces?&%"); err != nil || !ok || v != "v:a key with spaces?&%" {
		t.Fatalf("get of a key with odd characters = %q, %v, %v", v, ok, err)
	}
	if err := ck.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := ck.Get(ctx, "k"); err != nil || ok || v != "" {
		t.Fatalf("get of a deleted key = %q, %v, %v", v, ok, err)
	}

	// Exactly once: the same request twice, through a follower and the
	// leader, appends once and gets the same answer.
	f := c.followers(l)[0]
	op := Op{Kind: Append, Key: "eo", Value: "x", ClientID: 99, Seq: 1}
	for _, id := range []int{f, l} {
		conn := &HTTPConn{Addr: strings.TrimPrefix(c.urls[id], "http://")}
		res, _, err := conn.Do(ctx, op)
		if err != nil || res != (Result{}) {
			t.Fatalf("append via %d: %+v, %v; want the answer of the first try", id, res, err)
		}
	}
	op.Seq = 2
	if res, _, err := (&HTTPConn{Addr: c.urls[f]}).Do(ctx, op); err != nil || res != (Result{Value: "x", Found: true}) {
		t.Fatalf("next append: %+v, %v", res, err)
	}
	if v, _, _ := ck.Get(ctx, "eo"); v != "xx" {
		t.Fatalf("eo = %q after two appends, one of them retried; want xx", v)
	}

	// Errors: a bad request is an *HTTPError that no retry fixes; a dead
	// address is like a stopped server.
	_, _, err := (&HTTPConn{Addr: c.urls[l]}).Do(ctx, Op{Kind: Put, Key: "big", Value: strings.Repeat("v", 1001), ClientID: 1, Seq: 1})
	var he *HTTPError
	if !errors.As(err, &he) || he.StatusCode != 413 || !errors.Is(err, ErrTooLarge) || !Refused(err) {
		t.Fatalf("put of an oversized value: %v; want an HTTPError 413 wrapping ErrTooLarge, a refusal", err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	_, _, err = (&HTTPConn{Addr: dead}).Do(ctx, Op{Kind: Get, Key: "k", ClientID: 1, Seq: 1})
	if !errors.Is(err, ErrStopped) {
		t.Fatalf("request to a dead address: %v; want an error matching ErrStopped", err)
	}
	// A forwarded request refused by a follower means "try elsewhere".
	req, _ := http.NewRequest("GET", c.urls[f]+"/kv/eo", nil)
	req.Header.Set(HeaderForwarded, "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var rep httpReply
	json.NewDecoder(resp.Body).Decode(&rep)
	resp.Body.Close()
	if rep.Code != CodeNotLeader {
		t.Fatalf("forwarded GET at a follower: %+v", rep)
	}
	// A stopped replica refuses, and says the request did not take effect.
	c.nodes[f].kv.Stop()
	_, _, err = (&HTTPConn{Addr: c.urls[f]}).Do(ctx, Op{Kind: Get, Key: "eo", ClientID: 1, Seq: 9})
	if !errors.As(err, &he) || he.Code != CodeStopped || he.OutcomeUnknown || !errors.Is(err, ErrStopped) {
		t.Fatalf("request to a stopped replica: %v; want 503 stopped, matching ErrStopped", err)
	}
	conns := HTTPConns(nil, urls...)
	_, hint, err := conns[0].Do(ctx, Op{Kind: Put, Key: "", Value: "x", ClientID: 1, Seq: 5})
	if !errors.As(err, &he) || he.StatusCode != 400 || hint != -1 {
		t.Fatalf("put of an empty key: %v (hint %d); want HTTPError 400", err, hint)
	}
}

// A request older than its client's latest applied one is refused with 409
// and changes nothing; requests without identity (seq 0) are each applied.
func TestHTTPStaleAndAnonymous(t *testing.T) {
	c := newHTCluster(t, HTTPOptions{})
	u := c.urls[c.leader()]
	for seq, v := range []string{"first", "new"} {
		if code, _, m := htDoSettled(t, "PUT", u+"/kv/s", fmt.Sprintf(`{"value":%q,"clientId":7,"seq":%d}`, v, seq+1), nil); code != 200 {
			t.Fatalf("PUT seq %d: %d %v", seq+1, code, m)
		}
	}
	if code, _, m := htDoSettled(t, "PUT", u+"/kv/s", `{"value":"old","clientId":7,"seq":1}`, nil); code != 409 || m["code"] != "stale" {
		t.Fatalf("PUT seq 1 after seq 2: %d %v; want 409 stale", code, m)
	}
	c.mustGet(u, "s", "new")
	for i := 0; i < 2; i++ {
		if code, _, m := htDo(t, "POST", u+"/kv/s/append", `{"value":"+"}`, nil); code != 200 {
			t.Fatalf("anonymous append: %d %v", code, m)
		}
	}
	c.mustGet(u, "s", "new++")
}

// TestHTTPSeqReused: a (client ID, seq) reused for another request is
// refused with 409 seq_reused, saying so, and the request is not applied;
// the same request again is a retry, answered as the first time.
func TestHTTPSeqReused(t *testing.T) {
	c := newHTCluster(t, HTTPOptions{})
	l := c.leader()
	f := c.followers(l)[0]
	if code, _, m := htDoSettled(t, "PUT", c.urls[l]+"/kv/dupA", `{"value":"a","clientId":9,"seq":1}`, nil); code != 200 {
		t.Fatalf("PUT dupA: %d %v", code, m)
	}
	for _, id := range []int{l, f} {
		for _, tc := range []struct{ method, path, body string }{
			{"PUT", "/kv/dupB", `{"value":"b","clientId":9,"seq":1}`},         // another key
			{"PUT", "/kv/dupA", `{"value":"a2","clientId":9,"seq":1}`},        // another value
			{"POST", "/kv/dupA/append", `{"value":"a","clientId":9,"seq":1}`}, // another kind
			{"DELETE", "/kv/dupA", `{"clientId":9,"seq":1}`},
		} {
			code, _, m := htDoSettled(t, tc.method, c.urls[id]+tc.path, tc.body, nil)
			msg, _ := m["error"].(string)
			if code != 409 || m["code"] != CodeSeqReused || !strings.Contains(msg, "seq 1 of client 9 was already used for another request") {
				t.Fatalf("%s %s %s at %d: %d %v; want 409 seq_reused saying the seq was used for another request", tc.method, tc.path, tc.body, id, code, m)
			}
		}
		// The retry of the request itself.
		code, _, m := htDoSettled(t, "PUT", c.urls[id]+"/kv/dupA", `{"value":"a","clientId":9,"seq":1}`, nil)
		if code != 200 || m["previous"] != "" || m["found"] != false {
			t.Fatalf("retry of PUT dupA at %d: %d %v; want the first answer", id, code, m)
		}
	}
	if code, _, m := htDoSettled(t, "GET", c.urls[l]+"/kv/dupB", "", nil); code != 404 {
		t.Fatalf("GET dupB: %d %v; want 404: the request under a reused seq took effect", code, m)
	}
	c.mustGet(c.urls[f], "dupA", "a")
}
