package core

import (
	"errors"
	"fmt"
)

// ErrNotLeader is the error of TransferLeadership on a server that is not
// the leader.
var ErrNotLeader = errors.New("core: not the leader")

// TimeoutNowArgs is the TimeoutNow RPC's request (thesis 3.10): the leader
// tells a follower whose log matches its own to start an election at once.
type TimeoutNowArgs struct {
	Term     int // leader's term
	LeaderID int
}

// TimeoutNowReply is the TimeoutNow RPC's reply: the receiver's term, the
// new term of its election if it started one.
type TimeoutNowReply struct {
	Term int
}

// TransferLeadership starts handing the leadership to server to, or, if to
// is None, to the follower whose log is most up-to-date (thesis 3.10).
// Until the transfer completes or is abandoned, Propose refuses commands;
// the leader brings the target's log up to date, then sends it TimeoutNow.
// A transfer not done within an election timeout is abandoned and the
// leader accepts commands again. A new call replaces a transfer in
// progress.
func (n *Node) TransferLeadership(to int) error {
	if n.role != Leader {
		return ErrNotLeader
	}
	switch {
	case to == None:
		if to = n.mostUpToDate(); to == None {
			return errors.New("core: no other server to transfer the leadership to")
		}
	case to == n.id:
		return fmt.Errorf("core: server %d is the leader already", to)
	case !n.conf().IsVoter(to):
		return fmt.Errorf("core: server %d is not a voter of the configuration %v", to, n.conf())
	}
	n.transferee, n.transferElapsed = to, 0
	n.tracef("transfer leadership to %d", to)
	n.maybeTimeoutNow(to) // thesis 3.10 step 2: at once if its log is caught up
	return nil
}

// Transferee returns the server a leadership transfer in progress hands
// the leadership to, or None.
func (n *Node) Transferee() int { return n.transferee }

// mostUpToDate returns the other voter with the highest matchIndex (the
// lowest ID among equals), or None if there is no other voter.
func (n *Node) mostUpToDate() int {
	best := None
	for _, id := range n.otherVoters() { // sorted
		if best == None || n.progress[id].match > n.progress[best].match {
			best = id
		}
	}
	return best
}

// maybeTimeoutNow sends the target of a transfer in progress TimeoutNow
// if follower id is that target and its log matches the leader's whole
// log (thesis 3.10: only once it is caught up). Each acknowledgement of
// the whole log sends it again, so that a lost one only delays the
// transfer.
func (n *Node) maybeTimeoutNow(id int) {
	if id != n.transferee || n.progress[id] == nil || n.progress[id].match != n.log.lastIndex() {
		return
	}
	n.tracef("%d is caught up at %d: send TimeoutNow", id, n.log.lastIndex())
	n.endLease() // its target will be elected despite leader stickiness
	n.send(id, &TimeoutNowArgs{Term: n.term, LeaderID: n.id})
}

// tickTransfer counts a tick of a transfer in progress, and abandons it
// after an election timeout (thesis 3.10: the prior leader then resumes
// accepting client requests).
func (n *Node) tickTransfer() {
	if n.transferee == None {
		return
	}
	n.transferElapsed++
	if n.transferElapsed >= n.cfg.ElectionTicks {
		n.tracef("abandon the transfer to %d after an election timeout", n.transferee)
		n.transferee = None
		if !n.conf().IsVoter(n.id) {
			// A leader removed from the configuration steps down even
			// when no one took over (thesis 4.2.2).
			n.becomeFollower(n.term, None)
		}
	}
}

// maybeHandOver makes a leader that the committed configuration no longer
// counts as a voter hand the leadership to the most up-to-date voter
// (thesis 4.2.2: it steps down once the change is committed; the transfer
// spares the cluster an election timeout).
func (n *Node) maybeHandOver() {
	if n.role != Leader || n.conf().IsVoter(n.id) || n.confIndex() > n.commit || n.transferee != None {
		return
	}
	to := n.mostUpToDate()
	if to == None {
		n.becomeFollower(n.term, None)
		return
	}
	n.transferee, n.transferElapsed = to, 0
	n.tracef("removed from the configuration: hand the leadership to %d", to)
	n.maybeTimeoutNow(to)
}

// handleTimeoutNow is the TimeoutNow receiver (thesis 3.10): a follower
// told by the leader of its term, or of a newer one, starts an election at
// once, without PreVote, with a RequestVote that voters grant despite
// leader stickiness. A TimeoutNow of an earlier term is stale and ignored.
func (n *Node) handleTimeoutNow(from int, a *TimeoutNowArgs) *TimeoutNowReply {
	if a.LeaderID != from || a.Term < 1 || !n.canCampaign() {
		n.tracef("refuse malformed TimeoutNow from %d", from)
		return &TimeoutNowReply{Term: n.term}
	}
	if a.Term < n.term || (a.Term == n.term && n.role == Leader) {
		n.tracef("ignore stale TimeoutNow of term %d from %d", a.Term, from)
		return &TimeoutNowReply{Term: n.term}
	}
	n.becomeFollower(a.Term, from) // a leader's message (5.2)
	n.tracef("TimeoutNow from %d", from)
	n.campaign(true)
	return &TimeoutNowReply{Term: n.term}
}

// handleTimeoutNowReply applies the rule for all servers of Figure 2 to
// the reply: the target's election makes the leader step down.
func (n *Node) handleTimeoutNowReply(r *TimeoutNowReply) {
	n.stepDownIfNewer(r.Term)
}
