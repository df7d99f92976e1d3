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

// followerReadConfig is server id of 1..size with FollowerReads.
func followerReadConfig(id, size int) Config {
	cfg := config(id, size, 1)
	cfg.FollowerReads = true
	return cfg
}

// readIndexArgs returns the ReadIndexArgs in rd, by recipient.
func readIndexArgs(rd Ready) map[int]*ReadIndexArgs {
	out := map[int]*ReadIndexArgs{}
	for _, m := range sent(rd) {
		if a, ok := m.Body.(*ReadIndexArgs); ok {
			out[m.To] = a
		}
	}
	return out
}

// readIndexReplies returns the ReadIndexReplies in rd.
func readIndexReplies(rd Ready) []Message {
	var out []Message
	for _, m := range sent(rd) {
		if _, ok := m.Body.(*ReadIndexReply); ok {
			out = append(out, m)
		}
	}
	return out
}

// Thesis 6.4 on a follower: the follower asks the leader for the read
// index; the leader answers only once a majority acknowledged a round of
// heartbeats that began after the request, with its commit index; the
// follower serves the read only once its own commit index has reached
// that index.
func TestFollowerRead_AnsweredAfterLeaderRound(t *testing.T) {
	l := leaderNoOp(t, 3)
	l.Step(aeOK(3, 1, 1, 1)) // the no-op commits
	l.Propose([]byte("x"))   // index 2
	l.Ready()
	l.Step(aeOK(3, 1, 1, 2)) // commits 2
	l.Ready()

	f := start(t, followerReadConfig(2, 3))
	call[AppendEntriesReply](t, f, ae(1, 2, 1, 0, 0, 0, ents(1, 1)))
	f.Ready()
	if !f.ReadIndex(5) {
		t.Fatal("ReadIndex refused on a follower that knows the leader")
	}
	rd := f.Ready()
	args := readIndexArgs(rd)[1]
	if args == nil || args.ID != 5 || args.Term != 1 || len(rd.ReadStates) != 0 {
		t.Fatalf("the follower sent %+v to the leader and served %+v; want a ReadIndexArgs for read 5 in term 1, nothing served", args, rd.ReadStates)
	}

	if _, ok := l.Step(Message{From: 2, To: 1, Body: args}); ok {
		t.Fatal("Step answered a ReadIndexArgs at once")
	}
	rd = l.Ready()
	if r := readIndexReplies(rd); len(r) != 0 {
		t.Fatalf("the leader answered %+v before a round", r)
	}
	r := roundOf(t, rd, 3)
	l.Step(aeRound(3, 1, 1, 2, r-1))
	if r := readIndexReplies(l.Ready()); len(r) != 0 {
		t.Fatalf("the leader answered %+v on an acknowledgement of an earlier round", r)
	}
	l.Step(aeRound(3, 1, 1, 2, r))
	replies := readIndexReplies(l.Ready())
	want := ReadIndexReply{Term: 1, ID: 5, Index: 2}
	if len(replies) != 1 || replies[0].To != 2 || *replies[0].Body.(*ReadIndexReply) != want {
		t.Fatalf("the leader answered %+v; want %+v to 2", replies, want)
	}

	f.Step(replies[0])
	if rd := f.Ready(); len(rd.ReadStates) != 0 {
		t.Fatalf("the follower served %+v with its commit index at %d, before the read index 2", rd.ReadStates, f.Status().Commit)
	}
	call[AppendEntriesReply](t, f, ae(1, 2, 1, 1, 1, 1, ents(2, 1)))
	if rd := f.Ready(); len(rd.ReadStates) != 0 {
		t.Fatalf("the follower served %+v at commit 1", rd.ReadStates)
	}
	call[AppendEntriesReply](t, f, ae(1, 2, 1, 2, 1, 2, nil))
	if rd := f.Ready(); !slices.Equal(rd.ReadStates, []ReadState{{ID: 5, Index: 2}}) {
		t.Fatalf("at commit 2 the follower served %+v, want [{5 2}]", rd.ReadStates)
	}
}

