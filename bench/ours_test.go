package main

import (
	"testing"
	"time"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/transport"
)

// leads is the state of a server that leads in term 1.
func leads() (int, bool) { return 1, true }

// waitResult runs m.wait in a goroutine; its answer arrives on the channel.
func waitResult(m *oursSM, index int, tag uint64) <-chan bool {
	ch := make(chan bool, 1)
	go func() { ch <- m.wait(index, tag, 1, leads) }()
	return ch
}

// waiting waits until a proposal waits at index.
func waiting(t *testing.T, m *oursSM, index int) {
	t.Helper()
	waitFor(t, "a waiter", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.waiters[index] != nil
	})
}

func expect(t *testing.T, what string, ch <-chan bool, want bool) {
	t.Helper()
	select {
	case got := <-ch:
		if got != want {
			t.Errorf("%s: wait = %v, want %v", what, got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: wait did not return", what)
	}
}

func apply(m *oursSM, index int, tag uint64) {
	m.Apply(raft.Command{Index: index, Term: 1, Data: newCommand(tag, 16)})
}

// The state machine tells a proposer whether its own command is at its
// index, whether it waited before or after the command was applied.
func TestOursSMWait(t *testing.T) {
	m := newOursSM()
	apply(m, 2, 20)
	if !m.wait(2, 20, 1, leads) || m.wait(2, 21, 1, leads) || m.wait(1, 10, 1, leads) {
		t.Error("after the apply: wrong answers")
	}
	mine := waitResult(m, 3, 30)
	waiting(t, m, 3)
	apply(m, 3, 30)
	expect(t, "own command applied", mine, true)

	other := waitResult(m, 4, 40)
	waiting(t, m, 4)
	apply(m, 4, 99)
	expect(t, "another command at the index", other, false)

	// Index 5 holds a new leader's no-op: the state machine sees 6 next.
	skipped := waitResult(m, 5, 50)
	waiting(t, m, 5)
	apply(m, 6, 60)
	expect(t, "an index without a command", skipped, false)

	// The server leads again and gives index 7 to another proposal.
	old := waitResult(m, 7, 70)
	waiting(t, m, 7)
	newer := waitResult(m, 7, 71)
	expect(t, "a proposal whose index was given to another", old, false)
	waiting(t, m, 7)
	apply(m, 7, 71)
	expect(t, "the newer proposal", newer, true)

	if m.count != 5 || m.applied != 7 {
		t.Errorf("count %d, applied %d; want 5, 7", m.count, m.applied)
	}
}

// A proposal whose server stops leading in its term is told its command
// may not be applied, whenever leadership moved.
func TestOursSMLeadershipLost(t *testing.T) {
	m := newOursSM()
	for _, tc := range []struct {
		what  string
		term  int
		leads bool
	}{{"a newer term", 2, true}, {"stepped down", 1, false}} {
		w := waitResult(m, 3, 30)
		waiting(t, m, 3)
		m.abandon(tc.term, tc.leads)
		expect(t, tc.what, w, false)
	}
	// Moved before the proposal was registered: nobody calls abandon.
	before := make(chan bool, 1)
	go func() { before <- m.wait(4, 40, 1, func() (int, bool) { return 2, false }) }()
	expect(t, "leadership moved before the wait", before, false)
	kept := waitResult(m, 3, 30)
	waiting(t, m, 3)
	m.abandon(1, true) // still leads in term 1
	apply(m, 3, 30)
	expect(t, "a proposal of the current term", kept, true)
}

// A round goes on across a change of leader: proposals caught by it are
// retried, and every proposal reported applied is in the log.
func TestOursLeaderChange(t *testing.T) {
	// Proposals caught by the change must learn of it (oursCluster.watch)
	// rather than time out.
	defer func(d time.Duration) { applyWait = d }(applyWait)
	applyWait = 10 * time.Minute
	faults := transport.NewFaults(1)
	c, err := startOurs(t.TempDir(), faults)
	if err != nil {
		t.Fatal(err)
	}
	p := startProposers(c, 8)
	defer func() {
		c.stop() // releases the proposals still waiting
		p.halt()
	}()
	p.waitSuccesses(t, 100)
	waitFor(t, "a leader", func() bool { return c.findLeader() })
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
	// it find other commands at their indexes.
	faults.Rejoin(old.id)
	n := p.successes.Load()
	waitFor(t, "the new leader to commit", func() bool { return p.successes.Load() >= n+100 || p.stop.Load() })
	if err := p.halt(); err != nil {
		t.Fatal(err)
	}
	if p.retries.Load() == 0 {
		t.Error("no proposal was retried across the change of leader")
	}
	// Every server ends with the same log, holding every proposal that
	// propose reported applied.
	waitFor(t, "the servers to apply the same log", func() bool {
		last := -1
		for _, s := range c.servers {
			s.sm.mu.Lock()
			applied := s.sm.applied
			s.sm.mu.Unlock()
			if last >= 0 && applied != last {
				return false
			}
			last = applied
		}
		return true
	})
	for _, s := range c.servers {
		s.sm.mu.Lock()
		inLog := map[uint64]bool{}
		for _, tag := range s.sm.tags {
			inLog[tag] = true
		}
		s.sm.mu.Unlock()
		for _, tag := range p.tags {
			if !inLog[tag] {
				t.Fatalf("server %d: proposal %#x was reported applied but is not in the log", s.id, tag)
			}
		}
	}
	t.Logf("%d proposals applied, %d retried, leader %d then %d", len(p.tags), p.retries.Load(), old.id, c.leader.Load().id)
}

// A proposal waiting on a server that stops leading learns of it, even
// when nothing is ever applied at its index again.
func TestOursWatchAbandons(t *testing.T) {
	defer func(d time.Duration) { applyWait = d }(applyWait)
	applyWait = 10 * time.Minute
	faults := transport.NewFaults(1)
	c, err := startOurs(t.TempDir(), faults)
	if err != nil {
		t.Fatal(err)
	}
	defer c.stop()
	old := c.leader.Load()
	term, _ := old.rf.GetState()
	// As if a proposal had an index that no other server will ever have.
	w := make(chan bool, 1)
	go func() { w <- old.sm.wait(1000, 1, term, old.rf.GetState) }()
	waiting(t, old.sm, 1000)
	faults.Isolate(old.id) // it steps down, hearing from no majority
	select {
	case ok := <-w:
		if ok {
			t.Error("wait reported the command applied")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the proposal still waits, 30 s after its leader was cut off")
	}
}
