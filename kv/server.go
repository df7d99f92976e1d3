package kv

import (
	"context"
	"sync"
	"time"

	"github.com/raftkit/raft"
)

// Raft is what the server needs of its Raft peer; *raft.Raft is one.
type Raft interface {
	Start(cmd interface{}) (index, term int, isLeader bool)
	GetState() (term int, isLeader bool)
}

// termPoll is how often a waiting request checks whether its server is
// still the leader of the term it started in.
const termPoll = 10 * time.Millisecond

// Server is one replica of the store. It applies committed operations from
// the apply channel in log order and answers the requests that wait on
// them.
type Server struct {
	rf Raft

	mu      sync.Mutex
	data    map[string]string
	last    map[int64]applied // per client: its latest applied request
	waiting map[int]chan applied
	applied int // index of the last applied entry
	stopped bool
	done    chan struct{}
}

// applied is an operation that the state machine executed.
type applied struct {
	op    Op
	res   Result
	stale bool // not executed: the client had a later request applied
}

// NewServer returns a server applying what arrives on applyCh to an empty
// store; it stops when applyCh is closed or Stop is called.
func NewServer(rf Raft, applyCh <-chan raft.ApplyMsg) *Server {
	s := &Server{
		rf:      rf,
		data:    map[string]string{},
		last:    map[int64]applied{},
		waiting: map[int]chan applied{},
		done:    make(chan struct{}),
	}
	go s.applyLoop(applyCh)
	return s
}

// Stop makes waiting and future requests fail with ErrStopped.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopped {
		s.stopped = true
		close(s.done)
	}
}

// Do runs op through the log and returns its result once it is applied.
// It fails with ErrWrongLeader if this server is not the leader, and with
// ErrLeadershipLost if another command takes op's place in the log or the
// term moves on first; ctx bounds the wait.
func (s *Server) Do(ctx context.Context, op Op) (Result, error) {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return Result{}, ErrStopped
	}
	if a, ok := s.last[op.ClientID]; ok && op.Seq != 0 && op.Seq <= a.op.Seq {
		s.mu.Unlock()
		if op.Seq < a.op.Seq {
			return Result{}, ErrStale
		}
		return a.res, nil // a retry of a request already applied
	}
	index, term, isLeader := s.rf.Start(op)
	if !isLeader {
		s.mu.Unlock()
		return Result{}, ErrWrongLeader
	}
	// Registered before the apply loop can reach index: it needs s.mu.
	ch := make(chan applied, 1)
	s.waiting[index] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.waiting[index] == ch {
			delete(s.waiting, index)
		}
		s.mu.Unlock()
	}()

	poll := time.NewTicker(termPoll)
	defer poll.Stop()
	for {
		select {
		case a := <-ch:
			if a.op.ClientID != op.ClientID || a.op.Seq != op.Seq {
				return Result{}, ErrLeadershipLost // another command took the slot
			}
			if a.stale {
				return Result{}, ErrStale
			}
			return a.res, nil
		case <-poll.C:
			if t, leader := s.rf.GetState(); t != term || !leader {
				return Result{}, ErrLeadershipLost
			}
		case <-ctx.Done():
			return Result{}, ctx.Err()
		case <-s.done:
			// op is in the log and may still commit: not ErrStopped, which
			// promises it was not started.
			return Result{}, ErrLeadershipLost
		}
	}
}

func (s *Server) applyLoop(applyCh <-chan raft.ApplyMsg) {
	defer s.Stop()
	for {
		var msg raft.ApplyMsg
		var ok bool
		select {
		case msg, ok = <-applyCh:
			if !ok {
				return
			}
		case <-s.done:
			return
		}
		if !msg.CommandValid {
			continue
		}
		op, _ := msg.Command.(Op)
		s.mu.Lock()
		a := s.apply(op)
		s.applied = msg.CommandIndex
		if ch, ok := s.waiting[msg.CommandIndex]; ok {
			ch <- a
			delete(s.waiting, msg.CommandIndex)
		}
		s.mu.Unlock()
	}
}

// apply executes op on the store, once per client request: a request the
// client already had applied gets the result it got then (exactly-once). A
// request with Seq 0 is not tracked: it is applied each time it appears.
func (s *Server) apply(op Op) applied {
	if a, ok := s.last[op.ClientID]; ok && op.Seq != 0 && op.Seq <= a.op.Seq {
		if op.Seq == a.op.Seq {
			return a
		}
		return applied{op: op, stale: true} // older than the client's latest
	}
	old, found := s.data[op.Key]
	switch op.Kind {
	case Put:
		s.data[op.Key] = op.Value
	case Append:
		s.data[op.Key] = old + op.Value
	case Delete:
		delete(s.data, op.Key)
	}
	a := applied{op: op, res: Result{Value: old, Found: found}}
	if op.Seq != 0 {
		s.last[op.ClientID] = a
	}
	return a
}

// Applied returns the index of the last log entry the store has applied.
func (s *Server) Applied() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applied
}