// A follower read fails: without FollowerReads or a known leader it is
// refused; a refusal from the server asked, a change of leader, or no
// answer for two election timeouts give it up (Ready.FailedReads); a
// leader that steps down refuses the reads followers asked it for.
func TestFollowerRead_Failures(t *testing.T) {
	if f := start(t, config(2, 3, 1)); f.ReadIndex(1) {
		t.Error("ReadIndex accepted on a follower without FollowerReads")
	}
	f := start(t, followerReadConfig(2, 3))
	if f.ReadIndex(1) {
		t.Error("ReadIndex accepted on a follower that knows no leader")
	}
	call[AppendEntriesReply](t, f, ae(1, 2, 1, 0, 0, 0, nil))
	f.Ready()

	f.ReadIndex(1)
	f.Ready()
	f.Step(Message{From: 3, To: 2, Body: &ReadIndexReply{Term: 1, ID: 1, Index: 7}}) // not the server asked
	f.Step(Message{From: 1, To: 2, Body: &ReadIndexReply{Term: 1, ID: 1}})
	if rd := f.Ready(); !slices.Equal(rd.FailedReads, []uint64{1}) || len(rd.ReadStates) != 0 {
		t.Fatalf("after a refusal: failed %v, served %+v; want read 1 failed", rd.FailedReads, rd.ReadStates)
	}

	f.ReadIndex(2)
	call[AppendEntriesReply](t, f, ae(1, 2, 1, 0, 0, 0, nil)) // the same leader
	if rd := f.Ready(); len(rd.FailedReads) != 0 {
		t.Fatalf("a heartbeat of the same leader gave up reads %v", rd.FailedReads)
	}
	call[AppendEntriesReply](t, f, ae(3, 2, 2, 0, 0, 0, nil)) // a new leader
	if rd := f.Ready(); !slices.Equal(rd.FailedReads, []uint64{2}) {
		t.Fatalf("after a change of leader: failed %v, want [2]", rd.FailedReads)
	}

	f.ReadIndex(3)
	f.Ready()
	for i := 0; i < 2*electionTicks; i++ {
		if rd := f.Ready(); len(rd.FailedReads) != 0 {
			t.Fatalf("read given up %d ticks after it was asked, before two election timeouts", i)
		}
		if i > 0 && i%heartbeatTicks == 0 {
			call[AppendEntriesReply](t, f, ae(3, 2, 2, 0, 0, 0, nil)) // keeps the follower from campaigning
		}
		f.Tick()
	}
	if rd := f.Ready(); !slices.Equal(rd.FailedReads, []uint64{3}) {
		t.Fatalf("after two election timeouts without an answer: failed %v, want [3]", rd.FailedReads)
	}

	l := leaderNoOp(t, 3)
	l.Step(aeOK(3, 1, 1, 1))
	l.Ready()
	if _, ok := l.Step(Message{From: 2, To: 1, Body: &ReadIndexArgs{Term: 1, ID: 9}}); ok {
		t.Fatal("Step answered a ReadIndexArgs at once")
	}
	l.Ready()
	l.Step(ae(3, 1, 2, 0, 0, 0, nil)) // a leader of term 2
	replies := readIndexReplies(l.Ready())
	if len(replies) != 1 || replies[0].To != 2 || replies[0].Body.(*ReadIndexReply).Index != 0 || replies[0].Body.(*ReadIndexReply).ID != 9 {
		t.Fatalf("a leader that stepped down answered %+v; want a refusal of read 9 to 2", replies)
	}
	if _, ok := l.Step(Message{From: 2, To: 1, Body: &ReadIndexArgs{Term: 2, ID: 10}}); ok {
		t.Fatal("Step answered a ReadIndexArgs at once")
	}
	if replies := readIndexReplies(l.Ready()); len(replies) != 1 || replies[0].Body.(*ReadIndexReply).Index != 0 {
		t.Fatalf("a follower answered %+v; want a refusal", replies)
	}
}
