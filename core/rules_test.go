package core

import (
	"slices"
	"testing"
)

// Tests of the rules of Figure 2 of the extended Raft paper, one test per
// rule, plus the extras the core implements beyond it. Each test drives a
// Node directly through Tick, Step, Propose and Ready; peers are played by
// hand-made messages, or by real Nodes where the test is about both ends.

// ---------------------------------------------------------------------------
// Rules for all servers

// All servers: "If RPC request or response contains term T > currentTerm: set currentTerm = T, convert to follower."
func TestAllServers_NewerTermConvertsToFollower(t *testing.T) {
	// Server 1 of 3 at term 2, log [1/1], in each role.
	roles := []struct {
		name string
		make func(t *testing.T) *Node
	}{
		{"follower", func(t *testing.T) *Node {
			return restore(t, 1, 3, HardState{Term: 2, Vote: 3}, ents(1, 1))
		}},
		{"candidate", func(t *testing.T) *Node {
			n := restore(t, 1, 3, HardState{Term: 1, Vote: None}, ents(1, 1))
			ticksToCampaign(t, n)
			n.Ready()
			return n
		}},
		{"leader", func(t *testing.T) *Node {
			n := restore(t, 1, 3, HardState{Term: 1, Vote: None}, ents(1, 1))
			elect(t, n)
			return n
		}},
	}
	msgs := []struct {
		name string
		m    Message
		lead int // leader known after the message
	}{
		{"RequestVote", rv(2, 1, 5, 0, 0), None}, // the candidate's log is behind: no vote
		{"RequestVote reply", vote(2, 1, 5, false), None},
		{"AppendEntries", ae(2, 1, 5, 1, 1, 0, nil), 2},
		{"AppendEntries reply", aeNo(2, 1, 5, 1, 0, 0), None},
	}
	for _, role := range roles {
		for _, msg := range msgs {
			t.Run(role.name+"/"+msg.name, func(t *testing.T) {
				n := role.make(t)
				if n.Term() != 2 {
					t.Fatalf("setup: term %d, want 2", n.Term())
				}
				reply, ok := n.Step(msg.m)
				if ok != isRequest(msg.m.Body) {
					t.Fatalf("Step(%T) gave a reply: %v, want %v (requests are answered, replies are not)", msg.m.Body, ok, isRequest(msg.m.Body))
				}
				if ok {
					switch r := reply.Body.(type) {
					case *RequestVoteReply:
						if r.Term != 5 || r.VoteGranted {
							t.Errorf("RequestVote reply %+v, want term 5, not granted", *r)
						}
					case *AppendEntriesReply:
						if r.Term != 5 || !r.Success {
							t.Errorf("AppendEntries reply %+v, want term 5, success", *r)
						}
					}
				}
				if n.Term() != 5 || n.Role() != Follower || n.Leader() != msg.lead {
					t.Errorf("after the message: term %d, %v of %d; want term 5, follower of %d", n.Term(), n.Role(), n.Leader(), msg.lead)
				}
				rd := n.Ready()
				if want := (HardState{Term: 5, Vote: None}); rd.HardState != want || !rd.MustSave() {
					t.Errorf("Ready: HardState %+v, MustSave %v; want %+v (vote cleared), MustSave", rd.HardState, rd.MustSave(), want)
				}
			})
		}
	}
}

// ---------------------------------------------------------------------------
// Rules for followers

// Followers: "Respond to RPCs from candidates and leaders."
func TestFollowers_RespondToRPCs(t *testing.T) {
	n := restore(t, 2, 3, HardState{Term: 1, Vote: None}, nil)
	if r := call[RequestVoteReply](t, n, rv(3, 2, 1, 0, 0)); !r.VoteGranted || r.Term != 1 {
		t.Errorf("RequestVote reply %+v, want granted in term 1", *r)
	}
	if r := call[AppendEntriesReply](t, n, ae(1, 2, 1, 0, 0, 0, ents(1, 1))); !r.Success || r.Term != 1 || r.Index != 1 {
		t.Errorf("AppendEntries reply %+v, want success up to index 1 in term 1", *r)
	}
	// Replies are not answered.
	for _, m := range []Message{vote(1, 2, 1, true), aeOK(1, 2, 1, 0)} {
		if reply, ok := n.Step(m); ok {
			t.Errorf("Step(%T) answered %+v", m.Body, reply)
		}
	}
}

// Followers: "If election timeout elapses without receiving AppendEntries RPC from current leader or granting vote to candidate: convert to candidate."
func TestFollowers_ElectionTimeoutConvertsToCandidate(t *testing.T) {
	seen := map[int]bool{}
	for seed := uint64(1); seed <= 100; seed++ {
		n := start(t, config(1, 3, seed))
		ticks := 0
		for n.Role() == Follower && ticks < 2*electionTicks {
			n.Tick()
			ticks++
		}
		if n.Role() != Candidate || ticks < electionTicks || ticks >= 2*electionTicks {
			t.Fatalf("seed %d: %v after %d ticks; want candidate after [%d, %d) ticks", seed, n.Role(), ticks, electionTicks, 2*electionTicks)
		}
		seen[ticks] = true
	}
	// 5.2: "election timeouts are chosen randomly from a fixed interval".
	if len(seen) < electionTicks/2 {
		t.Errorf("100 seeds gave only %d distinct timeouts: %v", len(seen), seen)
	}
}

// Followers: "If election timeout elapses without receiving AppendEntries RPC from current leader or granting vote to candidate: convert to candidate."
func TestFollowers_LeaderContactOrGrantedVoteResetsElectionTimer(t *testing.T) {
	// Server 1 of 3 at term 2 with log [1/1 2/2], vote as given.
	malformed := Message{From: 2, To: 1, Body: &AppendEntriesArgs{Term: 2, LeaderID: 3, PrevLogIndex: 2, PrevLogTerm: 2}}
	cases := []struct {
		name   string
		vote   int
		m      Message
		resets bool
	}{
		{"AppendEntries from the leader", None, ae(2, 1, 2, 2, 2, 0, nil), true},
		{"AppendEntries from the leader, log mismatch", None, ae(2, 1, 2, 5, 2, 0, nil), true},
		{"AppendEntries from a leader of a newer term", None, ae(2, 1, 3, 2, 2, 0, nil), true},
		{"granted RequestVote", None, rv(3, 1, 2, 2, 2), true},
		{"granted RequestVote of a newer term", 2, rv(3, 1, 3, 2, 2), true},
		{"granted RequestVote, asked again", 3, rv(3, 1, 2, 2, 2), true},
		{"RequestVote denied: voted for another", 2, rv(3, 1, 2, 2, 2), false},
		{"RequestVote denied: log behind", None, rv(3, 1, 2, 1, 1), false},
		{"RequestVote of an older term", None, rv(3, 1, 1, 2, 2), false},
		{"AppendEntries of an older term", None, ae(2, 1, 1, 0, 0, 0, nil), false},
		{"malformed AppendEntries", None, malformed, false},
		{"RequestVote reply", None, vote(2, 1, 2, true), false},
		{"AppendEntries reply", None, aeOK(2, 1, 2, 0), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for seed := uint64(1); seed <= 5; seed++ {
				mk := func() *Node {
					cfg := config(1, 3, seed)
					cfg.State, cfg.Log = HardState{Term: 2, Vote: c.vote}, ents(1, 1, 2)
					return start(t, cfg)
				}
				timeout := ticksToCampaign(t, mk()) // a twin shows when the election would start
				n := mk()
				for range timeout - 1 {
					n.Tick()
				}
				n.Step(c.m)
				n.Ready()
				term := n.Term()
				n.Tick()
				if !c.resets {
					if n.Role() != Candidate || n.Term() != term+1 {
						t.Fatalf("seed %d: %v at term %d at tick %d; the timer was reset, want candidate at term %d", seed, n.Role(), n.Term(), timeout, term+1)
					}
					continue
				}
				if n.Role() != Follower {
					t.Fatalf("seed %d: %v at tick %d; the timer was not reset", seed, n.Role(), timeout)
				}
				if ticks := 1 + ticksToCampaign(t, n); ticks < electionTicks || ticks >= 2*electionTicks {
					t.Fatalf("seed %d: campaigned %d ticks after the reset, want [%d, %d)", seed, ticks, electionTicks, 2*electionTicks)
				}
			}
		})
	}
}

// Followers: "If election timeout elapses without receiving AppendEntries RPC from current leader or granting vote to candidate: convert to candidate."
//
// A RequestVote of a newer term that the follower denies (the candidate's
// log is behind) must not restart its election timer, or a candidate that
// cannot win would hold off the ones that can.
func TestFollowers_DeniedVoteOfNewerTermDoesNotResetElectionTimer(t *testing.T) {
	for seed := uint64(1); seed <= 5; seed++ {
		mk := func() *Node {
			cfg := config(1, 3, seed)
			cfg.State, cfg.Log = HardState{Term: 2, Vote: None}, ents(1, 1, 2)
			return start(t, cfg)
		}
		timeout := ticksToCampaign(t, mk())
		n := mk()
		for range timeout - 1 {
			n.Tick()
		}
		if r := call[RequestVoteReply](t, n, rv(3, 1, 3, 1, 1)); r.VoteGranted {
			t.Fatalf("seed %d: vote granted to a candidate whose log is behind", seed)
		}
		n.Ready()
		n.Tick()
		if n.Role() != Candidate || n.Term() != 4 {
			t.Fatalf("seed %d: %v at term %d at tick %d; want candidate at term 4: the denied vote reset the election timer", seed, n.Role(), n.Term(), timeout)
		}
	}
}

