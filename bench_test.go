package raft

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkit/raft/storage"
	"github.com/raftkit/raft/transport"
)

// BenchmarkCommit3 measures commits on three servers in one process, over
// TCP on 127.0.0.1, each with its log on disk (storage.WAL): 16 proposers
// on the leader call Apply with 100-byte commands, each waiting until the
// leader has applied its command before the next. It reports commits per
// second and the entries each fsync carried (Metrics: EntriesSaved over
// Saves, on all three servers, so followers' batches count too).
// Snapshots are off.
func BenchmarkCommit3(b *testing.B) {
	const proposers, size = 16, 100
	ids := []int{1, 2, 3}
	lns, peers, err := transport.ListenLocal(ids...)
	if err != nil {
		b.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := b.TempDir()
	rafts := map[int]*Raft{}
	defer func() {
		for _, rf := range rafts {
			rf.Close()
		}
	}()
	for i, id := range ids {
		fail := func(err error, closers ...io.Closer) {
			for _, c := range closers {
				c.Close()
			}
			for _, later := range ids[i+1:] {
				lns[later].Close()
			}
			b.Fatal(err)
		}
		wal, err := storage.Open(filepath.Join(dir, strconv.Itoa(id)), storage.Options{Logger: quiet})
		if err != nil {
			fail(err, lns[id])
		}
		tr, err := transport.New(transport.Config{Insecure: true, ID: id, Peers: peers, Listener: lns[id], Logger: quiet})
		if err != nil {
			fail(err, lns[id], wal)
		}
		rafts[id], err = New(Config{ID: id, Peers: peers, Transport: TCP(tr), Storage: wal,
			StateMachine: &bigSM{}, SnapshotBytes: math.MaxInt, Bootstrap: true, Logger: quiet})
		if err != nil {
			fail(err, tr, wal)
		}
	}
	var leader atomic.Int64 // the ID of the server last found leading
	findLeader := func() int {
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			for id, rf := range rafts {
				if _, isLeader := rf.GetState(); isLeader {
					leader.Store(int64(id))
					return id
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
		return 0
	}
	if findLeader() == 0 {
		b.Fatal("no leader within 20 s")
	}
	cmd := make([]byte, size) // Apply does not keep it
	// propose applies cmd on the leader, trying again while leadership
	// moves (which nothing here provokes).
	propose := func() error {
		for {
			_, err := rafts[int(leader.Load())].Apply(context.Background(), cmd)
			switch {
			case err == nil:
				return nil
			case errors.Is(err, ErrNotLeader), errors.Is(err, ErrNotCommitted), errors.Is(err, ErrOutcomeUnknown):
				if findLeader() == 0 {
					return errors.New("no leader within 20 s")
				}
			default:
				return err
			}
		}
	}
	// One command, so that the log holds entries of the leader's term.
	if err := propose(); err != nil {
		b.Fatal(err)
	}
	saved := func() (saves, entries int64) {
		for _, rf := range rafts {
			m := rf.Metrics()
			saves, entries = saves+m.Saves, entries+m.EntriesSaved
		}
		return saves, entries
	}
	saves0, entries0 := saved()
	var next atomic.Int64 // proposals handed out
	var wg sync.WaitGroup
	errs := make([]error, proposers)
	b.ResetTimer()
	for p := range proposers {
		wg.Go(func() {
			for n := next.Add(1); n <= int64(b.N); n = next.Add(1) {
				if err := propose(); err != nil {
					errs[p] = err
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
	if saves1, entries1 := saved(); saves1 > saves0 {
		b.ReportMetric(float64(entries1-entries0)/float64(saves1-saves0), "entries/fsync")
	}
}
