package raft

import (
	"context"
	"errors"
	"testing"
	"time"
)

// leader waits for a leader among c's servers and returns it with its
// term.
func (c *tcpCluster) leader() (*Raft, int) {
	c.t.Helper()
	var lead *Raft
	term := 0
	waitFor(c.t, "a leader", func() bool {
		for _, rf := range c.rafts {
			if tm, ok := rf.GetState(); ok {
				lead, term = rf, tm
				return true
			}
		}
		return false
	})
	return lead, term
}

// Thesis 3.10: TransferLeadership returns once the named server leads, in
// the next term (its election needed no election timeout, and no other
// election came between); the old leader follows it and forwards
// proposals to it.
func TestTransferLeadership(t *testing.T) {
	c := newTCPCluster(t, 1, 2, 3)
	for _, id := range []int{1, 2, 3} {
		c.start(id, newDiskStorage(t))
	}
	c.leaderCommits("a")
	lead, term := c.leader()
	to := lead.me%3 + 1
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var nl *NotLeaderError
	if err := c.rafts[to].TransferLeadership(ctx, lead.me); !errors.As(err, &nl) || nl.Leader != lead.me {
		t.Fatalf("transfer on follower %d: %v, want a NotLeaderError naming %d", to, err, lead.me)
	}
	if err := lead.TransferLeadership(ctx, 9); err == nil {
		t.Fatal("transfer to server 9, outside the cluster: no error")
	}
	if err := lead.TransferLeadership(ctx, to); err != nil {
		t.Fatalf("transfer from %d to %d: %v", lead.me, to, err)
	}
	if tm, isLeader := c.rafts[to].GetState(); !isLeader || tm != term+1 {
		t.Fatalf("after the transfer server %d: term %d, leader %v; want the leader of term %d", to, tm, isLeader, term+1)
	}
	if tm, isLeader := lead.GetState(); isLeader || tm != term+1 {
		t.Fatalf("after the transfer the old leader: term %d, leader %v; want a follower at term %d", tm, isLeader, term+1)
	}
	if _, err := lead.Apply(ctx, []byte("b")); !errors.As(err, &nl) || nl.Leader != to {
		t.Fatalf("proposal to the old leader: %v, want a NotLeaderError naming %d", err, to)
	}
	// -1: the most up-to-date follower.
	if err := c.rafts[to].TransferLeadership(ctx, -1); err != nil {
		t.Fatalf("transfer from %d to any: %v", to, err)
	}
	if _, isLeader := c.rafts[to].GetState(); isLeader {
		t.Fatalf("server %d still leads after a transfer to any server", to)
	}
}

// Thesis 3.10: a transfer to a server the leader cannot reach is
// abandoned after an election timeout; the leader leads on, and takes
// proposals again.
func TestTransferLeadershipAbandoned(t *testing.T) {
	c := startFaultyCluster(t)
	c.leaderCommits("a")
	lead, term := c.leader()
	to := lead.me%3 + 1
	c.faults.Cut(lead.me, to)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := lead.TransferLeadership(ctx, to); !errors.Is(err, ErrTransferAbandoned) {
		t.Fatalf("transfer to a cut-off server: %v, want ErrTransferAbandoned", err)
	}
	if tm, isLeader := lead.GetState(); !isLeader || tm != term {
		t.Fatalf("after the abandoned transfer: term %d, leader %v; want the leader of term %d still", tm, isLeader, term)
	}
	if _, _, err := lead.Propose([]byte("b")); err != nil {
		t.Fatalf("proposal after the abandoned transfer: %v", err)
	}
}
