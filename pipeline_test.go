package raft

import (
	"fmt"
	"testing"
	"time"
)

// Over TCP a leader keeps several AppendEntries in flight to a follower
// whose link is slow, instead of one round trip at a time, and every
// server applies the commands in the order they were proposed.
func TestTCPPipelinesAppendEntries(t *testing.T) {
	c := startFaultyCluster(t)
	lead, _ := c.leader()
	for id := range c.rafts {
		if id != lead.me {
			c.faults.SetDelay(lead.me, id, 30*time.Millisecond)
		}
	}
	// Proposals come in bursts of 20, and batches go out between them;
	// at least 200, and more (up to 2,000) until a follower is seen with
	// several batches in flight, so that a slow machine that sends the
	// first 200 in few batches does not fail the test.
	n, maxInflight, last := 0, 0, 0
	for n < 200 || (maxInflight < 2 && n < 2000) {
		idx, _, err := lead.Propose([]byte(fmt.Sprint(n)))
		if err != nil {
			t.Fatalf("proposal %d: %v", n, err)
		}
		n, last = n+1, idx
		if st, ok := lead.Status(); ok {
			for _, p := range st.Progress {
				maxInflight = max(maxInflight, p.Inflight)
			}
		}
		if n%20 == 0 {
			time.Sleep(5 * time.Millisecond) // load shaping, not synchronisation
		}
	}
	waitFor(t, "every server to apply every command", func() bool {
		for _, rf := range c.rafts {
			if st, ok := rf.Status(); !ok || st.Applied < last {
				return false
			}
		}
		return true
	})
	if maxInflight < 2 {
		t.Errorf("at most %d AppendEntries in flight to a follower 30 ms away", maxInflight)
	}
	for id, sm := range c.sms {
		sm.mu.Lock()
		var got []string
		for _, cmd := range sm.cmds {
			if len(cmd.Data) > 0 {
				got = append(got, string(cmd.Data))
			}
		}
		sm.mu.Unlock()
		if len(got) != n {
			t.Fatalf("server %d applied %d commands, want %d", id, len(got), n)
		}
		for i, s := range got {
			if s != fmt.Sprint(i) {
				t.Fatalf("server %d applied %q at position %d, want %q", id, s, i, fmt.Sprint(i))
			}
		}
	}
}

// A request of an unknown type gets an error, not a crash.
func TestServeRefusesUnknownRequest(t *testing.T) {
	c := newTCPCluster(t, 1, 2, 3)
	rf := c.start(1, newDiskStorage(t))
	got := make(chan error, 1)
	rf.Serve(2, "not a request", func(reply any, err error) { got <- err })
	if err := <-got; err == nil {
		t.Fatal("a string served without error")
	}
}
