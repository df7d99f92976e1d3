package core

import (
	"slices"
	"strings"
	"testing"
)

// leaseTicks is the lease of the tests' leaders: below electionTicks.
const leaseTicks = 7

// leaseConfig is the configuration of server id of 1..size with PreVote,
// NoOp and a lease of leaseTicks.
func leaseConfig(id, size int) Config {
	cfg := preVoteConfig(id, size, 1)
	cfg.NoOp, cfg.LeaseTicks = true, leaseTicks
	return cfg
}

// leaseLeader returns server 1 of size servers with a lease, elected in
// term 1 (pre-votes and votes from servers 2.. as needed), its no-op at
// index 1 committed by followers 2 and 3, and its first Readys taken.
func leaseLeader(t *testing.T, size int) *Node {
	t.Helper()
	n := start(t, leaseConfig(1, size))
	ticksToPreCampaign(t, n)
	for f := 2; n.Role() == PreCandidate; f++ {
		n.Step(Message{From: f, To: 1, Body: &RequestVoteReply{Term: 1, VoteGranted: true, PreVote: true}})
	}
	n.Ready()
	for f := 2; n.Role() == Candidate; f++ {
		n.Step(vote(f, 1, 1, true))
	}
	if n.Role() != Leader {
		t.Fatalf("%v after a majority of votes, want leader", n.Role())
	}
	n.Ready()
	for f := 2; f <= size/2+1; f++ {
		n.Step(aeOK(f, 1, 1, 1))
	}
	n.Ready()
	if n.Status().Commit != 1 {
		t.Fatalf("commit %d, want the no-op at 1 committed", n.Status().Commit)
	}
	return n
}

// readRound starts read id on leader n and returns the heartbeat round it
// started, failing the test if it was served at once.
func readRound(t *testing.T, n *Node, id uint64) uint64 {
	t.Helper()
	if !n.ReadIndex(id) {
		t.Fatal("ReadIndex refused on the leader")
	}
	rd := n.Ready()
	if len(rd.ReadStates) != 0 {
		t.Fatalf("read %d served at once (%+v): no lease was expected", id, rd.ReadStates)
	}
	return roundOf(t, rd, 2)
}

// servedAtOnce starts read id on leader n and reports whether it came
// out in the next Ready, at the commit index, with no AppendEntries sent.
func servedAtOnce(t *testing.T, n *Node, id uint64) bool {
	t.Helper()
	if !n.ReadIndex(id) {
		t.Fatal("ReadIndex refused on the leader")
	}
	rd := n.Ready()
	if len(rd.ReadStates) == 0 {
		return false
	}
	if want := []ReadState{{ID: id, Index: n.Status().Commit, Lease: true}}; !slices.Equal(rd.ReadStates, want) {
		t.Fatalf("ReadStates %+v, want %+v", rd.ReadStates, want)
	}
	if a := appends(t, rd); len(a) != 0 {
		t.Fatalf("a read served from the lease sent AppendEntries to %d servers", len(a))
	}
	return true
}

// tickQuiet ticks leader n k times, dropping what it sends.
func tickQuiet(n *Node, k int) {
	for i := 0; i < k; i++ {
		n.Tick()
		n.Ready()
	}
}

// Thesis 6.4.1: once a majority acknowledged a round, the leader serves
// reads at once, with no round of heartbeats, until LeaseTicks ticks
// after the round was sent; from then on a read needs a round again.
func TestLease_ServedWithinWindowRefusedAfter(t *testing.T) {
	n := leaseLeader(t, 3)
	r := readRound(t, n, 1)
	n.Step(aeRound(2, 1, 1, 1, r))
	if rd := n.Ready(); !slices.Equal(rd.ReadStates, []ReadState{{ID: 1, Index: 1}}) {
		t.Fatalf("the round's read: %+v, want [{1 1}]", rd.ReadStates)
	}
	for k := 0; k < leaseTicks; k++ {
		if !servedAtOnce(t, n, uint64(10+k)) {
			t.Fatalf("%d ticks after the acknowledged round, within a lease of %d: the read was not served at once", k, leaseTicks)
		}
		tickQuiet(n, 1)
	}
	if servedAtOnce(t, n, 99) {
		t.Fatalf("%d ticks after the acknowledged round: a read served from an expired lease", leaseTicks)
	}
}

