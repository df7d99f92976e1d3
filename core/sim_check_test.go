package core

import (
	"bytes"
	"fmt"
	"slices"
)

// simHistory is what the simulation remembers across steps and restarts to
// check the properties of Figure 3 and a few more:
//
//   - Election Safety: at most one leader per term.
//   - Leader Append-Only: a leader never overwrites or deletes its entries.
//   - Log Matching: two logs with an entry of the same index and term are
//     identical up to it (checked on every entry as it appears: an
//     (index, term) pair always names the same command and follows the same
//     previous term).
//   - Leader Completeness: a committed entry is in the log of every leader
//     of a later term, from the moment it is committed.
//   - State Machine Safety: no two servers apply different entries at one
//     index, nor install a snapshot that disagrees, and every entry
//     applied sits on a majority of disks (in their logs or snapshots).
//   - Votes: a server grants at most one vote per term, across restarts,
//     and only to a candidate that asked for it in that term (or itself).
//   - A leader's matchIndex never overstates a follower's saved log.
//   - Commit indexes never go back, nor does a disk's term.
//   - What runs is what was saved, once the disk has caught up.
type simHistory struct {
	nextCmd   int
	delivered int
	snapshots int // taken by services
	installs  int // installed from leaders
	transfers int // leadership transfers started
	// commitConf: index -> the configuration of the leader that first
	// committed it, when it did.
	commitConf map[int]Membership
	changes    int // configuration changes proposed

	leaders   map[int]int      // term -> the server that led it
	committed map[int]Entry    // index -> the entry applied there
	cterm     map[int]int      // index -> a term by which that entry was committed
	entries   map[[2]int]Entry // (index, term) -> the entry, with Index the term before it
	votes     map[[2]int]int   // (server, term) -> the candidate it voted for
	asked     map[[3]int]bool  // (server, term, candidate): a RequestVote delivered
	diskTerm  map[int]int      // server -> the term on its disk

	logSeen map[int]simLogMark // server -> how much of its log was checked

	maxCommit     int            // the highest index known committed: applied, or sent as leaderCommit
	reads         map[uint64]int // ReadIndex id -> maxCommit when it started
	readBy        map[uint64]int // ReadIndex id -> the server it was started on
	nextRead      uint64
	readsDone     int
	readsFailed   int             // given up (Ready.FailedReads)
	leaseReads    int             // served by a leader at once, within its lease
	followerReads int             // served on a follower
	onFollower    map[uint64]bool // ReadIndex id -> started on a follower
}

// simLogMark remembers the part of a disk's log already checked: its first
// element and its length. The simulated disk never rewrites a log in place
// (a truncation moves to a fresh array), so an unchanged first element
// means only appends since.
type simLogMark struct {
	first *Entry
	n     int
}

func (h *simHistory) init() {
	h.leaders = map[int]int{}
	h.committed = map[int]Entry{}
	h.cterm = map[int]int{}
	h.commitConf = map[int]Membership{}
	h.entries = map[[2]int]Entry{}
	h.votes = map[[2]int]int{}
	h.asked = map[[3]int]bool{}
	h.diskTerm = map[int]int{}
	h.logSeen = map[int]simLogMark{}
	h.reads = map[uint64]int{}
	h.readBy = map[uint64]int{}
	h.onFollower = map[uint64]bool{}
}

// startRead starts a ReadIndex on server i, noting which entries are known
// committed: those a server applied, or a leader told of, so far.
func (h *simHistory) startRead(s *sim, i int) {
	h.nextRead++
	n := s.servers[i].node
	lease := n.leaseValid()
	if !n.ReadIndex(h.nextRead) {
		if n.role == Leader || n.cfg.FollowerReads && n.role == Follower && n.lead != None {
			panic(fmt.Sprintf("server %d (%v, leader %d) refused ReadIndex", i, n.role, n.lead))
		}
		return
	}
	h.reads[h.nextRead], h.readBy[h.nextRead] = h.maxCommit, i
	if lease && len(n.readStates) > 0 && n.readStates[len(n.readStates)-1].ID == h.nextRead {
		h.leaseReads++
	}
	h.onFollower[h.nextRead] = n.role != Leader
}

