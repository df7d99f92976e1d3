package core

import "testing"

// Scenarios of membership changes on the simulated cluster of sim_test.go
// (see sim_scenario_test.go).

// newSpareScenario is a 3-server cluster with one spare (server 3, outside
// the configuration) and a stable leader, with PreVote and leader
// stickiness on.
func newSpareScenario(t *testing.T) *scenario {
	t.Helper()
	return newScenarioWith(t, func(p *simParams) {
		p.n, p.spares, p.preVote, p.reconfig = 3, 1, true, true
		p.skew = []float64{1, 1, 1, 1}
	})
}

// leaderID returns the server that leads, or None.
func (sc *scenario) leaderID() int { return sc.s.leader() }

// until runs the cluster until cond holds, for at most 40 election
// timeouts, and fails the test with what if it never does.
func (sc *scenario) until(what string, cond func() bool) {
	sc.t.Helper()
	for k := 0; k < 40*sc.s.p.electionTicks; k++ {
		if cond() {
			return
		}
		sc.run(1)
	}
	sc.t.Fatalf("after 40 election timeouts, still not: %s\n%s", what, sc.s.describe())
}

// changeConf has the current leader propose c once it can, and runs the
// cluster until the change is committed on the leader.
func (sc *scenario) changeConf(c Change) {
	sc.t.Helper()
	index := 0
	sc.until("the leader accepted "+c.Type.String(), func() bool {
		l := sc.leaderID()
		if l == None {
			return false
		}
		i, _, err := sc.s.servers[l].node.ProposeChange(c)
		if err != nil {
			return false
		}
		if err := sc.s.ready(l, nil); err != nil {
			sc.t.Fatal(err)
		}
		index = i
		return true
	})
	sc.until(c.Type.String()+" committed", func() bool {
		l := sc.leaderID()
		return l != None && sc.s.servers[l].node.commit >= index
	})
}

// A server that was down while it was removed learns of its removal when
// it comes back, also when the leader that removed it was a learner of the
// last configuration it saw: it asks every member of the configurations
// it knows for votes (voteTargets), not only the voters, so its pre-vote
// reaches the leader, which sends it the log through its removal
// (tellRemoved).
func TestScenario_RemovedWhileDownLearnsItFromALeaderItKnewAsLearner(t *testing.T) {
	sc := newSpareScenario(t)
	r := sc.follower()
	sc.changeConf(Change{Type: AddLearner, ID: 3})
	sc.until("the follower knows the learner", func() bool {
		_, in := sc.s.servers[r].node.conf().Find(3)
		return in
	})
	sc.s.crash(r)
	sc.changeConf(Change{Type: Promote, ID: 3})
	// The new voter takes over the leadership, then removes r.
	sc.until("server 3 leads", func() bool {
		if l := sc.leaderID(); l != None && l != 3 && sc.s.servers[l].node.Transferee() != 3 {
			if err := sc.s.servers[l].node.TransferLeadership(3); err != nil {
				t.Fatal(err)
			}
			if err := sc.s.ready(l, nil); err != nil {
				t.Fatal(err)
			}
		}
		return sc.leaderID() == 3
	})
	sc.changeConf(Change{Type: Remove, ID: r})

	if err := sc.s.restart(r); err != nil {
		t.Fatal(err)
	}
	if n := sc.s.servers[r].node; !n.canCampaign() || n.conf().IsVoter(3) {
		t.Fatal("the removed server does not campaign when it comes back, or knows 3 as a voter: the scenario tests nothing")
	}
	sc.until("the removed server learned of its removal", func() bool {
		n := sc.s.servers[r].node
		m, _, committed := n.Membership()
		_, in := m.Find(r)
		return !in && committed && !n.canCampaign()
	})
}
