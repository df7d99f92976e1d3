package raft

import (
	"encoding/binary"
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

// countingWAL is a storage.WAL that counts the Saves that write (each
// is one fsync: a batch of small entries is one record) and the entries
// they carry.
type countingWAL struct {
	*storage.WAL
	last            HardState // Save is called from one goroutine
	fsyncs, entries *atomic.Int64
}

func (w *countingWAL) Save(hs HardState, ents []Entry) error {
	if hs != w.last || len(ents) > 0 {
		w.fsyncs.Add(1)
		w.entries.Add(int64(len(ents)))
	}
	w.last = hs
	return w.WAL.Save(hs, ents)
}

// tagSM remembers the tag (first 8 bytes) of the command applied at each
// index, and wakes whoever waits for an index to be applied.
type tagSM struct {
	mu      sync.Mutex
	applied int
	tags    map[int]uint64
	waiters map[int]chan struct{}
}

func newTagSM() *tagSM {
	return &tagSM{tags: map[int]uint64{}, waiters: map[int]chan struct{}{}}
}

func (m *tagSM) Apply(c Command) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tags[c.Index] = binary.LittleEndian.Uint64(c.Data)
	m.applied = c.Index
	for i, ch := range m.waiters {
		if i <= c.Index { // indexes skipped were no-ops
			close(ch)
			delete(m.waiters, i)
		}
	}
}

func (m *tagSM) Snapshot(w io.Writer) error { return nil }
func (m *tagSM) Restore(r io.Reader) error  { return errors.New("tagSM: no snapshots to restore") }

// wait waits until index is applied, at most 5 s, and reports whether the
// command there has tag.
func (m *tagSM) wait(index int, tag uint64) bool {
	m.mu.Lock()
	if index > m.applied {
		ch := m.waiters[index]
		if ch == nil {
			ch = make(chan struct{})
			m.waiters[index] = ch
		}
		m.mu.Unlock()
		select {
		case <-ch:
		case <-time.After(5 * time.Second): // leadership moved, and nothing more is applied here
		}
		m.mu.Lock()
	}
	defer m.mu.Unlock()
	return m.tags[index] == tag
}

// BenchmarkCommit3 measures commits on three servers in one process, over
// TCP on 127.0.0.1, each with its log on disk (storage.WAL): 16 proposers
// on the leader propose 100-byte commands, each waiting until the leader
// has applied its command before the next. It reports commits per second
// and the entries each fsync carried (on all three servers, so followers'
// batches count too). Snapshots are off.
func BenchmarkCommit3(b *testing.B) {
	const proposers, size = 16, 100
	ids := []int{1, 2, 3}
	lns, peers, err := transport.ListenLocal(ids...)
	if err != nil {
		b.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := b.TempDir()
	var fsyncs, entries atomic.Int64
	rafts := map[int]*Raft{}
	sms := map[int]*tagSM{}
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
		tr, err := transport.New(transport.Config{ID: id, Peers: peers, Listener: lns[id], Logger: quiet})
		if err != nil {
			fail(err, lns[id], wal)
		}
		sms[id] = newTagSM()
		rafts[id], err = New(Config{ID: id, Peers: peers, Transport: TCP(tr), Storage: &countingWAL{WAL: wal, fsyncs: &fsyncs, entries: &entries},
			StateMachine: sms[id], SnapshotBytes: math.MaxInt, Bootstrap: true, Logger: quiet})
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
	// One command, so that the log holds entries of the leader's term.
	propose := func(tag uint64) error {
		cmd := make([]byte, size)
		binary.LittleEndian.PutUint64(cmd, tag)
		for {
			id := int(leader.Load())
			index, _, err := rafts[id].Propose(cmd)
			if errors.Is(err, ErrNotLeader) {
				if findLeader() == 0 {
					return errors.New("no leader within 20 s")
				}
				continue
			}
			if err != nil {
				return err
			}
			if sms[id].wait(index, tag) {
				return nil
			}
		}
	}
	if err := propose(1); err != nil {
		b.Fatal(err)
	}
	fsyncs.Store(0)
	entries.Store(0)
	var next atomic.Int64 // proposals handed out
	var wg sync.WaitGroup
	errs := make([]error, proposers)
	b.ResetTimer()
	for p := range proposers {
		wg.Go(func() {
			for n := next.Add(1); n <= int64(b.N); n = next.Add(1) {
				if err := propose(uint64(n) + 1); err != nil {
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
	if f := fsyncs.Load(); f > 0 {
		b.ReportMetric(float64(entries.Load())/float64(f), "entries/fsync")
	}
}
