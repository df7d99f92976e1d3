package core

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// preVoteConfig is config with PreVote on.
func preVoteConfig(id, size int, seed uint64) Config {
	cfg := config(id, size, seed)
	cfg.PreVote = true
	return cfg
}

// Thesis 9.6: a server whose election timeout elapses with PreVote on asks
// for pre-votes in term+1 and changes neither its term nor its vote.
func TestPreVote_TimeoutAsksForPreVotesWithoutChangingTerm(t *testing.T) {
	cfg := preVoteConfig(1, 3, 1)
	cfg.State, cfg.Log = HardState{Term: 3, Vote: 2}, ents(1, 1, 3)
	n := start(t, cfg)
	ticksToPreCampaign(t, n)
	rd := n.Ready()
	if rd.MustSave() {
		t.Errorf("a pre-campaign must save nothing, Ready has %+v and %d entries", rd.HardState, len(rd.Entries))
	}
	if n.Term() != 3 || hardState(n).Vote != 2 {
		t.Errorf("after pre-campaign: term %d vote %d, want 3 and 2", n.Term(), hardState(n).Vote)
	}
	want := RequestVoteArgs{Term: 4, CandidateID: 1, LastLogIndex: 2, LastLogTerm: 3, PreVote: true}
	got := map[int]bool{}
	for _, m := range sent(rd) {
		a, ok := m.Body.(*RequestVoteArgs)
		if !ok || *a != want {
			t.Fatalf("message to %d: %+v, want %+v", m.To, m.Body, want)
		}
		got[m.To] = true
	}
	if !got[2] || !got[3] || len(got) != 2 {
		t.Errorf("pre-votes asked of %v, want 2 and 3", got)
	}
}

// ticksToPreCampaign ticks n until it becomes a pre-candidate.
func ticksToPreCampaign(t *testing.T, n *Node) {
	t.Helper()
	for i := 0; i < 4*electionTicks; i++ {
		n.Tick()
		if n.Role() == PreCandidate {
			return
		}
	}
	t.Fatalf("S%d did not pre-campaign within %d ticks (role %v)", n.ID(), 4*electionTicks, n.Role())
}

// Thesis 9.6: pre-votes from a majority start a real election in term+1;
// fewer, or refusals, do not.
func TestPreVote_MajorityOfPreVotesStartsElection(t *testing.T) {
	n := start(t, preVoteConfig(1, 5, 1))
	ticksToPreCampaign(t, n)
	n.Ready()
	n.Step(Message{From: 2, To: 1, Body: &RequestVoteReply{Term: 1, VoteGranted: true, PreVote: true}})
	n.Step(Message{From: 3, To: 1, Body: &RequestVoteReply{Term: 0, VoteGranted: false, PreVote: true}})
	n.Step(Message{From: 2, To: 1, Body: &RequestVoteReply{Term: 1, VoteGranted: true, PreVote: true}}) // duplicate
	if n.Role() != PreCandidate || n.Term() != 0 {
		t.Fatalf("with 2 of 5 pre-votes: %v at term %d, want pre-candidate at term 0", n.Role(), n.Term())
	}
	n.Step(Message{From: 4, To: 1, Body: &RequestVoteReply{Term: 1, VoteGranted: true, PreVote: true}})
	if n.Role() != Candidate || n.Term() != 1 || hardState(n).Vote != 1 {
		t.Fatalf("with 3 of 5 pre-votes: %v at term %d vote %d, want candidate at term 1 voting for itself", n.Role(), n.Term(), hardState(n).Vote)
	}
	rd := n.Ready()
	if !rd.MustSave() || rd.HardState != (HardState{Term: 1, Vote: 1}) {
		t.Errorf("the real election must save term 1 vote 1 first, Ready has %+v (MustSave %v)", rd.HardState, rd.MustSave())
	}
	real := 0
	for _, m := range sent(rd) {
		if a, ok := m.Body.(*RequestVoteArgs); ok && !a.PreVote && a.Term == 1 {
			real++
		}
	}
	if real != 4 {
		t.Errorf("%d real vote requests sent, want 4", real)
	}
}

