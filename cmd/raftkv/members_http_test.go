package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/raftkit/raft/kv"
)

// membersOf returns replica id's own view of the configuration (GET
// /admin/members, which any replica answers), failing the test if it
// does not answer.
func (c *procCluster) membersOf(id int) membersReply {
	c.t.Helper()
	var rep membersReply
	if err := getJSON(c.urls[id]+"/admin/members", &rep); err != nil {
		c.t.Fatalf("replica %d: GET /admin/members: %v", id, err)
	}
	return rep
}

// httpOf returns the HTTP address rep gives server id, or "".
func (rep membersReply) httpOf(id int) string {
	for _, m := range rep.Members {
		if m.ID == id {
			return m.HTTP
		}
	}
	return ""
}

// A server added at run time with add-voter -http leads, and the replicas
// started before it, whose -http-peers do not name it, forward clients to
// it: a client that knows one old replica only writes and reads through
// it. The old replicas show its HTTP address (raftkv members, GET
// /admin/members, /status), from the log; one restarted after a snapshot
// that covers the record still knows it, and still forwards.
func TestMembersHTTPAddressThroughTheLog(t *testing.T) {
	// A long election timeout: no election but the transfer's moves the
	// leadership away from server 4, whatever the machine's load.
	c := startProcCluster(t, 3, "-log-level", "warn", "-snapshot-bytes", "4096", "-election-timeout", "2s", "-heartbeat", "100ms")
	c.waitLeader(60 * time.Second)
	olds := c.allURLs() // replicas 1 to 3: the client never learns of 4 from the test
	raft4 := c.join(4)
	http4 := "https://" + c.httpPeers[4] // as the old replicas, serving HTTPS, complete it
	out := mustRun(t, "add-voter", "-addr", olds, "-timeout", "20s", "4", raft4, "-http", c.httpPeers[4])
	if !strings.Contains(out, "server 4 ("+raft4+") is a voter") || !strings.Contains(out, fmt.Sprintf("  4\tvoter  \t%s\t%s\n", raft4, http4)) {
		t.Fatalf("add-voter 4 -http %s: %q", c.httpPeers[4], out)
	}
	if out := mustRun(t, "transfer", "-addr", olds, "4"); !strings.Contains(out, "replica 4 now leads") {
		t.Fatalf("transfer 4: %q", out)
	}

	// A client that knows replica 1 alone.
	mustRun(t, "put", "-addr", c.urls[1], "k", "through 1")
	checkKeys(t, c.urls[1], map[string]string{"k": "through 1"})
	for id := 1; id <= 3; id++ {
		// A replica that has not heard from 4 yet will soon: wait for it.
		c.waitStatus(id, "leader 4 at "+http4+" in /status", 20*time.Second, func(st kv.StatusReply) bool {
			return st.Leader == 4 && st.LeaderHTTP == http4 && st.Peers[4] == http4
		})
		if got := c.membersOf(id).httpOf(4); got != http4 {
			t.Fatalf("replica %d's GET /admin/members gives server 4 HTTP address %q, want %s", id, got, http4)
		}
	}
	out = mustRun(t, "members", "-addr", c.urls[2])
	for id := 1; id <= 4; id++ {
		if want := fmt.Sprintf("  %d\tvoter  \t%s\thttps://%s\n", id, c.raftPeers[id], c.httpPeers[id]); !strings.Contains(out, want) {
			t.Fatalf("raftkv members -addr %s: %q, want the line %q", c.urls[2], out, want)
		}
	}

	// Enough writes that replica 2 snapshots past the record, then a
	// restart: the directory comes back from the snapshot.
	index := c.membersOf(2).Index // the promotion of 4, after the record
	ck := kv.NewClerk(testConns(c.urls[1], c.urls[4]))
	for i := 0; i < 40; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := ck.Do(ctx, kv.Op{Kind: kv.Put, Key: fmt.Sprintf("fill%d", i), Value: strings.Repeat("x", 200)})
		cancel()
		if err != nil {
			t.Fatalf("put fill%d: %v", i, err)
		}
	}
	c.waitStatus(2, "a snapshot past the record of server 4's HTTP address", 30*time.Second, func(st kv.StatusReply) bool { return st.SnapshotIndex > index })
	if err := c.replicas[2].stop(20 * time.Second); err != nil {
		t.Fatalf("stop replica 2: %v", err)
	}
	c.replicas[2].start(t)
	c.waitUp(2, 20*time.Second)
	c.waitStatus(2, "replica 2 to follow leader 4 after its restart", 30*time.Second, func(st kv.StatusReply) bool { return st.Leader == 4 })
	if got := c.membersOf(2).httpOf(4); got != http4 {
		t.Fatalf("replica 2 restarted: GET /admin/members gives server 4 HTTP address %q, want %s", got, http4)
	}
	mustRun(t, "put", "-addr", c.urls[2], "k", "through 2")
	checkKeys(t, c.urls[2], map[string]string{"k": "through 2", "fill39": strings.Repeat("x", 200)})
}
