package main

import "testing"

// Proposals go on across a change of leader, and every server applies
// every proposer's commands exactly once and in order.
func TestTheirsLeaderChange(t *testing.T) {
	c, err := startTheirs(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	p := startProposers(c, n)
	defer func() {
		p.halt()
		c.stop()
	}()
	p.waitMore(t, 100)
	waitFor(t, "a leader", c.findLeader)
	old := c.leader.Load()
	if err := old.r.LeadershipTransfer().Error(); err != nil {
		t.Fatalf("leadership transfer: %v", err)
	}
	waitFor(t, "another leader", func() bool { return c.findLeader() && c.leader.Load() != old })
	p.waitMore(t, 100)
	dups := checkExactlyOnce(t, c, p, n)
	t.Logf("%d proposals applied, %d made again, %d duplicates skipped", p.successes.Load(), p.retries.Load(), dups)
}
