package raft

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/raftkit/raft/core"
)

// Member is a server of the cluster's configuration: its ID, its address,
// and whether it is a learner (a non-voting member, which receives the
// log but neither votes nor counts in a majority).
type Member = core.Member

// Errors of the membership changes.
var (
	// ErrChangeInProgress: another change of the configuration is not
	// committed yet; changes go one at a time (Raft thesis 4.1).
	ErrChangeInProgress = core.ErrChangeInProgress
	// ErrLeaderNotReady: the leader has not committed an entry of its
	// term yet, which it must before a change (thesis 4.1); it does so
	// within a round trip of its election.
	ErrLeaderNotReady = core.ErrLeaderNotReady
	// ErrNotCaughtUp: a learner to promote does not hold the leader's
	// committed log yet.
	ErrNotCaughtUp = core.ErrNotCaughtUp
	// ErrRemoved: this server was removed from the cluster's
	// configuration, and stopped (Err returns it).
	ErrRemoved = errors.New("raft: this server was removed from the cluster")
)

// A PeerAdder is a Transport that learns the addresses of servers as the
// configuration grows; TCP's Transport is one. With another Transport,
// Peer must know every server that will ever join.
type PeerAdder interface {
	AddPeers(peers map[int]string)
}

// learnMembers makes the members of m reachable: the transport learns
// their addresses. Servers are never forgotten while the server runs (a
// removed one still gets the heartbeat that tells it so). Called by the
// loop, and by start.
func (rf *Raft) learnMembers(m core.Membership) {
	for _, s := range m.Members {
		if s.ID == rf.me || rf.remotes.get(s.ID) != nil || rf.transport == nil {
			rf.remotes.add(s.ID, nil, s.Addr)
			continue
		}
		if a, ok := rf.transport.(PeerAdder); ok && s.Addr != "" {
			a.AddPeers(map[int]string{s.ID: s.Addr})
		}
		p, err := rf.transport.Peer(s.ID)
		if err != nil {
			rf.logger.Warn("raft: cannot reach a member of the configuration", "member", s.ID, "addr", s.Addr, "err", err)
			continue
		}
		rf.remotes.add(s.ID, p, s.Addr)
	}
}

// joinedAs checks the first configuration that names a server that joins
// with no state: the leader adds a new server as a learner, and promotes it
// only once it holds the log. Named a voter, the server has the ID of one
// that may have acknowledged entries or voted, whose state it lacks: it
// stops with ErrIDInUse, and reports true. Called by the loop, before the
// Ready that holds m is saved or sent: a server without a configuration
// never votes.
func (rf *Raft) joinedAs(m core.Membership) bool {
	if !rf.joining {
		return false
	}
	s, ok := m.Find(rf.me)
	if !ok {
		return false
	}
	rf.joining = false
	if s.Learner {
		return false
	}
	err := fmt.Errorf("%w: server %d started with no data to join, but the leader's configuration %v has it as a voter. "+
		"A server of this ID may have acknowledged writes or voted, and this one holds none of its state. "+
		"Restore its data, or remove ID %d from the cluster and join under a new ID (docs/operations.md, \"Replacing a lost disk\")",
		ErrIDInUse, rf.me, m, rf.me)
	rf.logger.Error(err.Error())
	rf.stop(err)
	return true
}

// changeReq asks the loop to propose a change of the configuration.
type changeReq struct {
	c      core.Change
	result chan error   // the proposal's fate: nil once proposed
	w      chan outcome // then the entry's
}

// change proposes c on the leader and waits until the entry holding the
// new configuration is committed and applied here.
func (rf *Raft) change(ctx context.Context, c core.Change) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	req := &changeReq{c: c, result: make(chan error, 1), w: make(chan outcome, 1)}
	if !rf.post(event{change: req}) {
		return ErrStopped
	}
	select {
	case err := <-req.result:
		if err != nil {
			return err
		}
	case <-rf.done:
		return ErrStopped
	}
	select {
	case o := <-req.w:
		return o.err
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrOutcomeUnknown, ctx.Err())
	case <-rf.done:
		return fmt.Errorf("%w: %w", ErrOutcomeUnknown, ErrStopped)
	}
}