// ---------------------------------------------------------------------------
// Rules for candidates

// Candidates: "On conversion to candidate, start election: increment currentTerm, vote for self, reset election timer, send RequestVote RPCs to all other servers."
func TestCandidates_OnConversionStartElection(t *testing.T) {
	n := restore(t, 1, 5, HardState{Term: 3, Vote: 2}, ents(1, 1, 1, 3))
	ticksToCampaign(t, n)
	if n.Role() != Candidate || n.Term() != 4 {
		t.Fatalf("%v at term %d, want candidate at term 4", n.Role(), n.Term())
	}
	rd := n.Ready()
	if want := (HardState{Term: 4, Vote: 1}); rd.HardState != want || !rd.MustSave() {
		t.Errorf("Ready: HardState %+v, MustSave %v; want %+v, MustSave", rd.HardState, rd.MustSave(), want)
	}
	if len(rd.Entries) != 0 || len(rd.Committed) != 0 {
		t.Errorf("Ready: entries %v, committed %v; want none", fmtEntries(rd.Entries), fmtEntries(rd.Committed))
	}
	got := map[int]RequestVoteArgs{}
	for _, m := range sent(rd) {
		a, ok := m.Body.(*RequestVoteArgs)
		if !ok || m.From != 1 {
			t.Fatalf("unexpected message %+v", m)
		}
		got[m.To] = *a
	}
	want := RequestVoteArgs{Term: 4, CandidateID: 1, LastLogIndex: 3, LastLogTerm: 3}
	if len(got) != 4 || len(sent(rd)) != 4 {
		t.Fatalf("RequestVote to %v (%d messages), want one to each of 2..5", got, len(sent(rd)))
	}
	for _, to := range []int{2, 3, 4, 5} {
		if got[to] != want {
			t.Errorf("RequestVote to %d: %+v, want %+v", to, got[to], want)
		}
	}
	// The election timer was reset: the next election is a whole timeout away.
	if ticks := ticksToCampaign(t, n); ticks < electionTicks || ticks >= 2*electionTicks {
		t.Errorf("next election after %d ticks, want [%d, %d)", ticks, electionTicks, 2*electionTicks)
	}
}

// Candidates: "If votes received from majority of servers: become leader."
func TestCandidates_VotesFromMajorityBecomeLeader(t *testing.T) {
	cases := []struct {
		name   string
		size   int
		votes  []Message // to candidate 1 at term 2
		leader bool
	}{
		{"3 servers, one grant", 3, []Message{vote(2, 1, 2, true)}, true},
		{"3 servers, one denial", 3, []Message{vote(2, 1, 2, false)}, false},
		{"4 servers, two grants", 4, []Message{vote(2, 1, 2, true), vote(4, 1, 2, true)}, true},
		{"4 servers, one grant", 4, []Message{vote(2, 1, 2, true)}, false},
		{"5 servers, two grants", 5, []Message{vote(3, 1, 2, true), vote(5, 1, 2, true)}, true},
		{"5 servers, one grant", 5, []Message{vote(2, 1, 2, true)}, false},
		{"5 servers, one server granting twice", 5, []Message{vote(2, 1, 2, true), vote(2, 1, 2, true)}, false},
		{"5 servers, one grant, two denials", 5, []Message{vote(2, 1, 2, true), vote(3, 1, 2, false), vote(4, 1, 2, false)}, false},
		{"5 servers, a grant of an older term", 5, []Message{vote(2, 1, 2, true), vote(3, 1, 1, true)}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := restore(t, 1, c.size, HardState{Term: 1, Vote: None}, nil)
			ticksToCampaign(t, n)
			n.Ready()
			for _, m := range c.votes {
				n.Step(m)
			}
			if got := n.Role() == Leader; got != c.leader {
				t.Fatalf("%v after votes, want leader %v", n.Role(), c.leader)
			}
			if c.leader {
				if n.Leader() != 1 || n.Term() != 2 {
					t.Errorf("leader %d at term %d, want itself at term 2", n.Leader(), n.Term())
				}
				// It asserts its leadership at once.
				if as := appends(t, n.Ready()); len(as) != c.size-1 {
					t.Errorf("next Ready holds AppendEntries to %d servers, want %d", len(as), c.size-1)
				}
			}
		})
	}
}

// Candidates: "If AppendEntries RPC received from new leader: convert to follower."
func TestCandidates_AppendEntriesFromNewLeaderConvertsToFollower(t *testing.T) {
	cases := []struct {
		name    string
		term    int
		success bool
		role    Role
		hs      HardState
	}{
		{"leader of the same term", 2, true, Follower, HardState{Term: 2, Vote: 1}},
		{"leader of a newer term", 3, true, Follower, HardState{Term: 3, Vote: None}},
		{"leader of an older term", 1, false, Candidate, HardState{Term: 2, Vote: 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := restore(t, 1, 3, HardState{Term: 1, Vote: None}, nil)
			ticksToCampaign(t, n)
			n.Ready()
			r := call[AppendEntriesReply](t, n, ae(3, 1, c.term, 0, 0, 0, nil))
			if r.Success != c.success || r.Term != c.hs.Term {
				t.Errorf("reply %+v, want success %v at term %d", *r, c.success, c.hs.Term)
			}
			if n.Role() != c.role || hardState(n) != c.hs {
				t.Errorf("%v with %+v, want %v with %+v", n.Role(), hardState(n), c.role, c.hs)
			}
			if c.role == Follower && n.Leader() != 3 {
				t.Errorf("leader %d, want 3", n.Leader())
			}
		})
	}
}

// Candidates: "If election timeout elapses: start new election."
func TestCandidates_ElectionTimeoutStartsNewElection(t *testing.T) {
	n := start(t, config(1, 3, 7))
	for term := 1; term <= 5; term++ {
		ticks := ticksToCampaign(t, n)
		if ticks < electionTicks || ticks >= 2*electionTicks {
			t.Errorf("election %d started after %d ticks, want [%d, %d)", term, ticks, electionTicks, 2*electionTicks)
		}
		if n.Role() != Candidate || n.Term() != term {
			t.Fatalf("%v at term %d, want candidate at term %d", n.Role(), n.Term(), term)
		}
		rd := n.Ready()
		if want := (HardState{Term: term, Vote: 1}); rd.HardState != want || !rd.MustSave() {
			t.Errorf("Ready: HardState %+v, MustSave %v; want %+v, MustSave", rd.HardState, rd.MustSave(), want)
		}
		for _, m := range sent(rd) {
			if a, ok := m.Body.(*RequestVoteArgs); !ok || a.Term != term {
				t.Errorf("message %+v, want RequestVote of term %d", m.Body, term)
			}
		}
		if len(sent(rd)) != 2 {
			t.Errorf("%d messages, want a RequestVote to each of 2 servers", len(sent(rd)))
		}
	}
}

// A cluster of one server is a majority by itself: it elects itself and commits proposals alone.
func TestSingleServer_ElectsItselfAndCommitsAlone(t *testing.T) {
	n := restore(t, 1, 1, HardState{Term: 2, Vote: 1}, ents(1, 1, 2))
	ticksToCampaign(t, n)
	if n.Role() != Leader || n.Term() != 3 || n.Leader() != 1 {
		t.Fatalf("%v at term %d, want leader at term 3", n.Role(), n.Term())
	}
	rd := n.Ready()
	if want := (HardState{Term: 3, Vote: 1}); rd.HardState != want || !rd.MustSave() || len(sent(rd)) != 0 {
		t.Errorf("Ready: HardState %+v, MustSave %v, %d messages; want %+v, MustSave, none", rd.HardState, rd.MustSave(), len(sent(rd)), want)
	}
	if len(rd.Committed) != 0 {
		t.Errorf("entries of older terms committed on election: %v", fmtEntries(rd.Committed))
	}
	for i, cmd := range []string{"x", "y"} {
		if idx, term, ok := n.Propose([]byte(cmd)); !ok || idx != 3+i || term != 3 {
			t.Fatalf("Propose(%q) = %d, %d, %v; want %d, 3, true", cmd, idx, term, ok, 3+i)
		}
	}
	rd = n.Ready()
	want := append(ents(1, 1, 2), Entry{Index: 3, Term: 3, Command: []byte("x")}, Entry{Index: 4, Term: 3, Command: []byte("y")})
	if !sameEntries(rd.Entries, want[2:]) || !sameEntries(rd.Committed, want) || len(sent(rd)) != 0 {
		t.Errorf("Ready: entries %v, committed %v, %d messages; want %v, %v, none", fmtEntries(rd.Entries), fmtEntries(rd.Committed), len(sent(rd)), fmtEntries(want[2:]), fmtEntries(want))
	}
	if s := n.Status(); s.Commit != 4 {
		t.Errorf("commit %d, want 4", s.Commit)
	}
}

// ---------------------------------------------------------------------------
// RequestVote receiver

