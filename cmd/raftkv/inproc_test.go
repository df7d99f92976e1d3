package main

import (
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/raftkit/raft/transport"
)

// inProcCluster is a cluster of replicas in the test's process, as
// "raftkv serve" runs them, on listeners opened on port 0 first.
type inProcCluster struct {
	replicas map[int]*replica
	urls     map[int]string // HTTP base URLs
}

// startInProc starts n replicas configured by serve's flags extra (besides
// -id, -peers, -http-peers and -data, which it sets).
func startInProc(t *testing.T, n int, extra ...string) *inProcCluster {
	t.Helper()
	ids := make([]int, n)
	for i := range ids {
		ids[i] = i + 1
	}
	raftLns, raftPeers, err := transport.ListenLocal(ids...)
	if err != nil {
		t.Fatal(err)
	}
	httpLns, httpPeers := map[int]net.Listener{}, map[int]string{}
	for _, id := range ids {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		httpLns[id], httpPeers[id] = ln, ln.Addr().String()
	}
	c := &inProcCluster{replicas: map[int]*replica{}, urls: map[int]string{}}
	dir := t.TempDir()
	for _, id := range ids {
		args := append([]string{"-id", strconv.Itoa(id), "-peers", idMap(raftPeers), "-http-peers", idMap(httpPeers),
			"-data", filepath.Join(dir, strconv.Itoa(id)), "-log-level", "error", "-insecure"}, append(testSecFlags(id), extra...)...)
		cfg, code, ok := parseServe(args, io.Discard, io.Discard)
		if !ok {
			t.Fatalf("serve %q: exit %d", args, code)
		}
		cfg.httpLn, cfg.raftLn = httpLns[id], raftLns[id]
		r, err := startReplica(cfg, quietLogger())
		if err != nil {
			t.Fatalf("replica %d: %v", id, err)
		}
		c.replicas[id], c.urls[id] = r, "https://"+httpPeers[id]
		go r.srv.Serve(r.ln)
		t.Cleanup(func() {
			if err := r.close(); err != nil {
				t.Errorf("replica %d: close: %v", id, err)
			}
		})
	}
	return c
}

// waitLeader waits for a replica to say it leads and returns it.
func (c *inProcCluster) waitLeader(t *testing.T) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for id, r := range c.replicas {
			if _, leader := r.rf.GetState(); leader {
				return id
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no leader within 30s")
	return 0
}

// get does GET url and returns the status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := httpClient.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// quietLogger discards the replicas' logs.
func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
