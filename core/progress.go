package core

// progress is what a leader knows of one follower's log (Figure 2,
// nextIndex and matchIndex) and what it has sent it.
//
// While probing (after an election, a refusal, or a batch taken as lost)
// the leader does not know where the follower's log matches its own: it
// sends one batch at a time and waits for the answer. Once the follower
// has acknowledged a batch, the leader streams: it sends the batches that
// follow without waiting for their answers, up to a window bounded by
// count and bytes (pipelining), moving nextIndex past each one sent.
type progress struct {
	next  int // index of the next entry to send (Figure 2, nextIndex)
	match int // highest index known to be replicated (Figure 2, matchIndex)

	probing  bool
	inflight []batch // sent and not yet acknowledged, oldest first
	bytes    int     // command bytes in flight

	// heartbeat asks for an AppendEntries even if there are no entries.
	heartbeat bool
	// commit is the leaderCommit last sent; a follower with nothing in
	// flight learns of a newer one at the next tick rather than at the next
	// heartbeat (see commitDue).
	commit int
	// active records a reply since the last quorum check; acked an
	// acknowledgement since the last heartbeat.
	active, acked bool
	// round is the highest heartbeat round (ReadIndex) the follower
	// acknowledged in this term; leaseFrom, if leased, when the leader
	// started the latest such round that counts for its lease.
	round     uint64
	leaseFrom int
	leased    bool
}

// batch is an AppendEntries (or a snapshot) in flight.
type batch struct {
	last  int // index of its last entry
	bytes int // its command bytes
}

// canSend reports whether another batch may go to the follower now.
func (p *progress) canSend(maxInflight, maxBytes int) bool {
	if p.probing {
		return len(p.inflight) == 0
	}
	return len(p.inflight) < maxInflight && p.bytes < maxBytes
}

// sent records a batch sent; streaming, nextIndex moves past it.
func (p *progress) sent(b batch) {
	p.inflight = append(p.inflight, b)
	p.bytes += b.bytes
	if !p.probing {
		p.next = b.last + 1
	}
}

// ack records that the follower's log matches the leader's up to index,
// and reports whether matchIndex moved. The batches up to index are no
// longer in flight, and the leader streams from then on.
func (p *progress) ack(index int) bool {
	p.active, p.acked = true, true
	k := 0
	for k < len(p.inflight) && p.inflight[k].last <= index {
		p.bytes -= p.inflight[k].bytes
		k++
	}
	p.inflight = p.inflight[k:]
	moved := index > p.match
	if moved {
		p.match = index
	}
	if p.probing {
		// The batch probed with is answered; what was sent since it (a
		// heartbeat, a snapshot) is superseded.
		p.probing = false
		p.inflight, p.bytes = p.inflight[:0], 0
	}
	p.next = max(p.next, p.match+1)
	return moved
}

// probe goes back to probing from next, forgetting what is in flight.
func (p *progress) probe(next int) {
	p.probing = true
	p.next = next
	p.inflight, p.bytes = p.inflight[:0], 0
}

// commitDue reports whether the follower, with nothing in flight, has yet
// to be told of the leader's commit index.
func (p *progress) commitDue(commit int) bool {
	return len(p.inflight) == 0 && p.commit < commit
}
