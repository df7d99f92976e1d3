package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkit/raft/kv"
)

// join starts replica id as a new member of c (serve -join) on a fresh
// data directory, with -peers listing c's replicas and itself, and
// returns its Raft address.
func (c *procCluster) join(id int) string {
	c.t.Helper()
	ports := freePorts(c.t, 2)
	raftAddr, httpAddr := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	raftPeers, httpPeers := map[int]string{id: raftAddr}, map[int]string{id: httpAddr}
	for i := range c.replicas {
		raftPeers[i], httpPeers[i] = c.raftPeers[i], c.httpPeers[i]
	}
	r := &replicaProc{id: id, out: &syncBuffer{}, args: append([]string{"serve", "-join",
		"-id", strconv.Itoa(id),
		"-peers", idMap(raftPeers),
		"-http-peers", idMap(httpPeers),
		"-data", filepath.Join(c.dir, strconv.Itoa(id)),
		"-insecure",
	}, append(testSecFlags(id), c.extra...)...)}
	c.replicas[id], c.urls[id] = r, "https://"+httpAddr
	c.raftPeers[id], c.httpPeers[id] = raftAddr, httpAddr
	r.start(c.t)
	c.waitUp(id, 20*time.Second)
	return raftAddr
}

// allURLs is every replica's URL, comma-separated, for -addr.
func (c *procCluster) allURLs() string {
	var all []string
	for _, id := range sortedIDs(c.urls) {
		all = append(all, c.urls[id])
	}
	return strings.Join(all, ",")
}

// waitExit waits for replica id's process to end and returns its exit
// error.
func (r *replicaProc) waitExit(t *testing.T, timeout time.Duration) error {
	t.Helper()
	r.mu.Lock()
	done := r.done
	r.mu.Unlock()
	select {
	case <-done:
	case <-time.After(timeout):
		t.Fatalf("replica %d still runs %v on", r.id, timeout)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// mustRun runs raftkv with args and fails the test unless it exits 0; it
// returns the standard output.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := runCmd(t, args...)
	if code != 0 {
		t.Fatalf("raftkv %q: exit %d: %s%s", args, code, out, errOut)
	}
	return out
}

// checkKeys fails the test unless every key of want reads its value
// through the replicas at addr.
func checkKeys(t *testing.T, addr string, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if out := mustRun(t, "get", "-addr", addr, k); strings.TrimSpace(out) != v {
			t.Fatalf("get %s through %s: %q, want %q", k, addr, out, v)
		}
	}
}

