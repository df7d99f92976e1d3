package core

import (
	"math/rand/v2"
	"testing"
)

// TestLogBytes: the log counts its commands' bytes through every change
// (append, truncation, compaction, a snapshot installed), and Status
// reports the count.
func TestLogBytes(t *testing.T) {
	ent := func(i, term int, cmd string) Entry { return Entry{Index: i, Term: term, Command: []byte(cmd)} }
	check := func(what string, l *raftLog) {
		t.Helper()
		if want := commandBytes(l.ents[1:]); l.bytes != want {
			t.Fatalf("after %s: bytes %d; the entries hold %d", what, l.bytes, want)
		}
	}
	l := newLog(SnapshotMeta{Index: 2, Term: 1}, []Entry{ent(3, 1, "aaa"), ent(4, 1, "bb")})
	check("newLog", &l)
	l.append(ent(5, 2, "cccc"))
	check("append", &l)
	l.truncateAndAppend([]Entry{ent(4, 3, "d"), ent(5, 3, "eeeee"), ent(6, 3, "")})
	check("truncateAndAppend over the end", &l)
	l.truncateAndAppend([]Entry{ent(7, 3, "ff")})
	check("truncateAndAppend at the end", &l)
	l.compact(5)
	check("compact", &l)
	if l.bytes != 2 {
		t.Fatalf("after compacting through 5: bytes %d; want 2 (entries 6 and 7)", l.bytes)
	}
	l.restore(SnapshotMeta{Index: 6, Term: 3})
	check("restore keeping entries", &l)
	l.restore(SnapshotMeta{Index: 9, Term: 4})
	check("restore past the log", &l)
	if l.bytes != 0 {
		t.Fatalf("after a snapshot past the log: bytes %d; want 0", l.bytes)
	}

	n, err := New(Config{ID: 1, Peers: []int{1}, ElectionTicks: 10, HeartbeatTicks: 1, Rand: rand.New(rand.NewPCG(1, 1)),
		State: HardState{Term: 1}, Log: []Entry{ent(1, 1, "xyz"), ent(2, 1, "")}})
	if err != nil {
		t.Fatal(err)
	}
	if st := n.Status(); st.LogBytes != 3 {
		t.Fatalf("Status().LogBytes = %d; want 3", st.LogBytes)
	}
}