// RequestVote receiver: "1. Reply false if term < currentTerm."
func TestRequestVote_RejectsOlderTerm(t *testing.T) {
	n := restore(t, 1, 3, HardState{Term: 3, Vote: None}, nil)
	if r := call[RequestVoteReply](t, n, rv(2, 1, 2, 5, 2)); r.VoteGranted || r.Term != 3 {
		t.Errorf("reply %+v, want not granted, term 3", *r)
	}
	if rd := n.Ready(); !rd.Empty() {
		t.Errorf("Ready %+v, want empty", rd)
	}
	if hs := hardState(n); hs != (HardState{Term: 3, Vote: None}) {
		t.Errorf("state %+v changed", hs)
	}
}

// RequestVote receiver: "2. If votedFor is null or candidateId, and candidate's log is at least as up-to-date as receiver's log, grant vote."
func TestRequestVote_GrantsOnlyIfCandidateLogIsUpToDate(t *testing.T) {
	// 5.4.1: the later last term wins; with equal last terms, the longer log.
	cases := []struct {
		name                string
		voterLog            []Entry
		lastIndex, lastTerm int // the candidate's
		granted             bool
	}{
		{"same last entry", ents(1, 1, 1, 2), 3, 2, true},
		{"same last term, longer", ents(1, 1, 1, 2), 4, 2, true},
		{"same last term, shorter", ents(1, 1, 1, 2), 2, 2, false},
		{"later last term, shorter", ents(1, 1, 1, 2), 1, 3, true},
		{"earlier last term, longer", ents(1, 1, 1, 2), 5, 1, false},
		{"empty log", ents(1, 1, 1, 2), 0, 0, false},
		{"both logs empty", nil, 0, 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := restore(t, 1, 3, HardState{Term: 2, Vote: None}, c.voterLog)
			r := call[RequestVoteReply](t, n, rv(2, 1, 3, c.lastIndex, c.lastTerm))
			if r.VoteGranted != c.granted || r.Term != 3 {
				t.Errorf("reply %+v, want granted %v at term 3", *r, c.granted)
			}
			want := HardState{Term: 3, Vote: None}
			if c.granted {
				want.Vote = 2
			}
			if rd := n.Ready(); rd.HardState != want || !rd.MustSave() {
				t.Errorf("Ready: HardState %+v, MustSave %v; want %+v, MustSave", rd.HardState, rd.MustSave(), want)
			}
		})
	}
}

// RequestVote receiver: "2. If votedFor is null or candidateId, and candidate's log is at least as up-to-date as receiver's log, grant vote."
func TestRequestVote_AtMostOneCandidatePerTerm(t *testing.T) {
	n := restore(t, 1, 3, HardState{Term: 1, Vote: None}, nil)
	steps := []struct {
		what    string
		m       Message
		granted bool
		hs      HardState
	}{
		{"first candidate of term 2", rv(2, 1, 2, 0, 0), true, HardState{Term: 2, Vote: 2}},
		{"another candidate of term 2", rv(3, 1, 2, 0, 0), false, HardState{Term: 2, Vote: 2}},
		{"the first candidate again", rv(2, 1, 2, 0, 0), true, HardState{Term: 2, Vote: 2}},
		{"the other candidate in term 3", rv(3, 1, 3, 0, 0), true, HardState{Term: 3, Vote: 3}},
		{"the first candidate in term 3", rv(2, 1, 3, 0, 0), false, HardState{Term: 3, Vote: 3}},
	}
	saved := HardState{Term: 1, Vote: None}
	for _, s := range steps {
		if r := call[RequestVoteReply](t, n, s.m); r.VoteGranted != s.granted {
			t.Errorf("%s: granted %v, want %v", s.what, r.VoteGranted, s.granted)
		}
		rd := n.Ready()
		if rd.HardState != s.hs || rd.MustSave() != (s.hs != saved) {
			t.Errorf("%s: Ready HardState %+v, MustSave %v; want %+v, MustSave %v", s.what, rd.HardState, rd.MustSave(), s.hs, s.hs != saved)
		}
		saved = s.hs
	}
}

// ---------------------------------------------------------------------------
// AppendEntries receiver

// AppendEntries receiver: "1. Reply false if term < currentTerm."
func TestAppendEntries_RejectsOlderTerm(t *testing.T) {
	n := restore(t, 1, 3, HardState{Term: 3, Vote: None}, ents(1, 1, 3))
	r := call[AppendEntriesReply](t, n, ae(2, 1, 2, 1, 1, 2, ents(2, 2)))
	if r.Success || r.Term != 3 {
		t.Errorf("reply %+v, want failure at term 3", *r)
	}
	if got := logTerms(n); !slices.Equal(got, []int{1, 3}) || n.Leader() != None || n.Status().Commit != 0 {
		t.Errorf("log %v, leader %d, commit %d; want [1 3], none, 0 (unchanged)", got, n.Leader(), n.Status().Commit)
	}
	if rd := n.Ready(); !rd.Empty() {
		t.Errorf("Ready %+v, want empty", rd)
	}
}

// AppendEntries receiver: "2. Reply false if log doesn't contain an entry at prevLogIndex whose term matches prevLogTerm."
func TestAppendEntries_RejectsIfNoMatchingEntryAtPrevLogIndex(t *testing.T) {
	// Follower log [1 1 2 2 2] at term 3; the leader of term 3 sends one entry after prev.
	cases := []struct {
		name                        string
		prevIndex, prevTerm         int
		conflictTerm, conflictIndex int
	}{
		{"log too short", 7, 3, 0, 6},
		{"log one entry short", 6, 3, 0, 6},
		{"other term at prevLogIndex", 4, 3, 2, 3},
		{"other term at the first entry of a term", 3, 3, 2, 3},
		{"other term in the first term", 2, 2, 1, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := restore(t, 1, 3, HardState{Term: 3, Vote: None}, ents(1, 1, 1, 2, 2, 2))
			r := call[AppendEntriesReply](t, n, ae(2, 1, 3, c.prevIndex, c.prevTerm, 5, ents(c.prevIndex+1, 3)))
			want := AppendEntriesReply{Term: 3, Index: c.prevIndex, ConflictTerm: c.conflictTerm, ConflictIndex: c.conflictIndex}
			if *r != want {
				t.Errorf("reply %+v, want %+v", *r, want)
			}
			if got := logTerms(n); !slices.Equal(got, []int{1, 1, 2, 2, 2}) || n.Status().Commit != 0 {
				t.Errorf("log %v, commit %d; want [1 1 2 2 2], 0 (unchanged)", got, n.Status().Commit)
			}
			if rd := n.Ready(); len(rd.Entries) != 0 || len(rd.Committed) != 0 {
				t.Errorf("Ready: entries %v, committed %v; want none", fmtEntries(rd.Entries), fmtEntries(rd.Committed))
			}
		})
	}
}

// AppendEntries receiver: "3. If an existing entry conflicts with a new one (same index but different terms), delete the existing entry and all that follow it."
func TestAppendEntries_DeletesConflictingEntryAndAllThatFollow(t *testing.T) {
	// Follower log [1 1 2 2 2]; the leader of term 3 sends entries after prev.
	cases := []struct {
		name                string
		prevIndex, prevTerm int
		entries             []Entry
		log                 []int
		saved               []Entry // Ready.Entries: from the first conflict on
	}{
		{"conflict at the first new entry", 2, 1, ents(3, 3), []int{1, 1, 3}, ents(3, 3)},
		{"conflict after matching entries", 1, 1, ents(2, 1, 3, 3), []int{1, 1, 3, 3}, ents(3, 3, 3)},
		{"conflict at the last entry", 4, 2, ents(5, 3), []int{1, 1, 2, 2, 3}, ents(5, 3)},
		{"conflict at the first entry", 0, 0, ents(1, 3), []int{3}, ents(1, 3)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			old := ents(1, 1, 1, 2, 2, 2)
			n := restore(t, 1, 3, HardState{Term: 2, Vote: None}, old)
			r := call[AppendEntriesReply](t, n, ae(2, 1, 3, c.prevIndex, c.prevTerm, 0, c.entries))
			if !r.Success || r.Index != c.prevIndex+len(c.entries) {
				t.Errorf("reply %+v, want success up to %d", *r, c.prevIndex+len(c.entries))
			}
			if got := logTerms(n); !slices.Equal(got, c.log) {
				t.Errorf("log terms %v, want %v", got, c.log)
			}
			rd := n.Ready()
			if !sameEntries(rd.Entries, c.saved) || !rd.MustSave() {
				t.Errorf("Ready.Entries %v (MustSave %v), want %v", fmtEntries(rd.Entries), rd.MustSave(), fmtEntries(c.saved))
			}
			s := storage{log: old}
			if s.save(rd); !sameEntries(s.log, logOf(n)) {
				t.Errorf("saved log %v, want the node's %v", fmtEntries(s.log), fmtEntries(logOf(n)))
			}
		})
	}
}

// AppendEntries receiver: "4. Append any new entries not already in the log."
func TestAppendEntries_AppendsNewEntriesNotAlreadyInLog(t *testing.T) {
	n := restore(t, 1, 3, HardState{Term: 2, Vote: None}, ents(1, 1, 1))
	r := call[AppendEntriesReply](t, n, ae(2, 1, 2, 1, 1, 0, ents(2, 1, 1, 2)))
	if !r.Success || r.Index != 4 {
		t.Errorf("reply %+v, want success up to 4", *r)
	}
	if got, want := logOf(n), ents(1, 1, 1, 1, 2); !sameEntries(got, want) {
		t.Errorf("log %v, want %v", fmtEntries(got), fmtEntries(want))
	}
	if rd := n.Ready(); !sameEntries(rd.Entries, ents(3, 1, 2)) || !rd.MustSave() {
		t.Errorf("Ready.Entries %v, want only the new ones %v", fmtEntries(rd.Entries), fmtEntries(ents(3, 1, 2)))
	}
}

