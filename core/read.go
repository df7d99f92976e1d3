package core

import "slices"

// ReadState is a read-only request whose index is known (thesis 6.4): once
// the service has applied the log through Index, a read of its state
// reflects every write committed before the request was made. Index is
// never past the server's commit index when the ReadState comes out.
type ReadState struct {
	ID    uint64 // as given to ReadIndex
	Index int
	Lease bool // the leader's lease vouched for it: it started no round of heartbeats
}

// ReadIndexArgs asks the leader for a read index on behalf of a read
// started on a follower (Config.FollowerReads). It is not answered by
// Step: the leader sends a ReadIndexReply once it knows the index, after a
// round of heartbeats (or at once within its lease), or at once if it
// refuses.
type ReadIndexArgs struct {
	Term int    // the follower's current term
	ID   uint64 // the follower's read, which the reply repeats
}

// ReadIndexReply answers a ReadIndexArgs. Index is the read index: the
// leader's commit index once it had confirmed that it still led after the
// request arrived. Index 0 is a refusal: the receiver does not lead, or
// stepped down before it could confirm.
type ReadIndexReply struct {
	Term  int // the sender's current term
	ID    uint64
	Index int
}

// pendingRead is a ReadIndex request waiting on a leader for its
// heartbeat round to be acknowledged by a majority.
type pendingRead struct {
	id    uint64
	round uint64
	from  int  // the follower that asked for it (ReadIndexArgs), or None for a read of this server
	lease bool // started within the lease: no round of its own
}

// askedRead is a read started on a follower: it waits for the leader's
// read index, then for the commit index to reach it.
type askedRead struct {
	id    uint64
	to    int // the leader asked
	at    int // the tick (now) it was asked at
	index int // the leader's answer; 0 until it comes
}

// roundStart is when a leader started a heartbeat round, for its lease.
type roundStart struct {
	round uint64
	at    int // the tick (now)
}

// askedTimeout is how long, in election timeouts, a follower waits for
// the leader's answer to a read, and then for its commit index to reach
// the read index, before it gives the read up (Ready.FailedReads).
const askedTimeout = 2

// ReadIndex starts a linearizable read with identifier id (thesis 6.4),
// and reports false if this server cannot: it is not the leader, nor a
// follower that knows the leader with Config.FollowerReads.
//
// On the leader: the leader confirms it still leads with a round of
// heartbeats acknowledged by a majority, or by its lease (Config.LeaseTicks),
// and has committed an entry of its own term (so that its commit index
// covers every entry committed before); then a Ready.ReadStates holds id
// with the commit index. On a follower: it asks the leader for that index
// (ReadIndexArgs), and once its own commit index has reached the answer, a
// Ready.ReadStates holds id with it. A read that cannot complete (the
// leader steps down first, the follower's leader changes, or no answer
// comes within two election timeouts) comes out in Ready.FailedReads.
func (n *Node) ReadIndex(id uint64) bool {
	switch {
	case n.role == Leader:
		n.startRead(id, None)
		return true
	case n.cfg.FollowerReads && n.role == Follower && n.lead != None:
		n.asked = append(n.asked, askedRead{id: id, to: n.lead, at: n.now})
		n.send(n.lead, &ReadIndexArgs{Term: n.term, ID: id})
		n.tracef("ask %d for the read index of read %d", n.lead, id)
		return true
	}
	return false
}

// startRead starts a read on the leader, of this server (from None) or of
// follower from.
func (n *Node) startRead(id uint64, from int) {
	lease := n.leaseValid()
	if !lease {
		// thesis 6.4 step 2: a new round of heartbeats, which the
		// followers' acknowledgements name.
		n.newRound()
		for _, p := range n.progress {
			p.heartbeat = true
		}
	}
	n.reads = append(n.reads, pendingRead{id: id, round: n.round, from: from, lease: lease})
	n.releaseReads()
}