// Growing and shrinking a raftkv cluster: a server started with -join is
// added with raftkv add-voter, holds what was written before and after
// (it serves every key once it leads), and a server removed with raftkv
// remove stops by itself, with exit status 0.
func TestMembersAddVoterAndRemove(t *testing.T) {
	c := startProcCluster(t, 3, "-log-level", "warn")
	l := c.waitLeader(30 * time.Second)
	f := l%3 + 1
	c.waitStatus(f, "the follower to know the leader", 20*time.Second, func(st kv.StatusReply) bool { return st.Leader == l })
	for _, tc := range []struct {
		body, code string
		status     int
	}{
		{`{"op":"add-voter","id":4,"addr":"127.0.0.1:1"}`, "not_leader", http.StatusConflict},
		{`{"op":"frob","id":4}`, "bad_request", http.StatusBadRequest},
		{`{"op":"add-learner","id":4}`, "bad_request", http.StatusBadRequest},
		// The HTTP address is recorded on the leader only, and checked first.
		{`{"op":"add-voter","id":4,"addr":"127.0.0.1:1","http":"127.0.0.1:2"}`, "not_leader", http.StatusConflict},
		{`{"op":"add-voter","id":4,"addr":"127.0.0.1:1","http":"nohost"}`, "bad_request", http.StatusBadRequest},
		{`{"op":"remove","id":4,"http":"127.0.0.1:2"}`, "bad_request", http.StatusBadRequest},
	} {
		resp, err := httpClient.Post(c.urls[f]+"/admin/members", "application/json", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		var rep membersReply
		json.NewDecoder(resp.Body).Decode(&rep)
		resp.Body.Close()
		if resp.StatusCode != tc.status || rep.Code != tc.code || tc.code == "not_leader" && (rep.Leader == nil || *rep.Leader != l || rep.LeaderHTTP == "") {
			t.Fatalf("POST /admin/members %s on follower %d: %s %+v, want %d %s (naming leader %d)", tc.body, f, resp.Status, rep, tc.status, tc.code, l)
		}
	}
	want := map[string]string{}
	for i := 0; i < 3; i++ {
		k, v := fmt.Sprintf("before%d", i), fmt.Sprintf("v%d", i)
		mustRun(t, "put", "-addr", c.allURLs(), k, v)
		want[k] = v
	}

	raft4 := c.join(4)
	if out := mustRun(t, "add-voter", "-addr", c.allURLs(), "-timeout", "15s", "4", raft4); !strings.Contains(out, "server 4 ("+raft4+") is a voter") {
		t.Fatalf("add-voter 4: %q", out)
	}
	out := mustRun(t, "members", "-addr", c.allURLs())
	for id := 1; id <= 4; id++ {
		if !strings.Contains(out, fmt.Sprintf("  %d\tvoter  \t%s\t", id, c.raftPeers[id])) {
			t.Fatalf("raftkv members after add-voter 4: %q, want server %d a voter at %s", out, id, c.raftPeers[id])
		}
	}
	for i := 0; i < 3; i++ {
		k, v := fmt.Sprintf("after%d", i), fmt.Sprintf("w%d", i)
		mustRun(t, "put", "-addr", c.allURLs(), k, v)
		want[k] = v
	}
	// Replica 4 leads, and serves every key from its own store.
	if out := mustRun(t, "transfer", "-addr", c.allURLs(), "4"); !strings.Contains(out, "replica 4 now leads") {
		t.Fatalf("transfer 4: %q", out)
	}
	checkKeys(t, c.urls[4], want)

	// Remove replica 1 (a follower now): it stops by itself.
	if out := mustRun(t, "remove", "-addr", c.urls[4], "1"); !strings.Contains(out, "server 1 is removed") {
		t.Fatalf("remove 1: %q", out)
	}
	if err := c.replicas[1].waitExit(t, 20*time.Second); err != nil {
		t.Fatalf("replica 1 after its removal: %v, want exit status 0", err)
	}
	if s := c.replicas[1].out.String(); !strings.Contains(s, "replica 1 was removed from the cluster") {
		t.Fatalf("replica 1 stopped without saying it was removed:\n%s", tail(s, 2048))
	}
	out = mustRun(t, "members", "-addr", c.urls[4])
	if strings.Contains(out, "  1\t") || !strings.Contains(out, "  4\tvoter") {
		t.Fatalf("raftkv members after remove 1: %q", out)
	}
	mustRun(t, "put", "-addr", c.urls[4], "last", "x")
	want["last"] = "x"
	checkKeys(t, c.urls[4], want)
}

// The lost-disk procedure, as docs/operations.md gives it: a follower
// whose data directory is wiped refuses to start under its ID and names
// the procedure; the operator removes it, starts a new ID with -join on
// an empty directory and adds it with add-voter -http; every acknowledged
// key is then readable through the new configuration, with the new server
// leading and one of the old ones down, and the old one left forwards
// clients to it.
func TestMembersReplaceLostDisk(t *testing.T) {
	c := startProcCluster(t, 3, "-log-level", "warn")
	l := c.waitLeader(30 * time.Second)
	want := map[string]string{}
	for i := 0; i < 10; i++ {
		k, v := fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i)
		mustRun(t, "put", "-addr", c.allURLs(), k, v)
		want[k] = v
	}
	f := l%3 + 1
	g := 6 - l - f // the third replica
	c.replicas[f].kill()
	if err := os.RemoveAll(filepath.Join(c.dir, strconv.Itoa(f))); err != nil {
		t.Fatal(err)
	}
	c.replicas[f].start(t)
	if err := c.replicas[f].waitExit(t, 20*time.Second); err == nil {
		t.Fatalf("replica %d started on an empty data directory under its old ID", f)
	}
	msg := c.replicas[f].out.String()
	for _, s := range []string{"refuses to start", fmt.Sprintf("raftkv remove %d", f), "-join", "NEW ID", "raftkv add-voter NEWID RAFTADDR -http HTTPADDR", "Replacing a lost disk"} {
		if !strings.Contains(msg, s) {
			t.Fatalf("replica %d's refusal does not say %q:\n%s", f, s, tail(msg, 4096))
		}
	}
	if strings.Contains(strings.ToLower(msg), "delete") {
		t.Fatalf("replica %d's refusal mentions deleting:\n%s", f, tail(msg, 4096))
	}

	// Started with -join under its old ID (the wrong way), it stops as
	// soon as the leader's configuration names it a voter, before it
	// votes or acknowledges anything.
	if c.replicas[f].args[0] != "serve" {
		t.Fatalf("replica %d's arguments %q", f, c.replicas[f].args)
	}
	c.replicas[f].args = append([]string{"serve", "-join"}, c.replicas[f].args[1:]...)
	c.replicas[f].out = &syncBuffer{}
	c.replicas[f].start(t)
	if err := c.replicas[f].waitExit(t, 20*time.Second); err == nil {
		t.Fatalf("replica %d joined under its old ID", f)
	}
	if msg := c.replicas[f].out.String(); !strings.Contains(msg, "is a voter of the cluster already") || !strings.Contains(msg, "new ID") {
		t.Fatalf("replica %d, joining under its old ID, does not say it is a voter already and needs a new ID:\n%s", f, tail(msg, 4096))
	}

	live := c.urls[l] + "," + c.urls[g]
	mustRun(t, "remove", "-addr", live, strconv.Itoa(f))
	delete(c.urls, f) // its process has ended; not asked again
	raft4 := c.join(4)
	mustRun(t, "add-voter", "-addr", live, "-timeout", "15s", "4", raft4, "-http", c.httpPeers[4])

	// Down to {l, 4} of {l, g, 4}: 4 must be a voter holding the log.
	c.replicas[g].kill()
	delete(c.urls, g)
	if out := mustRun(t, "transfer", "-addr", c.urls[l], "4"); !strings.Contains(out, "replica 4 now leads") {
		t.Fatalf("transfer 4: %q", out)
	}
	checkKeys(t, c.urls[4], want)
	// The old replica forwards to the new leader, whose HTTP address it
	// has from the log (add-voter -http).
	mustRun(t, "put", "-addr", c.urls[l], "after", "x")
	want["after"] = "x"
	checkKeys(t, c.urls[l], want)
}

