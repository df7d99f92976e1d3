package core

import (
	"errors"
	"testing"
)

// readyLeader returns server 1 of a cluster of size voters, leader of term
// 1 with entry 1 of its term committed on every server.
func readyLeader(t *testing.T, size int) *Node {
	t.Helper()
	n := start(t, config(1, size, 1))
	elect(t, n)
	if _, _, ok := n.Propose([]byte("x")); !ok {
		t.Fatal("Propose refused on the leader")
	}
	ackAll(t, n, n.Ready())
	if n.commit != 1 {
		t.Fatalf("commit %d after every server acknowledged entry 1", n.commit)
	}
	n.Ready()
	return n
}

// change proposes c on leader n, failing the test if it refuses, and
// saves the entry: it returns its index and the Ready that holds it.
func change(t *testing.T, n *Node, c Change) (int, Ready) {
	t.Helper()
	index, _, err := n.ProposeChange(c)
	if err != nil {
		t.Fatalf("ProposeChange(%+v): %v", c, err)
	}
	return index, n.Ready()
}

// ack has follower from acknowledge n's log up to index.
func ack(n *Node, from, index int) { n.Step(aeOK(from, n.ID(), n.Term(), index)) }

func TestMembership_EncodingRoundTripsAndRefusesDamage(t *testing.T) {
	m := Membership{Members: []Member{{ID: 0, Addr: "a:1"}, {ID: 2, Addr: "b:2", Learner: true}, {ID: 7, Addr: ""}}}
	b, err := m.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeMembership(b)
	if err != nil || !got.Equal(m) {
		t.Fatalf("decode: %v, %v; want %v", got, err, m)
	}
	for cut := 0; cut < len(b); cut++ {
		if _, err := DecodeMembership(b[:cut]); err == nil {
			t.Errorf("decoded %d of %d bytes without an error", cut, len(b))
		}
	}
	bad := map[string]Membership{
		"out of order": {Members: []Member{{ID: 2}, {ID: 1}}},
		"twice":        {Members: []Member{{ID: 1}, {ID: 1}}},
		"no voter":     {Members: []Member{{ID: 1, Learner: true}}},
	}
	for name, m := range bad {
		b, _ := m.AppendBinary(nil)
		if _, err := DecodeMembership(b); err == nil {
			t.Errorf("%s: decoded without an error", name)
		}
	}
	if _, err := DecodeMembership(append(b, 0)); err == nil {
		t.Error("stray byte decoded without an error")
	}
}

// Thesis 4.1: a configuration takes effect as soon as it is in the log; a
// learner gets the log, and its acknowledgements do not count.
func TestMembership_LearnerReplicatedButNotCounted(t *testing.T) {
	n := readyLeader(t, 3)
	i, rd := change(t, n, Change{Type: AddLearner, ID: 4, Addr: "d:4"})
	if m, idx, committed := n.Membership(); !m.Equal(Membership{Members: []Member{{ID: 1}, {ID: 2}, {ID: 3}, {ID: 4, Addr: "d:4", Learner: true}}}) || idx != i || committed {
		t.Fatalf("Membership() = %v at %d committed %v; want 4 as learner at %d, uncommitted", m, idx, committed, i)
	}
	if a := appends(t, rd)[4]; a == nil {
		t.Fatal("no AppendEntries to the new learner")
	}
	ack(n, 4, i)
	if n.commit >= i {
		t.Fatalf("committed %d with the learner's acknowledgement alone", n.commit)
	}
	ack(n, 2, i)
	if n.commit != i {
		t.Fatalf("commit %d, want %d after a voter's acknowledgement", n.commit, i)
	}
	if _, _, committed := n.Membership(); !committed {
		t.Fatal("configuration not committed")
	}
}

// Only one change at a time (thesis 4.1), and not before the leader has
// committed an entry of its term.
func TestMembership_OneChangeAtATimeAfterOwnCommit(t *testing.T) {
	n := start(t, config(1, 3, 1))
	elect(t, n)
	if _, _, err := n.ProposeChange(Change{Type: AddLearner, ID: 4}); !errors.Is(err, ErrLeaderNotReady) {
		t.Fatalf("change before an entry of the term committed: %v, want ErrLeaderNotReady", err)
	}
	n = readyLeader(t, 3)
	i, _ := change(t, n, Change{Type: AddLearner, ID: 4})
	if _, _, err := n.ProposeChange(Change{Type: AddLearner, ID: 5}); !errors.Is(err, ErrChangeInProgress) {
		t.Fatalf("second change: %v, want ErrChangeInProgress", err)
	}
	ack(n, 2, i)
	change(t, n, Change{Type: AddLearner, ID: 5})

	f := restore(t, 2, 3, HardState{Term: 1}, nil)
	if _, _, err := f.ProposeChange(Change{Type: AddLearner, ID: 4}); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("change on a follower: %v, want ErrNotLeader", err)
	}
}