// Thesis 9.6: a granted pre-vote of an earlier pre-campaign does not count
// towards a later one; a refused one from a newer term makes the
// pre-candidate a follower of that term.
func TestPreVote_StaleAndRefusedReplies(t *testing.T) {
	n := start(t, preVoteConfig(1, 3, 1))
	ticksToPreCampaign(t, n)
	n.Step(Message{From: 2, To: 1, Body: &RequestVoteReply{Term: 5, VoteGranted: true, PreVote: true}}) // not the term asked
	if n.Role() != PreCandidate || n.Term() != 0 {
		t.Fatalf("after a pre-vote for another term: %v at term %d", n.Role(), n.Term())
	}
	n.Step(Message{From: 2, To: 1, Body: &RequestVoteReply{Term: 7, VoteGranted: false, PreVote: true}})
	if n.Role() != Follower || n.Term() != 7 {
		t.Fatalf("after a refusal from term 7: %v at term %d, want follower at 7", n.Role(), n.Term())
	}
}

// Thesis 9.6: a server answers a pre-vote as it would the vote, for a term
// newer than its own, and changes nothing: not its term, not its vote, not
// its election timer.
func TestPreVote_ReceiverChangesNothing(t *testing.T) {
	cases := []struct {
		name           string
		term, lastTerm int // of the pre-candidate's request
		lastIndex      int
		grant          bool
	}{
		{"newer term, log as up-to-date", 3, 2, 2, true},
		{"newer term, longer log", 3, 2, 5, true},
		{"newer term, log behind", 3, 1, 9, false},
		{"newer term, shorter log", 3, 2, 1, false},
		{"same term", 2, 2, 2, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := preVoteConfig(2, 3, 1)
			cfg.State, cfg.Log = HardState{Term: 2, Vote: 1}, ents(1, 1, 2)
			n := start(t, cfg)
			for i := 0; i < electionTicks-1; i++ {
				n.Tick()
			}
			n.Skip(1) // past the stickiness of its start, its election timer not fired
			left := n.TicksToEvent()
			m := rv(3, 2, c.term, c.lastIndex, c.lastTerm)
			m.Body.(*RequestVoteArgs).PreVote = true
			r := call[RequestVoteReply](t, n, m)
			if r.VoteGranted != c.grant || !r.PreVote {
				t.Errorf("reply %+v, want granted=%v, PreVote set", *r, c.grant)
			}
			if c.grant && r.Term != c.term {
				t.Errorf("a granted pre-vote carries term %d, want the term asked, %d", r.Term, c.term)
			}
			if !c.grant && r.Term != 2 {
				t.Errorf("a refused pre-vote carries term %d, want the receiver's, 2", r.Term)
			}
			if hardState(n) != (HardState{Term: 2, Vote: 1}) || n.Role() != Follower {
				t.Errorf("after a pre-vote: %+v %v, want term 2 vote 1 follower", hardState(n), n.Role())
			}
			if got := n.TicksToEvent(); got != left {
				t.Errorf("election timer moved: %d ticks left, was %d", got, left)
			}
			if rd := n.Ready(); rd.MustSave() {
				t.Errorf("a pre-vote made the server save %+v", rd.HardState)
			}
		})
	}
}

// Thesis 9.6, leader stickiness: a follower that heard from its leader
// within the minimum election timeout neither adopts the term of a
// RequestVote nor grants it, pre-vote or not; once that time has passed
// without the leader it votes again.
func TestLeaderStickiness_FollowerIgnoresVotesWhileLeaderIsCurrent(t *testing.T) {
	for _, pre := range []bool{false, true} {
		n := start(t, preVoteConfig(2, 3, 1))
		call[AppendEntriesReply](t, n, ae(1, 2, 1, 0, 0, 0, nil))
		m := rv(3, 2, 2, 5, 1)
		m.Body.(*RequestVoteArgs).PreVote = pre
		r := call[RequestVoteReply](t, n, m)
		if r.VoteGranted || r.Term != 1 || n.Term() != 1 || n.Leader() != 1 {
			t.Fatalf("pre=%v, just after hearing from leader 1: reply %+v, term %d leader %d; want refused, term 1, leader 1", pre, *r, n.Term(), n.Leader())
		}
		for i := 0; i < electionTicks; i++ {
			n.Tick()
			if n.Role() != Follower {
				break // a pre-campaign may start after the minimum timeout; that is fine
			}
		}
		r = call[RequestVoteReply](t, n, m)
		if !r.VoteGranted {
			t.Fatalf("pre=%v, an election timeout after the leader's last message: reply %+v, want granted", pre, *r)
		}
	}
}