// AppendEntries receiver: "3. If an existing entry conflicts with a new one ..., delete" — only then: a late, shorter AppendEntries must not truncate.
func TestAppendEntries_StaleShorterAppendEntriesDoesNotTruncate(t *testing.T) {
	n := restore(t, 1, 3, HardState{Term: 1, Vote: None}, nil)
	call[AppendEntriesReply](t, n, ae(2, 1, 1, 0, 0, 0, ents(1, 1, 1, 1)))
	n.Ready()
	for _, m := range []Message{
		ae(2, 1, 1, 0, 0, 0, ents(1, 1)),    // sent before the longer one, arriving after it
		ae(2, 1, 1, 1, 1, 0, ents(2, 1)),    // same
		ae(2, 1, 1, 1, 1, 0, nil),           // a late heartbeat
		ae(2, 1, 1, 0, 0, 0, ents(1, 1, 1)), // a late retry
	} {
		a := m.Body.(*AppendEntriesArgs)
		r := call[AppendEntriesReply](t, n, m)
		if want := a.PrevLogIndex + len(a.Entries); !r.Success || r.Index != want {
			t.Errorf("reply %+v, want success up to %d", *r, want)
		}
		if got := logOf(n); !sameEntries(got, ents(1, 1, 1, 1)) {
			t.Fatalf("log %v after a stale AppendEntries after %d, want [1/1 2/1 3/1]", fmtEntries(got), a.PrevLogIndex)
		}
		if rd := n.Ready(); !rd.Empty() {
			t.Errorf("Ready %+v, want empty", rd)
		}
	}
}

// AppendEntries receiver: "4. Append any new entries not already in the log." — a duplicate AppendEntries has none: nothing changes.
func TestAppendEntries_DuplicateIsIdempotent(t *testing.T) {
	n := restore(t, 1, 3, HardState{Term: 1, Vote: None}, ents(1, 1))
	m := ae(2, 1, 2, 1, 1, 2, ents(2, 2, 2))
	r1 := *call[AppendEntriesReply](t, n, m)
	rd := n.Ready()
	if !sameEntries(rd.Entries, ents(2, 2, 2)) || !sameEntries(rd.Committed, ents(1, 1, 2)) {
		t.Fatalf("first Ready: entries %v, committed %v", fmtEntries(rd.Entries), fmtEntries(rd.Committed))
	}
	log := logOf(n)
	r2 := *call[AppendEntriesReply](t, n, m)
	if r1 != r2 {
		t.Errorf("replies differ: %+v then %+v", r1, r2)
	}
	if rd := n.Ready(); !rd.Empty() {
		t.Errorf("Ready after the duplicate %+v, want empty", rd)
	}
	if got := logOf(n); !sameEntries(got, log) {
		t.Errorf("log %v after the duplicate, want %v", fmtEntries(got), fmtEntries(log))
	}
}

// AppendEntries receiver: "5. If leaderCommit > commitIndex, set commitIndex = min(leaderCommit, index of last new entry)."
func TestAppendEntries_CommitIndexIsMinOfLeaderCommitAndLastNewEntry(t *testing.T) {
	// The follower holds [1 1 1 2 2]: entries 4 and 5 come from a leader of
	// term 2. The leader of term 3 holds [1 1 1 3] and has committed 4/3.
	cases := []struct {
		name   string
		m      Message
		commit int
	}{
		{"heartbeat below the last entry", ae(2, 1, 3, 3, 1, 4, nil), 3},
		{"heartbeat further below", ae(2, 1, 3, 2, 1, 4, nil), 2},
		{"new entry", ae(2, 1, 3, 3, 1, 4, ents(4, 3)), 4},
		{"leaderCommit below the last new entry", ae(2, 1, 3, 3, 1, 2, ents(4, 3)), 2},
		{"leaderCommit zero", ae(2, 1, 3, 3, 1, 0, ents(4, 3)), 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := restore(t, 1, 3, HardState{Term: 2, Vote: None}, ents(1, 1, 1, 1, 2, 2))
			if r := call[AppendEntriesReply](t, n, c.m); !r.Success {
				t.Fatalf("reply %+v, want success", *r)
			}
			if got := n.Status().Commit; got != c.commit {
				t.Errorf("commit %d, want %d", got, c.commit)
			}
			if rd := n.Ready(); !sameEntries(rd.Committed, logOf(n)[:c.commit]) {
				t.Errorf("Ready.Committed %v, want the first %d entries", fmtEntries(rd.Committed), c.commit)
			}
		})
	}
	t.Run("never decreases", func(t *testing.T) {
		n := restore(t, 1, 3, HardState{Term: 2, Vote: None}, ents(1, 1, 1, 1, 2, 2))
		call[AppendEntriesReply](t, n, ae(2, 1, 2, 5, 2, 4, nil))
		call[AppendEntriesReply](t, n, ae(2, 1, 2, 1, 1, 5, nil)) // min(5, 1) = 1
		if got := n.Status().Commit; got != 4 {
			t.Errorf("commit %d, want 4", got)
		}
	})
}

// AppendEntries receiver: a malformed AppendEntries (entries not numbered on from prevLogIndex, LeaderID not the sender, ...) is refused without changing state.
func TestAppendEntries_RefusesMalformed(t *testing.T) {
	// Follower [1/1 2/2] at term 2; every message is of term 3, so that
	// accepting it would show in the term.
	with := func(a AppendEntriesArgs) Message { return Message{From: 2, To: 1, Body: &a} }
	cases := []struct {
		name string
		m    Message
	}{
		{"index gap after prevLogIndex", ae(2, 1, 3, 2, 2, 0, ents(4, 3))},
		{"index gap between entries", ae(2, 1, 3, 2, 2, 0, []Entry{ents(3, 3)[0], ents(5, 3)[0]})},
		{"indexes going back", ae(2, 1, 3, 2, 2, 0, ents(2, 3))},
		{"entry terms decreasing", ae(2, 1, 3, 2, 2, 0, ents(3, 3, 2))},
		{"entry term below prevLogTerm", ae(2, 1, 3, 2, 2, 0, ents(3, 1))},
		{"entry term beyond the leader's", ae(2, 1, 3, 2, 2, 0, ents(3, 4))},
		{"LeaderID is not the sender", with(AppendEntriesArgs{Term: 3, LeaderID: 3, PrevLogIndex: 2, PrevLogTerm: 2})},
		{"negative prevLogIndex", with(AppendEntriesArgs{Term: 3, LeaderID: 2, PrevLogIndex: -1})},
		{"negative leaderCommit", with(AppendEntriesArgs{Term: 3, LeaderID: 2, PrevLogIndex: 2, PrevLogTerm: 2, LeaderCommit: -1})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := restore(t, 1, 3, HardState{Term: 2, Vote: None}, ents(1, 1, 2))
			r := call[AppendEntriesReply](t, n, c.m)
			if r.Success || r.Term != 2 {
				t.Errorf("reply %+v, want failure at term 2", *r)
			}
			if got := logTerms(n); !slices.Equal(got, []int{1, 2}) || hardState(n) != (HardState{Term: 2, Vote: None}) || n.Leader() != None || n.Role() != Follower {
				t.Errorf("state changed: log %v, %+v, leader %d, %v", got, hardState(n), n.Leader(), n.Role())
			}
			if rd := n.Ready(); !rd.Empty() {
				t.Errorf("Ready %+v, want empty", rd)
			}
		})
	}
	t.Run("well-formed control", func(t *testing.T) {
		n := restore(t, 1, 3, HardState{Term: 2, Vote: None}, ents(1, 1, 2))
		if r := call[AppendEntriesReply](t, n, ae(2, 1, 3, 2, 2, 0, ents(3, 2, 3))); !r.Success || r.Index != 4 {
			t.Errorf("reply %+v, want success up to 4", *r)
		}
	})
}

// Beyond Figure 2: a follower never replaces an entry it knows to be committed (Leader Completeness says no correct leader asks it to).
func TestAppendEntries_NeverReplacesCommittedEntry(t *testing.T) {
	n := restore(t, 1, 3, HardState{Term: 1, Vote: None}, nil)
	call[AppendEntriesReply](t, n, ae(2, 1, 1, 0, 0, 3, ents(1, 1, 1, 1)))
	n.Ready()
	r := call[AppendEntriesReply](t, n, ae(3, 1, 2, 1, 1, 0, ents(2, 2)))
	if r.Success {
		t.Errorf("reply %+v, want failure", *r)
	}
	if got := logOf(n); !sameEntries(got, ents(1, 1, 1, 1)) || n.Status().Commit != 3 {
		t.Errorf("log %v, commit %d; want [1/1 2/1 3/1], 3", fmtEntries(got), n.Status().Commit)
	}
	if rd := n.Ready(); len(rd.Entries) != 0 {
		t.Errorf("Ready.Entries %v, want none", fmtEntries(rd.Entries))
	}
}

// ---------------------------------------------------------------------------
// Rules for leaders