// Thesis 6.4.1: the lease runs from when the round was sent, not from
// when the acknowledgement arrived: a late acknowledgement gives a
// shorter lease.
func TestLease_CountsFromSendNotAck(t *testing.T) {
	n := leaseLeader(t, 3)
	r := readRound(t, n, 1)
	const late = 4
	tickQuiet(n, late) // the heartbeats of these ticks go unanswered
	n.Step(aeRound(2, 1, 1, 1, r))
	n.Ready()
	tickQuiet(n, leaseTicks-late-1)
	if !servedAtOnce(t, n, 2) {
		t.Fatalf("%d ticks after the round was sent: no lease", leaseTicks-1)
	}
	tickQuiet(n, 1)
	if servedAtOnce(t, n, 3) {
		t.Fatalf("%d ticks after the round was sent (%d after its late acknowledgement): a read served from the lease", leaseTicks, leaseTicks-late)
	}
}

// Heartbeats renew the lease: each is a round of its own.
func TestLease_HeartbeatsRenew(t *testing.T) {
	n := leaseLeader(t, 3)
	tickAcked(t, n, 3*leaseTicks)
	if !servedAtOnce(t, n, 1) {
		t.Fatal("no lease with every heartbeat acknowledged")
	}
}

// tickAcked ticks leader n k times, every AppendEntries it sends
// acknowledged at once with its round.
func tickAcked(t *testing.T, n *Node, k int) {
	t.Helper()
	for i := 0; i < k; i++ {
		n.Tick()
		for to, a := range appends(t, n.Ready()) {
			n.Step(aeRound(to, n.ID(), a.Term, a.PrevLogIndex+len(a.Entries), a.Round))
		}
		n.Ready()
	}
}

// A leader must have committed an entry of its term before it serves a
// read, lease or not; and one follower of five is not a majority.
func TestLease_NeedsOwnTermCommitAndMajority(t *testing.T) {
	n := start(t, leaseConfig(1, 5))
	ticksToPreCampaign(t, n)
	for f := 2; n.Role() == PreCandidate; f++ {
		n.Step(Message{From: f, To: 1, Body: &RequestVoteReply{Term: 1, VoteGranted: true, PreVote: true}})
	}
	n.Ready()
	for f := 2; n.Role() == Candidate; f++ {
		n.Step(vote(f, 1, 1, true))
	}
	n.Ready()
	r := readRound(t, n, 1)
	for _, f := range []int{2, 3} {
		n.Step(aeRound(f, 1, 1, 0, r)) // the round, not the no-op
	}
	if rd := n.Ready(); len(rd.ReadStates) != 0 || n.leaseValid() {
		t.Fatalf("before its no-op committed: ReadStates %+v, lease %v", rd.ReadStates, n.leaseValid())
	}
	if servedAtOnce(t, n, 2) {
		t.Fatal("a read served from the lease before the leader committed an entry of its term")
	}
	n2 := leaseLeader(t, 5) // no-op acknowledged by 2 and 3
	r = readRound(t, n2, 1)
	n2.Step(aeRound(2, 1, 1, 1, r))
	if servedAtOnce(t, n2, 2) {
		t.Fatal("a lease from one follower of five")
	}
}

// A leader that sent TimeoutNow serves no read from its lease for the
// rest of its term, even once the transfer is abandoned: its target is
// elected despite leader stickiness.
func TestLease_EndsWhenTransferStarts(t *testing.T) {
	n := leaseLeader(t, 3)
	tickAcked(t, n, heartbeatTicks)
	if !servedAtOnce(t, n, 1) {
		t.Fatal("no lease before the transfer")
	}
	if err := n.TransferLeadership(2); err != nil {
		t.Fatal(err)
	}
	if to := timeoutNows(t, n.Ready(), 1, 1); !slices.Equal(to, []int{2}) {
		t.Fatalf("TimeoutNow to %v, want [2]", to)
	}
	if servedAtOnce(t, n, 2) {
		t.Fatal("a read served from the lease after TimeoutNow was sent")
	}
	tickQuiet(n, electionTicks) // the transfer is abandoned
	if n.Transferee() != None || n.Role() != Leader {
		t.Fatalf("transferee %d, %v: want the transfer abandoned, still leader", n.Transferee(), n.Role())
	}
	tickAcked(t, n, heartbeatTicks)
	if servedAtOnce(t, n, 3) {
		t.Fatal("a read served from a lease in the term of the abandoned transfer")
	}
}

