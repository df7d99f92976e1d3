package main

import (
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/core"
	"github.com/raftkit/raft/kv"
)

// metricsHandler serves GET /metrics in the Prometheus text format: the
// replica's Raft metrics and status, its store's counts, and the Go
// runtime's and the process's.
func metricsHandler(rf *raft.Raft, store *kv.Server, log *slog.Logger) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		newRaftCollector(rf, store),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		// A scrape gets what could be gathered, not a 500, if one
		// collector fails.
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// raftCollector reads a replica's metrics at each scrape: the library's
// counters and histograms (raft.Metrics), its status (raft.Status) and the
// store's counts (kv.Server.Stats).
type raftCollector struct {
	rf    *raft.Raft
	store *kv.Server
}

func newRaftCollector(rf *raft.Raft, store *kv.Server) *raftCollector {
	return &raftCollector{rf: rf, store: store}
}

// A metric of raft.Metrics or raft.Status: its description and how to
// read it.
type (
	counterMetric struct {
		desc *prometheus.Desc
		get  func(*raft.Metrics) int64
	}
	histogramMetric struct {
		desc *prometheus.Desc
		get  func(*raft.Metrics) raft.Histogram
	}
	statusMetric struct {
		desc *prometheus.Desc
		get  func(*raft.Status) float64
	}
	storeMetric struct {
		desc *prometheus.Desc
		get  func(*kv.Stats) float64
	}
)

func desc(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }

var counterMetrics = []counterMetric{
	{desc("raft_elections_started_total", "Elections this replica started (terms it campaigned in)."), func(m *raft.Metrics) int64 { return m.ElectionsStarted }},
	{desc("raft_leader_terms_total", "Terms this replica led."), func(m *raft.Metrics) int64 { return m.LeaderTerms }},
	{desc("raft_leader_changes_total", "Changes of the leader this replica saw."), func(m *raft.Metrics) int64 { return m.LeaderChanges }},
	{desc("raft_proposals_total", "Commands this replica accepted as leader."), func(m *raft.Metrics) int64 { return m.Proposals }},
	{desc("raft_entries_committed_total", "Log entries this replica learned committed."), func(m *raft.Metrics) int64 { return m.EntriesCommitted }},
	{desc("raft_entries_applied_total", "Commands the store applied."), func(m *raft.Metrics) int64 { return m.EntriesApplied }},
	{desc("raft_saves_total", "Writes of Raft state to storage, each durable (one fsync for the WAL)."), func(m *raft.Metrics) int64 { return m.Saves }},
	{desc("raft_entries_saved_total", "Log entries written to storage."), func(m *raft.Metrics) int64 { return m.EntriesSaved }},
	{desc("raft_snapshots_taken_total", "Snapshots this replica took of its store."), func(m *raft.Metrics) int64 { return m.SnapshotsTaken }},
	{desc("raft_snapshots_installed_total", "Snapshots received from a leader and installed."), func(m *raft.Metrics) int64 { return m.SnapshotsInstalled }},
	{desc("raft_sent_command_bytes_total", "Command bytes sent to followers in AppendEntries."), func(m *raft.Metrics) int64 { return m.BytesSent }},
	{desc("raft_reads_round_total", "Linearizable reads the leader confirmed with a round of heartbeats (ReadIndex)."), func(m *raft.Metrics) int64 { return m.ReadsRound }},
	{desc("raft_reads_lease_total", "Linearizable reads the leader confirmed within its lease."), func(m *raft.Metrics) int64 { return m.ReadsLease }},
	{desc("raft_reads_follower_total", "Linearizable reads served by this replica as a follower, with the leader's read index."), func(m *raft.Metrics) int64 { return m.ReadsFollower }},
	{desc("raft_reads_failed_total", "Linearizable reads that failed: the leadership was lost, or the leader gave no read index."), func(m *raft.Metrics) int64 { return m.ReadsFailed }},
}

