package core

import "slices"

// Propose appends a command to the leader's log (Figure 2 "Leaders": append
// the entry to the local log). It returns the index the command will have if
// it is ever committed, the current term, and false if this server is not
// the leader, or is handing the leadership over (thesis 3.10: a leader
// stops accepting client requests during a transfer).
func (n *Node) Propose(cmd []byte) (index, term int, ok bool) {
	if n.role != Leader || n.transferee != None {
		return 0, n.term, false
	}
	index = n.log.lastIndex() + 1
	n.log.append(Entry{Index: index, Term: n.term, Command: cmd})
	n.maybeCommit() // a single server is its own majority
	return index, n.term, true
}

func (n *Node) tickLeader() {
	n.tickTransfer()
	n.sinceChk++
	if n.sinceChk >= n.cfg.ElectionTicks {
		// Beyond Figure 2: a leader that heard from no majority during a
		// whole election timeout steps down, so that clients stop waiting on
		// a deposed leader (section 6.2 of Ongaro's thesis).
		n.sinceChk = 0
		active := n.conf().majority(func(id int) bool {
			p := n.progress[id]
			return id == n.id || (p != nil && p.active)
		})
		for _, p := range n.progress {
			p.active = false
		}
		if !active {
			n.tracef("heard from no majority: step down")
			n.becomeFollower(n.term, None)
			return
		}
	}
	if n.elapsed >= n.cfg.HeartbeatTicks {
		// Figure 2 "Leaders": repeat AppendEntries during idle periods to
		// prevent election timeouts (5.2). Batches in flight with no
		// acknowledgement for a whole heartbeat interval are taken as lost:
		// the leader probes again from what the follower matched.
		n.elapsed = 0
		n.leaseHeartbeat()
		for _, p := range n.progress {
			if len(p.inflight) > 0 && !p.acked {
				p.probe(p.match + 1)
			}
			p.heartbeat, p.acked = true, false
		}
	}
	// 5.3: the leader includes its commit index in future AppendEntries. A
	// follower with nothing in flight is told of a new one at the next tick,
	// so that the commits of one tick share a message, or travel with the
	// next entries.
	for _, p := range n.progress {
		if p.commitDue(n.commit) {
			p.heartbeat = true
		}
	}
}

// flush sends each follower the entries it lacks, as far as its window
// allows (Figure 2 "Leaders": if last log index >= nextIndex, send entries
// starting at nextIndex), or a heartbeat when one is due and nothing else
// goes.
func (n *Node) flush() {
	last := n.log.lastIndex()
	snap := n.log.snapshot()
	for _, id := range n.replicas() {
		p := n.progress[id]
		if p.next <= snap.Index {
			n.sendSnapshot(id, p, snap)
			continue
		}
		for p.next <= last && p.canSend(n.cfg.MaxInflight, n.cfg.MaxInflightBytes) {
			hi, size := p.next, 0
			for hi <= last && (hi == p.next || size+len(n.log.entry(hi).Command) <= n.cfg.MaxMsgBytes) {
				size += len(n.log.entry(hi).Command)
				hi++
			}
			n.sendAppend(id, p, n.log.slice(p.next, hi))
			p.sent(batch{last: hi - 1, bytes: size})
		}
		if p.heartbeat {
			n.sendAppend(id, p, nil)
		}
	}
}

// sendAppend sends follower id the entries ents, which start at its
// nextIndex, or none as a heartbeat.
func (n *Node) sendAppend(id int, p *progress, ents []Entry) {
	p.heartbeat, p.commit = false, n.commit
	prev := p.next - 1
	n.send(id, &AppendEntriesArgs{
		Term:         n.term,
		LeaderID:     n.id,
		PrevLogIndex: prev,
		PrevLogTerm:  n.log.term(prev),
		Entries:      ents,
		LeaderCommit: n.commit,
		Round:        n.round,
	})
}

