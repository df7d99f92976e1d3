package kv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftkit/raft"
)

// Raft is what the server needs of its Raft server; *raft.Raft made by
// raft.New is one (over raft.Make, NewLabServer adapts it).
type Raft interface {
	// Propose puts cmd in the log if this server leads; it fails with
	// raft.ErrNotLeader, raft.ErrTooLarge or raft.ErrStopped.
	Propose(cmd []byte) (index, term int, err error)
	GetState() (term int, isLeader bool)
}

// termPoll is how often a waiting request checks whether its server is
// still the leader of the term it started in.
const termPoll = 10 * time.Millisecond

// ServerOptions tunes a Server; the zero value means the defaults. Every
// replica of a cluster must have the same ClientTTL and MaxClients: they
// decide, at each log position, which clients the store forgets (see the
// package documentation).
type ServerOptions struct {
	// ClientTTL is how long a client may stay idle, in the log's time,
	// before the store forgets it (default DefaultClientTTL).
	ClientTTL time.Duration
	// MaxClients bounds the clients the store remembers; beyond it, it
	// forgets the least recently active (default DefaultMaxClients).
	MaxClients int
	// Now stamps the requests this server proposes (default time.Now).
	Now func() time.Time
	// MaxRaftState, for a server over raft.Make (NewLabServer): once the
	// Raft state the Persister holds reaches this many bytes, the server
	// snapshots, and Raft discards the log the snapshot covers; 0 never
	// snapshots. A server over raft.New is snapshotted by Raft as
	// raft.Config.SnapshotBytes says.
	MaxRaftState int
	// Logger gets the commands the server cannot apply (default
	// slog.Default()).
	Logger *slog.Logger
	// ReadsThroughLog sends every GET through the log, as every other
	// operation goes. Without it, a GET that carries no client identity
	// (Seq 0, as the Clerk sends them) is served with ReadIndex when the
	// Raft server can (a *raft.Raft can: see reader), with no log entry
	// and no disk write: by the leader, and, if the Raft server has
	// raft.Config.FollowerReads, by a follower too.
	ReadsThroughLog bool
}

// A reader makes linearizable reads possible without a log entry;
// *raft.Raft is one (ReadBarrier, ReadIndex in the Raft thesis, 6.4).
type reader interface {
	ReadBarrier(ctx context.Context) (index int, err error)
}

// Server is one replica of the store: the raft.StateMachine of its Raft
// server, which applies the committed operations in log order and answers
// the requests that wait on them, and snapshots and restores the store
// with its table of clients.
type Server struct {
	opts ServerOptions // with the defaults filled in

	mu       sync.Mutex
	rf       Raft // nil until Attach
	data     map[string]string
	httpDir  map[int]string // the servers' HTTP addresses (directory.go)
	sessions *sessions
	waiting  map[reqID][]*waiter // requests waiting for an entry of their client and seq
	applied  int                 // index of the last applied command
	stopped  bool
	done     chan struct{}
	// failed is why the store stopped applying the log (a command it
	// could not decode): it no longer matches the log, so it answers
	// nothing and refuses to snapshot.
	failed error
}

// reqID names a client request.
type reqID struct{ client, seq int64 }

// waiter is a request waiting for its answer.
type waiter struct {
	op Op
	ch chan outcome // buffered: the apply loop never blocks on it
}

// outcome is the answer to a request: its result, or ErrStale,
// ErrConflict or ErrClientExpired.
type outcome struct {
	res Result
	err error
}

// leaderLocalGet, set by tests only (SetLeaderLocalGet in export_test.go),
// makes Do answer a Get from the local map when this server thinks it
// leads, without going through the log: the stale-read bug that
// TestStaleReadFromDeposedLeader must catch.
var leaderLocalGet atomic.Bool

// NewServer returns a server with an empty store, to be the StateMachine
// of a Raft server made by raft.New; Attach that Raft server to it before
// calling Do.
func NewServer(opts ServerOptions) *Server {
	if opts.ClientTTL <= 0 {
		opts.ClientTTL = DefaultClientTTL
	}
	if opts.MaxClients <= 0 {
		opts.MaxClients = DefaultMaxClients
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Server{
		opts:     opts,
		data:     map[string]string{},
		httpDir:  map[int]string{},
		sessions: newSessions(opts.ClientTTL, opts.MaxClients),
		waiting:  map[reqID][]*waiter{},
		done:     make(chan struct{}),
	}
}

// Attach sets the Raft server that Do proposes to: the one whose
// StateMachine s is.
func (s *Server) Attach(rf Raft) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rf = rf
}

// Stop makes waiting and future requests fail with ErrStopped.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

