package raft

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftkit/raft/core"
)

// applier hands committed entries, and snapshots installed from a leader,
// to the service from a goroutine of its own, so that a slow service never
// stalls the protocol: they wait in an unbounded queue. It never hands out
// anything at or before what it handed out last (or the snapshot the
// service started from).
//
// The service is a StateMachine; the applier also takes a snapshot
// whenever the commands applied since the last one pass snapBytes.
type applier struct {
	mu    sync.Mutex
	queue []applyItem
	wake  chan struct{}

	sm        StateMachine
	store     Storage // where snapshots are read from and written to
	snapBytes int     // a StateMachine is snapshotted after this many command bytes
	compact   func(index int) bool
	metrics   *metrics

	waiters map[int]waiter // by index: Apply calls waiting for their entries; under mu
	readers []readWaiter   // ReadBarrier calls waiting for the service to apply through their index; under mu

	last      core.SnapshotMeta // the last entry handed out, and the configuration as of it; owned by run (and start)
	me        int               // this server
	member    bool              // a configuration applied so far held this server; owned by run
	removed   atomic.Bool       // then one without it was applied
	applied   atomic.Int64      // last.Index, for Status
	sinceSnap int               // command bytes applied since the last snapshot; owned by run
	done      <-chan struct{}
	fail      func(error) // stops the server
}

// applyItem is a committed entry, or a snapshot to restore the service from.
type applyItem struct {
	entry core.Entry
	snap  *core.SnapshotMeta
}

// push queues committed entries, in log order.
func (a *applier) push(ents []core.Entry) {
	a.mu.Lock()
	for _, e := range ents {
		a.queue = append(a.queue, applyItem{entry: e})
	}
	a.mu.Unlock()
	a.signal()
}

// restore queues a snapshot installed from the leader. The entries still
// queued are older than it (it was installed past the commit index), so it
// replaces them.
func (a *applier) restore(meta core.SnapshotMeta) {
	a.mu.Lock()
	a.queue = append(a.queue[:0], applyItem{snap: &meta})
	a.mu.Unlock()
	a.signal()
}

func (a *applier) signal() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// run hands out what is queued until the server stops. The StateMachine
// starts from the storage's snapshot, if any.
func (a *applier) run() {
	if a.last.Index > 0 {
		if err := a.restoreSM(); err != nil {
			a.fail(err)
			return
		}
	}
	for {
		select {
		case <-a.wake:
		case <-a.done:
			return
		}
		a.mu.Lock()
		batch := a.queue
		a.queue = nil
		a.mu.Unlock()
		for _, it := range batch {
			var err error
			switch {
			case it.snap != nil:
				err = a.restoreSM()
			case it.entry.Index <= a.last.Index:
				// in a snapshot handed out already
			default:
				err = a.apply(it.entry)
			}
			if err != nil {
				// The service cannot skip a command, nor apply a later
				// one without it.
				a.fail(err)
				return
			}
			if a.stopped() {
				return
			}
		}
		a.releaseReaders()
		if a.sinceSnap >= a.snapBytes {
			if err := a.snapshot(); err != nil {
				a.fail(err)
				return
			}
		}
	}
}

func (a *applier) stopped() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// apply hands a committed entry to the service.
// applied moves only once the service holds e: a read barrier answered
// from another goroutine (waitApplied) must not see e's index while the
// service is still applying it.
func (a *applier) apply(e core.Entry) error {
	a.last.Index, a.last.Term = e.Index, e.Term
	defer a.applied.Store(int64(e.Index))
	if e.Type == core.EntryConfig {
		a.noteConfig(e)
	}
	if e.Type != core.EntryNormal {
		a.settle(e, nil) // no command for the service; a waiter's entry was replaced
		return nil
	}
	v := a.sm.Apply(Command{Index: e.Index, Term: e.Term, Data: e.Command})
	a.metrics.applied.Add(1)
	a.settle(e, v)
	a.sinceSnap += len(e.Command)
	return nil
}

// metaRestorer is a StateMachine that restores with the meta of its
// snapshot (package lab's, which hands it on to the lab's service).
type metaRestorer interface {
	RestoreAt(meta SnapshotMeta, r io.Reader) error
}

// restoreSM restores the StateMachine from the storage's current snapshot.
func (a *applier) restoreSM() error {
	meta, rc, err := a.openSnapshot()
	if err != nil {
		return err
	}
	defer rc.Close()
	if mr, ok := a.sm.(metaRestorer); ok {
		err = mr.RestoreAt(meta, rc)
	} else {
		err = a.sm.Restore(rc)
	}
	if err != nil {
		return fmt.Errorf("raft: restore the state machine from the snapshot through %d: %w", meta.Index, err)
	}
	conf := a.last.Membership
	a.last, a.sinceSnap = meta, 0
	a.last.Membership = conf
	a.setConfig(meta.Membership)
	a.applied.Store(int64(meta.Index))
	a.abandon(0, errors.New("raft: the server installed a snapshot from the leader past the command"))
	return nil
}

func (a *applier) openSnapshot() (core.SnapshotMeta, io.ReadCloser, error) {
	meta, rc, err := a.store.OpenSnapshot()
	if err != nil {
		return meta, nil, fmt.Errorf("raft: open the snapshot: %w", err)
	}
	if rc == nil {
		return meta, nil, fmt.Errorf("raft: no snapshot to restore the service from")
	}
	return meta, rc, nil
}

// snapshot has the StateMachine write its state into a snapshot through
// the last entry applied, saves it, then lets the core discard the log it
// covers (section 7).
func (a *applier) snapshot() error {
	start := time.Now()
	meta := a.last
	sink, err := a.store.CreateSnapshot(meta)
	if err != nil {
		return fmt.Errorf("raft: create a snapshot through %d: %w", meta.Index, err)
	}
	counted := &countingWriter{w: sink}
	if err := a.sm.Snapshot(counted); err != nil {
		sink.Abort()
		return fmt.Errorf("raft: the state machine's snapshot through %d: %w", meta.Index, err)
	}
	if err := sink.Commit(true); err != nil {
		return fmt.Errorf("raft: save the snapshot through %d: %w", meta.Index, err)
	}
	a.sinceSnap = 0
	a.metrics.snapshotsTaken.Add(1)
	a.metrics.snapshotBytes.Store(counted.n)
	a.metrics.snapshotDuration.since(start)
	a.compact(meta.Index)
	return nil
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