// Leaders: "Upon election: send initial empty AppendEntries RPCs (heartbeat) to each server."
func TestLeaders_UponElectionSendHeartbeatToEachServer(t *testing.T) {
	n := restore(t, 1, 5, HardState{Term: 2, Vote: None}, ents(1, 1, 1, 2))
	rd := elect(t, n)
	as := appends(t, rd)
	if len(as) != 4 || len(sent(rd)) != 4 {
		t.Fatalf("AppendEntries to %d servers (%d messages), want one to each of 4", len(as), len(sent(rd)))
	}
	want := AppendEntriesArgs{Term: 3, LeaderID: 1, PrevLogIndex: 3, PrevLogTerm: 2}
	for to := 2; to <= 5; to++ {
		a := as[to]
		if a == nil || a.Term != want.Term || a.LeaderID != 1 || a.PrevLogIndex != 3 || a.PrevLogTerm != 2 || len(a.Entries) != 0 || a.LeaderCommit != 0 {
			t.Errorf("to %d: %+v, want %+v", to, a, want)
		}
	}
}

// Leaders: "repeat during idle periods to prevent election timeouts (5.2)."
func TestLeaders_RepeatHeartbeatsDuringIdlePeriods(t *testing.T) {
	n := start(t, config(1, 3, 1))
	ackAll(t, n, elect(t, n))
	for tick := 1; tick <= 5*electionTicks; tick++ {
		n.Tick()
		rd := n.Ready()
		as := appends(t, rd)
		want := 0
		if tick%heartbeatTicks == 0 {
			want = 2
		}
		if len(as) != want || len(sent(rd)) != want {
			t.Fatalf("tick %d: %d messages, want %d", tick, len(sent(rd)), want)
		}
		for to, a := range as {
			if len(a.Entries) != 0 || a.Term != 1 {
				t.Errorf("tick %d: to %d %+v, want a heartbeat of term 1", tick, to, a)
			}
		}
		ackAll(t, n, rd)
	}
	if n.Role() != Leader {
		t.Errorf("%v, want still leader", n.Role())
	}
}

// Leaders: "If command received from client: append entry to local log, respond after entry applied to state machine."
func TestLeaders_ProposeAppendsToLocalLogAndSendsAtOnce(t *testing.T) {
	n := start(t, config(1, 3, 1))
	ackAll(t, n, elect(t, n))
	var want []Entry
	for i, cmd := range []string{"a", "b", "c"} {
		idx, term, ok := n.Propose([]byte(cmd))
		if !ok || idx != i+1 || term != 1 {
			t.Fatalf("Propose(%q) = %d, %d, %v; want %d, 1, true", cmd, idx, term, ok, i+1)
		}
		want = append(want, Entry{Index: i + 1, Term: 1, Command: []byte(cmd)})
	}
	if s := n.Status(); s.LastLog != 3 || s.Commit != 0 {
		t.Errorf("last log %d, commit %d; want 3, 0", s.LastLog, s.Commit)
	}
	rd := n.Ready()
	if !sameEntries(rd.Entries, want) || !rd.MustSave() || len(rd.Committed) != 0 {
		t.Errorf("Ready: entries %v, committed %v; want %v, none", fmtEntries(rd.Entries), fmtEntries(rd.Committed), fmtEntries(want))
	}
	// All three proposals travel in one AppendEntries per follower.
	as := appends(t, rd)
	if len(as) != 2 || len(sent(rd)) != 2 {
		t.Fatalf("%d messages, want one AppendEntries to each of 2 followers", len(sent(rd)))
	}
	for to, a := range as {
		if a.PrevLogIndex != 0 || a.PrevLogTerm != 0 || !sameEntries(a.Entries, want) {
			t.Errorf("to %d: after %d/%d entries %v, want after 0/0 %v", to, a.PrevLogIndex, a.PrevLogTerm, fmtEntries(a.Entries), fmtEntries(want))
		}
	}
	// Applied (Ready.Committed) once stored on a majority.
	n.Step(aeOK(2, 1, 1, 3))
	if rd := n.Ready(); !sameEntries(rd.Committed, want) {
		t.Errorf("Ready.Committed %v, want %v", fmtEntries(rd.Committed), fmtEntries(want))
	}
	// Only the leader takes proposals.
	f := start(t, config(2, 3, 1))
	if _, _, ok := f.Propose([]byte("x")); ok || f.Status().LastLog != 0 {
		t.Errorf("a follower took a proposal")
	}
}

// Leaders: "If last log index ≥ nextIndex for a follower: send AppendEntries RPC with log entries starting at nextIndex."
func TestLeaders_SendEntriesStartingAtNextIndex(t *testing.T) {
	n := restore(t, 1, 3, HardState{Term: 2, Vote: None}, ents(1, 1, 2, 2))
	elect(t, n)                    // term 3, nextIndex 4 for both
	n.Step(aeOK(2, 1, 3, 3))       // 2 matches up to 3: nextIndex 4
	n.Step(aeNo(3, 1, 3, 3, 0, 2)) // 3 holds only entry 1: nextIndex 2
	n.Propose([]byte("x"))
	x := Entry{Index: 4, Term: 3, Command: []byte("x")}
	as := appends(t, n.Ready())
	want := map[int][]Entry{2: {x}, 3: append(ents(2, 2, 2), x)}
	for to, es := range want {
		a := as[to]
		prev := es[0].Index - 1
		if a == nil || a.PrevLogIndex != prev || a.PrevLogTerm != n.log.term(prev) || !sameEntries(a.Entries, es) {
			t.Errorf("to %d: %+v, want entries %v after %d", to, a, fmtEntries(es), prev)
		}
	}
}

// Leaders: "If successful: update nextIndex and matchIndex for follower."
func TestLeaders_SuccessUpdatesNextIndexAndMatchIndex(t *testing.T) {
	n := start(t, config(1, 3, 1))
	ackAll(t, n, elect(t, n))
	for _, cmd := range []string{"a", "b", "c"} {
		n.Propose([]byte(cmd))
	}
	n.Ready()
	steps := []struct {
		what  string
		m     Message
		match int
	}{
		{"reply to the batch", aeOK(2, 1, 1, 3), 3},
		{"late reply to a shorter AppendEntries", aeOK(2, 1, 1, 1), 3},
		{"late reply to the first heartbeat", aeOK(2, 1, 1, 0), 3},
		{"reply of an older term", aeOK(2, 1, 0, 3), 3},
	}
	for _, s := range steps {
		n.Step(s.m)
		if got := n.Status().Match[2]; got != s.match {
			t.Errorf("after %s: matchIndex %d, want %d", s.what, got, s.match)
		}
	}
	if got := n.Status().Match[3]; got != 0 {
		t.Errorf("matchIndex of 3 is %d, want 0", got)
	}
	n.Step(aeOK(3, 1, 0, 3)) // reply of an older term: ignored
	if got := n.Status().Match[3]; got != 0 {
		t.Errorf("matchIndex of 3 is %d after a reply of an older term, want 0", got)
	}
	// nextIndex is 4: the next entry goes alone.
	n.Propose([]byte("d"))
	a := appends(t, n.Ready())[2]
	if a == nil || a.PrevLogIndex != 3 || len(a.Entries) != 1 || a.Entries[0].Index != 4 {
		t.Errorf("to 2: %+v, want entry 4 alone after 3", a)
	}
}

// Leaders: "If AppendEntries fails because of log inconsistency: decrement nextIndex and retry." — a whole term at a time, with the conflict fields (end of 5.3).
func TestLeaders_FailureBacksUpNextIndexByTerm(t *testing.T) {
	// The leader holds [1 1 1 3 3 4 4] and leads term 5; follower 2 is a real Node.
	leaderLog := ents(1, 1, 1, 1, 3, 3, 4, 4)
	cases := []struct {
		name                        string
		follower                    []int // terms of follower 2's log
		conflictTerm, conflictIndex int
		prev                        int // of the retry
	}{
		{"leader has the conflicting term: after its last entry of it", []int{1, 1, 1, 3, 3, 3, 3}, 3, 4, 5},
		{"leader lacks the conflicting term: at the follower's first entry of it", []int{1, 1, 1, 2, 2, 2, 2}, 2, 4, 3},
		{"follower log too short: at its end", []int{1, 1, 1, 3}, 0, 5, 4},
		{"follower log empty", nil, 0, 1, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := restore(t, 1, 3, HardState{Term: 4, Vote: None}, leaderLog)
			f := restore(t, 2, 3, HardState{Term: 4, Vote: None}, ents(1, c.follower...))
			hb := appends(t, elect(t, l))[2]
			r := call[AppendEntriesReply](t, f, Message{From: 1, To: 2, Body: hb})
			if r.Success || r.ConflictTerm != c.conflictTerm || r.ConflictIndex != c.conflictIndex {
				t.Fatalf("follower's reply %+v, want conflict %d at %d", *r, c.conflictTerm, c.conflictIndex)
			}
			l.Step(Message{From: 2, To: 1, Body: r})
			a := appends(t, l.Ready())[2]
			if a == nil || a.PrevLogIndex != c.prev || a.PrevLogTerm != l.log.term(c.prev) || !sameEntries(a.Entries, leaderLog[c.prev:]) {
				t.Fatalf("retry %+v, want entries %v after %d", a, fmtEntries(leaderLog[c.prev:]), c.prev)
			}
			r = call[AppendEntriesReply](t, f, Message{From: 1, To: 2, Body: a})
			if !r.Success || r.Index != 7 || !sameEntries(logOf(f), leaderLog) {
				t.Fatalf("reply %+v, follower log %v; want success, %v", *r, fmtEntries(logOf(f)), fmtEntries(leaderLog))
			}
			l.Step(Message{From: 2, To: 1, Body: r})
			if got := l.Status().Match[2]; got != 7 {
				t.Errorf("matchIndex %d, want 7", got)
			}
		})
	}
	t.Run("stale rejection ignored", func(t *testing.T) {
		l := restore(t, 1, 3, HardState{Term: 4, Vote: None}, leaderLog)
		elect(t, l)                       // nextIndex 8
		l.Step(aeNo(2, 1, 5, 3, 0, 1))    // rejects an AppendEntries after 3, never sent at nextIndex 8
		if rd := l.Ready(); !rd.Empty() { // nothing to retry
			t.Errorf("Ready %+v, want empty", rd)
		}
		l.Propose([]byte("x"))
		if a := appends(t, l.Ready())[2]; a == nil || a.PrevLogIndex != 7 {
			t.Errorf("to 2: %+v, want entries after 7", a)
		}
	})
}