func (s *Server) stopLocked() {
	if !s.stopped {
		s.stopped = true
		close(s.done)
	}
}

// Do runs op through the log and returns its result once it is applied.
// It fails with ErrWrongLeader if this server is not the leader, with
// ErrTooLarge if the log refuses op for its size, and with
// ErrLeadershipLost if the term moves on before op is applied; with
// ErrStopped if the server was stopped or cannot apply the log; with
// ErrStale, ErrConflict or ErrClientExpired if op breaks the client
// identity contract (see the package documentation). ctx bounds the wait.
// A request with Seq 0 gets a random client ID of its own here.
func (s *Server) Do(ctx context.Context, op Op) (Result, error) {
	s.mu.Lock()
	rf := s.rf
	s.mu.Unlock()
	if rf == nil {
		return Result{}, fmt.Errorf("%w: the server has no Raft server yet (Attach)", ErrWrongLeader)
	}
	if leaderLocalGet.Load() && op.Kind == Get {
		if _, isLeader := rf.GetState(); isLeader {
			s.mu.Lock()
			v, ok := s.data[op.Key]
			s.mu.Unlock()
			return Result{Value: v, Found: ok}, nil
		}
	}
	if r, ok := rf.(reader); ok && op.Kind == Get && op.Seq == 0 && !s.opts.ReadsThroughLog {
		return s.read(ctx, r, op.Key)
	}
	if op.Seq == 0 {
		op.ClientID = randomClientID() // its own waiter key
	}
	op.Time = s.opts.Now().UnixNano()
	id := reqID{op.ClientID, op.Seq}
	cmd, err := op.MarshalBinary()
	if err != nil {
		return Result{}, err
	}

	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return Result{}, ErrStopped
	}
	// A retry of an applied request, or one the table refuses for sure.
	// An unknown client is not refused here: this replica may not have
	// applied its first request yet; the log decides.
	if out, known := s.sessions.check(op); known && !errors.Is(out.err, ErrClientExpired) {
		s.mu.Unlock()
		return out.res, out.err
	}
	if a, ok := rf.(outcomeRaft); ok {
		s.mu.Unlock()
		return s.propose(ctx, a, op, cmd)
	}
	// Registered before the proposal, so that the apply loop cannot
	// apply op before anyone waits for it; and by client and seq, not by
	// index, which is known only once Propose returns.
	w := &waiter{op: op, ch: make(chan outcome, 1)}
	s.waiting[id] = append(s.waiting[id], w)
	s.mu.Unlock()
	defer s.unregister(id, w)

	// No lock is held across Propose: concurrent requests share the
	// leader's next save.
	_, term, err := rf.Propose(cmd)
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		return Result{}, ErrWrongLeader
	case errors.Is(err, raft.ErrTooLarge):
		return Result{}, fmt.Errorf("%w: %w", ErrTooLarge, err)
	case errors.Is(err, raft.ErrStopped):
		return Result{}, ErrStopped
	case err != nil:
		return Result{}, fmt.Errorf("kv: propose %s %q: %w", op.Kind, op.Key, err)
	}

	poll := time.NewTicker(termPoll)
	defer poll.Stop()
	for {
		select {
		case out := <-w.ch:
			return out.res, out.err
		case <-poll.C:
			// If op's entry lost its slot, the term has moved on.
			if t, leader := rf.GetState(); t != term || !leader {
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

// read serves a GET with ReadIndex: once the leader has confirmed that it
// still leads (for r itself, or for r as a follower that asked it) and the
// store has applied the log through the leader's commit index of then,
// the store holds every write committed before the read began, so the
// read is linearizable.
func (s *Server) read(ctx context.Context, r reader, key string) (Result, error) {
	_, err := r.ReadBarrier(ctx)
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		return Result{}, ErrWrongLeader
	case errors.Is(err, raft.ErrStopped):
		return Result{}, ErrStopped
	case errors.Is(err, raft.ErrLeadershipLost):
		return Result{}, ErrLeadershipLost
	case err != nil:
		return Result{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return Result{}, ErrStopped
	}
	v, ok := s.data[key]
	return Result{Value: v, Found: ok}, nil
}

// An outcomeRaft tells what became of a proposal; *raft.Raft is one.
// Over it, Do waits for its command's outcome, with no waiter of its own
// and no polling; over the lab's Start (NewLabServer), Do registers a
// waiter that Apply answers, and polls the term.
type outcomeRaft interface {
	Apply(ctx context.Context, cmd []byte) (raft.Result, error)
}

// propose runs op, encoded as cmd, through a's log, and returns its
// outcome: the one this store's Apply returned at op's index.
func (s *Server) propose(ctx context.Context, a outcomeRaft, op Op, cmd []byte) (Result, error) {
	res, err := a.Apply(ctx, cmd)
	switch {
	case err == nil:
		out, ok := res.Value.(outcome)
		if !ok { // the store failed and applies nothing more
			return Result{}, ErrStopped
		}
		return out.res, out.err
	case errors.Is(err, raft.ErrOutcomeUnknown):
		// op may be in the log and commit later.
		if ctx.Err() != nil {
			return Result{}, ctx.Err()
		}
		return Result{}, ErrLeadershipLost
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrNotCommitted):
		return Result{}, ErrWrongLeader // not applied: another server may take it
	case errors.Is(err, raft.ErrTooLarge):
		return Result{}, fmt.Errorf("%w: %w", ErrTooLarge, err)
	case errors.Is(err, raft.ErrStopped):
		return Result{}, ErrStopped
	case ctx.Err() != nil:
		return Result{}, ctx.Err() // before op was proposed
	}
	return Result{}, fmt.Errorf("kv: propose %s %q: %w", op.Kind, op.Key, err)
}

// unregister removes w from the requests waiting for id.
func (s *Server) unregister(id reqID, w *waiter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ws := s.waiting[id]
	for i, x := range ws {
		if x == w {
			ws = append(ws[:i:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(s.waiting, id)
	} else {
		s.waiting[id] = ws
	}
}

// Apply applies a committed command: an Op, as MarshalBinary encodes it
// (Server is a raft.StateMachine). A command that does not decode stops
// the server (see failLocked).
func (s *Server) Apply(c raft.Command) any {
	var op Op
	err := op.UnmarshalBinary(c.Data)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed != nil {
		return nil
	}
	if err != nil {
		s.failLocked(fmt.Errorf("kv: command at log index %d (term %d): %w", c.Index, c.Term, err))
		return nil
	}
	out := s.apply(op)
	s.applied = c.Index
	id := reqID{op.ClientID, op.Seq}
	for _, w := range s.waiting[id] {
		// A waiter may wait for another request under the same
		// client and seq: the table now tells its answer.
		if o, known := s.sessions.check(w.op); known {
			w.ch <- o
		} else {
			w.ch <- out
		}
	}
	delete(s.waiting, id)
	return out
}

// failLocked stops the server for good: it cannot apply a command, so its
// store no longer follows the log. Skipping the command would let replicas
// differ; so the server answers no more requests, and Snapshot fails, so
// that Raft stops too rather than save a snapshot without the command.
// s.mu is held.
func (s *Server) failLocked(err error) {
	s.failed = err
	s.opts.Logger.Error("kv: the store cannot apply the log; stopping", "err", err)
	s.stopLocked()
}

// Snapshot writes the store and its table of clients to w (Server is a
// raft.StateMachine): everything a replica restored from it needs to
// answer every later request, retries and expired clients included, as
// this one would.
func (s *Server) Snapshot(w io.Writer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed != nil {
		return fmt.Errorf("kv: no snapshot of a store that missed a command: %w", s.failed)
	}
	return s.writeSnapshot(w)
}

// Restore replaces the store and its table of clients with a snapshot's
// (Server is a raft.StateMachine). On an error, the store is as it was.
func (s *Server) Restore(r io.Reader) error {
	st, err := readSnapshot(r, s.opts.ClientTTL, s.opts.MaxClients)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data, s.httpDir, s.sessions, s.applied = st.data, st.httpDir, st.sessions, st.applied
	// The snapshot may hold requests that wait here: answer them.
	for id, ws := range s.waiting {
		var left []*waiter
		for _, w := range ws {
			if o, known := s.sessions.check(w.op); known {
				w.ch <- o
			} else {
				left = append(left, w)
			}
		}
		if len(left) == 0 {
			delete(s.waiting, id)
		} else {
			s.waiting[id] = left
		}
	}
	return nil
}

// apply executes op on the store, once per client request: a request the
// client already had applied gets the result it got then (exactly-once).
// A request with Seq 0 is not tracked: it is applied each time it appears.
func (s *Server) apply(op Op) outcome {
	s.sessions.advance(op.Time)
	if out, known := s.sessions.check(op); known {
		s.sessions.touch(op.ClientID)
		return out
	}
	if op.Kind == memberHTTP { // SetMemberHTTP sends it with Seq 0: never in the table
		return s.applyMemberHTTP(op)
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
	res := Result{Value: old, Found: found}
	if op.Seq != 0 {
		s.sessions.record(op, res)
	}
	return outcome{res: res}
}

// Applied returns the log index of the last command the store has
// applied, itself or before the snapshot it was restored from. (Entries
// without a command, as a new leader's first, are not counted.)
func (s *Server) Applied() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applied
}