// releaseReads hands out the reads whose round a majority has
// acknowledged, or all of them within the lease, once the leader has
// committed an entry of its term (thesis 6.4 step 1), at the commit index.
func (n *Node) releaseReads() {
	if len(n.reads) == 0 || n.log.term(n.commit) != n.term {
		return
	}
	lease := n.leaseValid()
	k := 0
	for k < len(n.reads) && (lease || n.roundAcked(n.reads[k].round)) {
		n.answerRead(n.reads[k], n.commit)
		k++
	}
	n.reads = n.reads[k:]
}

// answerRead hands out read r at index, or refuses it with index 0.
func (n *Node) answerRead(r pendingRead, index int) {
	switch {
	case r.from != None:
		n.send(r.from, &ReadIndexReply{Term: n.term, ID: r.id, Index: index})
	case index > 0:
		n.readStates = append(n.readStates, ReadState{ID: r.id, Index: index, Lease: r.lease})
	default:
		n.failedReads = append(n.failedReads, r.id)
	}
}

// roundAcked reports whether a majority, the leader included, has
// acknowledged an AppendEntries of heartbeat round r or later in this term.
func (n *Node) roundAcked(r uint64) bool {
	return n.conf().majority(func(id int) bool {
		p := n.progress[id]
		return id == n.id || (p != nil && p.round >= r)
	})
}

// ackRound notes that follower p acknowledged an AppendEntries of
// heartbeat round r, taking this server as the leader of its term: it
// did so after the round started, and (leader stickiness, thesis 4.2.3)
// grants no vote for an election timeout after.
func (n *Node) ackRound(p *progress, r uint64) {
	if r <= p.round {
		return
	}
	p.round = r
	if at, ok := n.roundStart(r); ok {
		// The lease runs from when the round was sent, not from when the
		// acknowledgement arrived (thesis 6.4.1).
		p.leaseFrom, p.leased = at, true
	}
	n.releaseReads()
}

// newRound starts a heartbeat round; with a lease, it notes when.
func (n *Node) newRound() {
	n.round++
	if n.cfg.LeaseTicks == 0 {
		return
	}
	k := 0 // rounds too old to give a lease are forgotten
	for k < len(n.rounds) && n.now-n.rounds[k].at >= n.cfg.LeaseTicks {
		k++
	}
	n.rounds = append(n.rounds[k:], roundStart{round: n.round, at: n.now})
}

// roundStart returns when round r started, if it is recent enough to
// count for a lease.
func (n *Node) roundStart(r uint64) (int, bool) {
	i, ok := slices.BinarySearchFunc(n.rounds, r, func(s roundStart, r uint64) int {
		switch {
		case s.round < r:
			return -1
		case s.round > r:
			return 1
		}
		return 0
	})
	if !ok {
		return 0, false
	}
	return n.rounds[i].at, true
}

// leaseHeartbeat makes each heartbeat of a leader with a lease a new
// round, so that the acknowledgements of the heartbeats keep the lease.
func (n *Node) leaseHeartbeat() {
	if n.cfg.LeaseTicks > 0 {
		n.newRound()
	}
}

// leaseValid reports whether the leader may serve a read at its commit
// index without a new round of heartbeats (thesis 6.4.1): a majority, the
// leader included, acknowledged a round that started fewer than
// LeaseTicks ticks ago, so none of them has voted for another server
// since (leader stickiness), and no other server can have become leader;
// the leader has committed an entry of its term; and it has sent no
// TimeoutNow in this term (a transfer's target is elected despite
// stickiness).
func (n *Node) leaseValid() bool {
	if n.cfg.LeaseTicks == 0 || n.role != Leader || n.transferTerm == n.term || n.log.term(n.commit) != n.term {
		return false
	}
	base, ok := n.leaseBase()
	return ok && n.now-base < n.cfg.LeaseTicks
}

