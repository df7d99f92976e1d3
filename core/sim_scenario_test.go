package core

import (
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
	p := simParams{n: 5, electionTicks: 10, heartbeatTicks: 3, maxMsgBytes: 256, maxCmdBytes: 8,
		preVote: preVote, noOp: true, flushChance: 1, skew: []float64{1, 1, 1, 1, 1}, maxInflight: 8, maxInflightB: 1 << 20}
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
