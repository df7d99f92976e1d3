package core

import (
	"testing"
)

// committedLeader returns leader 1 of 3 with entries 1..n committed and
// handed out in Ready.Committed.
func committedLeader(t *testing.T, n int) *Node {
	t.Helper()
	l := start(t, config(1, 3, 1))
	ackAll(t, l, elect(t, l))
	for i := 0; i < n; i++ {
		l.Propose([]byte{byte('a' + i)})
	}
	ackAll(t, l, l.Ready())
	if rd := l.Ready(); len(rd.Committed) != n {
		t.Fatalf("setup: %d committed, want %d", len(rd.Committed), n)
	}
	return l
}

// Section 7: Compact discards the entries a snapshot covers and keeps the
// rest; it cannot go past what was applied, and compacting to or before
// the current snapshot does nothing.
func TestCompact_DiscardsEntriesTheSnapshotCovers(t *testing.T) {
	l := committedLeader(t, 5)
	if err := l.Compact(6); err == nil {
		t.Error("Compact(6) with 5 entries applied succeeded")
	}
	if err := l.Compact(3); err != nil {
		t.Fatal(err)
	}
	st := l.Status()
	if !st.Snapshot.Equal(SnapshotMeta{Index: 3, Term: 1, Membership: st.Snapshot.Membership}) || st.LastLog != 5 || st.Commit != 5 {
		t.Fatalf("after Compact(3): %+v, want snapshot 3/1, last log 5, commit 5", st)
	}
	if got := logTerms(l); len(got) != 2 {
		t.Fatalf("log after the snapshot holds %d entries, want 2 (4 and 5)", len(got))
	}
	if err := l.Compact(2); err != nil || l.Status().Snapshot.Index != 3 {
		t.Fatalf("Compact(2) after Compact(3): %v, snapshot %v", err, l.Status().Snapshot)
	}
	if rd := l.Ready(); rd.MustSave() || len(rd.Entries) > 0 {
		t.Errorf("a compaction gives the Ready something to save: %+v", rd)
	}
	// The leader goes on: new entries follow.
	if idx, _, ok := l.Propose([]byte("z")); !ok || idx != 6 {
		t.Errorf("Propose after compaction: index %d ok %v, want 6", idx, ok)
	}
}

// A server restarts from its snapshot and the entries after it: the
// service was restored from the snapshot, so commit and applied start at
// its index, and the next committed entries follow it.
func TestRestart_FromSnapshot(t *testing.T) {
	cfg := config(2, 3, 1)
	cfg.State = HardState{Term: 3, Vote: None}
	cfg.Snapshot = SnapshotMeta{Index: 10, Term: 2}
	cfg.Log = ents(11, 2, 3)
	n := start(t, cfg)
	if st := n.Status(); st.Commit != 10 || st.LastLog != 12 || st.Snapshot.Index != cfg.Snapshot.Index || st.Snapshot.Term != cfg.Snapshot.Term {
		t.Fatalf("restarted: %+v", st)
	}
	r := call[AppendEntriesReply](t, n, ae(1, 2, 3, 12, 3, 12, nil))
	if !r.Success || r.Index != 12 {
		t.Fatalf("heartbeat after 12/3: %+v", *r)
	}
	rd := n.Ready()
	if !sameEntries(rd.Committed, ents(11, 2, 3)) {
		t.Fatalf("committed %v, want 11 and 12", fmtEntries(rd.Committed))
	}
	for _, bad := range []struct {
		snap SnapshotMeta
		log  []Entry
	}{
		{SnapshotMeta{Index: 10, Term: 4}, nil},         // snapshot term past the current term
		{SnapshotMeta{Index: 10, Term: 2}, ents(12, 2)}, // a gap after the snapshot
		{SnapshotMeta{Index: 10, Term: 3}, ents(11, 2)}, // a term before the snapshot's
		{SnapshotMeta{Index: 10, Term: 0}, ents(11, 2)}, // no term
		{SnapshotMeta{Index: -1, Term: 0}, nil},
	} {
		c := config(2, 3, 1)
		c.State, c.Snapshot, c.Log = HardState{Term: 3, Vote: None}, bad.snap, bad.log
		if _, err := New(c); err == nil {
			t.Errorf("New accepted snapshot %+v with log %v", bad.snap, fmtEntries(bad.log))
		}
	}
}

