package main

import "testing"

// A round goes on across a change of leader, and every proposal reported
// applied was applied.
func TestTheirsLeaderChange(t *testing.T) {
	c, err := startTheirs(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer c.stop()
	p := startProposers(c, 8)
	defer p.halt()
	p.waitSuccesses(t, 100)
	waitFor(t, "a leader", func() bool { return c.findLeader() })
	old := c.leader.Load()
	if err := old.r.LeadershipTransfer().Error(); err != nil {
		t.Fatalf("leadership transfer: %v", err)
	}
	n := p.successes.Load()
	waitFor(t, "another leader to commit", func() bool {
		c.findLeader()
		return c.leader.Load() != old && p.successes.Load() >= n+100 || p.stop.Load()
	})
	if err := p.halt(); err != nil {
		t.Fatal(err)
	}
	applied := uint64(len(p.tags))
	waitFor(t, "every server to apply every proposal reported applied", func() bool {
		for _, s := range c.servers {
			if s.fsm.count.Load() < applied {
				return false
			}
		}
		return true
	})
	t.Logf("%d proposals applied, %d retried", applied, p.retries.Load())
}