// startChange proposes the change req asks for. Called by the loop.
func (rf *Raft) startChange(req *changeReq) {
	index, term, err := rf.node.ProposeChange(req.c)
	switch {
	case errors.Is(err, core.ErrNotLeader), errors.Is(err, core.ErrTransferring):
		l := rf.leaderHint()
		req.result <- &NotLeaderError{Leader: l, Addr: rf.remotes.addr(l)}
	case err != nil:
		req.result <- fmt.Errorf("raft: %v server %d: %w", req.c.Type, req.c.ID, err)
	default:
		rf.logger.Info("raft: configuration change proposed", "change", req.c.Type.String(), "server", req.c.ID, "index", index)
		rf.apply.wait(index, term, req.w)
		req.result <- nil
	}
}

// AddLearner adds server id, reached at addr, to the configuration as a
// learner: the leader sends it the log (or a snapshot), but it neither
// votes nor counts in a majority. It returns once the change is committed
// and applied on this server, with the errors of Apply (a *NotLeaderError
// on a server that is not the leader, ErrOutcomeUnknown, ...), or
// ErrChangeInProgress, ErrLeaderNotReady, or an error for a server that is
// a member already.
func (rf *Raft) AddLearner(ctx context.Context, id int, addr string) error {
	if addr == "" {
		return fmt.Errorf("raft: add learner %d: no address", id)
	}
	return rf.change(ctx, core.Change{Type: core.AddLearner, ID: id, Addr: addr})
}

// Promote makes learner id a voter, once its log holds the leader's
// committed entries (ErrNotCaughtUp otherwise). It returns like AddLearner.
func (rf *Raft) Promote(ctx context.Context, id int) error {
	return rf.change(ctx, core.Change{Type: core.Promote, ID: id})
}

// RemoveServer removes server id, voter or learner, from the
// configuration. Once it learns of its removal, the server stops itself
// (Err returns ErrRemoved). A leader that removes itself leads until the
// change is committed, then hands the leadership to the most up-to-date
// voter (thesis 4.2.2) before it stops. RemoveServer returns like
// AddLearner; it refuses to remove the last voter.
func (rf *Raft) RemoveServer(ctx context.Context, id int) error {
	return rf.change(ctx, core.Change{Type: core.Remove, ID: id})
}

// AddVoter adds server id, reached at addr, as a voter, the safe way: as
// a learner first (unless it is one already), then, once it has caught up
// with the leader's log, promoted. It returns once the promotion is
// committed, or fails like AddLearner and Promote, or with the context's
// error while the learner catches up (it then stays a learner).
func (rf *Raft) AddVoter(ctx context.Context, id int, addr string) error {
	members, _, err := rf.Members(ctx)
	if err != nil {
		return err
	}
	var learner bool
	for _, m := range members {
		if m.ID == id && !m.Learner {
			return nil // a voter already
		}
		learner = learner || m.ID == id
	}
	if !learner {
		if err := rf.AddLearner(ctx, id, addr); err != nil {
			return err
		}
	}
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		err := rf.Promote(ctx, id)
		if !errors.Is(err, ErrNotCaughtUp) && !errors.Is(err, ErrChangeInProgress) {
			return err
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return fmt.Errorf("raft: add voter %d: waiting for it to catch up: %w", id, ctx.Err())
		case <-rf.done:
			return ErrStopped
		}
	}
}

// Members returns the latest configuration in this server's log and the
// index of the entry that holds it (committed or not: see Status for
// which).
func (rf *Raft) Members(ctx context.Context) ([]Member, int, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	st, ok := rf.Status()
	if !ok {
		return nil, 0, ErrStopped
	}
	return st.Membership.Members, st.MembershipIndex, nil
}

// removedCheck stops a server that applied a configuration without it,
// once it no longer leads (a leader that removed itself hands over
// first). Called by the loop.
func (rf *Raft) removedCheck() {
	if rf.apply.removed.Load() && rf.node.Role() != core.Leader {
		rf.logger.Warn("raft: this server was removed from the cluster's configuration: stopping")
		rf.stop(ErrRemoved)
	}
}

// noteConfig records, on the applier, the configuration entry e applies,
// and whether it removes this server from a configuration it was in.
func (a *applier) noteConfig(e core.Entry) {
	m, err := core.DecodeMembership(e.Command)
	if err != nil {
		return // checked by the core when it entered the log
	}
	a.setConfig(m)
}

// setConfig takes m as the configuration applied last.
func (a *applier) setConfig(m core.Membership) {
	if m.Empty() {
		return
	}
	a.last.Membership = m
	_, in := m.Find(a.me)
	if in {
		a.member = true
	} else if a.member {
		a.removed.Store(true)
	}
}
