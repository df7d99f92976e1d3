package raft

import (
	"context"
	"testing"
	"time"
)

// A server tells its watchers of the leadership without polling, reports
// its progress and applied index in Status, and counts what it does in
// Metrics.
func TestWatchLeaderStatusMetrics(t *testing.T) {
	c := newTCPCluster(t, 1, 2, 3)
	for _, id := range []int{1, 2, 3} {
		c.start(id, newDiskStorage(t))
	}
	watch, stop := c.rafts[1].WatchLeader()
	defer stop()
	var l Leadership
	deadline := time.After(20 * time.Second)
	for l.Leader <= 0 {
		select {
		case l = <-watch:
		case <-deadline:
			t.Fatal("no leader seen through WatchLeader")
		}
	}
	leader := c.rafts[l.Leader]
	if l.Addr != c.peers[l.Leader] {
		t.Errorf("the leader's address is %q, want %q", l.Addr, c.peers[l.Leader])
	}
	if _, isLeader := leader.GetState(); !isLeader {
		t.Fatalf("WatchLeader names %d, which does not lead", l.Leader)
	}
	const n = 20
	var last Result
	for i := 0; i < n; i++ {
		var err error
		if last, err = leader.Apply(context.Background(), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	st, _ := leader.Status()
	if st.Applied != last.Index {
		t.Errorf("Status().Applied = %d after applying %d", st.Applied, last.Index)
	}
	for id, p := range st.Progress {
		if p.Next <= 0 || p.Inflight < 0 {
			t.Errorf("progress of %d: %+v", id, p)
		}
	}
	m := leader.Metrics()
	for _, c := range []struct {
		name string
		got  int64
		min  int64
	}{
		{"Proposals", m.Proposals, n}, {"EntriesCommitted", m.EntriesCommitted, n}, {"EntriesApplied", m.EntriesApplied, n},
		{"CommitLatency.Count", m.CommitLatency.Count, n}, {"Saves", m.Saves, 1}, {"LeaderTerms", m.LeaderTerms, 1},
		{"ElectionsStarted", m.ElectionsStarted, 1}, {"BytesSent", m.BytesSent, 2 * n},
	} {
		if c.got < c.min {
			t.Errorf("%s = %d, want at least %d", c.name, c.got, c.min)
		}
	}
	if m.SaveLatency.Count != m.Saves || m.SaveBatch.Count > m.Saves || len(m.SaveLatency.Counts) != len(m.SaveLatency.Bounds)+1 {
		t.Errorf("save histograms: latency %d observations, batch %d, for %d saves", m.SaveLatency.Count, m.SaveBatch.Count, m.Saves)
	}
	var total int64
	for _, k := range m.CommitLatency.Counts {
		total += k
	}
	if total != m.CommitLatency.Count || m.CommitLatency.Sum <= 0 {
		t.Errorf("commit latency histogram: buckets add to %d, count %d, sum %v", total, m.CommitLatency.Count, m.CommitLatency.Sum)
	}
	c.stop(1)
	for range watch { // closed once the server stops
	}
}
