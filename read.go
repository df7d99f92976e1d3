package raft

import (
	"context"
	"fmt"
	"sort"

	"github.com/raftkit/raft/core"
)

// readReq is a ReadBarrier call waiting in the loop, then in the applier;
// done gets the read index once the service has applied through it, or
// why the read failed.
type readReq struct {
	done chan readResult // buffered: neither the loop nor the applier waits on it
}

type readResult struct {
	index int
	err   error
}

// readWaiter is a read whose index is known, waiting for the applier.
type readWaiter struct {
	index int
	req   *readReq
}

// ReadBarrier makes a linearizable read possible without a log entry
// (ReadIndex, thesis 6.4): on the leader, it confirms with a round of
// heartbeats that this server still leads, takes its commit index, and
// waits until the StateMachine has applied the log through it. A read of
// the StateMachine's state made after ReadBarrier returns reflects every
// command committed before ReadBarrier was called. It returns that index,
// or fails with a *NotLeaderError (ErrNotLeader), ErrLeadershipLost (this
// server stepped down before confirming), ErrStopped, or the context's
// error.
func (rf *Raft) ReadBarrier(ctx context.Context) (int, error) {
	req := &readReq{done: make(chan readResult, 1)}
	if !rf.post(event{read: req}) {
		return 0, ErrStopped
	}
	select {
	case r := <-req.done:
		return r.index, r.err
	case <-ctx.Done():
		return 0, fmt.Errorf("raft: read barrier: %w", ctx.Err())
	case <-rf.done:
		return 0, ErrStopped
	}
}

// startRead starts the read req on the core, or answers it. Called by
// the loop.
func (rf *Raft) startRead(req *readReq) {
	rf.nextRead++
	if !rf.node.ReadIndex(rf.nextRead) {
		l := rf.leaderHint()
		req.done <- readResult{err: &NotLeaderError{Leader: l, Addr: rf.remotes.addr(l)}}
		return
	}
	if rf.reads == nil {
		rf.reads = map[uint64]*readReq{}
	}
	rf.reads[rf.nextRead] = req
}

// readsReady hands the reads whose index the core settled to the applier.
// Called by the loop with each Ready's ReadStates.
func (rf *Raft) readsReady(rd []core.ReadState) {
	for _, rs := range rd {
		if req, ok := rf.reads[rs.ID]; ok {
			delete(rf.reads, rs.ID)
			rf.apply.waitApplied(rs.Index, req)
		}
	}
}

// dropReads fails the reads the core dropped when this server stepped
// down. Called by the loop.
func (rf *Raft) dropReads() {
	for id, req := range rf.reads {
		req.done <- readResult{err: fmt.Errorf("raft: read barrier: %w", ErrLeadershipLost)}
		delete(rf.reads, id)
	}
}

// waitApplied answers req once the service has applied through index.
func (a *applier) waitApplied(index int, req *readReq) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if int(a.applied.Load()) >= index {
		req.done <- readResult{index: index}
		return
	}
	a.readers = append(a.readers, readWaiter{index, req})
}

// releaseReaders answers the reads whose index the service has applied
// through.
func (a *applier) releaseReaders() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.readers) == 0 {
		return
	}
	applied := int(a.applied.Load())
	sort.Slice(a.readers, func(i, j int) bool { return a.readers[i].index < a.readers[j].index })
	k := 0
	for k < len(a.readers) && a.readers[k].index <= applied {
		a.readers[k].req.done <- readResult{index: a.readers[k].index}
		k++
	}
	a.readers = a.readers[k:]
}