// handleAppendEntries is the AppendEntries receiver implementation of
// Figure 2.
func (n *Node) handleAppendEntries(from int, a *AppendEntriesArgs) *AppendEntriesReply {
	r := &AppendEntriesReply{Index: a.PrevLogIndex, Round: a.Round}
	if a.Term < n.term {
		// 1. Reply false if term < currentTerm.
		r.Term = n.term
		return r
	}
	if !wellFormed(a) || a.LeaderID != from || decodeConfs(a.Entries) != nil {
		n.tracef("refuse malformed AppendEntries from %d", from)
		r.Term = n.term
		return r
	}
	// Figure 2 "Candidates": if AppendEntries is received from the new
	// leader, convert to follower. A follower hearing from its leader resets
	// its election timer (5.2).
	n.becomeFollower(a.Term, a.LeaderID)
	r.Term = n.term
	if a.PrevLogIndex < n.log.snapshot().Index {
		// Before the snapshot: committed entries, which match the
		// leader's log up to the commit index (Leader Completeness).
		r.Success, r.Index = true, n.commit
		return r
	}

	// 2. Reply false if the log doesn't contain an entry at prevLogIndex
	// whose term matches prevLogTerm (5.3). The conflict fields let the
	// leader skip a whole term at a time (end of 5.3).
	if t := n.log.term(a.PrevLogIndex); t != a.PrevLogTerm {
		if t < 0 {
			r.ConflictIndex = n.log.lastIndex() + 1
		} else {
			r.ConflictTerm, r.ConflictIndex = t, n.log.firstOfTerm(a.PrevLogIndex)
		}
		if n.trace != nil {
			n.tracef("reject entries after %d/%d from %d: conflict %d/%d", a.PrevLogIndex, a.PrevLogTerm, from, r.ConflictIndex, r.ConflictTerm)
		}
		return r
	}

	// 3. If an existing entry conflicts with a new one (same index but
	// different terms), delete it and all that follow it. 4. Append any new
	// entries not already in the log. Entries already present are kept, so a
	// stale, shorter AppendEntries never truncates the log.
	for i, e := range a.Entries {
		if n.log.term(e.Index) != e.Term {
			if e.Index <= n.commit {
				// Cannot happen between correct servers (Leader Completeness).
				n.tracef("refuse entry %d/%d from %d: it would replace a committed entry", e.Index, e.Term, from)
				return r
			}
			n.log.truncateAndAppend(a.Entries[i:])
			n.noteEntries(a.Entries[i:]) // thesis 4.1: a configuration takes effect once in the log
			n.durable = min(n.durable, e.Index-1)
			if n.trace != nil {
				n.tracef("append %d..%d from %d", e.Index, n.log.lastIndex(), from)
			}
			break
		}
	}
	lastNew := a.PrevLogIndex + len(a.Entries)

	// 5. If leaderCommit > commitIndex, set commitIndex =
	// min(leaderCommit, index of last new entry).
	if c := min(a.LeaderCommit, lastNew); c > n.commit {
		n.commit = c
	}
	r.Success, r.Index = true, lastNew
	return r
}

// wellFormed reports whether a's entries are numbered on from PrevLogIndex
// and carry terms that never decrease and never pass the leader's.
func wellFormed(a *AppendEntriesArgs) bool {
	if a.PrevLogIndex < 0 || a.PrevLogTerm < 0 || a.LeaderCommit < 0 {
		return false
	}
	prev := a.PrevLogTerm
	for i, e := range a.Entries {
		if e.Index != a.PrevLogIndex+1+i || e.Term < prev || e.Term > a.Term {
			return false
		}
		prev = e.Term
	}
	return true
}

// handleAppendReply updates a follower's progress from its answer (Figure 2
// "Leaders").
func (n *Node) handleAppendReply(from int, r *AppendEntriesReply) {
	if n.stepDownIfNewer(r.Term) || n.role != Leader || r.Term < n.term {
		return // stale: from an earlier term
	}
	p := n.progress[from]
	if p == nil {
		return // not a member (any more)
	}
	p.active = true
	if r.Success || r.ConflictIndex > 0 {
		// thesis 6.4: the follower took this server as its leader after
		// the heartbeat round began, success or not (a refusal for its
		// term says nothing of the kind).
		n.ackRound(p, r.Round)
	}
	if r.Success {
		// If successful: update nextIndex and matchIndex for follower.
		// Replies may come out of order, so neither moves back here.
		if p.ack(r.Index) {
			n.maybeCommit()
		}
		n.maybeTimeoutNow(from)
		n.doneTelling(from)
		return
	}
	if r.ConflictIndex == 0 || r.Index < p.match || (p.probing && r.Index != p.next-1) {
		// Refused for its term (sent in an earlier term), or answers an
		// AppendEntries older than what the follower acknowledged since,
		// or than the probe in flight.
		return
	}
	// If AppendEntries fails because of log inconsistency: decrement
	// nextIndex and retry, skipping the whole conflicting term (end of 5.3).
	next := r.ConflictIndex
	if r.ConflictTerm > 0 {
		if i := n.log.lastOfTerm(r.ConflictTerm); i > 0 {
			next = i + 1
		}
	}
	next = min(next, r.Index)
	if next <= p.match && p.probing {
		// Answering the probe, the follower lacks an entry it
		// acknowledged: its log went backwards (it lost data on disk),
		// unless this is a duplicate of an old refusal. Forget what it
		// matched and probe back from what it holds; commitIndex never
		// moves back. (A refusal while streaming may be older than an
		// acknowledgement that overtook it: probing from what the follower
		// matched tells.)
		n.warn("core: follower refused entries it had acknowledged: its log went backwards; sending it the log again",
			"follower", from, "match", p.match, "refused_after", r.Index, "follower_holds_until", r.ConflictIndex-1)
		p.match = 0
	}
	p.probe(max(next, p.match+1))
	p.heartbeat = true // probe at once, with entries or without
	if n.trace != nil {
		n.tracef("%d rejected entries after %d: probe after %d", from, r.Index, p.next-1)
	}
}