// Leaders: "If there exists an N such that N > commitIndex, a majority of matchIndex[i] ≥ N, and log[N].term == currentTerm: set commitIndex = N."
func TestLeaders_CommitEntriesStoredOnMajority(t *testing.T) {
	n := start(t, config(1, 5, 1))
	ackAll(t, n, elect(t, n))
	n.Propose([]byte("a"))
	n.Propose([]byte("b"))
	n.Ready()
	steps := []struct {
		m         Message
		commit    int
		committed []int // indexes in Ready.Committed
	}{
		{aeOK(2, 1, 1, 2), 0, nil},      // 2 of 5 hold [1 2]
		{aeOK(3, 1, 1, 1), 1, []int{1}}, // 3 of 5 hold 1
		{aeOK(4, 1, 1, 2), 2, []int{2}}, // 3 of 5 hold 2
		{aeOK(5, 1, 1, 2), 2, nil},
	}
	for i, s := range steps {
		n.Step(s.m)
		if got := n.Status().Commit; got != s.commit {
			t.Errorf("step %d: commit %d, want %d", i, got, s.commit)
		}
		var got []int
		for _, e := range n.Ready().Committed {
			got = append(got, e.Index)
		}
		if !slices.Equal(got, s.committed) {
			t.Errorf("step %d: Ready.Committed %v, want %v", i, got, s.committed)
		}
	}
}

// Leaders: "... and log[N].term == currentTerm: set commitIndex = N" — 5.4.2, Figure 8: entries of older terms are not committed by counting replicas.
func TestLeaders_OldTermEntriesNotCommittedByCountingReplicas(t *testing.T) {
	// The leader of term 4 holds [1/1 2/2], entry 2 of a leader of term 2.
	n := restore(t, 1, 5, HardState{Term: 3, Vote: None}, ents(1, 1, 2))
	elect(t, n)
	for id := 2; id <= 5; id++ {
		n.Step(aeOK(id, 1, 4, 2)) // every server holds [1/1 2/2]
	}
	if got := n.Status().Commit; got != 0 {
		t.Fatalf("commit %d with entry 2/2 on all servers; an entry of an older term was committed by counting", got)
	}
	if rd := n.Ready(); len(rd.Committed) != 0 {
		t.Fatalf("Ready.Committed %v, want none", fmtEntries(rd.Committed))
	}
	n.Propose([]byte("x"))
	n.Ready()
	n.Step(aeOK(2, 1, 4, 3))
	if got := n.Status().Commit; got != 0 {
		t.Fatalf("commit %d with entry 3 on 2 of 5, want 0", got)
	}
	n.Step(aeOK(3, 1, 4, 3))
	if got := n.Status().Commit; got != 3 {
		t.Fatalf("commit %d with entry 3/4 on 3 of 5, want 3", got)
	}
	want := append(ents(1, 1, 2), Entry{Index: 3, Term: 4, Command: []byte("x")})
	if rd := n.Ready(); !sameEntries(rd.Committed, want) {
		t.Errorf("Ready.Committed %v, want %v (older entries committed indirectly)", fmtEntries(rd.Committed), fmtEntries(want))
	}
}

// Leaders: the leader "keeps track of the highest index it knows to be committed, and it includes that index in future AppendEntries RPCs" (5.3) — at the next tick, not at the next heartbeat, and at once with new entries.
func TestLeaders_NewCommitIndexSentAtNextTick(t *testing.T) {
	n := start(t, config(1, 3, 1))
	ackAll(t, n, elect(t, n))
	n.Propose([]byte("a"))
	n.Ready()
	n.Step(aeOK(2, 1, 1, 1)) // commits 1
	if as := appends(t, n.Ready()); len(as) != 0 {
		t.Errorf("AppendEntries %v before the next tick, want none", as)
	}
	n.Tick()
	as := appends(t, n.Ready())
	if a := as[2]; a == nil || a.LeaderCommit != 1 || len(a.Entries) != 0 || a.PrevLogIndex != 1 {
		t.Errorf("to 2: %+v, want a commit-only AppendEntries after 1 with leaderCommit 1", a)
	}
	if a := as[3]; a != nil {
		t.Errorf("to 3: %+v while its batch is in flight, want nothing", a)
	}
	n.Step(aeOK(3, 1, 1, 1))
	n.Propose([]byte("b"))
	if a := appends(t, n.Ready())[3]; a == nil || a.LeaderCommit != 1 || len(a.Entries) != 1 {
		t.Errorf("to 3: %+v, want entry 2 with leaderCommit 1", a)
	}
	n.Tick()
	if rd := n.Ready(); !rd.Empty() {
		t.Errorf("Ready %+v, want empty once every follower knows the commit index", rd)
	}
	// The follower commits on receipt.
	f := start(t, config(2, 3, 1))
	call[AppendEntriesReply](t, f, Message{From: 1, To: 2, Body: &AppendEntriesArgs{Term: 1, LeaderID: 1, Entries: logOf(n)[:1]}})
	call[AppendEntriesReply](t, f, Message{From: 1, To: 2, Body: as[2]})
	if got := f.Status().Commit; got != 1 {
		t.Errorf("follower commit %d, want 1", got)
	}
}

// Beyond Figure 2 (thesis 6.2, check-quorum): a leader that has not heard from a majority for an election timeout steps down.
func TestLeaders_StepDownWithoutMajorityForElectionTimeout(t *testing.T) {
	cases := []struct {
		name  string
		size  int
		hears []int // followers that answer
		stays bool
	}{
		{"3 servers, hears from one", 3, []int{2}, true},
		{"3 servers, hears from none", 3, nil, false},
		{"5 servers, hears from two", 5, []int{2, 5}, true},
		{"5 servers, hears from one", 5, []int{3}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := start(t, config(1, c.size, 1))
			answer := func(rd Ready) {
				for to, a := range appends(t, rd) {
					if slices.Contains(c.hears, to) {
						n.Step(aeOK(to, 1, a.Term, a.PrevLogIndex+len(a.Entries)))
					}
				}
			}
			answer(elect(t, n))
			for tick := 1; tick <= 3*electionTicks; tick++ {
				n.Tick()
				if !c.stays && tick == electionTicks {
					if n.Role() != Follower || n.Leader() != None || n.Term() != 1 {
						t.Fatalf("tick %d: %v of %d at term %d, want follower of none at term 1", tick, n.Role(), n.Leader(), n.Term())
					}
					return
				}
				if n.Role() != Leader {
					t.Fatalf("tick %d: %v, want leader", tick, n.Role())
				}
				answer(n.Ready())
			}
		})
	}
}

// Beyond Figure 2: a leader probes a follower with one batch at a time
// until the follower acknowledges one; then it streams the entries that
// follow without waiting for answers (pipelining), up to its window.
func TestLeaders_ProbeThenStream(t *testing.T) {
	cfg := config(1, 3, 1)
	cfg.MaxMsgBytes, cfg.MaxInflight = 1, 3 // one entry per batch, three batches in flight
	n := start(t, cfg)
	rd := elect(t, n)
	// Probing: the heartbeat of the election is the one message in flight
	// with nothing to send yet; a proposal goes, one batch, once answered.
	n.Propose([]byte("a"))
	n.Propose([]byte("b"))
	if got := appendsTo(n.Ready(), 2); len(got) != 1 || got[0].PrevLogIndex != 0 || len(got[0].Entries) != 1 {
		t.Fatalf("probing: %+v, want one batch (entry 1)", got)
	}
	if got := appendsTo(n.Ready(), 2); len(got) != 0 {
		t.Fatalf("probing, batch in flight: sent %+v, want nothing", got)
	}
	_ = rd
	n.Step(aeOK(2, 1, 1, 1))
	// Streaming: entries 2..5 go as three batches at once, the window.
	n.Propose([]byte("c"))
	n.Propose([]byte("d"))
	n.Propose([]byte("e"))
	got := appendsTo(n.Ready(), 2)
	if len(got) != 3 || got[0].PrevLogIndex != 1 || got[1].PrevLogIndex != 2 || got[2].PrevLogIndex != 3 {
		t.Fatalf("streaming: %d batches %+v, want 3 after 1, 2 and 3", len(got), got)
	}
	if got := appendsTo(n.Ready(), 2); len(got) != 0 {
		t.Fatalf("window full: sent %+v, want nothing", got)
	}
	// An acknowledgement of two batches makes room for the last entry.
	n.Step(aeOK(2, 1, 1, 3))
	if got := appendsTo(n.Ready(), 2); len(got) != 1 || got[0].PrevLogIndex != 4 || got[0].Entries[0].Index != 5 {
		t.Fatalf("after the acknowledgement of 3: %+v, want entry 5 after 4", got)
	}
}

