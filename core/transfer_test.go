package core

import (
	"errors"
	"testing"
)

// timeoutNows returns the recipients of the TimeoutNow messages in rd,
// failing the test if one carries another term or sender than want.
func timeoutNows(t testing.TB, rd Ready, from, term int) []int {
	t.Helper()
	var to []int
	for _, m := range sent(rd) {
		if a, ok := m.Body.(*TimeoutNowArgs); ok {
			if a.Term != term || a.LeaderID != from || m.From != from {
				t.Fatalf("TimeoutNow %+v from %d, want term %d from %d", *a, m.From, term, from)
			}
			to = append(to, m.To)
		}
	}
	return to
}

// leaderWithLog returns server 1 of 3, elected (term 1, PreVote on), with
// entries 1..k proposed; follower 2 acknowledged them all, follower 3 none.
func leaderWithLog(t *testing.T, k int) *Node {
	t.Helper()
	n := start(t, preVoteConfig(1, 3, 1))
	ticksToPreCampaign(t, n)
	n.Step(Message{From: 2, To: 1, Body: &RequestVoteReply{Term: 1, VoteGranted: true, PreVote: true}})
	n.Step(vote(2, 1, 1, true))
	if n.Role() != Leader {
		t.Fatalf("%v, want leader", n.Role())
	}
	for i := 0; i < k; i++ {
		n.Propose([]byte{byte(i)})
	}
	n.Ready()
	n.Step(aeOK(2, 1, 1, k))
	n.Ready()
	return n
}

// Thesis 3.10: the leader sends TimeoutNow to the target only once the
// target's log matches its whole log; partial acknowledgements send
// nothing.
func TestTransfer_TimeoutNowOnlyWhenCaughtUp(t *testing.T) {
	n := leaderWithLog(t, 3)
	if err := n.TransferLeadership(3); err != nil {
		t.Fatal(err)
	}
	if to := timeoutNows(t, n.Ready(), 1, 1); len(to) != 0 {
		t.Fatalf("TimeoutNow sent to %v while 3 matches nothing", to)
	}
	n.Step(aeOK(3, 1, 1, 2))
	if to := timeoutNows(t, n.Ready(), 1, 1); len(to) != 0 {
		t.Fatalf("TimeoutNow sent to %v while 3 matches up to 2 of 3", to)
	}
	n.Step(aeOK(2, 1, 1, 3)) // not the target
	if to := timeoutNows(t, n.Ready(), 1, 1); len(to) != 0 {
		t.Fatalf("TimeoutNow sent to %v on an acknowledgement of 2", to)
	}
	n.Step(aeOK(3, 1, 1, 3))
	if to := timeoutNows(t, n.Ready(), 1, 1); len(to) != 1 || to[0] != 3 {
		t.Fatalf("TimeoutNow sent to %v once 3 is caught up, want [3]", to)
	}
}

// Thesis 3.10: a target whose log already matches gets TimeoutNow at
// once; to None picks the most up-to-date follower.
func TestTransfer_CaughtUpTargetAtOnceAndNonePicksMostUpToDate(t *testing.T) {
	n := leaderWithLog(t, 3)
	if err := n.TransferLeadership(None); err != nil {
		t.Fatal(err)
	}
	if n.Transferee() != 2 {
		t.Fatalf("transfer to None picked %d, want 2 (matches 3 of 3; 3 matches 0)", n.Transferee())
	}
	if to := timeoutNows(t, n.Ready(), 1, 1); len(to) != 1 || to[0] != 2 {
		t.Fatalf("TimeoutNow sent to %v, want [2] at once", to)
	}
}

// TransferLeadership refuses on a follower, to itself, or to an unknown
// server, and changes nothing.
func TestTransfer_Refusals(t *testing.T) {
	f := start(t, preVoteConfig(2, 3, 1))
	if err := f.TransferLeadership(3); !errors.Is(err, ErrNotLeader) {
		t.Errorf("on a follower: %v, want ErrNotLeader", err)
	}
	n := leaderWithLog(t, 1)
	for _, to := range []int{1, 7} {
		if err := n.TransferLeadership(to); err == nil || n.Transferee() != None {
			t.Errorf("transfer to %d: %v, transferee %d; want an error and none", to, err, n.Transferee())
		}
	}
	if _, _, ok := n.Propose([]byte("x")); !ok {
		t.Error("a refused transfer stops proposals")
	}
}

// Thesis 3.10: the leader refuses proposals during a transfer; after an
// election timeout without the transfer done it abandons it, takes
// proposals again, and no longer sends TimeoutNow.
func TestTransfer_ProposalsRefusedUntilAbandoned(t *testing.T) {
	n := leaderWithLog(t, 2)
	if err := n.TransferLeadership(3); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := n.Propose([]byte("x")); ok {
		t.Fatal("a proposal was accepted during a transfer")
	}
	for i := 1; i < electionTicks; i++ {
		if n.TicksToEvent() > electionTicks-i+1 {
			t.Fatalf("TicksToEvent %d passes the transfer's deadline, %d ticks away", n.TicksToEvent(), electionTicks-i+1)
		}
		n.Tick()
		n.Step(aeOK(2, 1, 1, 2)) // a majority stays in touch
		n.Ready()
		if n.Transferee() != 3 {
			t.Fatalf("transfer abandoned after %d ticks, before an election timeout (%d)", i, electionTicks)
		}
	}
	n.Tick()
	if n.Transferee() != None || n.Role() != Leader {
		t.Fatalf("after an election timeout: transferee %d, %v; want none, leader", n.Transferee(), n.Role())
	}
	if _, _, ok := n.Propose([]byte("x")); !ok {
		t.Fatal("a proposal was refused after the transfer was abandoned")
	}
	n.Ready()
	n.Step(aeOK(3, 1, 1, 3))
	if to := timeoutNows(t, n.Ready(), 1, 1); len(to) != 0 {
		t.Fatalf("TimeoutNow sent to %v after the transfer was abandoned", to)
	}
}