// readsReady checks the reads server i says are ready (thesis 6.4): a read
// is served at an index that covers every entry known committed when it
// started, and is committed on the server; and the reads it gives up.
func (h *simHistory) readsReady(s *sim, i int, rs []ReadState, failed []uint64) error {
	for _, id := range failed {
		if _, ok := h.reads[id]; !ok || h.readBy[id] != i {
			return fmt.Errorf("server %d gives up read %d, which was not started there (or came out already)", i, id)
		}
		delete(h.reads, id)
		delete(h.onFollower, id)
		h.readsFailed++
	}
	for _, r := range rs {
		start, ok := h.reads[r.ID]
		if !ok || h.readBy[r.ID] != i {
			return fmt.Errorf("server %d: read %d is ready, but it was not started there (or came out twice)", i, r.ID)
		}
		delete(h.reads, r.ID)
		if r.Index < start {
			return fmt.Errorf("server %d: read %d is served at index %d, but entries up to %d were committed before it started", i, r.ID, r.Index, start)
		}
		if n := s.servers[i].node; r.Index > n.commit {
			return fmt.Errorf("server %d: read %d is served at index %d, past its commit index %d", i, r.ID, r.Index, n.commit)
		}
		h.readsDone++
		if h.onFollower[r.ID] {
			h.followerReads++
		}
		delete(h.onFollower, r.ID)
	}
	return nil
}

// checkLease checks what a leader lease rests on and promises (thesis
// 6.4.1), for server i if it leads: while its lease is valid, each
// follower whose acknowledgement the lease counts is down or refuses
// votes (leader stickiness), and no server leads a newer term.
func (s *sim) checkLease(i int) error {
	a := s.servers[i].node
	if s.p.leaseTicks == 0 || a.role != Leader {
		return nil
	}
	if a.leaseValid() {
		base, _ := a.leaseBase()
		for f, p := range a.progress {
			if sv := s.servers[f]; p.leased && p.leaseFrom >= base && sv.up && !sv.node.inLease() {
				return fmt.Errorf("leader %d of term %d holds a lease (now %d, from %d, %d ticks) that counts on server %d, which would grant a vote (%v, term %d, heard from a leader at %d, now %d)",
					i, a.term, a.now, base, s.p.leaseTicks, f, sv.node.role, sv.node.term, sv.node.leaderAt, sv.node.now)
			}
		}
	}
	for j, sv := range s.servers {
		b := sv.node
		if j == i || !sv.up || b.role != Leader {
			continue
		}
		old, cur := a, b
		if old.term > cur.term {
			old, cur = cur, old
		}
		if old.term < cur.term && old.leaseValid() {
			return fmt.Errorf("server %d leads term %d while server %d, leader of term %d, holds a valid lease (now %d, lease %d ticks)",
				cur.id, cur.term, old.id, old.term, old.now, s.p.leaseTicks)
		}
	}
	return nil
}

// beforeStep notes a message about to be delivered.
func (h *simHistory) beforeStep(s *sim, m Message) error {
	if a, ok := m.Body.(*RequestVoteArgs); ok && !a.PreVote {
		h.asked[[3]int{m.To, a.Term, a.CandidateID}] = true
	}
	return nil
}