var histogramMetrics = []histogramMetric{
	{desc("raft_commit_latency_seconds", "Seconds from a proposal to its commit, on the leader."), func(m *raft.Metrics) raft.Histogram { return m.CommitLatency }},
	{desc("raft_save_latency_seconds", "Seconds per write of Raft state to storage."), func(m *raft.Metrics) raft.Histogram { return m.SaveLatency }},
	{desc("raft_save_batch_entries", "Log entries per write to storage."), func(m *raft.Metrics) raft.Histogram { return m.SaveBatch }},
	{desc("raft_snapshot_duration_seconds", "Seconds to take and save a snapshot."), func(m *raft.Metrics) raft.Histogram { return m.SnapshotDuration }},
}

var snapshotBytes = desc("raft_snapshot_bytes", "Bytes of the last snapshot taken or installed.")

var statusMetrics = []statusMetric{
	{desc("raft_term", "The replica's current term."), func(s *raft.Status) float64 { return float64(s.Term) }},
	{desc("raft_is_leader", "1 if this replica leads, else 0."), func(s *raft.Status) float64 { return boolFloat(s.Role == core.Leader) }},
	{desc("raft_leader_id", "The ID of the leader this replica knows of, -1 if none."), func(s *raft.Status) float64 { return float64(s.Leader) }},
	{desc("raft_commit_index", "Index of the last log entry known committed."), func(s *raft.Status) float64 { return float64(s.Commit) }},
	{desc("raft_applied_index", "Index of the last log entry the store applied."), func(s *raft.Status) float64 { return float64(s.Applied) }},
	{desc("raft_last_log_index", "Index of the last entry in the log."), func(s *raft.Status) float64 { return float64(s.LastLog) }},
	{desc("raft_snapshot_index", "Index of the last entry the snapshot covers."), func(s *raft.Status) float64 { return float64(s.Snapshot.Index) }},
	{desc("raft_log_bytes", "Bytes of commands in the log after the snapshot."), func(s *raft.Status) float64 { return float64(s.LogBytes) }},
}

var storeMetrics = []storeMetric{
	{desc("raftkv_keys", "Keys in the store."), func(s *kv.Stats) float64 { return float64(s.Keys) }},
	{desc("raftkv_clients", "Clients whose latest request the store remembers, for exactly-once retries."), func(s *kv.Stats) float64 { return float64(s.Clients) }},
	{desc("raftkv_waiting_requests", "Requests to this replica waiting for their log entry to be applied."), func(s *kv.Stats) float64 { return float64(s.Waiting) }},
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Describe sends the descriptions of every metric the collector gives.
func (c *raftCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range counterMetrics {
		ch <- m.desc
	}
	for _, m := range histogramMetrics {
		ch <- m.desc
	}
	ch <- snapshotBytes
	for _, m := range statusMetrics {
		ch <- m.desc
	}
	for _, m := range storeMetrics {
		ch <- m.desc
	}
}

// Collect reads the replica's metrics now. A stopped Raft server has no
// status: the status gauges are left out then.
func (c *raftCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.rf.Metrics()
	for _, cm := range counterMetrics {
		ch <- prometheus.MustNewConstMetric(cm.desc, prometheus.CounterValue, float64(cm.get(&m)))
	}
	for _, hm := range histogramMetrics {
		count, buckets := cumulative(hm.get(&m))
		ch <- prometheus.MustNewConstHistogram(hm.desc, count, hm.get(&m).Sum, buckets)
	}
	ch <- prometheus.MustNewConstMetric(snapshotBytes, prometheus.GaugeValue, float64(m.SnapshotBytes))
	if st, ok := c.rf.Status(); ok {
		for _, sm := range statusMetrics {
			ch <- prometheus.MustNewConstMetric(sm.desc, prometheus.GaugeValue, sm.get(&st))
		}
	}
	stats := c.store.Stats()
	for _, sm := range storeMetrics {
		ch <- prometheus.MustNewConstMetric(sm.desc, prometheus.GaugeValue, sm.get(&stats))
	}
}

// cumulative turns a raft.Histogram's counts per bucket into Prometheus's
// cumulative counts per upper bound. The count is that of every bucket,
// the one above the last bound included, so that it always matches the
// buckets (the library reads its counters one by one).
func cumulative(h raft.Histogram) (count uint64, buckets map[float64]uint64) {
	buckets = make(map[float64]uint64, len(h.Bounds))
	for i, n := range h.Counts {
		count += uint64(n)
		if i < len(h.Bounds) {
			buckets[h.Bounds[i]] = count
		}
	}
	return count, buckets
}
