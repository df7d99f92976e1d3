package cluster

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftkit/raft"
)

// TestFollowerLogWentBackCatchesUp: a follower loses the last record of
// its log (a write cut short, which the log drops when it opens), so it
// comes back holding less than it acknowledged. The leader must notice
// the refusals below what it believed the follower matched, probe back and
// send the log again, while it stays the leader in the same term.
func TestFollowerLogWentBackCatchesUp(t *testing.T) {
	h := newHarness(t, 3, 1)
	for _, id := range h.all() {
		h.start(id)
	}
	l, term := h.mustLeader("first election", h.all(), 0)
	h.commit(l, h.commands("c", 50))

	f := otherThan(h.all(), l)[0]
	acked := h.awaitCaughtUp(l, f, 10*time.Second)
	h.kill9(f)
	seg, off := cutLastRecord(t, h.procs[f-1].dir)
	if held := h.diskLastIndex(f); held >= acked {
		t.Fatalf("setup: node %d still holds entries up to %d after its last record (%s, offset %d) was cut; want fewer than the %d it acknowledged", f, held, seg, off, acked)
	} else {
		t.Logf("node %d (leader %d, term %d) acknowledged entries up to %d; its last record (%s, offset %d) cut short, it holds up to %d", f, l, term, acked, seg, off, held)
	}
	h.restart(f)

	// Within a few heartbeats its log is the leader's again, and nobody
	// started an election meanwhile.
	const bound = 10 * time.Second
	deadline := time.Now().Add(bound)
	for {
		ls, lerr := h.state(l, time.Second)
		fs, ferr := h.state(f, time.Second)
		if lerr == nil && (!ls.IsLeader || ls.Term != term) {
			t.Fatalf("node %d no longer leads term %d: it is in term %d, leader %d", l, term, ls.Term, ls.Leader)
		}
		if ferr == nil && fs.Term > term {
			t.Fatalf("node %d moved to term %d, past the leader's %d", f, fs.Term, term)
		}
		if lerr == nil && ferr == nil && fs.Term == term && fs.LastLog == ls.LastLog &&
			ls.Match[f] == ls.LastLog && fs.Commit == ls.Commit {
			t.Logf("node %d caught up: entries up to %d, commit %d, term %d, leader %d", f, fs.LastLog, fs.Commit, term, l)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %d has not caught up %v after its restart: it holds entries up to %d (state error %v), the leader %d up to %d and believes it matches up to %d (state error %v)",
				f, bound, fs.LastLog, ferr, l, ls.LastLog, ls.Match[f], lerr)
		}
		time.Sleep(20 * time.Millisecond)
	}

	h.converge(30 * time.Second)
	h.check()
	for _, id := range h.all() {
		h.terminate(id)
	}
	h.checkLogs()
	h.reportViolations()
}

// TestWipedReplicaRefusesToStart: with follower B down, A (the leader)
// and C commit commands; then A and C are killed and C's data directory
// is wiped. C, started empty, must stop itself with ErrClusterExists as
// soon as B (which holds state) answers it, rather than vote: B, whose
// log lacks the commands, could otherwise be elected with C's vote while
// A is down, and overwrite the commands everywhere. Once C's data is
// restored and A is back, every command is still there.
func TestWipedReplicaRefusesToStart(t *testing.T) {
	h := newHarness(t, 3, 1)
	for _, id := range h.all() {
		h.start(id)
	}
	a, _ := h.mustLeader("first election", h.all(), 0)
	others := otherThan(h.all(), a)
	b, c := others[0], others[1]
	t.Logf("A = node %d (leader), B = node %d, C = node %d", a, b, c)

	h.kill9(b)
	acked := h.commands("c", 17)
	h.commit(a, acked)
	h.kill9(a)
	h.kill9(c)
	dirC := h.procs[c-1].dir
	saved := dirC + ".saved"
	if err := os.Rename(dirC, saved); err != nil {
		t.Fatal(err)
	}
	h.start(c) // empty: it waits for its peers' answers
	h.start(b)

	// C must stop itself; B, with A down, must not lead meanwhile (it
	// could only with C's vote).
	const bound = 30 * time.Second
	deadline := time.Now().Add(bound)
	for {
		if out, waitErr, exited := h.awaitExit(c, 20*time.Millisecond); exited {
			if waitErr == nil {
				t.Errorf("node %d (C) exited with status 0 after it found the cluster; want a failure status", c)
			}
			if !strings.Contains(out, raft.ErrClusterExists.Error()) {
				t.Errorf("node %d (C) exited (%v) without saying %q; its output:\n%s", c, waitErr, raft.ErrClusterExists, out)
			} else {
				t.Logf("node %d (C) stopped itself (%v): it says %q", c, waitErr, raft.ErrClusterExists)
			}
			break
		}
		if st, err := h.state(b, time.Second); err == nil && st.IsLeader {
			t.Errorf("node %d (B) leads term %d with node %d (A) down: node %d (C), started without its data, voted for it", b, st.Term, a, c)
			h.kill9(c)
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("node %d (C) still runs %v after node %d (B) started", c, bound, b)
			h.kill9(c)
			break
		}
	}

	// Restore C's data and bring A back: every acknowledged command must
	// still be there, on every server (check).
	if err := os.RemoveAll(dirC); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(saved, dirC); err != nil {
		t.Fatal(err)
	}
	h.start(a)
	h.start(c)
	h.converge(30 * time.Second)
	h.check()
	for _, id := range h.all() {
		h.terminate(id)
	}
	h.checkLogs()
	h.reportViolations()
}

