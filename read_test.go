package raft

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// Thesis 6.4: ReadBarrier on the leader returns an index that covers the
// commands committed before the call, once this server's StateMachine has
// applied them; a follower refuses it naming the leader; a leader cut off
// from the others never confirms a read.
func TestReadBarrier(t *testing.T) {
	c := startFaultyCluster(t)
	c.leaderCommits("a")
	lead, _ := c.leader()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := lead.Apply(ctx, []byte("b"))
	if err != nil {
		t.Fatal(err)
	}
	idx, err := lead.ReadBarrier(ctx)
	if err != nil || idx < res.Index {
		t.Fatalf("ReadBarrier: %d, %v; want an index of at least %d", idx, err, res.Index)
	}
	if st, _ := lead.Status(); st.Applied < idx {
		t.Fatalf("ReadBarrier returned %d with the log applied through %d", idx, st.Applied)
	}
	if cmds := c.sms[lead.me].applied(); len(cmds) == 0 || cmds[len(cmds)-1].Index != res.Index {
		t.Fatalf("ReadBarrier returned with the StateMachine's commands %+v, want b at %d last", cmds, res.Index)
	}
	if m := lead.Metrics(); m.ReadsRound != 1 || m.ReadsLease != 0 || m.ReadsFollower != 0 || m.ReadsFailed != 0 {
		t.Fatalf("after one read barrier without a lease: metrics %+v, want one read confirmed by a round", m)
	}
	f := lead.me%3 + 1
	var nl *NotLeaderError
	if _, err := c.rafts[f].ReadBarrier(ctx); !errors.As(err, &nl) || nl.Leader != lead.me {
		t.Fatalf("ReadBarrier on follower %d: %v, want a NotLeaderError naming %d", f, err, lead.me)
	}
	for id := range c.rafts {
		if id != lead.me {
			c.faults.Cut(lead.me, id)
		}
	}
	short, cancel2 := context.WithTimeout(ctx, 2*time.Second)
	defer cancel2()
	if idx, err := lead.ReadBarrier(short); err == nil {
		t.Fatalf("ReadBarrier on a leader cut off from the others returned %d", idx)
	}
	// The read fails in the core once the leader steps down (or its
	// context may have ended first).
	waitFor(t, "the cut-off leader's read counted failed", func() bool { return lead.Metrics().ReadsFailed == 1 })
}

// With FollowerReads, ReadBarrier on a follower returns an index that
// covers the commands committed before the call, once the follower's
// StateMachine has applied them; a follower cut off from the leader
// fails with a NotLeaderError.
func TestReadBarrier_FollowerReads(t *testing.T) {
	c := startFaultyClusterWith(t, func(cfg *Config) { cfg.FollowerReads = true })
	c.leaderCommits("a")
	lead, _ := c.leader()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := lead.Apply(ctx, []byte("b"))
	if err != nil {
		t.Fatal(err)
	}
	f := c.rafts[lead.me%3+1]
	idx, err := f.ReadBarrier(ctx)
	if err != nil || idx < res.Index {
		t.Fatalf("ReadBarrier on follower %d: %d, %v; want an index of at least %d", f.me, idx, err, res.Index)
	}
	if cmds := c.sms[f.me].applied(); len(cmds) == 0 || cmds[len(cmds)-1].Index < res.Index {
		t.Fatalf("ReadBarrier on follower %d returned with its StateMachine's commands %+v, want b at %d applied", f.me, cmds, res.Index)
	}
	if m := f.Metrics(); m.ReadsFollower != 1 || m.ReadsRound+m.ReadsLease+m.ReadsFailed != 0 {
		t.Fatalf("after one follower read: the follower's metrics %+v, want one follower read", m)
	}
	c.faults.Cut(lead.me, f.me)
	var nl *NotLeaderError
	if _, err := f.ReadBarrier(ctx); !errors.As(err, &nl) {
		t.Fatalf("ReadBarrier on a follower cut off from the leader: %v, want a NotLeaderError", err)
	}
}

// Thesis 6.4.1: with LeaderLease, ReadBarrier on the leader works as
// without; and a leader cut off from the others answers no ReadBarrier
// once they have elected another leader (only within its lease, which
// ends earlier).
func TestReadBarrier_LeaderLease(t *testing.T) {
	c := startFaultyClusterWith(t, func(cfg *Config) { cfg.LeaderLease = true })
	c.leaderCommits("a")
	lead, term := c.leader()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := lead.Apply(ctx, []byte("b"))
	if err != nil {
		t.Fatal(err)
	}
	reads := 0
	waitFor(t, "a read served within the lease", func() bool {
		if idx, err := lead.ReadBarrier(ctx); err != nil || idx < res.Index {
			t.Fatalf("ReadBarrier %d: %d, %v; want an index of at least %d", reads, idx, err, res.Index)
		}
		reads++
		return reads >= 20 && lead.Metrics().ReadsLease > 0
	})
	if m := lead.Metrics(); m.ReadsLease+m.ReadsRound != int64(reads) || m.ReadsFailed != 0 {
		t.Fatalf("after %d reads: metrics %+v, want each counted once, by lease or round", reads, m)
	}
	for id := range c.rafts {
		if id != lead.me {
			c.faults.Cut(lead.me, id)
		}
	}
	// Read on the cut-off leader until a read fails; then wait for a new
	// leader among the others.
	var lastOK time.Time
	for {
		short, cancel := context.WithTimeout(ctx, time.Second)
		_, err := lead.ReadBarrier(short)
		cancel()
		if err != nil {
			break
		}
		lastOK = time.Now()
	}
	var elected time.Time
	waitFor(t, "a new leader among the others", func() bool {
		for id, rf := range c.rafts {
			if tm, ok := rf.GetState(); ok && id != lead.me && tm > term {
				elected = time.Now()
				return true
			}
		}
		return false
	})
	if !lastOK.IsZero() && !lastOK.Before(elected) {
		t.Fatalf("the cut-off leader served a read at %v, after a new leader was elected (seen at %v)", lastOK, elected)
	}
	short, cancel2 := context.WithTimeout(ctx, time.Second)
	defer cancel2()
	if idx, err := lead.ReadBarrier(short); err == nil {
		t.Fatalf("ReadBarrier on the deposed, cut-off leader returned %d", idx)
	}
}

// New refuses LeaderLease without PreVote, a LeaseDrift out of range, and
// an election timeout too short for a lease.
func TestLeaderLeaseConfig(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{LeaderLease: true, DisablePreVote: true}, "PreVote"},
		{Config{LeaderLease: true, LeaseDrift: 1.5}, "LeaseDrift"},
		{Config{LeaderLease: true, LeaseDrift: -0.1}, "LeaseDrift"},
		{Config{LeaderLease: true, TickInterval: 20 * time.Millisecond, ElectionTimeout: 60 * time.Millisecond, HeartbeatInterval: 20 * time.Millisecond}, "no lease"},
	} {
		tm, err := c.cfg.timing()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.cfg.leaseTicks(tm); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error saying %q", c.cfg, err, c.want)
		}
	}
	cfg := Config{LeaderLease: true}
	tm, _ := cfg.timing()
	if l, err := cfg.leaseTicks(tm); err != nil || l != int(float64(tm.electionTicks-1)/1.1)-1 {
		t.Errorf("default lease: %d ticks, %v; want (%d-1)/1.1-1", l, err, tm.electionTicks)
	}
}
