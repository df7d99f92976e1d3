package raft

import (
	"context"
	"errors"
	"fmt"

	"github.com/raftkit/raft/core"
)

// ErrTransferAbandoned is the error of TransferLeadership when the target
// did not take over within an election timeout: the leader abandoned the
// transfer and leads on (thesis 3.10).
var ErrTransferAbandoned = errors.New("raft: leadership transfer abandoned: the target did not take over within an election timeout")

// transferReq asks the loop to start a leadership transfer; done gets its
// outcome.
type transferReq struct {
	to   int
	done chan error // buffered: the loop never waits on it
}

// TransferLeadership hands this server's leadership to server to, or, if
// to is -1, to the server whose log is most up-to-date (thesis 3.10). The
// leader stops taking commands (Apply and Propose fail with a
// NotLeaderError naming the target), brings the target's log up to date,
// and has it start an election at once, which it wins without waiting for
// an election timeout. TransferLeadership returns nil once this server
// has stepped down and knows of another leader (normally the target). It
// fails with a *NotLeaderError (ErrNotLeader) on a server that is not the
// leader, ErrTransferAbandoned if the target did not take over within an
// election timeout (the server leads on and takes commands again),
// ErrStopped, an error for a target outside the cluster, or the context's
// error.
func (rf *Raft) TransferLeadership(ctx context.Context, to int) error {
	req := &transferReq{to: to, done: make(chan error, 1)}
	if !rf.post(event{transfer: req}) {
		return ErrStopped
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("raft: transfer leadership to %d: %w", to, ctx.Err())
	case <-rf.done:
		return ErrStopped
	}
}

// startTransfer starts the transfer req asks for, or answers it with why
// it cannot. Called by the loop.
func (rf *Raft) startTransfer(req *transferReq) {
	if err := rf.node.TransferLeadership(req.to); err != nil {
		if errors.Is(err, core.ErrNotLeader) {
			l := rf.node.Leader()
			req.done <- &NotLeaderError{Leader: l, Addr: rf.remotes.addr(l)}
			return
		}
		req.done <- fmt.Errorf("raft: transfer leadership to %d: %w", req.to, err)
		return
	}
	rf.transfers = append(rf.transfers, req)
}

// checkTransfers answers the transfers under way that are over: this
// server stepped down and knows of another leader, or it leads on without
// a transfer (abandoned). Called by the loop after each round of events.
func (rf *Raft) checkTransfers() {
	if len(rf.transfers) == 0 {
		return
	}
	var err error
	switch l := rf.node.Leader(); {
	case rf.node.Role() != core.Leader && l != core.None:
		err = nil
	case rf.node.Role() == core.Leader && rf.node.Transferee() == core.None:
		err = ErrTransferAbandoned
	default:
		return // under way, or no leader known yet
	}
	for _, req := range rf.transfers {
		req.done <- err
	}
	rf.transfers = nil
}

// leaderHint returns the server to name in a NotLeaderError: the leader
// as far as this server knows, or, during a leadership transfer, its
// target, which is about to lead.
func (rf *Raft) leaderHint() int {
	if t := rf.node.Transferee(); t != core.None {
		return t
	}
	return rf.node.Leader()
}