// Thesis 9.6: a leader ignores a RequestVote of a newer term while it leads.
func TestLeaderStickiness_LeaderIgnoresNewerTermVote(t *testing.T) {
	n := start(t, preVoteConfig(1, 3, 1))
	ticksToPreCampaign(t, n)
	n.Step(Message{From: 2, To: 1, Body: &RequestVoteReply{Term: 1, VoteGranted: true, PreVote: true}})
	n.Step(vote(2, 1, 1, true))
	if n.Role() != Leader {
		t.Fatalf("%v, want leader", n.Role())
	}
	r := call[RequestVoteReply](t, n, rv(3, 1, 5, 9, 1))
	if r.VoteGranted || n.Term() != 1 || n.Role() != Leader {
		t.Fatalf("leader got a vote request of term 5: reply %+v, now %v at term %d; want refused, leader at 1", *r, n.Role(), n.Term())
	}
}

// Without PreVote, a server that heard from its leader still adopts a
// newer term's RequestVote (Figure 2): stickiness comes with PreVote.
func TestLeaderStickiness_OffWithoutPreVote(t *testing.T) {
	n := start(t, config(2, 3, 1))
	call[AppendEntriesReply](t, n, ae(1, 2, 1, 0, 0, 0, nil))
	if r := call[RequestVoteReply](t, n, rv(3, 2, 2, 0, 0)); !r.VoteGranted || n.Term() != 2 {
		t.Fatalf("reply %+v at term %d, want granted at term 2", *r, n.Term())
	}
}

// Section 8: with NoOp, a new leader appends an empty entry of its own
// term, and its commitment commits the entries of earlier terms without any
// proposal.
func TestLeaders_NoOpOnElectionCommitsEarlierTerms(t *testing.T) {
	cfg := config(1, 3, 1)
	cfg.NoOp = true
	cfg.State, cfg.Log = HardState{Term: 2}, ents(1, 1, 2)
	n := start(t, cfg)
	rd := elect(t, n)
	last := logOf(n)[len(logOf(n))-1]
	// With no configuration in the log, the no-op writes the current one.
	if m, err := DecodeMembership(last.Command); last.Index != 3 || last.Term != 3 || last.Type != EntryConfig || err != nil || !m.Equal(voters(1, 2, 3)) {
		t.Fatalf("leader's last entry %+v, want a no-op at 3/3 holding the configuration", last)
	}
	if len(rd.Entries) == 0 || rd.Entries[len(rd.Entries)-1].Type != EntryConfig {
		t.Fatalf("the no-op is not handed over for saving: %v", fmtEntries(rd.Entries))
	}
	a := appends(t, rd)[2]
	if a == nil || len(a.Entries) != 1 || a.Entries[0].Type != EntryConfig {
		t.Fatalf("first AppendEntries to 2: %+v, want it to carry the no-op", a)
	}
	n.Step(aeOK(2, 1, 3, 3))
	rd = n.Ready()
	if len(rd.Committed) != 3 || rd.Committed[2].Type != EntryConfig {
		t.Fatalf("committed %v after a majority holds the no-op, want 1..3", fmtEntries(rd.Committed))
	}
}

// Without NoOp (the lab's setting) a new leader appends nothing.
func TestLeaders_NoNoOpByDefault(t *testing.T) {
	n := start(t, config(1, 3, 1))
	elect(t, n)
	if len(logOf(n)) != 0 {
		t.Fatalf("leader's log %v, want empty", fmtEntries(logOf(n)))
	}
}

// A follower that refuses entries it had acknowledged (its log went
// backwards: a wiped or truncated disk) is sent the log again from what it
// holds, and the leader logs a warning naming it. Before, nextIndex stayed
// above matchIndex and the follower never caught up.
func TestLeaders_FollowerWhoseLogWentBackwardsIsReplicatedAgain(t *testing.T) {
	var logs bytes.Buffer
	cfg := config(1, 3, 1)
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	n := start(t, cfg)
	ackAll(t, n, elect(t, n))
	for i := 0; i < 5; i++ {
		n.Propose([]byte{byte(i)})
	}
	ackAll(t, n, n.Ready())
	if m := n.Status().Match[2]; m != 5 {
		t.Fatalf("match of 2 is %d, want 5", m)
	}
	// Follower 2 comes back empty and refuses the heartbeat after 5.
	for i := 0; i < heartbeatTicks; i++ {
		n.Tick()
	}
	a := appends(t, n.Ready())[2]
	if a == nil || a.PrevLogIndex != 5 {
		t.Fatalf("heartbeat to 2: %+v, want one after index 5", a)
	}
	// Streaming, a refusal may be older than the acknowledgement: the
	// leader probes from what it knows the follower matched...
	n.Step(aeNo(2, 1, 1, 5, 0, 1))
	a = appends(t, n.Ready())[2]
	if a == nil || a.PrevLogIndex != 5 {
		t.Fatalf("after the first refusal: %+v, want a probe after index 5", a)
	}
	// ...and when the answer to the probe is a refusal too, it knows.
	n.Step(aeNo(2, 1, 1, 5, 0, 1))
	if m := n.Status().Match[2]; m != 0 {
		t.Errorf("match of 2 is %d after it refused the probe after 5, want 0", m)
	}
	a = appends(t, n.Ready())[2]
	if a == nil || a.PrevLogIndex != 0 || len(a.Entries) != 5 {
		t.Fatalf("after the refusal: %+v, want entries 1..5 after index 0", a)
	}
	if !strings.Contains(logs.String(), "follower=2") || !strings.Contains(logs.String(), "went backwards") {
		t.Errorf("no warning naming follower 2: %q", logs.String())
	}
}

