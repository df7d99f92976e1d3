package core

// campaign starts an election (5.2, Figure 2 "Candidates"): increment
// currentTerm, vote for self, reset the election timer, send RequestVote to
// all other servers.
func (n *Node) campaign() {
	n.term++
	n.vote = n.id
	n.role, n.lead = Candidate, None
	n.progress = nil
	n.votes = map[int]bool{n.id: true}
	n.resetElectionTimer()
	if n.trace != nil {
		n.tracef("campaign at last log %d/%d", n.log.lastIndex(), n.log.lastTerm())
	}
	if len(n.votes) >= n.quorum() {
		n.becomeLeader()
		return
	}
	for _, p := range n.peers {
		n.send(p, &RequestVoteArgs{
			Term:         n.term,
			CandidateID:  n.id,
			LastLogIndex: n.log.lastIndex(),
			LastLogTerm:  n.log.lastTerm(),
		})
	}
}

// handleRequestVote is the RequestVote receiver implementation of Figure 2.
func (n *Node) handleRequestVote(from int, a *RequestVoteArgs) *RequestVoteReply {
	n.stepDownIfNewer(a.Term)
	r := &RequestVoteReply{Term: n.term}
	switch {
	case a.Term < n.term:
		// 1. Reply false if term < currentTerm.
	case a.CandidateID != from:
		// Malformed: a candidate asks for itself.
	case n.vote != None && n.vote != a.CandidateID:
		// 2. Already voted for another candidate in this term.
	case !n.log.upToDate(a.LastLogIndex, a.LastLogTerm):
		// 2. Candidate's log is not at least as up-to-date (5.4.1).
	default:
		n.vote = a.CandidateID
		r.VoteGranted = true
		n.resetElectionTimer() // Figure 2 "Followers": granting a vote resets the timer
	}
	if n.trace != nil {
		n.tracef("vote for %d (log %d/%d): %v", a.CandidateID, a.LastLogIndex, a.LastLogTerm, r.VoteGranted)
	}
	return r
}

// handleVoteReply counts votes (Figure 2 "Candidates": votes from a
// majority of servers make the candidate leader).
func (n *Node) handleVoteReply(from int, r *RequestVoteReply) {
	if n.stepDownIfNewer(r.Term) || n.role != Candidate || r.Term < n.term || !r.VoteGranted {
		return
	}
	n.votes[from] = true
	if len(n.votes) >= n.quorum() {
		n.becomeLeader()
	}
}

// becomeLeader takes over the current term (5.2), initialising nextIndex
// and matchIndex for each follower (Figure 2, "Volatile state on leaders"),
// and asserts leadership with an immediate round of heartbeats.
func (n *Node) becomeLeader() {
	n.role, n.lead = Leader, n.id
	n.votes = nil
	n.elapsed, n.sinceChk = 0, 0
	n.progress = make(map[int]*progress, len(n.peers))
	for _, p := range n.peers {
		n.progress[p] = &progress{next: n.log.lastIndex() + 1, heartbeat: true}
	}
	if n.trace != nil {
		n.tracef("lead at last log %d/%d", n.log.lastIndex(), n.log.lastTerm())
	}
}