// mustLeader waits for a leader known to a majority among the given nodes,
// in a term above minTerm, and fails the test if none comes.
func (h *harness) mustLeader(what string, among []int, minTerm int) (leader, term int) {
	h.t.Helper()
	l, term := h.awaitLeader(what, time.Now(), among, minTerm)
	if l < 0 {
		h.reportViolations()
		h.t.FailNow()
	}
	return l, term
}

// commands returns k commands, distinct within the test, named for what.
func (h *harness) commands(what string, k int) []string {
	cmds := make([]string, k)
	for i := range cmds {
		cmds[i] = fmt.Sprintf("n%d-%s%d", h.n, what, i+1)
	}
	return cmds
}

// commit proposes cmds to node l, which must lead, and waits until l has
// applied them all.
func (h *harness) commit(l int, cmds []string) {
	h.t.Helper()
	inc := h.incOf(l)
	if inc == nil {
		h.t.Fatalf("commit: node %d is down", l)
	}
	var rep StartReply
	for _, cmd := range cmds {
		if err := h.call(inc.ctrl, "POST", "/start", StartRequest{Cmd: cmd}, &rep, 2*time.Second); err != nil {
			h.t.Fatalf("commit: node %d: %v", l, err)
		}
		if !rep.IsLeader {
			h.t.Fatalf("commit: node %d does not lead (term %d)", l, rep.Term)
		}
		h.mu.Lock()
		h.submitted[cmd] = rep.Index
		h.mu.Unlock()
	}
	const bound = 10 * time.Second
	for deadline := time.Now().Add(bound); ; time.Sleep(20 * time.Millisecond) {
		h.poll(l)
		h.mu.Lock()
		got, ok := h.observed[rep.Index]
		h.mu.Unlock()
		if ok && got != cmds[len(cmds)-1] {
			h.t.Fatalf("commit: node %d applied %q at index %d, where its Start put %q", l, got, rep.Index, cmds[len(cmds)-1])
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("commit: node %d has not applied index %d %v after its Start", l, rep.Index, bound)
		}
	}
}

// awaitCaughtUp waits until follower f holds the leader l's whole log and l
// knows it, and returns the index of l's last entry.
func (h *harness) awaitCaughtUp(l, f int, timeout time.Duration) int {
	h.t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		ls, lerr := h.state(l, time.Second)
		fs, ferr := h.state(f, time.Second)
		if lerr == nil && ferr == nil && ls.IsLeader && fs.LastLog == ls.LastLog && ls.Match[f] == ls.LastLog {
			return ls.LastLog
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("node %d has not caught up with leader %d in %v: it holds up to %d (%v); the leader up to %d, matched %d (%v)",
				f, l, timeout, fs.LastLog, ferr, ls.LastLog, ls.Match[f], lerr)
		}
	}
}

// otherThan returns ids without id.
func otherThan(ids []int, id int) []int {
	return slices.DeleteFunc(slices.Clone(ids), func(x int) bool { return x == id })
}

// recordHeaderSize is the size of a WAL record's header: the payload's
// length (4 bytes, little-endian), a CRC32C (4 bytes) and the type (1
// byte); see package storage.
const recordHeaderSize = 9

// cutLastRecord cuts the last record of the last segment in dir short, as
// a write that did not finish would: the header stays, and half the
// payload. It returns the segment's name and the record's offset.
func cutLastRecord(t *testing.T, dir string) (string, int) {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "*.wal"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no segment in %s (%v)", dir, err)
	}
	slices.Sort(segs) // the names are zero-padded sequence numbers
	path := segs[len(segs)-1]
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	last, off := -1, 0
	for off+recordHeaderSize <= len(b) {
		end := off + recordHeaderSize + int(binary.LittleEndian.Uint32(b[off:]))
		if end > len(b) {
			break
		}
		last, off = off, end
	}
	if last < 0 || off != len(b) {
		t.Fatalf("%s: %d bytes that are not whole records (last whole record at %d, records end at %d)", path, len(b), last, off)
	}
	size := off - last - recordHeaderSize
	if size < 2 {
		t.Fatalf("%s: the last record, at offset %d, has a %d-byte payload: too short to cut", path, last, size)
	}
	if err := os.Truncate(path, int64(last+recordHeaderSize+size/2)); err != nil {
		t.Fatal(err)
	}
	return filepath.Base(path), last
}
