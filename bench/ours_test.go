package main

import (
	"testing"
	"time"

	"github.com/raftkit/raft/transport"
)

// Proposals go on across a change of leader: those caught by it are made
// again, and every server applies every proposer's commands exactly once
// and in order.
func TestOursLeaderChange(t *testing.T) {
	// Proposals caught by the change must learn of it from Apply rather
	// than time out.
	defer func(d time.Duration) { applyWait = d }(applyWait)
	applyWait = 10 * time.Minute
	faults := transport.NewFaults(1)
	c, err := startOurs(t.TempDir(), faults)
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
	faults.Isolate(old.id)
	waitFor(t, "another leader", func() bool {
		for _, s := range c.servers {
			if _, isLeader := s.rf.GetState(); isLeader && s != old {
				return true
			}
		}
		return false
	})
	// The old leader learns of the new one, and the proposals waiting on
	// it learn that their outcome is unknown.
	faults.Rejoin(old.id)
	p.waitMore(t, 100)
	dups := checkExactlyOnce(t, c, p, n)
	if p.retries.Load() == 0 {
		t.Error("no proposal was made again across the change of leader")
	}
	t.Logf("%d proposals applied, %d made again, %d duplicates skipped; leader %d then %d",
		p.successes.Load(), p.retries.Load(), dups, old.id, c.leader.Load().id)
}