// RequestVote receiver: a request whose CandidateID is not its sender (or
// that has negative log positions) is refused and changes nothing, not
// even the term.
func TestRequestVote_RefusesMalformedWithoutChangingState(t *testing.T) {
	for _, pre := range []bool{false, true} {
		n := restore(t, 2, 3, HardState{Term: 1, Vote: None}, nil)
		for _, a := range []RequestVoteArgs{
			{Term: 5, CandidateID: 1, LastLogIndex: 9, LastLogTerm: 4, PreVote: pre},
			{Term: 5, CandidateID: 3, LastLogIndex: -1, LastLogTerm: 4, PreVote: pre},
		} {
			r := call[RequestVoteReply](t, n, Message{From: 3, To: 2, Body: &a})
			if r.VoteGranted || hardState(n) != (HardState{Term: 1, Vote: None}) {
				t.Errorf("pre=%v, %+v from 3: reply %+v, state %+v; want refused and term 1, no vote", pre, a, *r, hardState(n))
			}
		}
	}
}

// With a configuration in the log already, the new leader's no-op is an
// empty EntryNoOp.
func TestLeaders_NoOpIsEmptyWithConfigInLog(t *testing.T) {
	cfg := config(1, 3, 1)
	cfg.NoOp = true
	b, _ := voters(1, 2, 3).AppendBinary(nil)
	cfg.State, cfg.Log = HardState{Term: 2}, []Entry{{Index: 1, Term: 1, Type: EntryConfig, Command: b}, {Index: 2, Term: 2}}
	n := start(t, cfg)
	elect(t, n)
	if last := logOf(n)[len(logOf(n))-1]; last.Index != 3 || last.Type != EntryNoOp || len(last.Command) != 0 {
		t.Fatalf("leader's last entry %+v, want an empty no-op at 3", last)
	}
}

// Leader stickiness from the start: a server that starts (or restarts)
// grants no vote for the minimum election timeout, since it may have
// acknowledged a leader just before it stopped (a leader lease counts on
// that, thesis 6.4.1); then it votes.
func TestLeaderStickiness_AfterStart(t *testing.T) {
	n := start(t, preVoteConfig(2, 3, 1))
	m := rv(3, 2, 1, 0, 0)
	for i := 0; i < electionTicks; i++ {
		if r := call[RequestVoteReply](t, n, m); r.VoteGranted || n.Term() != 0 {
			t.Fatalf("%d ticks after its start: reply %+v at term %d, want refused at term 0", i, *r, n.Term())
		}
		n.Skip(1) // time passes; no timer fires
	}
	if r := call[RequestVoteReply](t, n, m); !r.VoteGranted {
		t.Fatalf("an election timeout after its start: %+v, want granted", *r)
	}
}

// Leader stickiness survives a newer term learned from a stale reply: the
// follower heard from a leader within the minimum election timeout, so it
// grants no vote in that term either.
func TestLeaderStickiness_NewerTermFromReply(t *testing.T) {
	n := start(t, preVoteConfig(2, 3, 1))
	n.Skip(electionTicks)
	call[AppendEntriesReply](t, n, ae(1, 2, 1, 0, 0, 0, nil))
	n.Step(aeNo(3, 2, 2, 0, 0, 0)) // a reply of term 2 to an old request
	if n.Term() != 2 || n.Leader() != None {
		t.Fatalf("term %d leader %d after a reply of term 2, want term 2, no leader", n.Term(), n.Leader())
	}
	if r := call[RequestVoteReply](t, n, rv(3, 2, 2, 0, 0)); r.VoteGranted {
		t.Fatal("a vote granted just after hearing from the leader")
	}
	n.Skip(electionTicks)
	if r := call[RequestVoteReply](t, n, rv(3, 2, 2, 0, 0)); !r.VoteGranted {
		t.Fatalf("an election timeout after hearing from the leader: %+v, want granted", *r)
	}
}
