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
	done     chan readResult // buffered: neither the loop nor the applier waits on it
	follower bool            // started on a follower: the leader gives the index
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

// askKey names a follower's request for a read index: the follower and
// the ID of its read.
type askKey struct {
	from int
	id   uint64
}

// ReadBarrier makes a linearizable read possible without a log entry
// (ReadIndex, thesis 6.4): on the leader, it confirms that this server
// still leads, with a round of heartbeats or within its lease
// (Config.LeaderLease), takes its commit index, and waits until the
// StateMachine has applied the log through it. With Config.FollowerReads
// a follower does the same, asking the leader for that index. A read of
// the StateMachine's state made after ReadBarrier returns reflects every
// command committed before ReadBarrier was called. It returns that index,
// or fails with a *NotLeaderError (ErrNotLeader: this server is not the
// leader, or, on a follower, the leader gave no index), ErrLeadershipLost
// (this server stepped down before confirming), ErrStopped, or the
// context's error.
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
	req.follower = rf.node.Role() != core.Leader
	if !rf.node.ReadIndex(rf.nextRead) {
		req.done <- readResult{err: rf.notLeader()}
		return
	}
	if rf.reads == nil {
		rf.reads = map[uint64]*readReq{}
	}
	rf.reads[rf.nextRead] = req
}

// notLeader returns a *NotLeaderError naming the leader as far as this
// server knows.
func (rf *Raft) notLeader() error {
	l := rf.leaderHint()
	return &NotLeaderError{Leader: l, Addr: rf.remotes.addr(l)}
}

// readsReady hands the reads whose index the core settled to the
// applier, and fails those the core gave up. Called by the loop with each
// Ready.
func (rf *Raft) readsReady(rd core.Ready) {
	for _, rs := range rd.ReadStates {
		if req, ok := rf.reads[rs.ID]; ok {
			delete(rf.reads, rs.ID)
			switch {
			case req.follower:
				rf.metrics.readsFollower.Add(1)
			case rs.Lease:
				rf.metrics.readsLease.Add(1)
			default:
				rf.metrics.readsRound.Add(1)
			}
			rf.apply.waitApplied(rs.Index, req)
		}
	}
	for _, id := range rd.FailedReads {
		req, ok := rf.reads[id]
		if !ok {
			continue
		}
		delete(rf.reads, id)
		rf.metrics.readsFailed.Add(1)
		if req.follower {
			req.done <- readResult{err: fmt.Errorf("raft: read barrier on a follower: no read index from the leader (it refused, changed or did not answer in time): %w", rf.notLeader())}
		} else {
			req.done <- readResult{err: fmt.Errorf("raft: read barrier: %w", ErrLeadershipLost)}
		}
	}
}

// serveAsk hands a follower's request for a read index to the core,
// keeping respond for the core's answer (answerAsk). Called by the loop.
func (rf *Raft) serveAsk(m core.Message, respond func(core.Message)) {
	k := askKey{m.From, m.Body.(*core.ReadIndexArgs).ID}
	if old, ok := rf.asks[k]; ok { // the follower restarted and reused the ID
		old(core.Message{From: rf.me, To: m.From, Body: &core.ReadIndexReply{Term: rf.node.Term(), ID: k.id}})
	}
	if rf.asks == nil {
		rf.asks = map[askKey]func(core.Message){}
	}
	rf.asks[k] = respond
	rf.node.Step(m)
}

// answerAsk answers the follower's request that m, a ReadIndexReply the
// core sends, answers. Called by the loop.
func (rf *Raft) answerAsk(m core.Message) {
	k := askKey{m.To, m.Body.(*core.ReadIndexReply).ID}
	if respond, ok := rf.asks[k]; ok {
		delete(rf.asks, k)
		respond(m)
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