// Figure 13: a leader sends its snapshot to a follower that needs entries
// it discarded, one at a time, with an empty AppendEntries after the
// snapshot when a heartbeat is due; the snapshot's acknowledgement moves
// the follower's nextIndex past it.
func TestLeaders_SendSnapshotToFollowerBehindIt(t *testing.T) {
	l := committedLeader(t, 5)
	if err := l.Compact(4); err != nil {
		t.Fatal(err)
	}
	// Follower 3 comes back with nothing and refuses the heartbeat.
	for i := 0; i < heartbeatTicks; i++ {
		l.Tick()
	}
	a := appends(t, l.Ready())[3]
	l.Step(aeNo(3, 1, 1, a.PrevLogIndex, 0, 1))
	a = appends(t, l.Ready())[3] // the probe after what it matched
	l.Step(aeNo(3, 1, 1, a.PrevLogIndex, 0, 1))
	rd := l.Ready()
	var snaps []*InstallSnapshotArgs
	for _, m := range sent(rd) {
		if s, ok := m.Body.(*InstallSnapshotArgs); ok && m.To == 3 {
			snaps = append(snaps, s)
		}
	}
	want := InstallSnapshotArgs{Term: 1, LeaderID: 1, LastIncludedIndex: 4, LastIncludedTerm: 1, Done: true}
	if len(snaps) != 1 || snaps[0].Term != want.Term || snaps[0].LeaderID != want.LeaderID || snaps[0].LastIncludedIndex != want.LastIncludedIndex ||
		snaps[0].LastIncludedTerm != want.LastIncludedTerm || !snaps[0].Done || snaps[0].Data != nil {
		t.Fatalf("to follower 3: %+v, want one %+v", snaps, want)
	}
	// One in flight: nothing more until the heartbeat, which also carries an
	// empty AppendEntries after the snapshot.
	if rd := l.Ready(); len(sent(rd)) != 0 {
		t.Fatalf("a second send before any answer: %+v", sent(rd))
	}
	for i := 0; i < heartbeatTicks; i++ {
		l.Tick()
	}
	rd = l.Ready()
	var again, hb int
	for _, m := range sent(rd) {
		switch b := m.Body.(type) {
		case *InstallSnapshotArgs:
			again++
		case *AppendEntriesArgs:
			if m.To == 3 && b.PrevLogIndex == 4 && b.PrevLogTerm == 1 && len(b.Entries) == 0 {
				hb++
			}
		}
	}
	if again != 1 || hb != 1 {
		t.Fatalf("at the heartbeat: %d snapshots and %d heartbeats to 3, want 1 and 1", again, hb)
	}
	l.Step(Message{From: 3, To: 1, Body: &InstallSnapshotReply{Term: 1, Index: 4}})
	if st := l.Status(); st.Match[3] != 4 {
		t.Fatalf("match of 3 after it took the snapshot: %d, want 4", st.Match[3])
	}
	a = appends(t, l.Ready())[3]
	if a == nil || a.PrevLogIndex != 4 || len(a.Entries) != 1 || a.Entries[0].Index != 5 {
		t.Fatalf("after the snapshot: %+v, want entry 5 after 4", a)
	}
}

