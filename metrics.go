package raft

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Metrics are a server's counters and histograms since it started, as
// Raft.Metrics returns them. They cost a few atomic additions on the paths
// they count; no metrics library is involved (cmd/raftkv exports them in
// the Prometheus text format).
type Metrics struct {
	ElectionsStarted   int64 // elections this server started (terms it campaigned in)
	LeaderTerms        int64 // terms this server led
	LeaderChanges      int64 // changes of the leader this server saw
	Proposals          int64 // commands it accepted as leader
	EntriesCommitted   int64 // entries it learned committed
	EntriesApplied     int64 // commands its service applied
	Saves              int64 // writes of state to storage (each durable: one fsync for the WAL)
	EntriesSaved       int64
	SnapshotsTaken     int64
	SnapshotsInstalled int64 // snapshots received from a leader and installed
	SnapshotBytes      int64 // bytes of the last snapshot taken or installed
	BytesSent          int64 // command bytes sent in AppendEntries
	ReadsRound         int64 // read barriers the leader confirmed with a round of heartbeats (ReadIndex)
	ReadsLease         int64 // read barriers the leader confirmed within its lease
	ReadsFollower      int64 // read barriers on a follower, with the leader's read index
	ReadsFailed        int64 // read barriers that failed: the leadership was lost, or the leader gave no index

	CommitLatency    Histogram // seconds from a proposal to its commit, on the leader
	SaveLatency      Histogram // seconds per storage write
	SaveBatch        Histogram // entries per storage write
	SnapshotDuration Histogram // seconds to take and save a snapshot
}

// Histogram counts observations in buckets: Counts[i] is how many were at
// most Bounds[i] and above Bounds[i-1]; the last count is for those above
// every bound.
type Histogram struct {
	Bounds []float64
	Counts []int64
	Count  int64
	Sum    float64
}

// histogram is a Histogram that can be observed from several goroutines.
type histogram struct {
	bounds []float64
	counts []atomic.Int64 // one more than bounds
	count  atomic.Int64
	sum    atomic.Uint64 // float64 bits
}

func newHistogram(bounds []float64) *histogram {
	return &histogram{bounds: bounds, counts: make([]atomic.Int64, len(bounds)+1)}
}

// latencyBounds are the buckets of a latency histogram, in seconds: 50 µs
// to 10 s.
var latencyBounds = []float64{50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5, 10}

// sizeBounds are the buckets of a histogram of counts: 1 to 4096.
var sizeBounds = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096}

func (h *histogram) observe(v float64) {
	i := 0
	for i < len(h.bounds) && v > h.bounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.count.Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

func (h *histogram) since(t time.Time) { h.observe(time.Since(t).Seconds()) }

func (h *histogram) snapshot() Histogram {
	s := Histogram{Bounds: h.bounds, Counts: make([]int64, len(h.counts)), Count: h.count.Load(), Sum: math.Float64frombits(h.sum.Load())}
	for i := range h.counts {
		s.Counts[i] = h.counts[i].Load()
	}
	return s
}

// metrics is what Raft.Metrics reads.
type metrics struct {
	electionsStarted, leaderTerms, leaderChanges, proposals atomic.Int64
	committed, applied, saves, entriesSaved, snapshotsTaken atomic.Int64
	snapshotsInstalled, snapshotBytes, bytesSent            atomic.Int64
	readsRound, readsLease, readsFollower, readsFailed      atomic.Int64
	commitLatency, saveLatency, saveBatch, snapshotDuration *histogram

	proposedAt map[int]time.Time // leader: when each entry of its term was proposed; owned by the loop
}

func newMetrics() *metrics {
	return &metrics{
		commitLatency: newHistogram(latencyBounds), saveLatency: newHistogram(latencyBounds),
		saveBatch: newHistogram(sizeBounds), snapshotDuration: newHistogram(latencyBounds),
		proposedAt: map[int]time.Time{},
	}
}

// Metrics returns the server's counters and histograms.
func (rf *Raft) Metrics() Metrics {
	m := rf.metrics
	return Metrics{
		ElectionsStarted: m.electionsStarted.Load(), LeaderTerms: m.leaderTerms.Load(), LeaderChanges: m.leaderChanges.Load(),
		Proposals: m.proposals.Load(), EntriesCommitted: m.committed.Load(), EntriesApplied: m.applied.Load(),
		Saves: m.saves.Load(), EntriesSaved: m.entriesSaved.Load(),
		SnapshotsTaken: m.snapshotsTaken.Load(), SnapshotsInstalled: m.snapshotsInstalled.Load(), SnapshotBytes: m.snapshotBytes.Load(),
		BytesSent:  m.bytesSent.Load(),
		ReadsRound: m.readsRound.Load(), ReadsLease: m.readsLease.Load(), ReadsFollower: m.readsFollower.Load(), ReadsFailed: m.readsFailed.Load(),
		CommitLatency: m.commitLatency.snapshot(), SaveLatency: m.saveLatency.snapshot(),
		SaveBatch: m.saveBatch.snapshot(), SnapshotDuration: m.snapshotDuration.snapshot(),
	}
}

// Leadership is who leads the cluster as a server sees it: the leader of
// the term, or -1 while it knows of none.
type Leadership struct {
	Term   int
	Leader int
	Addr   string // the leader's address, if known (New only)
}

// watchers are the channels WatchLeader handed out.
type watchers struct {
	mu   sync.Mutex
	last Leadership
	chs  map[chan Leadership]struct{}
}

// WatchLeader returns a channel that receives this server's view of the
// leadership, the current one first and then each change; a slow reader
// gets the latest (a view not yet read is replaced). stop ends the watch
// and closes the channel; so does the server stopping.
func (rf *Raft) WatchLeader() (<-chan Leadership, func()) {
	w := &rf.watch
	ch := make(chan Leadership, 1)
	w.mu.Lock()
	defer w.mu.Unlock()
	if rf.killed() {
		close(ch)
		return ch, func() {}
	}
	if w.chs == nil {
		w.chs = map[chan Leadership]struct{}{}
	}
	w.chs[ch] = struct{}{}
	ch <- w.last
	stop := func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if _, ok := w.chs[ch]; ok {
			delete(w.chs, ch)
			close(ch)
		}
	}
	return ch, stop
}

// tell sends l to every watcher, replacing a view not yet read.
func (w *watchers) tell(l Leadership) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.last = l
	for ch := range w.chs {
		select {
		case <-ch:
		default:
		}
		ch <- l
	}
}

// closeAll ends every watch.
func (w *watchers) closeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.chs {
		close(ch)
	}
	w.chs = nil
}