// Skipped ticks count for the lease, and fire no timer.
func TestLease_SkippedTicksCount(t *testing.T) {
	n := leaseLeader(t, 3)
	r := readRound(t, n, 1)
	n.Step(aeRound(2, 1, 1, 1, r))
	n.Ready()
	n.Skip(leaseTicks)
	if rd := n.Ready(); !rd.Empty() && len(rd.ReadStates) == 0 {
		t.Fatalf("Skip had an effect: %+v", rd)
	}
	if servedAtOnce(t, n, 2) {
		t.Fatal("a read served from a lease that skipped ticks ended")
	}
}

// New refuses a lease without PreVote, or as long as the election
// timeout.
func TestLease_ConfigRefused(t *testing.T) {
	cfg := config(1, 3, 1)
	cfg.LeaseTicks = 3
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "PreVote") {
		t.Errorf("a lease without PreVote: %v, want an error naming PreVote", err)
	}
	cfg = leaseConfig(1, 3)
	cfg.LeaseTicks = electionTicks
	if _, err := New(cfg); err == nil {
		t.Error("a lease as long as the election timeout was accepted")
	}
	cfg.LeaseTicks = -1
	if _, err := New(cfg); err == nil {
		t.Error("a negative lease was accepted")
	}
}

// A refusal of an AppendEntries of an earlier term says nothing of the
// leader's current term: its round does not count, even if it is the
// round of a read under way (after a restart, rounds start again from 0).
func TestReadIndex_TermRefusalIsNoAck(t *testing.T) {
	n := leaseLeader(t, 3)
	r := readRound(t, n, 1)
	for _, f := range []int{2, 3} {
		n.Step(Message{From: f, To: 1, Body: &AppendEntriesReply{Term: 1, Index: 0, Round: r + 5}})
	}
	if rd := n.Ready(); len(rd.ReadStates) != 0 || n.leaseValid() {
		t.Fatalf("refusals for the term released %+v (lease %v)", rd.ReadStates, n.leaseValid())
	}
}

// Thesis 6.4.1, in ticks, on the simulated cluster: a leader cut off from
// the others serves reads from its lease only while the others would
// grant no vote, so never once a new leader could have been elected; and
// a new leader is elected later.
func TestScenario_CutOffLeaderLeaseEndsBeforeNewLeader(t *testing.T) {
	sc := newLeaseScenario(t)
	lead := sc.s.servers[sc.leader].node
	sc.runLoad(sc.s.p.electionTicks, false) // the heartbeats' rounds are acknowledged
	if !lead.leaseValid() {
		t.Fatal("the stable leader holds no lease")
	}
	for i := range sc.s.group {
		if i != sc.leader {
			sc.s.group[i] = 1
		}
	}
	lastLease, couldElect, elected := -1, -1, -1
	for tick := 0; tick < 10*sc.s.p.electionTicks && elected < 0; tick++ {
		if lead.Role() == Leader && lead.leaseValid() {
			sc.s.hist.startRead(sc.s, sc.leader)
			if err := sc.s.ready(sc.leader, nil); err != nil {
				t.Fatal(err)
			}
			lastLease = tick
		}
		voters := 0 // of the others, those that would grant a vote
		for i, sv := range sc.s.servers {
			if i != sc.leader && !sv.node.inLease() {
				voters++
			}
		}
		if couldElect < 0 && voters >= sc.s.p.n/2+1 {
			couldElect = tick
		}
		for i, sv := range sc.s.servers {
			if i != sc.leader && sv.node.Role() == Leader {
				elected = tick
			}
		}
		sc.runLoad(1, false)
	}
	t.Logf("lease %d ticks, election %d: last lease read at tick %d, a majority of the others would vote from tick %d, new leader at tick %d",
		sc.s.p.leaseTicks, sc.s.p.electionTicks, lastLease, couldElect, elected)
	switch {
	case lastLease < 0:
		t.Fatal("the cut-off leader served no read from its lease: the scenario tests nothing")
	case couldElect < 0 || elected < 0:
		t.Fatalf("no new leader (could elect from tick %d, elected at %d)", couldElect, elected)
	case lastLease >= couldElect:
		t.Fatalf("a lease read at tick %d, when a new leader could be elected from tick %d", lastLease, couldElect)
	}
}

// newLeaseScenario is newScenario with PreVote and the longest lease the
// simulation's clocks allow.
func newLeaseScenario(t *testing.T) *scenario {
	t.Helper()
	return newScenarioWith(t, func(p *simParams) {
		p.preVote, p.leaseTicks = true, leaseFor(p.electionTicks, p.skew)
	})
}