// Figure 13 receiver: 1. refuse an older term; 6. keep the entries after
// the snapshot if the log holds its last entry; 7. else discard the log;
// 8. the service is restored from it (Ready.Snapshot), and what is
// committed next follows it. A snapshot the server already holds (not
// past its commit index) is not installed.
func TestInstallSnapshot_Receiver(t *testing.T) {
	snapMsg := func(term, index, lastTerm int) Message {
		return Message{From: 1, To: 2, Body: &InstallSnapshotArgs{Term: term, LeaderID: 1, LastIncludedIndex: index, LastIncludedTerm: lastTerm, Membership: voters(1, 2, 3), Done: true}}
	}
	t.Run("older term", func(t *testing.T) {
		n := restore(t, 2, 3, HardState{Term: 3, Vote: None}, ents(1, 1, 1))
		if r := call[InstallSnapshotReply](t, n, snapMsg(2, 5, 2)); r.Term != 3 || r.Index != 0 {
			t.Fatalf("reply %+v, want term 3, refused", *r)
		}
		if rd := n.Ready(); rd.Snapshot != nil || n.Status().Snapshot.Index != 0 {
			t.Fatal("installed a snapshot of an older term")
		}
	})
	t.Run("log holds the snapshot's last entry", func(t *testing.T) {
		n := restore(t, 2, 3, HardState{Term: 2, Vote: None}, ents(1, 1, 1, 1, 2, 2, 2))
		r := call[InstallSnapshotReply](t, n, snapMsg(2, 3, 1))
		if r.Term != 2 || r.Index != 3 {
			t.Fatalf("reply %+v, want term 2 index 3", *r)
		}
		rd := n.Ready()
		if rd.Snapshot == nil || rd.Snapshot.Index != 3 || rd.Snapshot.Term != 1 || !rd.MustSave() {
			t.Fatalf("Ready.Snapshot %v, want 3/1 to save", rd.Snapshot)
		}
		if !sameEntries(rd.Entries, ents(4, 2, 2, 2)) {
			t.Fatalf("Ready.Entries %v, want the kept entries 4..6 saved again", fmtEntries(rd.Entries))
		}
		if len(rd.Committed) != 0 {
			t.Fatalf("committed %v with the snapshot, want none", fmtEntries(rd.Committed))
		}
		if st := n.Status(); st.LastLog != 6 || st.Commit != 3 || n.Leader() != 1 {
			t.Fatalf("after the snapshot: %+v", st)
		}
		// Entries after it commit and apply from 4 on.
		call[AppendEntriesReply](t, n, ae(1, 2, 2, 6, 2, 5, nil))
		if rd := n.Ready(); !sameEntries(rd.Committed, ents(4, 2, 2)) {
			t.Fatalf("then committed %v, want 4 and 5", fmtEntries(rd.Committed))
		}
	})
	t.Run("log lacks it", func(t *testing.T) {
		n := restore(t, 2, 3, HardState{Term: 3, Vote: None}, ents(1, 1, 1, 2, 2))
		call[InstallSnapshotReply](t, n, snapMsg(3, 4, 3))
		rd := n.Ready()
		if rd.Snapshot == nil || len(rd.Entries) != 0 || n.Status().LastLog != 4 {
			t.Fatalf("Ready %+v, last log %d; want the snapshot 4/3 and an empty log after it", rd, n.Status().LastLog)
		}
	})
	t.Run("already committed", func(t *testing.T) {
		n := restore(t, 2, 3, HardState{Term: 2, Vote: None}, ents(1, 1, 1, 2))
		call[AppendEntriesReply](t, n, ae(1, 2, 2, 3, 2, 3, nil))
		n.Ready()
		r := call[InstallSnapshotReply](t, n, snapMsg(2, 2, 1))
		if r.Index != 3 {
			t.Fatalf("reply %+v, want index 3 (the commit index)", *r)
		}
		if rd := n.Ready(); rd.Snapshot != nil || n.Status().Snapshot.Index != 0 {
			t.Fatal("installed a snapshot the service already has")
		}
	})
	t.Run("malformed", func(t *testing.T) {
		n := restore(t, 2, 3, HardState{Term: 2, Vote: None}, nil)
		for _, a := range []InstallSnapshotArgs{
			{Term: 2, LeaderID: 3, LastIncludedIndex: 3, LastIncludedTerm: 1, Membership: voters(1, 2, 3), Done: true}, // not the sender
			{Term: 2, LeaderID: 1, LastIncludedIndex: 3, LastIncludedTerm: 3, Membership: voters(1, 2, 3), Done: true}, // last term past the leader's
			{Term: 2, LeaderID: 1, LastIncludedIndex: 0, LastIncludedTerm: 1, Membership: voters(1, 2, 3), Done: true},
			{Term: 2, LeaderID: 1, LastIncludedIndex: 3, LastIncludedTerm: 1, Membership: voters(1, 2, 3)}, // not the whole snapshot
			// configurations DecodeMembership refuses: a negative ID, one twice, out of order, no voter
			{Term: 2, LeaderID: 1, LastIncludedIndex: 3, LastIncludedTerm: 1, Membership: voters(-1, 1, 2), Done: true},
			{Term: 2, LeaderID: 1, LastIncludedIndex: 3, LastIncludedTerm: 1, Membership: voters(1, 1, 2), Done: true},
			{Term: 2, LeaderID: 1, LastIncludedIndex: 3, LastIncludedTerm: 1, Membership: voters(2, 1, 3), Done: true},
			{Term: 2, LeaderID: 1, LastIncludedIndex: 3, LastIncludedTerm: 1, Membership: Membership{Members: []Member{{ID: 1, Learner: true}}}, Done: true},
		} {
			if r := call[InstallSnapshotReply](t, n, Message{From: 1, To: 2, Body: &a}); r.Index != 0 {
				t.Errorf("%+v accepted: %+v", a, *r)
			}
		}
		if n.Status().Snapshot.Index != 0 || n.Leader() != None {
			t.Fatal("a malformed snapshot changed the server")
		}
	})
}

// An AppendEntries that starts before the follower's snapshot covers only
// committed entries: it succeeds up to the commit index without touching
// the log.
func TestAppendEntries_BeforeSnapshotSucceedsUpToCommit(t *testing.T) {
	cfg := config(2, 3, 1)
	cfg.State, cfg.Snapshot, cfg.Log = HardState{Term: 2, Vote: None}, SnapshotMeta{Index: 5, Term: 1}, ents(6, 2)
	n := start(t, cfg)
	r := call[AppendEntriesReply](t, n, ae(1, 2, 2, 3, 1, 6, ents(4, 1, 1, 1)))
	if !r.Success || r.Index != 5 {
		t.Fatalf("reply %+v, want success up to 5", *r)
	}
	if st := n.Status(); st.LastLog != 6 || st.Snapshot.Index != 5 {
		t.Fatalf("log changed: %+v", st)
	}
}

// New refuses a saved snapshot whose configuration DecodeMembership would
// refuse (a Storage other than ours may hand one over).
func TestRestart_RefusesMalformedSnapshotConfiguration(t *testing.T) {
	cfg := config(2, 3, 1)
	cfg.State = HardState{Term: 1, Vote: None}
	cfg.Snapshot = SnapshotMeta{Index: 3, Term: 1, Membership: voters(2, 1, 3)}
	if _, err := New(cfg); err == nil {
		t.Fatal("New accepted a snapshot with members out of order")
	}
	cfg.Snapshot.Membership = voters(1, 2, 3)
	if _, err := New(cfg); err != nil {
		t.Fatalf("New refused a good snapshot: %v", err)
	}
}
