package main

// Tests of snapshots in raftkv: a replica that was down while the others
// snapshotted and discarded their logs catches up, and data directories
// stay small.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/core"
	"github.com/raftkit/raft/kv"
	"github.com/raftkit/raft/storage"
)

// status returns replica id's /status.
func (c *procCluster) status(id int) (kv.StatusReply, error) {
	var st kv.StatusReply
	err := getJSON(c.urls[id]+"/status", &st)
	return st, err
}

// waitStatus waits until replica id's /status satisfies cond, and returns
// it.
func (c *procCluster) waitStatus(id int, what string, timeout time.Duration, cond func(kv.StatusReply) bool) kv.StatusReply {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st, err := c.status(id)
		if err == nil && cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("replica %d, %v after: %s (last status %+v, %v)", id, timeout, what, st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dirStats describes a replica's data directory.
type dirStats struct {
	segments, snapshots int
	bytes               int64
	names               []string
}

func statDir(t *testing.T, dir string) dirStats {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var s dirStats
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		s.bytes += info.Size()
		s.names = append(s.names, fmt.Sprintf("%s (%d)", e.Name(), info.Size()))
		switch filepath.Ext(e.Name()) {
		case ".wal":
			s.segments++
		case ".snap":
			s.snapshots++
		}
	}
	return s
}

// TestSnapshotCatchUp: a replica is killed, and while it is down the
// others apply over a MiB of writes, snapshotting every 16 KiB and
// discarding their logs. Restarted, it catches up through the leader's
// snapshot (the log it lacks exists nowhere else), serves the same data
// (checked with it as the leader), and every data directory holds one
// snapshot and a few WAL segments, far less than what was written.
func TestSnapshotCatchUp(t *testing.T) {
	const snapBytes, segBytes = 16 << 10, 32 << 10
	c := startProcCluster(t, 3, "-snapshot-bytes", fmt.Sprint(snapBytes), "-wal-segment-bytes", fmt.Sprint(segBytes),
		"-faults-api", "-log-level", "warn")
	l := c.waitLeader(20 * time.Second)
	victim := l%3 + 1
	other := 6 - l - victim
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := kv.NewClerk(testConns(c.urls[l])).Put(ctx, "before", "1"); err != nil {
		t.Fatal(err)
	}
	held := c.waitStatus(victim, "applied the first put", 10*time.Second, func(st kv.StatusReply) bool { return st.Applied >= 2 }).LastLog
	c.replicas[victim].kill()

	// Writes: 8 clients, each to 12 keys of its own, 300 puts of 500 bytes.
	const clients, puts, keysEach = 8, 300, 12
	want := map[string]string{"before": "1"}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for ci := range clients {
		wg.Go(func() {
			ck := kv.NewClerk(testConns(c.urls[l], c.urls[other]))
			for n := range puts {
				key := fmt.Sprintf("c%d-k%d", ci, n%keysEach)
				value := fmt.Sprintf("%d.%d:%s", ci, n, strings.Repeat("x", 500))
				if err := ck.Put(ctx, key, value); err != nil {
					errs <- fmt.Errorf("client %d, put %d: %w", ci, n, err)
					return
				}
				mu.Lock()
				want[key] = value
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// The live replicas no longer hold the log the victim lacks.
	for _, id := range []int{l, other} {
		c.waitStatus(id, fmt.Sprintf("a snapshot past index %d, which the victim holds", held+1), 10*time.Second,
			func(st kv.StatusReply) bool { return st.SnapshotIndex > held+1 })
	}
	lead, err := c.status(l)
	if err != nil {
		t.Fatal(err)
	}

	c.replicas[victim].start(t)
	c.waitUp(victim, 30*time.Second)
	st := c.waitStatus(victim, fmt.Sprintf("caught up to index %d", lead.Commit), 60*time.Second,
		func(st kv.StatusReply) bool { return st.Applied >= lead.Applied && st.Commit >= lead.Commit })
	if st.SnapshotIndex <= held+1 {
		t.Fatalf("the victim caught up to %d, with a snapshot through %d, though it held the log to %d only and no replica holds the log after that", st.Applied, st.SnapshotIndex, held)
	}
	t.Logf("the victim held the log to %d; it caught up to %d through a snapshot through %d; the leader's snapshot is through %d", held, st.Applied, st.SnapshotIndex, lead.SnapshotIndex)

	// Every data directory: one snapshot, a few segments.
	written := int64(clients * puts * 500)
	for id, r := range c.replicas {
		dir := r.args[slicesIndex(r.args, "-data")+1]
		s := statDir(t, dir)
		if s.snapshots != 1 || s.segments > 6 || s.bytes > written/4 {
			t.Errorf("replica %d's data directory holds %d snapshots, %d WAL segments, %d bytes (after %d bytes of values written): %s",
				id, s.snapshots, s.segments, s.bytes, written, strings.Join(s.names, ", "))
		} else {
			t.Logf("replica %d's data directory: %d bytes: %s", id, s.bytes, strings.Join(s.names, ", "))
		}
	}

	// The victim's data: read through it as the leader, from its own store.
	c.makeLeader(victim)
	ck := kv.NewClerk(testConns(c.urls[victim]))
	for k, v := range want {
		got, ok, err := ck.Get(ctx, k)
		if err != nil || !ok || got != v {
			t.Fatalf("get %s at the caught-up replica, leading: %.40q, found %v, %v; want %.40q", k, got, ok, err, v)
		}
	}
	if l := c.leader(); l != victim {
		t.Fatalf("the reads were served by replica %d, not the caught-up one", l)
	}
}

// makeLeader isolates the other replicas' leaders in turn, until replica
// id leads, then heals every link.
func (c *procCluster) makeLeader(id int) {
	c.t.Helper()
	defer func() {
		for i := range c.replicas {
			if err := c.faults(i, `{"healAll":true}`); err != nil {
				c.t.Error(err)
			}
		}
	}()
	for try := 0; try < 30; try++ {
		l := c.waitLeader(20 * time.Second)
		if l == id {
			return
		}
		for i := range c.replicas {
			if err := c.faults(i, `{"healAll":true}`); err != nil {
				c.t.Fatal(err)
			}
		}
		if err := c.faults(l, `{"isolate":true}`); err != nil {
			c.t.Fatal(err)
		}
		// A new leader among the others, or l back (its isolation
		// does not stop it from believing it leads for a while).
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if n := c.leader(); n != 0 && n != l {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	c.t.Fatalf("replica %d did not become the leader in 30 tries", id)
}

func slicesIndex(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// TestUsageSnapshotDefault: the usage states raft's default snapshot
// interval.
func TestUsageSnapshotDefault(t *testing.T) {
	if want := fmt.Sprintf("(default %d)", raft.DefaultSnapshotBytes); !strings.Contains(usage, want) {
		t.Fatalf("the usage does not give -snapshot-bytes's default %s", want)
	}
}

func TestByteSize(t *testing.T) {
	for n, want := range map[int]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 16 << 20: "16.0 MiB", 3 << 30: "3.0 GiB", 5 << 40: "5.0 TiB"} {
		if got := byteSize(n); got != want {
			t.Errorf("byteSize(%d) = %q; want %q", n, got, want)
		}
	}
}

// TestServeForeignSnapshot: a replica whose data directory holds a
// snapshot that is not one of the store stops at start, saying so, rather
// than serve an empty or partial store.
func TestServeForeignSnapshot(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	w, err := storage.Open(dir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Save(raft.HardState{Term: 2, Vote: 1}, nil); err != nil {
		t.Fatal(err)
	}
	sink, err := w.CreateSnapshot(core.SnapshotMeta{Index: 5, Term: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Write([]byte("a snapshot of something else")); err != nil {
		t.Fatal(err)
	}
	if err := sink.Commit(false); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// A cluster of one, which dials no one: port 0 for both.
	code, _, stderr := runCmd(t, "serve", "-insecure", "-insecure-http", "-id", "1", "-peers", "1=127.0.0.1:0", "-http", "127.0.0.1:0", "-data", dir)
	want := fmt.Sprintf("replica 1 (data directory %s) stopped: raft: restore the state machine from the snapshot through 5: kv: malformed snapshot: it does not start as a snapshot of the store does", dir)
	if code != exitError || !strings.Contains(stderr, want) {
		t.Fatalf("serve on a data directory with a foreign snapshot: exit %d, stderr:\n%s\nwant exit %d and %q", code, stderr, exitError, want)
	}
}