// A raftkv cluster grows from 3 to 5 voters and shrinks back to 3 (its
// first servers removed, the leader among them) while clients write: every
// acknowledged write reads back from the final three, and the removed
// replicas exit by themselves.
func TestMembersGrow3To5AndShrinkTo3UnderLoad(t *testing.T) {
	c := startProcCluster(t, 3, "-log-level", "warn", "-snapshot-bytes", "4096")
	c.waitLeader(30 * time.Second)

	var mu sync.Mutex // guards acked and urls
	acked := map[string]string{}
	urls := []string{c.urls[1], c.urls[2], c.urls[3]}
	current := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(urls)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				k, v := fmt.Sprintf("w%d-%d", w, n), fmt.Sprintf("value %d of writer %d", n, w)
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				_, err := kv.NewClerk(testConns(current()...)).Do(ctx, kv.Op{Kind: kv.Put, Key: k, Value: v})
				cancel()
				if err == nil {
					mu.Lock()
					acked[k] = v
					mu.Unlock()
				}
			}
		}()
	}
	writes := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitUntil("writes before the changes", func() bool { return writes() >= 20 })

	for _, id := range []int{4, 5} {
		raftAddr := c.join(id)
		mu.Lock()
		urls = append(urls, c.urls[id])
		mu.Unlock()
		mustRun(t, "add-voter", "-addr", strings.Join(current(), ","), "-timeout", "20s", strconv.Itoa(id), raftAddr)
		n := writes()
		waitUntil("writes after adding "+strconv.Itoa(id), func() bool { return writes() >= n+10 })
	}
	out := mustRun(t, "members", "-addr", strings.Join(current(), ","))
	if strings.Count(out, "\tvoter") != 5 {
		t.Fatalf("raftkv members with 5 servers: %q", out)
	}

	// Remove the leader first, then another of the first three.
	first := c.waitLeader(30 * time.Second)
	if first > 3 {
		first = 1
	}
	second := first%3 + 1
	for _, id := range []int{first, second} {
		mustRun(t, "remove", "-addr", strings.Join(current(), ","), "-timeout", "20s", strconv.Itoa(id))
		if err := c.replicas[id].waitExit(t, 20*time.Second); err != nil {
			t.Fatalf("replica %d after its removal: %v, want exit status 0", id, err)
		}
		mu.Lock()
		urls = slices.DeleteFunc(urls, func(u string) bool { return u == c.urls[id] })
		mu.Unlock()
		delete(c.urls, id)
		n := writes()
		waitUntil("writes after removing "+strconv.Itoa(id), func() bool { return writes() >= n+10 })
	}
	close(stop)
	wg.Wait()

	final := current()
	out = mustRun(t, "members", "-addr", strings.Join(final, ","))
	if strings.Count(out, "\tvoter") != 3 {
		t.Fatalf("raftkv members after shrinking: %q", out)
	}
	ck := kv.NewClerk(testConns(final...))
	mu.Lock()
	defer mu.Unlock()
	for k, v := range acked {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res, err := ck.Do(ctx, kv.Op{Kind: kv.Get, Key: k})
		cancel()
		if err != nil || !res.Found || res.Value != v {
			t.Fatalf("GET %s after the changes: %+v, %v; want %q (acknowledged)", k, res, err, v)
		}
	}
	t.Logf("%d acknowledged writes read back from the final configuration:\n%s", len(acked), out)
}