// sent checks a message as it leaves its sender, after the state it
// depends on is durable.
func (h *simHistory) sent(s *sim, m Message) error {
	d := &s.servers[m.From].disk
	switch b := m.Body.(type) {
	case *RequestVoteArgs:
		// A candidate's term and vote for itself are saved before it asks.
		if !b.PreVote && (d.hs.Term != b.Term || d.hs.Vote != m.From) {
			return fmt.Errorf("server %d asks for votes in term %d with %+v saved", m.From, b.Term, d.hs)
		}
	case *AppendEntriesReply:
		// An acknowledgement leaves once what it acknowledges is saved.
		if b.Success && (d.lastIndex() < b.Index || d.hs.Term < b.Term) {
			return fmt.Errorf("server %d acknowledges entries up to %d in term %d with %+v and a log to %d saved", m.From, b.Index, b.Term, d.hs, d.lastIndex())
		}
	case *RequestVoteReply:
		if b.VoteGranted && !b.PreVote {
			// So does a vote.
			if d.hs != (HardState{Term: b.Term, Vote: m.To}) {
				return fmt.Errorf("server %d grants %d its vote in term %d with %+v saved", m.From, m.To, b.Term, d.hs)
			}
			return h.vote(m.From, b.Term, m.To)
		}
	}
	// A leader's messages leave once its term is saved.
	term := -1
	switch b := m.Body.(type) {
	case *AppendEntriesArgs:
		term = b.Term
	case *InstallSnapshotArgs:
		term = b.Term
	case *TimeoutNowArgs:
		term = b.Term
	}
	if d.hs.Term < term {
		return fmt.Errorf("leader %d sends %T in term %d with %+v saved", m.From, m.Body, term, d.hs)
	}
	switch b := m.Body.(type) {
	case *AppendEntriesArgs:
		// Entries up to LeaderCommit are committed, by this term at the
		// latest.
		for i := b.PrevLogIndex + 1; i <= b.LeaderCommit && i <= b.PrevLogIndex+len(b.Entries); i++ {
			if err := h.commit(s, b.Entries[i-b.PrevLogIndex-1], b.Term); err != nil {
				return fmt.Errorf("S%d sends leaderCommit %d: %w", m.From, b.LeaderCommit, err)
			}
		}
	}
	return nil
}

// vote records that server voted for cand in term.
func (h *simHistory) vote(server, term, cand int) error {
	if server != cand && !h.asked[[3]int{server, term, cand}] {
		return fmt.Errorf("server %d votes for %d in term %d, which never asked it in that term", server, cand, term)
	}
	k := [2]int{server, term}
	if v, ok := h.votes[k]; ok && v != cand {
		return fmt.Errorf("server %d voted twice in term %d: for %d and for %d", server, term, v, cand)
	}
	h.votes[k] = cand
	return nil
}

// saved checks server i's disk after a write.
func (h *simHistory) saved(s *sim, i int) error {
	d := s.servers[i].disk
	if d.hs.Term < h.diskTerm[i] {
		return fmt.Errorf("server %d saved term %d after term %d", i, d.hs.Term, h.diskTerm[i])
	}
	h.diskTerm[i] = d.hs.Term
	if d.hs.Vote != None {
		if err := h.vote(i, d.hs.Term, d.hs.Vote); err != nil {
			return err
		}
	}
	return s.checkNewEntries(i)
}

// commit records that e is committed, by term cterm at the latest, and
// checks it: no other entry was committed at its index, it sits on a
// majority of the disks of the voters of the configuration it was
// committed by, and every leader of a later term holds it.
func (h *simHistory) commit(s *sim, e Entry, cterm int) error {
	if c, ok := h.committed[e.Index]; ok {
		if c.Term != e.Term || !bytes.Equal(c.Command, e.Command) {
			return fmt.Errorf("entry %d/%d committed where %d/%d was", e.Index, e.Term, c.Index, c.Term)
		}
		if cterm < h.cterm[e.Index] {
			h.cterm[e.Index] = cterm
		}
		return nil
	}
	if err := s.onMajority(e); err != nil {
		return err
	}
	h.committed[e.Index], h.cterm[e.Index] = e, cterm
	h.maxCommit = max(h.maxCommit, e.Index)
	for term, l := range h.leaders {
		if term > cterm && s.servers[l].up && s.servers[l].node.term == term && s.servers[l].node.role == Leader {
			if n := s.servers[l].node; e.Index > n.log.snapshot().Index && n.log.term(e.Index) != e.Term {
				return fmt.Errorf("leader %d of term %d lacks entry %d/%d, committed by term %d", l, term, e.Index, e.Term, cterm)
			}
		}
	}
	return nil
}

