package raft

import (
	"fmt"
	"sync"
	"time"

	"github.com/raftkit/raft/core"
)

// saveBatch is what one Ready leaves to do once its state is durable: the
// state to save, then the messages and replies that wait for it, then the
// service's part.
type saveBatch struct {
	hs       core.HardState
	mustSave bool
	snap     *core.SnapshotMeta // installed from the leader: its data is in sink
	sink     core.SnapshotSink
	ents     []core.Entry
	after    []core.Message // may leave only once saved (RequestVote)
	replies  []pendingReply
	commits  []core.Entry
}

// saver saves the state of the Readys in a goroutine of its own, so that
// the event loop goes on meanwhile: a leader's AppendEntries leave while
// its own entries are being written (Raft thesis 10.2.1), and the Readys
// that pile up during one write share the next (group commit). Each
// batch's replies, and what it commits, go out only once the batch, and
// every batch before it, is durable.
type saver struct {
	rf    *Raft
	mu    sync.Mutex
	queue []saveBatch
	wake  chan struct{}
}

func (s *saver) push(b saveBatch) {
	s.mu.Lock()
	s.queue = append(s.queue, b)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *saver) run() {
	rf := s.rf
	for {
		select {
		case <-s.wake:
		case <-rf.done:
			s.drop()
			return
		}
		s.mu.Lock()
		batches := s.queue
		s.queue = nil
		s.mu.Unlock()
		for len(batches) > 0 {
			n := s.group(batches)
			if err := s.save(batches[:n]); err != nil {
				if !rf.killed() {
					// A server that cannot save must not answer anything
					// that depends on what it failed to save.
					err = fmt.Errorf("raft: server %d stops: save state: %w", rf.me, err)
					rf.logger.Error(err.Error())
					rf.stop(err)
				}
				s.mu.Lock()
				s.queue = append(batches, s.queue...)
				s.mu.Unlock()
				s.drop()
				return
			}
			for _, b := range batches[:n] {
				s.release(b)
			}
			batches = batches[n:]
		}
	}
}

// group returns how many batches from the first one share one save: all
// of them up to one that installs a snapshot, which goes alone.
func (s *saver) group(batches []saveBatch) int {
	if batches[0].snap != nil {
		return 1
	}
	n := 1
	for n < len(batches) && batches[n].snap == nil {
		n++
	}
	return n
}

// save makes the state of the batches durable, with one Save: the last
// HardState, and their entries merged as successive Saves would leave
// them (a later batch's entries replace the log from their first index).
func (s *saver) save(batches []saveBatch) error {
	rf := s.rf
	var hs core.HardState
	var ents []core.Entry
	must := false
	for _, b := range batches {
		if b.snap != nil {
			if b.sink == nil || !b.sink.Meta().Equal(*b.snap) {
				return fmt.Errorf("install snapshot %+v: its data is not the one that arrived", *b.snap)
			}
			if err := b.sink.Commit(false); err != nil {
				return fmt.Errorf("install snapshot through %d: %w", b.snap.Index, err)
			}
			rf.metrics.snapshotsInstalled.Add(1)
		} else if b.sink != nil {
			b.sink.Abort() // not installed: the service has it already
		}
		if !b.mustSave {
			continue
		}
		must, hs = true, b.hs
		if len(b.ents) > 0 {
			if len(ents) > 0 && b.ents[0].Index <= ents[len(ents)-1].Index {
				ents = ents[:max(0, b.ents[0].Index-ents[0].Index)]
			}
			ents = append(ents, b.ents...)
		}
	}
	if !must {
		return nil
	}
	if rf.killed() {
		return ErrStopped
	}
	// Figure 2: update stable storage before responding to RPCs.
	start := time.Now()
	if err := rf.store.Save(hs, ents); err != nil {
		return err
	}
	m := rf.metrics
	m.saveLatency.since(start)
	m.saves.Add(1)
	if len(ents) > 0 {
		m.entriesSaved.Add(int64(len(ents)))
		m.saveBatch.observe(float64(len(ents)))
	}
	if len(ents) > 0 {
		last := ents[len(ents)-1]
		rf.post(event{saved: core.SnapshotMeta{Index: last.Index, Term: last.Term}})
	}
	return nil
}

// release sends what waited for the batch's save, and hands its service
// part to the applier.
func (s *saver) release(b saveBatch) {
	rf := s.rf
	for _, r := range b.replies {
		r.respond(r.msg)
	}
	for _, m := range b.after {
		rf.send(m)
	}
	if b.snap != nil {
		rf.apply.restore(*b.snap) // Figure 13, 8: reset the service from the snapshot
	}
	if len(b.commits) > 0 {
		rf.apply.push(b.commits)
	}
}

// drop forgets what was not saved: its replies are not sent (the callers
// see a failed call), and received snapshots are dropped.
func (s *saver) drop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.queue {
		for _, r := range b.replies {
			r.respond(core.Message{})
		}
		if b.sink != nil {
			b.sink.Abort()
		}
	}
	s.queue = nil
}
