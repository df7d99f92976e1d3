package core

// campaign starts an election (5.2, Figure 2 "Candidates"): increment
// currentTerm, vote for self, reset the election timer, send RequestVote to
// all other servers. transfer marks the election of a leadership
// transfer's target (thesis 3.10).
func (n *Node) campaign(transfer bool) {
	if !n.canCampaign() {
		return
	}
	n.term++
	n.vote = n.id
	n.dropReads(n.term, None)
	n.role, n.lead = Candidate, None
	n.progress, n.transferee = nil, None
	n.votes = map[int]bool{n.id: true}
	n.resetElectionTimer()
	if n.trace != nil {
		n.tracef("campaign at last log %d/%d (transfer %v)", n.log.lastIndex(), n.log.lastTerm(), transfer)
	}
	if n.hasVotes() {
		// The only voter leads before its term and vote are saved: what
		// it sends waits for the save (see send).
		n.becomeLeader()
		n.unsavedTerm = true
		return
	}
	n.requestVotes(n.term, false, transfer)
}

// preCampaign asks the other servers whether they would vote for this one
// in the next term, changing neither its term nor its vote (PreVote,
// thesis 9.6): a server that cannot win, because it is cut off or its log
// is behind, never raises its term and so never disrupts a working leader
// when it reconnects.
func (n *Node) preCampaign() {
	if !n.canCampaign() {
		return
	}
	n.dropReads(n.term, None)
	n.role, n.lead = PreCandidate, None
	n.progress, n.transferee = nil, None
	n.votes = map[int]bool{n.id: true}
	n.resetElectionTimer()
	if n.trace != nil {
		n.tracef("pre-campaign for term %d at last log %d/%d", n.term+1, n.log.lastIndex(), n.log.lastTerm())
	}
	if n.hasVotes() {
		n.campaign(false)
		return
	}
	n.requestVotes(n.term+1, true, false)
}

func (n *Node) requestVotes(term int, pre, transfer bool) {
	for _, p := range n.voteTargets() {
		n.send(p, &RequestVoteArgs{
			Term:         term,
			CandidateID:  n.id,
			LastLogIndex: n.log.lastIndex(),
			LastLogTerm:  n.log.lastTerm(),
			PreVote:      pre,
			Transfer:     transfer,
		})
	}
}

// inLease reports whether the server is the leader or a follower that
// has heard from a leader within the minimum election timeout (or
// started since: it may have heard from one just before it stopped).
// With PreVote on, such a server neither grants a vote nor adopts the
// term of a RequestVote (leader stickiness, thesis 9.6), so that a server
// that merely lost touch with the leader cannot depose it, and a leader
// lease holds (thesis 6.4.1).
func (n *Node) inLease() bool {
	return n.cfg.PreVote && (n.role == Leader || (n.role == Follower && n.now-n.leaderAt < n.cfg.ElectionTicks))
}

// handleRequestVote is the RequestVote receiver implementation of Figure 2,
// with PreVote and leader stickiness (thesis 9.6).
func (n *Node) handleRequestVote(from int, a *RequestVoteArgs) *RequestVoteReply {
	if a.CandidateID != from || a.LastLogIndex < 0 || a.LastLogTerm < 0 {
		// Malformed (a candidate asks for itself): refused, changing nothing.
		n.tracef("refuse malformed RequestVote from %d", from)
		return &RequestVoteReply{Term: n.term, PreVote: a.PreVote}
	}
	n.tellRemoved(from)
	if n.conf().Empty() {
		// A server that joins and has no configuration yet votes for no
		// one: it holds nothing it could vouch for.
		n.tracef("refuse RequestVote from %d: no configuration yet", from)
		return &RequestVoteReply{Term: n.term, PreVote: a.PreVote}
	}
	if (a.Term > n.term || n.lead == None) && n.inLease() && (!a.Transfer || a.PreVote) {
		// thesis 4.2.3: only a transfer's election disregards the lease.
		// A vote in the current term counts too when it has no known
		// leader (the server adopted it from a reply, or restarted).
		if n.trace != nil {
			n.tracef("ignore vote request of %d for term %d: leader %d is current", a.CandidateID, a.Term, n.lead)
		}
		return &RequestVoteReply{Term: n.term, PreVote: a.PreVote}
	}
	if a.PreVote {
		return n.handlePreVote(from, a)
	}
	n.stepDownIfNewer(a.Term)
	r := &RequestVoteReply{Term: n.term}
	switch {
	case a.Term < n.term:
		// 1. Reply false if term < currentTerm.
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

// handlePreVote answers a pre-vote: whether this server would vote for the
// candidate in a.Term, a term newer than its own, given the candidate's log
// (thesis 9.6). It changes nothing.
func (n *Node) handlePreVote(from int, a *RequestVoteArgs) *RequestVoteReply {
	r := &RequestVoteReply{Term: n.term, PreVote: true}
	if a.Term > n.term && n.log.upToDate(a.LastLogIndex, a.LastLogTerm) {
		r.Term, r.VoteGranted = a.Term, true
	}
	if n.trace != nil {
		n.tracef("pre-vote for %d in term %d (log %d/%d): %v", a.CandidateID, a.Term, a.LastLogIndex, a.LastLogTerm, r.VoteGranted)
	}
	return r
}

// handleVoteReply counts votes (Figure 2 "Candidates": votes from a
// majority of servers make the candidate leader) and pre-votes (a majority
// of them starts the election).
func (n *Node) handleVoteReply(from int, r *RequestVoteReply) {
	if r.PreVote {
		// A granted pre-vote carries the term asked about, not a newer
		// term to adopt.
		if !r.VoteGranted {
			n.stepDownIfNewer(r.Term)
			return
		}
		if n.role != PreCandidate || r.Term != n.term+1 {
			return // stale
		}
		n.votes[from] = true
		if n.hasVotes() {
			n.campaign(false)
		}
		return
	}
	if n.stepDownIfNewer(r.Term) || n.role != Candidate || r.Term < n.term || !r.VoteGranted {
		return
	}
	n.votes[from] = true
	if n.hasVotes() {
		n.becomeLeader()
	}
}

// hasVotes reports whether the votes (or pre-votes) received are those of
// a majority of the latest configuration's voters (thesis 4.1).
func (n *Node) hasVotes() bool {
	return n.conf().majority(func(id int) bool { return n.votes[id] })
}

// becomeLeader takes over the current term (5.2), initialising nextIndex
// and matchIndex for each follower (Figure 2, "Volatile state on leaders"),
// and asserts leadership with an immediate round of heartbeats. With
// Config.NoOp it appends an empty entry of its term, whose commitment
// commits every entry before it (section 8).
func (n *Node) becomeLeader() {
	n.role, n.lead = Leader, n.id
	n.votes, n.transferee = nil, None
	n.elapsed, n.sinceChk = 0, 0
	n.progress = make(map[int]*progress)
	n.syncProgress()
	if n.trace != nil {
		n.tracef("lead at last log %d/%d", n.log.lastIndex(), n.log.lastTerm())
	}
	if n.cfg.NoOp {
		e := Entry{Index: n.log.lastIndex() + 1, Term: n.term, Type: EntryNoOp}
		if len(n.confs) == 0 {
			// No configuration in the log after the snapshot: the no-op
			// writes the current one there, so that it reaches every
			// server with the log, one that joins among them.
			e.Type = EntryConfig
			e.Command, _ = n.conf().AppendBinary(nil) // IDs checked by New
		}
		n.log.append(e)
		n.noteEntries([]Entry{e})
		n.maybeCommit()
	}
}
