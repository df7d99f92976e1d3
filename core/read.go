package core

// ReadState is a read-only request whose index is known (thesis 6.4): once
// the service has applied the log through Index, a read of its state
// reflects every write committed before the request was made.
type ReadState struct {
	ID    uint64 // as given to ReadIndex
	Index int
}

// pendingRead is a ReadIndex request waiting for its heartbeat round to
// be acknowledged by a majority.
type pendingRead struct {
	id    uint64
	round uint64
}

// ReadIndex starts a linearizable read with identifier id on a leader
// (thesis 6.4), and reports false on a server that is not the leader. The
// leader confirms it still leads with a round of heartbeats acknowledged
// by a majority, and has committed an entry of its own term (so that its
// commit index covers every entry committed before); then a
// Ready.ReadStates holds id with the commit index. A leader that steps
// down first drops the reads under way: they never come out.
func (n *Node) ReadIndex(id uint64) bool {
	if n.role != Leader {
		return false
	}
	// thesis 6.4 step 2: a new round of heartbeats, which the followers'
	// acknowledgements name.
	n.round++
	n.reads = append(n.reads, pendingRead{id: id, round: n.round})
	for _, p := range n.progress {
		p.heartbeat = true
	}
	n.releaseReads()
	return true
}

// releaseReads hands out, in ReadStates, the reads whose round a majority
// has acknowledged, once the leader has committed an entry of its term
// (thesis 6.4 step 1), at the commit index.
func (n *Node) releaseReads() {
	if len(n.reads) == 0 || n.log.term(n.commit) != n.term {
		return
	}
	k := 0
	for k < len(n.reads) && n.roundAcked(n.reads[k].round) {
		n.readStates = append(n.readStates, ReadState{ID: n.reads[k].id, Index: n.commit})
		k++
	}
	n.reads = n.reads[k:]
}

// roundAcked reports whether a majority, the leader included, has
// acknowledged an AppendEntries of heartbeat round r or later in this term.
func (n *Node) roundAcked(r uint64) bool {
	return n.conf().majority(func(id int) bool {
		p := n.progress[id]
		return id == n.id || (p != nil && p.round >= r)
	})
}