// leaseBase returns the tick a leader's lease runs from: the start of the
// latest round that a majority of the voters of the latest configuration
// (thesis 4.1), the leader included if it is one, acknowledged; false if
// no majority did.
func (n *Node) leaseBase() (int, bool) {
	voters := n.conf().Voters()
	var from []int
	for _, id := range voters {
		if id == n.id {
			from = append(from, n.now) // its own
		} else if p := n.progress[id]; p != nil && p.leased {
			from = append(from, p.leaseFrom)
		}
	}
	need := len(voters)/2 + 1
	if len(from) < need {
		return 0, false
	}
	slices.Sort(from)
	return from[len(from)-need], true
}

// endLease ends the leader's lease for the rest of its term: it is
// sending TimeoutNow.
func (n *Node) endLease() { n.transferTerm = n.term }

// handleReadIndex serves a follower's request for a read index.
func (n *Node) handleReadIndex(from int, a *ReadIndexArgs) {
	n.stepDownIfNewer(a.Term)
	if n.role != Leader {
		n.send(from, &ReadIndexReply{Term: n.term, ID: a.ID})
		return
	}
	n.startRead(a.ID, from)
}

// handleReadIndexReply takes the leader's answer to a read this follower
// asked it for.
func (n *Node) handleReadIndexReply(from int, r *ReadIndexReply) {
	n.stepDownIfNewer(r.Term)
	i := slices.IndexFunc(n.asked, func(a askedRead) bool { return a.id == r.ID && a.to == from })
	if i < 0 || n.asked[i].index > 0 {
		return // not asked, given up, or a duplicate
	}
	if r.Index <= 0 {
		n.tracef("%d refused read %d", from, r.ID)
		n.failedReads = append(n.failedReads, r.ID)
		n.asked = slices.Delete(n.asked, i, i+1)
		return
	}
	n.tracef("read %d: read index %d from %d", r.ID, r.Index, from)
	n.asked[i].index = r.Index
}

// releaseAsked hands out the follower's reads whose read index its commit
// index has reached.
func (n *Node) releaseAsked() {
	k := 0
	for _, a := range n.asked {
		if a.index > 0 && a.index <= n.commit {
			n.readStates = append(n.readStates, ReadState{ID: a.id, Index: a.index})
			continue
		}
		n.asked[k] = a
		k++
	}
	n.asked = n.asked[:k]
}

// expireReads gives up the follower's reads that have waited too long.
func (n *Node) expireReads() {
	k := 0
	for _, a := range n.asked {
		if n.now-a.at >= askedTimeout*n.cfg.ElectionTicks {
			n.tracef("give up read %d (read index %d, commit %d)", a.id, a.index, n.commit)
			n.failedReads = append(n.failedReads, a.id)
			continue
		}
		n.asked[k] = a
		k++
	}
	n.asked = n.asked[:k]
}

// ticksToExpiry returns the ticks until expireReads gives up a read, or a
// large number if no read waits.
func (n *Node) ticksToExpiry() int {
	t := 1 << 30
	for _, a := range n.asked {
		t = min(t, a.at+askedTimeout*n.cfg.ElectionTicks-n.now)
	}
	return t
}

// dropReads gives up the reads that can no longer complete as the server
// moves to term as a follower of lead (None: of no one): a leader's (it
// no longer leads), and, unless it still follows the same leader in the
// same term, those it asked its leader for.
func (n *Node) dropReads(term, lead int) {
	for _, r := range n.reads {
		n.answerRead(r, 0)
	}
	n.reads = nil
	if len(n.asked) == 0 || (term == n.term && lead == n.lead && lead != None) {
		return
	}
	for _, a := range n.asked {
		n.failedReads = append(n.failedReads, a.id)
	}
	n.tracef("give up %d reads asked of %d", len(n.asked), n.lead)
	n.asked = nil
}

// Skip tells the server that ticks ticks of time passed for which the
// caller did not call Tick (a driver whose loop woke late may give one
// Tick for many, so that it starts no election because it was slow).
// Skipped ticks fire no timer; they count for the leader's lease and for
// leader stickiness, which must follow real time.
func (n *Node) Skip(ticks int) {
	if ticks > 0 {
		n.now += ticks
	}
}