// checkSnapshot checks a snapshot that server i installs: State Machine
// Safety says every entry its state holds is the one committed there.
func (h *simHistory) checkSnapshot(s *sim, i int, state []Entry) error {
	h.installs++
	for k, e := range state {
		c, ok := h.committed[k+1]
		if !ok || e.Index != k+1 || c.Term != e.Term || !bytes.Equal(c.Command, e.Command) {
			return fmt.Errorf("server %d installs a snapshot whose entry %d is %d/%q, but %d/%q was committed there (known: %v)", i, k+1, e.Term, e.Command, c.Term, c.Command, ok)
		}
	}
	return nil
}

// apply has server i apply e and checks State Machine Safety.
func (s *sim) apply(i int, e Entry) error {
	sv := s.servers[i]
	if e.Index != len(sv.applied)+1 {
		return fmt.Errorf("server %d applied index %d after %d", i, e.Index, len(sv.applied))
	}
	if err := s.hist.commit(s, e, sv.node.term); err != nil {
		return fmt.Errorf("server %d applies: %w", i, err)
	}
	sv.applied = append(sv.applied, e)
	return nil
}

// noteCommits records, for the entries leader i has just committed, the
// configuration it committed them by: its latest (thesis 4.1).
func (s *sim) noteCommits(i int) {
	n := s.servers[i].node
	if n.role != Leader {
		return
	}
	for idx := n.commit; idx > n.log.snapshot().Index; idx-- {
		if _, ok := s.hist.commitConf[idx]; ok {
			break
		}
		s.hist.commitConf[idx] = n.conf()
	}
}

// onMajority checks that a committed entry sits on the disks of a
// majority of the voters of the configuration it was committed by.
func (s *sim) onMajority(e Entry) error {
	conf, ok := s.hist.commitConf[e.Index]
	if !ok {
		return fmt.Errorf("entry %d/%d is committed, but no leader committed it", e.Index, e.Term)
	}
	var on []int
	for _, v := range conf.Voters() {
		if d, ok := s.servers[v].disk.entry(e.Index); ok && d.Term == e.Term {
			on = append(on, v)
		}
	}
	if !conf.majority(func(id int) bool { return slices.Contains(on, id) }) {
		return fmt.Errorf("entry %d/%d is committed but only on the disks of %v of the voters of %v, the configuration it was committed by", e.Index, e.Term, on, conf)
	}
	return nil
}

// check verifies what server i's last step could have broken.
func (s *sim) check(i int) error {
	sv := s.servers[i]
	n := sv.node
	if n.commit < sv.lastCommit {
		return fmt.Errorf("server %d: commit index went back from %d to %d", i, sv.lastCommit, n.commit)
	}
	if n.commit > n.log.lastIndex() {
		return fmt.Errorf("server %d commits %d beyond its last entry %d", i, n.commit, n.log.lastIndex())
	}
	// Thesis 4.1: a server uses the latest configuration in its log, or
	// its snapshot's when the log holds none.
	want := n.snapConf
	for k := n.log.lastIndex(); k > n.log.snapshot().Index; k-- {
		if e := n.log.entry(k); e.Type == EntryConfig {
			want, _ = DecodeMembership(e.Command)
			break
		}
	}
	if !n.conf().Equal(want) {
		return fmt.Errorf("server %d uses the configuration %v, but the latest in its log is %v", i, n.conf(), want)
	}
	sv.lastCommit = n.commit
	if n.role != Leader {
		sv.leaderTerm, sv.leaderLog = 0, nil
		return nil
	}
	if err := s.checkLease(i); err != nil {
		return err
	}
	// Election Safety: at most one leader per term, counting those that
	// saved their term and vote (a server that leads alone does so before
	// it saved them, but nothing it does leaves before: see sent).
	d := sv.disk.hs
	saved := d.Term == n.term && d.Vote == i
	if l, ok := s.hist.leaders[n.term]; saved && ok && l != i {
		return fmt.Errorf("servers %d and %d both lead term %d", l, i, n.term)
	}
	if _, ok := s.hist.leaders[n.term]; saved && !ok {
		s.hist.leaders[n.term] = i
		// Leader Completeness: a new leader holds every entry committed
		// by an earlier term.
		for idx, e := range s.hist.committed {
			if s.hist.cterm[idx] < n.term && idx > n.log.snapshot().Index && n.log.term(idx) != e.Term {
				return fmt.Errorf("server %d leads term %d without entry %d/%d, committed by term %d", i, n.term, idx, e.Term, s.hist.cterm[idx])
			}
		}
	}
	// A leader's matchIndex never overstates a follower's log: while the
	// follower is in the leader's term, only the leader changes its log,
	// so it holds the leader's entries up to matchIndex on its disk.
	for f, p := range n.progress {
		d := s.servers[f].disk
		if p.match <= d.snap.Index || d.hs.Term != n.term {
			continue // in the follower's snapshot, checked as it came
		}
		want := n.log.term(p.match)
		if p.match <= n.log.snapshot().Index {
			want = s.hist.committed[p.match].Term // compacted here: committed
		}
		if e, ok := d.entry(p.match); !ok || e.Term != want {
			return fmt.Errorf("leader %d of term %d has matchIndex %d for server %d, whose saved log (to %d) does not hold its entry %d/%d",
				i, n.term, p.match, f, d.lastIndex(), p.match, want)
		}
	}
	// Leader Append-Only.
	if sv.leaderTerm == n.term {
		old, cur := sv.leaderLog, n.log.ents
		if last := old[len(old)-1].Index; n.log.lastIndex() < last {
			return fmt.Errorf("leader %d of term %d shrank its log from %d to %d", i, n.term, last, n.log.lastIndex())
		}
		if &old[0] != &cur[0] { // compacted, or grown into a new array
			for _, e := range old[1:] {
				if e.Index <= n.log.snapshot().Index {
					continue
				}
				if c := n.log.entry(e.Index); c.Term != e.Term || !bytes.Equal(c.Command, e.Command) {
					return fmt.Errorf("leader %d of term %d rewrote entry %d", i, n.term, e.Index)
				}
			}
		}
	}
	sv.leaderTerm, sv.leaderLog = n.term, n.log.ents
	return nil
}

