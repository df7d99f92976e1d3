package raft

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/raftkit/raft/core"
)

// Errors of Apply that say what became of a command.
var (
	// ErrNotCommitted: the command was proposed but will never be
	// committed (another entry took its place in the log). Proposing it
	// again is safe.
	ErrNotCommitted = errors.New("raft: command not committed: another entry took its place")
	// ErrOutcomeUnknown: the command was proposed, and this server cannot
	// tell whether it will be committed (it lost leadership, stopped, or
	// the context ended first). Proposing it again may apply it twice;
	// make commands idempotent (a client ID and sequence number) to retry.
	ErrOutcomeUnknown = errors.New("raft: outcome of the command unknown")
)

// NotLeaderError is the error of a proposal to a server that is not the
// leader; errors.Is(err, ErrNotLeader) holds. Leader is the leader's ID
// as far as this server knows, or -1; Addr its address, if known.
type NotLeaderError struct {
	Leader int
	Addr   string
}

func (e *NotLeaderError) Error() string {
	if e.Leader < 0 {
		return "raft: not the leader, and the leader is unknown"
	}
	if e.Addr == "" {
		return fmt.Sprintf("raft: not the leader; server %d is", e.Leader)
	}
	return fmt.Sprintf("raft: not the leader; server %d at %s is", e.Leader, e.Addr)
}

// Is makes errors.Is(err, ErrNotLeader) hold.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// Result is what became of a command Apply proposed: where it sits in the
// log, and what the StateMachine's Apply returned for it on this server.
type Result struct {
	Index, Term int
	Value       any
}

// Apply proposes cmd, then waits until it is committed and this server's
// StateMachine has applied it, and returns the StateMachine's result. It
// fails with a *NotLeaderError (ErrNotLeader) on a server that is not the
// leader, ErrTooLarge, ErrStopped (stopped before it took cmd),
// ErrNotCommitted (certainly not committed), or ErrOutcomeUnknown (with
// the reason: the context ended, leadership was lost, or the server
// stopped, once cmd was handed to the server). Apply does not keep cmd.
func (rf *Raft) Apply(ctx context.Context, cmd []byte) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	if rf.apply.sm == nil {
		return Result{}, errors.New("raft: Apply needs a StateMachine (a server made by New)")
	}
	if err := rf.checkSize(cmd); err != nil {
		return Result{}, err
	}
	// The loop answers on w alone, with the refusal or the outcome: the
	// caller wakes once, when there is something to return.
	w := make(chan outcome, 1)
	if !rf.post(event{cmd: slices.Clone(cmd), outcome: w}) {
		return Result{}, ErrStopped
	}
	select {
	case o := <-w:
		return o.res, o.err
	case <-ctx.Done():
		return Result{}, fmt.Errorf("%w: %w", ErrOutcomeUnknown, ctx.Err())
	case <-rf.done:
		return Result{}, fmt.Errorf("%w: %w", ErrOutcomeUnknown, ErrStopped)
	}
}

// outcome is what a waiting Apply learns.
type outcome struct {
	res Result
	err error
}

// waiter is an Apply waiting for the entry it proposed.
type waiter struct {
	term int
	ch   chan outcome
}

// wait registers ch for the outcome of the entry proposed at index in
// term. The loop calls it when proposing, so before the entry can be
// applied.
func (a *applier) wait(index, term int, ch chan outcome) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.waiters == nil {
		a.waiters = map[int]waiter{}
	}
	a.waiters[index] = waiter{term: term, ch: ch}
}

// settle tells the waiter of the entry at e's index, if any, what became
// of its command: applied (with value), or replaced by e.
func (a *applier) settle(e core.Entry, value any) {
	a.mu.Lock()
	w, ok := a.waiters[e.Index]
	delete(a.waiters, e.Index)
	a.mu.Unlock()
	switch {
	case !ok:
	case w.term == e.Term:
		w.ch <- outcome{res: Result{Index: e.Index, Term: e.Term, Value: value}}
	default:
		w.ch <- outcome{err: ErrNotCommitted}
	}
}

// abandon tells the waiters of the entries from index from on (all, for
// from 0) that their outcome is unknown, for why.
func (a *applier) abandon(from int, why error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, w := range a.waiters {
		if i >= from {
			w.ch <- outcome{err: fmt.Errorf("%w: %w", ErrOutcomeUnknown, why)}
			delete(a.waiters, i)
		}
	}
}

// ErrLeadershipLost is why the outcome of a command is unknown when its
// leader stepped down before it committed.
var ErrLeadershipLost = errors.New("raft: leadership lost before the command committed")