// appendsTo returns the AppendEntries in rd to server id, in order.
func appendsTo(rd Ready, id int) []*AppendEntriesArgs {
	var out []*AppendEntriesArgs
	for _, m := range sent(rd) {
		if a, ok := m.Body.(*AppendEntriesArgs); ok && m.To == id {
			out = append(out, a)
		}
	}
	return out
}

// Beyond Figure 2: Config.MaxInflightBytes bounds the command bytes in
// flight to a follower the leader streams to.
func TestLeaders_WindowBoundsBytesInFlight(t *testing.T) {
	cfg := config(1, 2, 1)
	cfg.MaxMsgBytes, cfg.MaxInflightBytes = 4, 8
	n := start(t, cfg)
	ackAll(t, n, elect(t, n))
	n.Propose([]byte("x"))
	ackAll(t, n, n.Ready()) // streaming from now on
	for range 5 {
		n.Propose([]byte("aaaa"))
	}
	if got := appendsTo(n.Ready(), 2); len(got) != 2 {
		t.Fatalf("%d batches of 4 bytes sent with a window of 8 bytes, want 2", len(got))
	}
}

// Beyond Figure 2: batches in flight with no acknowledgement for a whole
// heartbeat interval are taken as lost: the leader probes again from what
// the follower matched.
func TestLeaders_UnansweredBatchesSentAgain(t *testing.T) {
	n := start(t, config(1, 3, 1))
	ackAll(t, n, elect(t, n))
	n.Propose([]byte("a"))
	ackAll(t, n, n.Ready())
	n.Propose([]byte("b"))
	n.Propose([]byte("c"))
	if got := appendsTo(n.Ready(), 3); len(got) != 1 || got[0].PrevLogIndex != 1 {
		t.Fatalf("to 3: %+v, want entries after 1", got)
	}
	// Server 2 answers, server 3 does not: within two heartbeat intervals
	// (3 did answer in the first, before the batch) the leader sends the
	// entries again, not merely heartbeats after them.
	n.Step(aeOK(2, 1, 1, 3))
	n.Ready()
	var again *AppendEntriesArgs
	for range 2 * heartbeatTicks {
		n.Tick()
		for _, a := range appendsTo(n.Ready(), 3) {
			if len(a.Entries) > 0 {
				again = a
			}
		}
	}
	if again == nil || again.PrevLogIndex != 1 || len(again.Entries) != 2 {
		t.Fatalf("to 3 within two heartbeats: %+v, want entries 2..3 again after 1", again)
	}
}

// Beyond Figure 2: Config.MaxMsgBytes bounds the command bytes of one AppendEntries; a single larger entry still travels alone.
func TestLeaders_MaxMsgBytesBoundsAppendEntries(t *testing.T) {
	cfg := config(1, 2, 1)
	cfg.MaxMsgBytes = 10
	n := start(t, cfg)
	ackAll(t, n, elect(t, n))
	n.Propose([]byte("x"))
	ackAll(t, n, n.Ready()) // streaming from now on
	for _, cmd := range []string{"aaaa", "bbbb", "cccc", "0123456789abcdef", "dd", "ee"} {
		n.Propose([]byte(cmd))
	}
	got := appendsTo(n.Ready(), 2)
	want := [][2]int{{2, 3}, {4, 4}, {5, 5}, {6, 7}} // first and last index of each batch
	if len(got) != len(want) {
		t.Fatalf("%d batches, want %d", len(got), len(want))
	}
	for k, a := range got {
		if len(a.Entries) == 0 || a.Entries[0].Index != want[k][0] || a.Entries[len(a.Entries)-1].Index != want[k][1] {
			t.Errorf("batch %d: %v, want entries %d..%d", k, fmtEntries(a.Entries), want[k][0], want[k][1])
		}
	}
}

// Raft thesis 10.2.1: with AsyncSave, a leader sends its entries while it
// saves them, and counts its own log towards a commit only once Saved says
// they are durable; a RequestVote waits for the candidate's state to be
// saved.
func TestAsyncSave_LeaderCountsItsLogOnceSaved(t *testing.T) {
	cfg := config(1, 3, 1)
	cfg.AsyncSave = true
	n := start(t, cfg)
	ticksToCampaign(t, n)
	rd := n.Ready()
	if len(rd.Messages) != 0 || len(rd.AfterSave) != 2 {
		t.Fatalf("campaign: %d messages to send now, %d after the save; want 0 and 2 RequestVotes", len(rd.Messages), len(rd.AfterSave))
	}
	n.Step(vote(2, 1, 1, true))
	rd = n.Ready()
	if n.Role() != Leader || len(rd.Messages) != 2 || len(rd.AfterSave) != 0 {
		t.Fatalf("elected: %v, %d messages now, %d after save; want leader with 2 heartbeats now", n.Role(), len(rd.Messages), len(rd.AfterSave))
	}
	n.Propose([]byte("a"))
	rd = n.Ready()
	if len(rd.Entries) != 1 || len(appendsTo(rd, 2)) != 1 {
		t.Fatalf("propose: %d entries to save, %d AppendEntries to 2 to send now; want 1 and 1", len(rd.Entries), len(appendsTo(rd, 2)))
	}
	n.Step(aeOK(3, 1, 1, 1)) // one follower and the leader would be a majority...
	if c := n.Status().Commit; c != 0 {
		t.Fatalf("commit %d before the leader's entry is saved, want 0", c)
	}
	n.Saved(1, 1) // ...once the leader's own entry is durable
	if c := n.Status().Commit; c != 1 {
		t.Fatalf("commit %d once saved, want 1", c)
	}
	n.Saved(7, 1) // an index the log does not hold changes nothing
	if rd := n.Ready(); len(rd.Committed) != 1 {
		t.Fatalf("committed %v, want entry 1", fmtEntries(rd.Committed))
	}
}

// ---------------------------------------------------------------------------
// Ready, restart, configuration, message filtering

// Ready: "save HardState and Entries (if MustSave), then send Messages" — each Ready holds the state its messages and its Step replies depend on.
func TestReady_StateToSaveComesBeforeMessages(t *testing.T) {
	nodes := map[int]*Node{}
	stores := map[int]*storage{}
	for id := 1; id <= 3; id++ {
		nodes[id] = start(t, config(id, 3, uint64(id)))
		stores[id] = &storage{}
	}
	// handle saves a Ready and checks that what it sends or applies is saved.
	handle := func(id int) Ready {
		t.Helper()
		rd := nodes[id].Ready()
		s := stores[id]
		s.save(rd)
		for _, m := range sent(rd) {
			switch a := m.Body.(type) {
			case *RequestVoteArgs:
				if s.hs.Term != a.Term || s.hs.Vote != id {
					t.Errorf("S%d sends RequestVote of term %d with %+v saved", id, a.Term, s.hs)
				}
			case *AppendEntriesArgs:
				if s.hs.Term != a.Term || !s.holds(a.Entries) {
					t.Errorf("S%d sends entries %v of term %d with %+v and log %v saved", id, fmtEntries(a.Entries), a.Term, s.hs, fmtEntries(s.log))
				}
			}
		}
		if !s.holds(rd.Committed) {
			t.Errorf("S%d applies %v with log %v saved", id, fmtEntries(rd.Committed), fmtEntries(s.log))
		}
		return rd
	}
	// deliver steps m into its recipient, handles the recipient's Ready,
	// checks the reply against what is saved, and steps the reply back.
	deliver := func(m Message) {
		t.Helper()
		reply, ok := nodes[m.To].Step(m)
		handle(m.To)
		if !ok {
			t.Fatalf("S%d gave no reply to %T from %d", m.To, m.Body, m.From)
		}
		s := stores[m.To]
		switch r := reply.Body.(type) {
		case *RequestVoteReply:
			if r.VoteGranted && s.hs != (HardState{Term: r.Term, Vote: m.From}) {
				t.Errorf("S%d grants its vote to %d with %+v saved", m.To, m.From, s.hs)
			}
		case *AppendEntriesReply:
			if r.Success && !s.holds(nodes[m.From].log.slice(1, r.Index+1)) {
				t.Errorf("S%d acknowledges entries up to %d with log %v saved", m.To, r.Index, fmtEntries(s.log))
			}
		}
		nodes[m.From].Step(reply)
	}
	ticksToCampaign(t, nodes[1])
	for _, m := range sent(handle(1)) {
		deliver(m)
	}
	if nodes[1].Role() != Leader {
		t.Fatalf("S1 is %v, want leader", nodes[1].Role())
	}
	nodes[1].Propose([]byte("a"))
	nodes[1].Propose([]byte("b"))
	for round := 0; round < 3; round++ {
		for _, m := range sent(handle(1)) {
			deliver(m)
		}
	}
	if got := len(stores[1].log); got != 2 || nodes[1].Status().Commit != 2 {
		t.Errorf("S1 saved %d entries, commit %d; want 2, 2", got, nodes[1].Status().Commit)
	}
}

