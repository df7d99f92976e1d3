package kv

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A GET without a client identity is served with ReadIndex: it sees the
// last write and adds nothing to the log; with ReadsThroughLog it goes
// through the log. A follower does not serve it.
func TestGetWithReadIndex(t *testing.T) {
	c := newHTCluster(t, HTTPOptions{})
	l := c.leader()
	lead := c.nodes[l]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := lead.kv.Do(ctx, Op{Kind: Put, Key: "k", Value: "v1", ClientID: 7, Seq: 1}); err != nil {
		t.Fatal(err)
	}
	lastLog := func() int {
		st, ok := lead.rf.Status()
		if !ok {
			t.Fatal("the leader stopped")
		}
		return st.LastLog
	}
	before := lastLog()
	for i := 0; i < 20; i++ {
		res, err := lead.kv.Do(ctx, Op{Kind: Get, Key: "k"})
		if err != nil || !res.Found || res.Value != "v1" {
			t.Fatalf("GET %d: %+v, %v; want v1", i, res, err)
		}
	}
	if after := lastLog(); after != before {
		t.Errorf("20 GETs with ReadIndex took the log from %d to %d entries", before, after)
	}
	for _, f := range c.followers(l) {
		if _, err := c.nodes[f].kv.Do(ctx, Op{Kind: Get, Key: "k"}); !errors.Is(err, ErrWrongLeader) {
			t.Errorf("GET at follower %d: %v, want ErrWrongLeader", f, err)
		}
	}
	lead.kv.opts.ReadsThroughLog = true // no request in flight
	for i := 0; i < 5; i++ {
		if res, err := lead.kv.Do(ctx, Op{Kind: Get, Key: "k"}); err != nil || res.Value != "v1" {
			t.Fatalf("GET through the log: %+v, %v", res, err)
		}
	}
	if after := lastLog(); after != before+5 {
		t.Errorf("5 GETs through the log took the log from %d to %d entries, want %d", before, after, before+5)
	}
}

// With raft.Config.FollowerReads, a follower serves a GET itself: it
// sees the last write, adds nothing to the log, and is not forwarded; with
// LeaderLease too, the leader serves GETs the same.
func TestGetOnFollower(t *testing.T) {
	c := newHTClusterWith(t, htSetup{followerReads: true, leaderLease: true})
	l := c.leader()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.nodes[l].kv.Do(ctx, Op{Kind: Put, Key: "k", Value: "v1", ClientID: 7, Seq: 1}); err != nil {
		t.Fatal(err)
	}
	st, _ := c.nodes[l].rf.Status()
	before := st.LastLog
	for _, id := range append(c.followers(l), l) {
		for i := 0; i < 10; i++ {
			res, err := c.nodes[id].kv.Do(ctx, Op{Kind: Get, Key: "k"})
			if err != nil || !res.Found || res.Value != "v1" {
				t.Fatalf("GET %d at replica %d (leader %d): %+v, %v; want v1 served there", i, id, l, res, err)
			}
		}
	}
	if st, _ := c.nodes[l].rf.Status(); st.LastLog != before {
		t.Errorf("GETs took the log from %d to %d entries", before, st.LastLog)
	}
}