// maybeCommit advances commitIndex to the highest N replicated on a
// majority with log[N].term == currentTerm (Figure 2 "Leaders"; 5.3, 5.4.2:
// entries of earlier terms are committed only indirectly).
func (n *Node) maybeCommit() {
	matches := n.matchBuf[:0] // of the voters of the latest configuration (thesis 4.1)
	for _, m := range n.conf().Members {
		if m.Learner {
			continue
		}
		if id := m.ID; id == n.id {
			matches = append(matches, min(n.durable, n.log.lastIndex())) // its own log counts once saved
		} else if p := n.progress[id]; p != nil {
			matches = append(matches, p.match)
		} else {
			matches = append(matches, 0) // cannot happen: syncProgress keeps one per member
		}
	}
	slices.Sort(matches)
	n.matchBuf = matches
	N := matches[(len(matches)-1)/2] // the highest index on a majority
	if N > n.commit && n.log.term(N) == n.term {
		prev := n.commit
		n.commit = N
		if n.trace != nil {
			n.tracef("commit %d", N)
		}
		n.releaseReads()
		if c := n.confIndex(); prev < c && c <= N {
			n.syncProgress() // a configuration committed: drop the servers it removed
		}
		n.maybeHandOver()
	}
}

// sendSnapshot sends a follower that needs entries the log discarded the
// snapshot that replaced them (Figure 13), one at a time; and, when a
// heartbeat is due, an empty AppendEntries after the snapshot, which keeps
// the follower from starting elections while the snapshot travels.
func (n *Node) sendSnapshot(to int, p *progress, snap SnapshotMeta) {
	if len(p.inflight) == 0 {
		p.probe(p.next)
		p.sent(batch{last: snap.Index})
		n.send(to, &InstallSnapshotArgs{Term: n.term, LeaderID: n.id, LastIncludedIndex: snap.Index, LastIncludedTerm: snap.Term, Membership: n.snapConf, Done: true})
		if n.trace != nil {
			n.tracef("send snapshot through %d/%d to %d", snap.Index, snap.Term, to)
		}
	}
	if p.heartbeat {
		p.heartbeat, p.commit = false, n.commit
		n.send(to, &AppendEntriesArgs{Term: n.term, LeaderID: n.id, PrevLogIndex: snap.Index, PrevLogTerm: snap.Term, LeaderCommit: n.commit, Round: n.round})
	}
}

// handleInstallSnapshot is the InstallSnapshot receiver implementation of
// Figure 13, once the driver has received the whole snapshot.
func (n *Node) handleInstallSnapshot(from int, a *InstallSnapshotArgs) *InstallSnapshotReply {
	r := &InstallSnapshotReply{Term: n.term}
	if a.Term < n.term {
		return r // 1. Reply immediately if term < currentTerm.
	}
	if a.LeaderID != from || a.LastIncludedIndex < 1 || a.LastIncludedTerm < 1 || a.LastIncludedTerm > a.Term || !a.Done || a.Membership.check() != nil {
		n.tracef("refuse malformed InstallSnapshot from %d", from)
		return r
	}
	n.becomeFollower(a.Term, a.LeaderID) // a leader's message (5.2)
	r.Term = n.term
	snap := SnapshotMeta{Index: a.LastIncludedIndex, Term: a.LastIncludedTerm}
	if snap.Index <= n.commit {
		// The service has, or will apply from the log, all the snapshot
		// holds: nothing to install, and the log matches the leader's up
		// to the commit index.
		r.Index = n.commit
		return r
	}
	// 6. If an existing entry has the snapshot's last index and term,
	// retain the entries following it; 7. else discard the entire log.
	// 8. The driver resets the service from the snapshot (Ready.Snapshot).
	n.log.restore(snap)
	n.commit, n.applied, n.durable = snap.Index, snap.Index, snap.Index
	snap.Membership = a.Membership.Clone()
	n.restoreConfs(snap)
	n.installed = &snap
	if n.trace != nil {
		n.tracef("install snapshot through %d/%d from %d, keeping %d entries", snap.Index, snap.Term, from, n.log.lastIndex()-snap.Index)
	}
	r.Index = n.commit
	return r
}

// handleSnapshotReply updates a follower's progress once it has the
// snapshot.
func (n *Node) handleSnapshotReply(from int, r *InstallSnapshotReply) {
	if n.stepDownIfNewer(r.Term) || n.role != Leader || r.Term < n.term || r.Index == 0 || n.progress[from] == nil {
		return
	}
	if n.progress[from].ack(r.Index) {
		n.maybeCommit()
	}
	n.doneTelling(from)
}