// Thesis 3.10: a follower told TimeoutNow by its leader starts an election
// at once, skipping PreVote, and its RequestVotes carry Transfer.
func TestTransfer_TargetCampaignsAtOnce(t *testing.T) {
	n := start(t, preVoteConfig(2, 3, 1))
	call[AppendEntriesReply](t, n, ae(1, 2, 4, 0, 0, 0, ents(1, 4)))
	r := call[TimeoutNowReply](t, n, Message{From: 1, To: 2, Body: &TimeoutNowArgs{Term: 4, LeaderID: 1}})
	if n.Role() != Candidate || n.Term() != 5 || r.Term != 5 {
		t.Fatalf("after TimeoutNow: %v at term %d, reply %+v; want candidate at 5", n.Role(), n.Term(), *r)
	}
	rd := n.Ready()
	if rd.HardState != (HardState{Term: 5, Vote: 2}) || !rd.MustSave() {
		t.Fatalf("Ready saves %+v, want term 5 vote 2", rd.HardState)
	}
	asked := 0
	for _, m := range rd.AfterSave {
		a, ok := m.Body.(*RequestVoteArgs)
		if !ok || a.PreVote || !a.Transfer || a.Term != 5 || a.LastLogIndex != 1 || a.LastLogTerm != 4 {
			t.Fatalf("message %+v, want a RequestVote of term 5 with Transfer set", m.Body)
		}
		asked++
	}
	if asked != 2 {
		t.Fatalf("%d RequestVotes after saving, want 2", asked)
	}
}

// A TimeoutNow of an earlier term, or one whose LeaderID is not its
// sender, changes nothing.
func TestTransfer_StaleOrMalformedTimeoutNowIgnored(t *testing.T) {
	for _, c := range []struct {
		name string
		from int
		a    TimeoutNowArgs
	}{
		{"earlier term", 1, TimeoutNowArgs{Term: 3, LeaderID: 1}},
		{"sender is not LeaderID", 3, TimeoutNowArgs{Term: 4, LeaderID: 1}},
	} {
		n := start(t, preVoteConfig(2, 3, 1))
		call[AppendEntriesReply](t, n, ae(1, 2, 4, 0, 0, 0, nil))
		n.Ready()
		r := call[TimeoutNowReply](t, n, Message{From: c.from, To: 2, Body: &c.a})
		rd := n.Ready()
		if n.Role() != Follower || n.Term() != 4 || r.Term != 4 || len(sent(rd)) != 0 || rd.MustSave() {
			t.Errorf("%s: %v at term %d, reply %+v, %d messages; want a follower at 4 sending nothing", c.name, n.Role(), n.Term(), *r, len(sent(rd)))
		}
	}
}

// Thesis 4.2.3/9.6: a follower that hears from its leader refuses a normal
// RequestVote of a newer term (stickiness) but grants one marked Transfer;
// a leader steps down for one. The log check still applies to it.
func TestTransfer_VoteDespiteStickinessOnlyForTransfer(t *testing.T) {
	for _, transfer := range []bool{false, true} {
		n := start(t, preVoteConfig(2, 3, 1))
		call[AppendEntriesReply](t, n, ae(1, 2, 1, 0, 0, 0, ents(1, 1)))
		m := rv(3, 2, 2, 1, 1)
		m.Body.(*RequestVoteArgs).Transfer = transfer
		r := call[RequestVoteReply](t, n, m)
		if r.VoteGranted != transfer {
			t.Errorf("transfer=%v, from a follower of a current leader: %+v, want granted=%v", transfer, *r, transfer)
		}
	}
	n := start(t, preVoteConfig(2, 3, 1))
	call[AppendEntriesReply](t, n, ae(1, 2, 1, 0, 0, 0, ents(1, 1)))
	behind := rv(3, 2, 2, 0, 0)
	behind.Body.(*RequestVoteArgs).Transfer = true
	if r := call[RequestVoteReply](t, n, behind); r.VoteGranted {
		t.Errorf("a transfer vote for a candidate whose log is behind was granted")
	}
	l := leaderWithLog(t, 1)
	m := rv(2, 1, 2, 1, 1)
	m.Body.(*RequestVoteArgs).Transfer = true
	if r := call[RequestVoteReply](t, l, m); !r.VoteGranted || l.Role() != Follower || l.Term() != 2 {
		t.Errorf("leader asked for a transfer vote: %+v, now %v at %d; want granted, follower at 2", *r, l.Role(), l.Term())
	}
}

// A leader steps down on a TimeoutNow reply of a newer term (the target's
// election), ending the transfer.
func TestTransfer_ReplyOfNewerTermEndsTransfer(t *testing.T) {
	n := leaderWithLog(t, 1)
	n.TransferLeadership(2)
	n.Step(Message{From: 2, To: 1, Body: &TimeoutNowReply{Term: 2}})
	if n.Role() != Follower || n.Term() != 2 || n.Transferee() != None {
		t.Fatalf("%v at %d, transferee %d; want follower at 2, none", n.Role(), n.Term(), n.Transferee())
	}
}