func TestMembership_RefusedChanges(t *testing.T) {
	n := readyLeader(t, 1)
	for _, c := range []Change{
		{Type: AddLearner, ID: 1},
		{Type: Promote, ID: 1},
		{Type: Promote, ID: 9},
		{Type: Remove, ID: 9},
		{Type: Remove, ID: 1}, // the last voter
		{Type: AddLearner, ID: -3},
		{Type: 77, ID: 3},
	} {
		if _, _, err := n.ProposeChange(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if n.log.lastIndex() != 1 {
		t.Fatalf("refused changes appended entries: last index %d", n.log.lastIndex())
	}
}

// Promoting a learner is a checked step: it must hold the leader's
// committed log.
func TestMembership_PromoteOnlyCaughtUpLearner(t *testing.T) {
	n := readyLeader(t, 3)
	i, _ := change(t, n, Change{Type: AddLearner, ID: 4})
	ack(n, 2, i)
	if _, _, err := n.ProposeChange(Change{Type: Promote, ID: 4}); !errors.Is(err, ErrNotCaughtUp) {
		t.Fatalf("promote a learner with nothing: %v, want ErrNotCaughtUp", err)
	}
	ack(n, 4, i)
	j, _ := change(t, n, Change{Type: Promote, ID: 4})
	// 4 voters: a majority is 3.
	ack(n, 2, j)
	if n.commit >= j {
		t.Fatal("committed with 2 of 4 voters")
	}
	ack(n, 4, j)
	if n.commit != j {
		t.Fatalf("commit %d, want %d with 3 of 4 voters", n.commit, j)
	}
}

// Removing a voter shrinks the majority at once (thesis 4.1).
func TestMembership_RemoveShrinksMajority(t *testing.T) {
	n := readyLeader(t, 4)
	i, rd := change(t, n, Change{Type: Remove, ID: 4})
	if appends(t, rd)[4] == nil {
		t.Fatal("the removed server does not get its removal")
	}
	ack(n, 2, i) // 2 of the 3 remaining voters
	if n.commit != i {
		t.Fatalf("commit %d, want %d", n.commit, i)
	}
	// Once the removal commits, a last heartbeat tells the server so, and
	// the leader stops replicating to it.
	if a := appends(t, n.Ready())[4]; a == nil || a.LeaderCommit != i || n.progress[4] != nil {
		t.Fatalf("after the removal committed: AppendEntries %+v to the removed server, progress %v; want one last heartbeat with commit %d, then none", a, n.progress[4], i)
	}
	for k := 0; k < 3*heartbeatTicks; k++ {
		n.Tick()
	}
	if a := appends(t, n.Ready())[4]; a != nil {
		t.Fatalf("still sending to the removed server: %+v", a)
	}
}

// A server that was down while its removal committed learns of it when it
// comes back: its pre-vote makes the leader send it the log, through the
// committed configuration that leaves it out, and the leader then stops.
func TestMembership_RemovedWhileDownLearnsOnReturn(t *testing.T) {
	n := readyLeader(t, 4)
	i, _ := change(t, n, Change{Type: Remove, ID: 4})
	ack(n, 2, i)
	ack(n, 3, i)
	if n.commit != i {
		t.Fatalf("commit %d, want %d", n.commit, i)
	}
	n.Ready() // the last heartbeat to 4, which is down: lost
	if n.progress[4] != nil {
		t.Fatal("the leader still replicates to the removed server")
	}

	// 4 restarts with entry 1 only, still a voter of the initial
	// configuration, and asks for votes.
	cfg := config(4, 4, 1)
	cfg.State, cfg.Log, cfg.PreVote = HardState{Term: 1}, ents(1, 1), true
	s4 := start(t, cfg)
	var pre Message
	for k := 0; k < 4*electionTicks && pre.Body == nil; k++ {
		s4.Tick()
		for _, m := range sent(s4.Ready()) {
			if a, ok := m.Body.(*RequestVoteArgs); ok && m.To == 1 && a.PreVote {
				pre = m
			}
		}
	}
	if pre.Body == nil {
		t.Fatal("the returning server sent the leader no pre-vote")
	}
	if r := call[RequestVoteReply](t, n, pre); r.VoteGranted {
		t.Fatal("the leader granted a pre-vote")
	}
	for round := 0; round < 10 && n.progress[4] != nil; round++ {
		for _, m := range sent(n.Ready()) {
			if m.To != 4 {
				continue
			}
			if reply, ok := s4.Step(m); ok {
				s4.Ready()
				n.Step(reply)
			}
		}
	}
	m, index, committed := s4.Membership()
	if _, in := m.Find(4); in || index != i || !committed {
		t.Fatalf("the returning server's configuration is %v at %d (committed %v), want the removal at %d, committed", m, index, committed, i)
	}
	if n.progress[4] != nil {
		t.Fatal("the leader still replicates to the removed server once it holds its removal")
	}
	if s4.canCampaign() {
		t.Fatal("the removed server may still campaign")
	}
	// It counts for nothing meanwhile: the three remaining voters decide.
	if n.conf().IsVoter(4) {
		t.Fatal("the removed server is a voter again")
	}
}

// A server whose latest configuration removes it, not committed yet, may
// still campaign if it was a voter before: its log may be the only one a
// majority of the new configuration can elect (the leader that appended
// its own removal and then lost the leadership). It counts no vote of its
// own.
func TestMembership_RemovedByUncommittedConfigMayCampaign(t *testing.T) {
	next, _ := voters(1, 2, 3).apply(Change{Type: Remove, ID: 1})
	b, _ := next.AppendBinary(nil)
	cfg := config(1, 3, 1)
	cfg.State = HardState{Term: 1}
	cfg.Log = []Entry{{Index: 1, Term: 1, Type: EntryConfig, Command: b}}
	n := start(t, cfg)
	ticksToCampaign(t, n)
	n.Step(vote(2, 1, n.Term(), true))
	if n.Role() == Leader {
		t.Fatal("leader with one vote of {2 3}: it counted its own")
	}
	n.Step(vote(3, 1, n.Term(), true))
	if n.Role() != Leader {
		t.Fatalf("%v with the votes of 2 and 3, want leader", n.Role())
	}
	// Once the removal is committed, it never campaigns.
	cfg.Log = append(cfg.Log, Entry{Index: 2, Term: 1})
	f := start(t, cfg)
	f.Step(ae(2, 1, 1, 2, 1, 2, nil))
	f.Ready()
	for k := 0; k < 10*electionTicks; k++ {
		f.Tick()
	}
	if f.Term() != 1 {
		t.Fatalf("campaigned (term %d) after its removal committed", f.Term())
	}
}

// Learners and servers outside the configuration never start elections,
// and their votes never count.
func TestMembership_NonVotersNeitherStandNorCount(t *testing.T) {
	cfg := config(4, 3, 1)
	cfg.Peers = nil
	cfg.Membership = Membership{Members: []Member{{ID: 1}, {ID: 2}, {ID: 3}, {ID: 4, Learner: true}}}
	l := start(t, cfg)
	joiner := config(5, 3, 1)
	joiner.Peers = nil
	j := start(t, joiner)
	for i := 0; i < 10*electionTicks; i++ {
		l.Tick()
		j.Tick()
	}
	if l.Term() != 0 || j.Term() != 0 || len(sent(l.Ready())) != 0 || len(sent(j.Ready())) != 0 {
		t.Fatalf("a learner or a joiner campaigned: terms %d, %d", l.Term(), j.Term())
	}
	if r := call[TimeoutNowReply](t, l, Message{From: 1, To: 4, Body: &TimeoutNowArgs{Term: 1, LeaderID: 1}}); r.Term != 0 || l.Role() != Follower {
		t.Fatal("a learner campaigned on TimeoutNow")
	}

	c := start(t, config(1, 3, 1))
	ticksToCampaign(t, c)
	c.Ready()
	c.Step(vote(4, 1, c.Term(), true))
	c.Step(vote(9, 1, c.Term(), true))
	if c.Role() == Leader {
		t.Fatal("became leader on the votes of servers that are not voters")
	}
	c.Step(vote(2, 1, c.Term(), true))
	if c.Role() != Leader {
		t.Fatal("not leader with 2 of 3 voters")
	}
}

// A follower uses the latest configuration in its log, committed or not,
// and goes back to the one before when the entry holding it is replaced
// (thesis 4.1).
func TestMembership_FollowerTakesConfigOnAppendAndRevertsOnTruncation(t *testing.T) {
	f := restore(t, 2, 3, HardState{Term: 1}, nil)
	next, _ := voters(1, 2, 3).apply(Change{Type: Remove, ID: 3})
	b, _ := next.AppendBinary(nil)
	conf := Entry{Index: 1, Term: 1, Type: EntryConfig, Command: b}
	if r := call[AppendEntriesReply](t, f, ae(1, 2, 1, 0, 0, 0, []Entry{conf})); !r.Success {
		t.Fatal("refused the configuration entry")
	}
	if m, i, committed := f.Membership(); !m.Equal(next) || i != 1 || committed {
		t.Fatalf("Membership() = %v at %d (committed %v), want %v at 1, uncommitted", m, i, committed, next)
	}
	// A new leader of term 2 replaces entry 1.
	if r := call[AppendEntriesReply](t, f, ae(3, 2, 2, 0, 0, 0, ents(1, 2))); !r.Success {
		t.Fatal("refused the new leader's entries")
	}
	if m, i, _ := f.Membership(); !m.Equal(voters(1, 2, 3)) || i != 0 {
		t.Fatalf("after truncation: %v at %d, want the initial %v", m, i, voters(1, 2, 3))
	}
	// A malformed configuration entry is refused, changing nothing.
	bad := Entry{Index: 2, Term: 2, Type: EntryConfig, Command: []byte{9, 9}}
	if r := call[AppendEntriesReply](t, f, ae(3, 2, 2, 1, 2, 0, []Entry{bad})); r.Success || f.log.lastIndex() != 1 {
		t.Fatalf("malformed configuration entry accepted: %+v", r)
	}
}

// A restarted server takes its configuration from its log, then from its
// snapshot, before the initial one.
func TestMembership_RestartTakesConfigFromLogThenSnapshot(t *testing.T) {
	m3 := voters(1, 2, 3)
	m2 := voters(1, 2)
	b, _ := m2.AppendBinary(nil)
	cfg := config(1, 5, 1)
	cfg.State = HardState{Term: 2}
	cfg.Snapshot = SnapshotMeta{Index: 4, Term: 1, Membership: m3}
	cfg.Log = []Entry{{Index: 5, Term: 2}, {Index: 6, Term: 2, Type: EntryConfig, Command: b}}
	n := start(t, cfg)
	if m, i, _ := n.Membership(); !m.Equal(m2) || i != 6 {
		t.Fatalf("Membership() = %v at %d, want %v at 6", m, i, m2)
	}
	cfg.Log = cfg.Log[:1]
	n = start(t, cfg)
	if m, i, _ := n.Membership(); !m.Equal(m3) || i != 4 {
		t.Fatalf("Membership() = %v at %d, want the snapshot's %v at 4", m, i, m3)
	}
	cfg.Log = []Entry{{Index: 5, Term: 2, Type: EntryConfig, Command: []byte{1, 1}}}
	if _, err := New(cfg); err == nil {
		t.Fatal("New accepted a saved log with a malformed configuration")
	}
}

// Compacting keeps the configuration as of the snapshot, which travels
// with InstallSnapshot (Figure 13's last config) and becomes the
// receiver's.
func TestMembership_SnapshotCarriesConfig(t *testing.T) {
	n := readyLeader(t, 3)
	i, _ := change(t, n, Change{Type: AddLearner, ID: 4, Addr: "d:4"})
	ack(n, 2, i)
	want, _, _ := n.Membership()
	n.Ready()
	if err := n.Compact(i); err != nil {
		t.Fatal(err)
	}
	if !n.snapConf.Equal(want) || len(n.confs) != 0 {
		t.Fatalf("after compaction: snapshot configuration %v, log configurations %v; want %v", n.snapConf, n.confs, want)
	}
	// The learner refuses the first probe: it holds nothing.
	for k := 0; k < heartbeatTicks; k++ {
		n.Tick()
	}
	n.Step(aeNo(4, 1, 1, i, 0, 1))
	var snap *InstallSnapshotArgs
	for _, m := range sent(n.Ready()) {
		if a, ok := m.Body.(*InstallSnapshotArgs); ok && m.To == 4 {
			snap = a
		}
	}
	if snap == nil || !snap.Membership.Equal(want) {
		t.Fatalf("snapshot to the learner: %+v, want one with %v", snap, want)
	}
	joiner := config(4, 3, 1)
	joiner.Peers = nil
	j := start(t, joiner)
	if r := call[InstallSnapshotReply](t, j, Message{From: 1, To: 4, Body: snap}); r.Index != i {
		t.Fatalf("reply %+v, want index %d", r, i)
	}
	rd := j.Ready()
	if m, _, _ := j.Membership(); !m.Equal(want) || rd.Snapshot == nil || !rd.Snapshot.Membership.Equal(want) {
		t.Fatalf("joiner's configuration %v, Ready.Snapshot %+v; want %v", m, rd.Snapshot, want)
	}
}

// A leader that removes itself manages the cluster until the change
// commits, without counting itself, then hands the leadership to the most
// up-to-date voter and steps down (thesis 4.2.2).
func TestMembership_LeaderRemovingItselfHandsOver(t *testing.T) {
	n := readyLeader(t, 3)
	i, _ := change(t, n, Change{Type: Remove, ID: 1})
	if _, _, ok := n.Propose([]byte("y")); !ok {
		t.Fatal("the leader refused a command before its removal committed")
	}
	n.Ready()
	ack(n, 2, i)
	if n.commit >= i {
		t.Fatal("committed with the leader counted: it is not in the new configuration")
	}
	ack(n, 3, i+1)
	if n.commit != i {
		t.Fatalf("commit %d, want %d: on both remaining voters", n.commit, i)
	}
	if n.Transferee() != 3 {
		t.Fatalf("transferee %d, want 3 (the most up-to-date voter)", n.Transferee())
	}
	var timeoutNow bool
	for _, m := range sent(n.Ready()) {
		if _, ok := m.Body.(*TimeoutNowArgs); ok && m.To == 3 {
			timeoutNow = true
		}
	}
	if !timeoutNow {
		t.Fatal("no TimeoutNow to server 3")
	}
	if _, _, ok := n.Propose([]byte("z")); ok {
		t.Fatal("a removed leader accepted a command")
	}
	// Nobody takes over: it steps down anyway after an election timeout,
	// and never campaigns again.
	for k := 0; k < 10*electionTicks; k++ {
		n.Tick()
	}
	if n.Role() != Follower || n.Term() != 1 {
		t.Fatalf("removed leader is %v in term %d, want a follower of term 1", n.Role(), n.Term())
	}
}

// A server that is the only voter leads as soon as it campaigns, before
// its new term and vote are saved: what it sends waits for the save.
func TestMembership_LoneVoterSendsAfterSave(t *testing.T) {
	cfg := config(1, 1, 1)
	cfg.Peers = nil
	cfg.Membership = Membership{Members: []Member{{ID: 1}, {ID: 2, Learner: true}}}
	cfg.AsyncSave = true
	n := start(t, cfg)
	ticksToCampaign(t, n)
	if n.Role() != Leader {
		t.Fatalf("%v, want leader: it is the only voter", n.Role())
	}
	rd := n.Ready()
	if len(rd.Messages) != 0 || len(rd.AfterSave) == 0 || !rd.MustSave() {
		t.Fatalf("Messages %v, AfterSave %v: want every message after the save of term %d", rd.Messages, rd.AfterSave, n.Term())
	}
}

// A server that joins and has no configuration yet grants no vote, nor
// pre-vote: it holds nothing to vouch for.
func TestMembership_JoinerWithoutConfigDoesNotVote(t *testing.T) {
	cfg := config(4, 3, 1)
	cfg.Peers, cfg.State = nil, HardState{Vote: None}
	j := start(t, cfg)
	for _, pre := range []bool{false, true} {
		m := rv(1, 4, 1, 5, 1)
		m.Body.(*RequestVoteArgs).PreVote = pre
		if r := call[RequestVoteReply](t, j, m); r.VoteGranted {
			t.Fatalf("granted (pre-vote %v) without a configuration", pre)
		}
	}
	if j.Vote() != None {
		t.Fatalf("voted for %d", j.Vote())
	}
}
