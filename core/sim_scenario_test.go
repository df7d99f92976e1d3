package core

import (
	"errors"
	"math/rand/v2"
	"testing"
)

// Fixed scenarios on the simulated cluster of sim_test.go: the network
// delivers every message before each tick (no loss), and the invariants of
// sim_check_test.go are checked after every step, as in TestSimulation.

// scenario is a 5-server cluster with a stable leader.
type scenario struct {
	t      *testing.T
	s      *sim
	leader int
	term   int
}

func newScenario(t *testing.T, preVote bool) *scenario {
	t.Helper()
	return newScenarioWith(t, func(p *simParams) { p.preVote = preVote })
}

// newScenarioWith is newScenario with the parameters set changes.
func newScenarioWith(t *testing.T, set func(p *simParams)) *scenario {
	t.Helper()
	p := simParams{n: 5, electionTicks: 10, heartbeatTicks: 3, maxMsgBytes: 256, maxCmdBytes: 8,
		noOp: true, flushChance: 1, skew: []float64{1, 1, 1, 1, 1}, maxInflight: 8, maxInflightB: 1 << 20}
	set(&p)
	rng := rand.New(rand.NewPCG(7, 7))
	s, err := newSim(7, rng, p, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.healed = true
	sc := &scenario{t: t, s: s, leader: -1}
	sc.run(40 * p.electionTicks)
	for i, sv := range s.servers {
		if sv.node.Role() == Leader {
			sc.leader, sc.term = i, sv.node.Term()
		}
	}
	if sc.leader < 0 {
		t.Fatal("no leader after 40 election timeouts")
	}
	return sc
}

// run takes steps of a healed simulation (every message delivered before
// each tick, proposals now and then) for ticks ticks.
func (sc *scenario) run(ticks int) { sc.runLoad(ticks, true) }

// runLoad is run, with or without proposals.
func (sc *scenario) runLoad(ticks int, load bool) {
	sc.t.Helper()
	for k := 0; k < ticks; k++ {
		for len(sc.s.net) > 0 {
			if err := sc.s.deliver(false); err != nil {
				sc.t.Fatal(err)
			}
		}
		if load && sc.s.rng.IntN(4) == 0 {
			for i, sv := range sc.s.servers {
				if sv.node.Role() == Leader {
					sc.s.propose(i)
					if err := sc.s.ready(i, nil); err != nil {
						sc.t.Fatal(err)
					}
				}
			}
		}
		if err := sc.s.tick(); err != nil {
			sc.t.Fatal(err)
		}
		sc.s.step++
	}
}

// maxTerm returns the highest term of any server.
func (sc *scenario) maxTerm() int {
	m := 0
	for _, sv := range sc.s.servers {
		m = max(m, sv.node.Term())
	}
	return m
}

// follower returns a server that is not the leader.
func (sc *scenario) follower() int { return (sc.leader + 1) % sc.s.p.n }

// stable reports whether the first leader still leads, in the first term,
// and no server has a newer term.
func (sc *scenario) stable() bool {
	return sc.s.servers[sc.leader].node.Role() == Leader && sc.maxTerm() == sc.term && len(sc.s.hist.leaders) == 1
}

// Thesis 9.6: a follower cut off from everyone for many election timeouts
// rejoins without disturbing the leader: with PreVote it never raised its
// term, so no term changes and the leader stays. Without PreVote (the
// control) the same scenario deposes the leader.
func TestScenario_RejoinAfterPartitionKeepsLeader(t *testing.T) {
	for _, preVote := range []bool{true, false} {
		sc := newScenario(t, preVote)
		f := sc.follower()
		sc.s.group[f] = 1
		sc.run(30 * sc.s.p.electionTicks)
		clear(sc.s.group)
		sc.run(30 * sc.s.p.electionTicks)
		sc.runLoad(2*sc.s.p.electionTicks, false)
		if preVote && !sc.stable() {
			t.Fatalf("PreVote: after server %d rejoined, leader %d is %v, terms up to %d (was %d), %d terms had leaders",
				f, sc.leader, sc.s.servers[sc.leader].node.Role(), sc.maxTerm(), sc.term, len(sc.s.hist.leaders))
		}
		if !preVote && sc.stable() {
			t.Fatal("control without PreVote: the rejoin changed nothing, so the scenario tests nothing")
		}
		if got, want := sc.s.servers[f].node.log.lastIndex(), sc.s.servers[sc.leader].node.log.lastIndex(); preVote && got != want {
			t.Errorf("the rejoined server's log ends at %d, the leader's at %d", got, want)
		}
	}
}

// Thesis 9.6: a follower that cannot hear the leader but can reach
// everyone (a one-way link) does not depose it: servers that hear the
// leader refuse its pre-votes and votes, even when its log is as
// up-to-date as theirs (no proposals here). Without PreVote (the control)
// it does.
func TestScenario_OneWayLinkKeepsLeader(t *testing.T) {
	for _, preVote := range []bool{true, false} {
		sc := newScenario(t, preVote)
		f := sc.follower()
		sc.runLoad(2*sc.s.p.electionTicks, false) // all logs equal
		sc.s.oneWay[[2]int{sc.leader, f}] = true
		sc.runLoad(30*sc.s.p.electionTicks, false)
		if preVote && !sc.stable() {
			t.Fatalf("PreVote: with the link %d→%d cut, leader %d is %v, terms up to %d (was %d), %d terms had leaders",
				sc.leader, f, sc.leader, sc.s.servers[sc.leader].node.Role(), sc.maxTerm(), sc.term, len(sc.s.hist.leaders))
		}
		if !preVote && sc.stable() {
			t.Fatal("control without PreVote: the one-way link changed nothing, so the scenario tests nothing")
		}
	}
}

// Thesis 3.10: a leader hands its leadership to a follower that was cut
// off and is behind: it brings the follower's log up to date first, then
// the follower wins the next term at once, with PreVote and leader
// stickiness on, before any election timeout could fire; no command is
// lost.
func TestScenario_TransferToLaggingFollower(t *testing.T) {
	sc := newScenario(t, true)
	f := sc.follower()
	sc.s.group[f] = 1
	sc.run(5 * sc.s.p.electionTicks) // f falls behind
	clear(sc.s.group)
	lead := sc.s.servers[sc.leader].node
	if sc.s.servers[f].node.log.lastIndex() >= lead.log.lastIndex() {
		t.Fatal("the target is not behind: the scenario tests nothing")
	}
	if err := lead.TransferLeadership(f); err != nil {
		t.Fatal(err)
	}
	if err := sc.s.ready(sc.leader, nil); err != nil {
		t.Fatal(err)
	}
	ticks := 0
	for ; ticks < sc.s.p.electionTicks && sc.s.servers[f].node.Role() != Leader; ticks++ {
		sc.run(1)
	}
	if nf := sc.s.servers[f].node; nf.Role() != Leader || nf.Term() != sc.term+1 {
		t.Fatalf("after %d ticks: server %d is %v at term %d, want leader at term %d", ticks, f, nf.Role(), nf.Term(), sc.term+1)
	}
	if len(sc.s.hist.leaders) != 2 {
		t.Errorf("%d terms had leaders, want 2", len(sc.s.hist.leaders))
	}
	sc.run(5 * sc.s.p.electionTicks)
	if nf := sc.s.servers[f].node; nf.Role() != Leader || sc.maxTerm() != sc.term+1 {
		t.Errorf("the new leader did not stay: %v, terms up to %d", nf.Role(), sc.maxTerm())
	}
}

// Thesis 3.10: a transfer to a server that cannot be reached is abandoned
// after an election timeout; the leader keeps its term and takes
// commands again.
func TestScenario_TransferToUnreachableAbandoned(t *testing.T) {
	sc := newScenario(t, true)
	f := sc.follower()
	sc.s.group[f] = 1
	lead := sc.s.servers[sc.leader].node
	if err := lead.TransferLeadership(f); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := lead.Propose([]byte("x")); ok {
		t.Fatal("a proposal was accepted during the transfer")
	}
	sc.runLoad(sc.s.p.electionTicks+1, false)
	if lead.Transferee() != None || !sc.stable() {
		t.Fatalf("an election timeout later: transferee %d, leader %v, terms up to %d", lead.Transferee(), lead.Role(), sc.maxTerm())
	}
	if _, _, ok := lead.Propose([]byte("x")); !ok {
		t.Fatal("a proposal was refused after the transfer was abandoned")
	}
}

// Thesis 4.1's fix to single-server changes: two leaders of different
// terms, each with one change of its own, must not commit with disjoint
// majorities. Leader L of 4 voters, cut off, appends the removal of one
// follower (C1: L and one other are a majority). The other three elect M;
// M is cut off from a third, A, and with the fourth, D, it could commit
// the removal of L (C2: M and D are a majority) — but it has committed no
// entry of its term, so ProposeChange refuses. L and A then elect L, which
// commits with C1's majority. With the fix nothing committed is ever
// overwritten; without it the invariants catch a committed entry changed.
func TestScenario_ChangesOfTwoLeadersNeverCommitDisjointly(t *testing.T) {
	sc := newScenarioWith(t, func(p *simParams) {
		p.n, p.skew, p.noOp = 4, []float64{1, 1, 1, 1}, false
	})
	s, L := sc.s, sc.leader
	var others []int
	for i := range s.servers {
		if i != L {
			others = append(others, i)
		}
	}
	x := others[2] // C1 removes x
	s.group[L] = 1
	if _, _, err := s.servers[L].node.ProposeChange(Change{Type: Remove, ID: x}); err != nil {
		t.Fatalf("the stable leader refused a change: %v", err)
	}
	if err := s.ready(L, nil); err != nil {
		t.Fatal(err)
	}

	// The other three elect M; A, neither M nor x, is cut off at once.
	M := -1
	for k := 0; k < 40*s.p.electionTicks && M < 0; k++ {
		sc.runLoad(1, false)
		for _, i := range others {
			if s.servers[i].node.Role() == Leader {
				M = i
			}
		}
	}
	if M < 0 {
		t.Fatal("the three servers without L elected no leader")
	}
	A := -1
	for _, i := range others {
		if i != M && i != x {
			A = i
		}
	}
	s.group[A] = 2
	_, _, err := s.servers[M].node.ProposeChange(Change{Type: Remove, ID: L})
	if !errors.Is(err, ErrLeaderNotReady) {
		t.Errorf("a new leader that has committed nothing of its term: ProposeChange = %v, want ErrLeaderNotReady", err)
	}
	if err := s.ready(M, nil); err != nil {
		t.Fatal(err)
	}
	sc.runLoad(3*s.p.electionTicks, false) // M and the fourth server commit the change, if made

	// L and A, together, elect L: C1's majority.
	s.group[A] = 1
	for k := 0; k < 40*s.p.electionTicks && s.servers[L].node.Role() != Leader; k++ {
		sc.runLoad(1, false)
	}
	if s.servers[L].node.Role() != Leader {
		t.Fatalf("L and A elected no leader (C1 makes them a majority)")
	}
	s.propose(L)
	if err := s.ready(L, nil); err != nil {
		t.Fatal(err)
	}
	sc.runLoad(3*s.p.electionTicks, false)
	clear(s.group)
	sc.runLoad(10*s.p.electionTicks, true) // the invariants hold throughout
}