// checkNewEntries checks Log Matching for the entries of server i's disk
// not checked yet: an (index, term) pair names one entry everywhere, and
// that entry always follows the same term. (A log in memory that was never
// saved was never acted on either.)
func (s *sim) checkNewEntries(i int) error {
	d := &s.servers[i].disk
	log := d.log
	if len(log) == 0 {
		return nil
	}
	mark := s.hist.logSeen[i]
	from := 0
	if mark.first == &log[0] && mark.n <= len(log) {
		from = mark.n
	}
	for k := from; k < len(log); k++ {
		e := log[k]
		key := [2]int{e.Index, e.Term}
		prev := d.snap.Term
		if k > 0 {
			prev = log[k-1].Term
		}
		if seen, ok := s.hist.entries[key]; ok {
			if !bytes.Equal(seen.Command, e.Command) || seen.Type != e.Type || seen.Index != prev {
				return fmt.Errorf("server %d holds entry %d/%d (%q after term %d), but another log has %d/%d as %q after term %d",
					i, e.Index, e.Term, e.Command, prev, e.Index, e.Term, seen.Command, seen.Index)
			}
			continue
		}
		// Index holds the term of the entry before, for this check.
		s.hist.entries[key] = Entry{Index: prev, Term: e.Term, Type: e.Type, Command: e.Command}
	}
	s.hist.logSeen[i] = simLogMark{first: &log[0], n: len(log)}
	return nil
}

// checkSaved checks, once server i's disk has caught up with it, that the
// disk holds what the server runs with: nothing was acted on unsaved.
func (s *sim) checkSaved(i int) error {
	sv := s.servers[i]
	n := sv.node
	d := &sv.disk
	if d.hs != (HardState{n.term, n.vote}) || d.snap.Index != n.log.snapshot().Index || d.snap.Term != n.log.snapshot().Term || d.lastIndex() != n.log.lastIndex() ||
		(len(d.log) > 0 && d.log[len(d.log)-1].Term != n.log.lastTerm()) {
		return fmt.Errorf("server %d: saved %v, snapshot %+v, log to %d, but runs with term %d vote %d, snapshot %+v, log to %d",
			i, d.hs, d.snap, d.lastIndex(), n.term, n.vote, n.log.snapshot(), n.log.lastIndex())
	}
	return nil
}
