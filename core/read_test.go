package core

import (
	"slices"
	"testing"
)

// roundOf returns the Round of the AppendEntries to follower to in rd,
// failing the test if there is none.
func roundOf(t testing.TB, rd Ready, to int) uint64 {
	t.Helper()
	a := appends(t, rd)[to]
	if a == nil {
		t.Fatalf("no AppendEntries to %d", to)
	}
	return a.Round
}

// aeRound is a successful AppendEntries reply of heartbeat round r.
func aeRound(from, to, term, index int, r uint64) Message {
	m := aeOK(from, to, term, index)
	m.Body.(*AppendEntriesReply).Round = r
	return m
}

// leaderNoOp returns server 1 of size servers, elected in term 1 with
// NoOp, its no-op at index 1 not yet acknowledged.
func leaderNoOp(t *testing.T, size int) *Node {
	t.Helper()
	cfg := config(1, size, 1)
	cfg.NoOp = true
	n := start(t, cfg)
	elect(t, n)
	return n
}

// Thesis 6.4: a leader that has not committed an entry of its term yet
// holds a read back even when a majority acknowledged its heartbeat
// round; once it commits its no-op, the read comes out at the commit
// index.
func TestReadIndex_WaitsForOwnTermCommit(t *testing.T) {
	n := leaderNoOp(t, 3)
	if !n.ReadIndex(7) {
		t.Fatal("ReadIndex refused on the leader")
	}
	rd := n.Ready()
	r := roundOf(t, rd, 2)
	if r == 0 {
		t.Fatal("the heartbeat of the read carries round 0")
	}
	n.Step(aeRound(2, 1, 1, 0, r)) // acknowledges the round, not the no-op
	if rd := n.Ready(); len(rd.ReadStates) != 0 {
		t.Fatalf("read released at %+v before the leader committed an entry of its term", rd.ReadStates)
	}
	n.Step(aeRound(2, 1, 1, 1, r))
	rd = n.Ready()
	if want := []ReadState{{ID: 7, Index: 1}}; !slices.Equal(rd.ReadStates, want) {
		t.Fatalf("ReadStates %+v once the no-op is committed, want %+v", rd.ReadStates, want)
	}
}

// Thesis 6.4: a read comes out only once a majority acknowledged a
// heartbeat round that began after it; acknowledgements of earlier rounds
// do not count, nor does one follower of five.
func TestReadIndex_NeedsMajorityOfNewRound(t *testing.T) {
	n := leaderNoOp(t, 5)
	for _, f := range []int{2, 3} {
		n.Step(aeOK(f, 1, 1, 1)) // the no-op commits
	}
	n.Ready()
	if !n.ReadIndex(1) {
		t.Fatal("ReadIndex refused on the leader")
	}
	rd := n.Ready()
	r := roundOf(t, rd, 2)
	for _, f := range []int{2, 3, 4, 5} {
		if got := roundOf(t, rd, f); got != r {
			t.Fatalf("heartbeat to %d of round %d, to 2 of round %d", f, got, r)
		}
	}
	n.Step(aeRound(2, 1, 1, 1, r-1))
	n.Step(aeRound(3, 1, 1, 1, r-1))
	n.Step(aeRound(4, 1, 1, 1, r))
	if rd := n.Ready(); len(rd.ReadStates) != 0 {
		t.Fatalf("read released at %+v with one follower of the new round", rd.ReadStates)
	}
	n.Step(aeRound(5, 1, 0, 1, r)) // of an earlier term
	if rd := n.Ready(); len(rd.ReadStates) != 0 {
		t.Fatalf("read released at %+v by a reply of an earlier term", rd.ReadStates)
	}
	// A refusal for the log still acknowledges the leader.
	n.Step(Message{From: 5, To: 1, Body: &AppendEntriesReply{Term: 1, Index: 1, ConflictIndex: 1, Round: r}})
	rd = n.Ready()
	if want := []ReadState{{ID: 1, Index: 1}}; !slices.Equal(rd.ReadStates, want) {
		t.Fatalf("ReadStates %+v with two followers of the new round, want %+v", rd.ReadStates, want)
	}
}

// ReadIndex is refused on a follower; a leader that steps down drops its
// reads under way; a single server reads at once.
func TestReadIndex_FollowerStepDownAndSingleServer(t *testing.T) {
	if f := start(t, config(2, 3, 1)); f.ReadIndex(1) {
		t.Error("ReadIndex accepted on a follower")
	}
	n := leaderNoOp(t, 3)
	n.Step(aeOK(2, 1, 1, 1))
	n.ReadIndex(1)
	r := roundOf(t, n.Ready(), 2)
	n.Step(ae(3, 1, 2, 0, 0, 0, nil)) // a leader of term 2
	n.Step(aeRound(2, 1, 1, 1, r))
	if rd := n.Ready(); len(rd.ReadStates) != 0 || n.Role() != Follower {
		t.Fatalf("after stepping down: %v, ReadStates %+v; want a follower with none", n.Role(), rd.ReadStates)
	}
	cfg := config(1, 1, 1)
	cfg.NoOp = true
	s := start(t, cfg)
	ticksToCampaign(t, s)
	s.Ready()
	s.ReadIndex(9)
	if rd := s.Ready(); !slices.Equal(rd.ReadStates, []ReadState{{ID: 9, Index: 1}}) {
		t.Fatalf("single server: ReadStates %+v, want [{9 1}]", rd.ReadStates)
	}
}

// A follower repeats the Round of an AppendEntries in its reply.
func TestReadIndex_FollowerEchoesRound(t *testing.T) {
	n := start(t, config(2, 3, 1))
	m := ae(1, 2, 1, 0, 0, 0, nil)
	m.Body.(*AppendEntriesArgs).Round = 42
	if r := call[AppendEntriesReply](t, n, m); r.Round != 42 || !r.Success {
		t.Fatalf("reply %+v, want success with Round 42", *r)
	}
}