// Ready: a vote granted in the current term, with no change of term, is
// state to save: the next Ready must hold it (else a crash forgets it and
// the server can vote twice in the term).
func TestReady_VoteWithoutTermChangeIsSaved(t *testing.T) {
	n := restore(t, 1, 3, HardState{Term: 3, Vote: None}, nil)
	n.Ready()
	if r := call[RequestVoteReply](t, n, rv(2, 1, 3, 0, 0)); !r.VoteGranted {
		t.Fatalf("vote refused: %+v", *r)
	}
	rd := n.Ready()
	if !rd.MustSave() || rd.HardState != (HardState{Term: 3, Vote: 2}) {
		t.Fatalf("Ready after the vote: HardState %+v, MustSave %v; want term 3 vote 2 to save", rd.HardState, rd.MustSave())
	}
	if rd = n.Ready(); rd.MustSave() {
		t.Errorf("the vote is to be saved again: %+v", rd.HardState)
	}
}

// Ready: "Committed []Entry // newly committed entries, in log order" — each committed entry is handed out exactly once.
func TestReady_CommittedListsNewlyCommittedEntriesOnce(t *testing.T) {
	n := restore(t, 1, 3, HardState{Term: 1, Vote: None}, nil)
	steps := []struct {
		m         *Message
		committed []Entry
	}{
		{ptr(ae(2, 1, 1, 0, 0, 2, ents(1, 1, 1, 1, 1, 1))), ents(1, 1, 1)},
		{nil, nil}, // Ready again
		{ptr(ae(2, 1, 1, 5, 1, 4, nil)), ents(3, 1, 1)},
		{ptr(ae(2, 1, 1, 5, 1, 4, nil)), nil}, // the same commit index again
		{ptr(ae(2, 1, 1, 5, 1, 5, nil)), ents(5, 1)},
	}
	var all []Entry
	for i, s := range steps {
		if s.m != nil {
			call[AppendEntriesReply](t, n, *s.m)
		}
		rd := n.Ready()
		if !sameEntries(rd.Committed, s.committed) {
			t.Errorf("step %d: Ready.Committed %v, want %v", i, fmtEntries(rd.Committed), fmtEntries(s.committed))
		}
		all = append(all, rd.Committed...)
	}
	if !sameEntries(all, logOf(n)) {
		t.Errorf("all committed %v, want the log %v", fmtEntries(all), fmtEntries(logOf(n)))
	}
}

// Ready: "Empty reports whether the Ready has nothing to do" — after nothing happened, it has nothing to do.
func TestReady_EmptyWhenNothingHappened(t *testing.T) {
	cases := []struct {
		name string
		make func(t *testing.T) *Node // returns a node with nothing new to report
	}{
		{"new node", func(t *testing.T) *Node { return start(t, config(1, 3, 1)) }},
		{"restarted node", func(t *testing.T) *Node {
			return restore(t, 1, 3, HardState{Term: 4, Vote: 2}, ents(1, 1, 4))
		}},
		{"follower after a tick", func(t *testing.T) *Node {
			n := start(t, config(1, 3, 1))
			n.Tick()
			return n
		}},
		{"follower after a stale AppendEntries", func(t *testing.T) *Node {
			n := restore(t, 1, 3, HardState{Term: 4, Vote: 2}, nil)
			n.Step(ae(2, 1, 3, 0, 0, 0, nil))
			return n
		}},
		{"follower after handling a heartbeat", func(t *testing.T) *Node {
			n := restore(t, 1, 3, HardState{Term: 4, Vote: 2}, nil)
			n.Step(ae(2, 1, 4, 0, 0, 0, nil))
			n.Ready()
			return n
		}},
		{"leader between heartbeats", func(t *testing.T) *Node {
			n := start(t, config(1, 3, 1))
			ackAll(t, n, elect(t, n))
			n.Tick()
			return n
		}},
		{"leader after its proposals are handled", func(t *testing.T) *Node {
			n := start(t, config(1, 3, 1))
			ackAll(t, n, elect(t, n))
			n.Propose([]byte("a"))
			n.Ready()
			return n
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := c.make(t)
			if rd := n.Ready(); !rd.Empty() || rd.MustSave() {
				t.Errorf("Ready %+v, want empty", rd)
			}
		})
	}
}

// Persistent state on all servers: currentTerm, votedFor, log[] are "updated on stable storage before responding to RPCs" — and a restarted server keeps them.
func TestRestart_KeepsTermVoteAndLog(t *testing.T) {
	n := start(t, config(1, 3, 1))
	var s storage
	call[RequestVoteReply](t, n, rv(2, 1, 2, 0, 0))
	s.save(n.Ready())
	call[AppendEntriesReply](t, n, ae(2, 1, 2, 0, 0, 0, ents(1, 2, 2)))
	s.save(n.Ready())

	cfg := config(1, 3, 2)
	cfg.State, cfg.Log = s.hs, s.log
	m := start(t, cfg)
	if hardState(m) != (HardState{Term: 2, Vote: 2}) || m.Role() != Follower || !sameEntries(logOf(m), ents(1, 2, 2)) {
		t.Fatalf("restarted as %v with %+v and log %v; want follower with {2 2}, [1/2 2/2]", m.Role(), hardState(m), fmtEntries(logOf(m)))
	}
	if rd := m.Ready(); !rd.Empty() {
		t.Errorf("first Ready %+v, want empty: nothing new to save", rd)
	}
	if r := call[RequestVoteReply](t, m, rv(3, 1, 2, 2, 2)); r.VoteGranted {
		t.Errorf("voted again in term 2, for 3")
	}
	if r := call[RequestVoteReply](t, m, rv(2, 1, 2, 2, 2)); !r.VoteGranted {
		t.Errorf("refused its own vote of term 2 to 2 asking again")
	}
	ticksToCampaign(t, m)
	rd := m.Ready()
	if len(sent(rd)) != 2 {
		t.Fatalf("%d messages after campaigning, want 2", len(sent(rd)))
	}
	for _, msg := range sent(rd) {
		if a, ok := msg.Body.(*RequestVoteArgs); !ok || *a != (RequestVoteArgs{Term: 3, CandidateID: 1, LastLogIndex: 2, LastLogTerm: 2}) {
			t.Errorf("message %+v, want RequestVote of term 3 with last log 2/2", msg.Body)
		}
	}
}

// New rejects a configuration it cannot run: ID not among Peers, bad timing, no random source, or an inconsistent saved log.
func TestNew_RejectsBadConfig(t *testing.T) {
	cases := []struct {
		name string
		mod  func(c *Config)
	}{
		{"ID not among peers", func(c *Config) { c.ID = 4 }},
		{"HeartbeatTicks equal to ElectionTicks", func(c *Config) { c.HeartbeatTicks = c.ElectionTicks }},
		{"HeartbeatTicks above ElectionTicks", func(c *Config) { c.HeartbeatTicks = c.ElectionTicks + 1 }},
		{"HeartbeatTicks zero", func(c *Config) { c.HeartbeatTicks = 0 }},
		{"ElectionTicks zero", func(c *Config) { c.ElectionTicks = 0 }},
		{"nil Rand", func(c *Config) { c.Rand = nil }},
		{"log not starting at 1", func(c *Config) { c.State.Term, c.Log = 1, ents(2, 1) }},
		{"log index gap", func(c *Config) { c.State.Term, c.Log = 1, []Entry{{Index: 1, Term: 1}, {Index: 3, Term: 1}} }},
		{"log term beyond the current term", func(c *Config) { c.State.Term, c.Log = 1, ents(1, 1, 2) }},
		{"log terms decreasing", func(c *Config) { c.State.Term, c.Log = 3, ents(1, 2, 1) }},
		{"log entry of term 0", func(c *Config) { c.State.Term, c.Log = 1, ents(1, 0) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := config(1, 3, 1)
			c.mod(&cfg)
			if n, err := New(cfg); err == nil || n != nil {
				t.Errorf("New = %v, %v; want an error", n, err)
			}
		})
	}
	t.Run("valid control", func(t *testing.T) {
		cfg := config(1, 3, 1)
		cfg.State, cfg.Log = HardState{Term: 3, Vote: 1}, ents(1, 1, 1, 3)
		if _, err := New(cfg); err != nil {
			t.Errorf("New: %v", err)
		}
	})
}

// Step drops a message from itself, from a negative ID, or addressed to
// another server. (Messages from servers outside the configuration are
// handled: see membership_test.go.)
func TestStep_DropsMessagesFromItselfOrForOthers(t *testing.T) {
	cases := []struct {
		name string
		m    Message
	}{
		{"RequestVote from a negative ID", rv(-2, 1, 5, 0, 0)},
		{"message from itself", rv(1, 1, 5, 0, 0)},
		{"RequestVote for another server", rv(2, 3, 5, 0, 0)},
		{"AppendEntries for another server", ae(2, 3, 5, 0, 0, 0, ents(1, 5))},
		{"unknown body", Message{From: 2, To: 1, Body: "hello"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := restore(t, 1, 3, HardState{Term: 2, Vote: None}, nil)
			if reply, ok := n.Step(c.m); ok {
				t.Errorf("Step answered %+v", reply)
			}
			if hardState(n) != (HardState{Term: 2, Vote: None}) || n.Leader() != None || n.Status().LastLog != 0 {
				t.Errorf("state changed: %+v, leader %d, last log %d", hardState(n), n.Leader(), n.Status().LastLog)
			}
			if rd := n.Ready(); !rd.Empty() {
				t.Errorf("Ready %+v, want empty", rd)
			}
		})
	}
}
