package core

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
)

// Config sets up a Node.
type Config struct {
	ID int // this server
	// Membership is the initial configuration of the cluster, which
	// applies until the log or the snapshot holds one; if it is empty,
	// Peers, every server of the cluster this one included, are its
	// voters. With neither, the server joins an existing cluster: it has
	// no configuration until the leader sends it one, and meanwhile
	// neither votes nor starts elections.
	Membership Membership
	Peers      []int

	// ElectionTicks is the base election timeout: a follower that hears
	// from no leader for a random number of ticks in [ElectionTicks,
	// 2*ElectionTicks) starts an election (5.2).
	ElectionTicks int
	// HeartbeatTicks is how often a leader sends AppendEntries to each
	// follower when it has nothing else to send.
	HeartbeatTicks int
	// MaxMsgBytes bounds the command bytes of one AppendEntries; a single
	// larger entry still travels alone (default 1 MiB).
	MaxMsgBytes int
	// MaxInflight and MaxInflightBytes bound the AppendEntries a leader
	// has in flight to one follower that it streams to, by count (default
	// 64) and by command bytes (default 32 MiB).
	MaxInflight      int
	MaxInflightBytes int
	// AsyncSave says the caller saves a Ready's state in parallel with
	// sending its Messages, and calls Saved once it is durable (Raft
	// thesis 10.2.1). Without it, the entries a Ready hands out count as
	// durable once Ready returns: the caller saves before doing anything
	// else with it.
	AsyncSave bool
	// PreVote makes a server whose election timeout elapses ask for
	// pre-votes before it starts an election, and a server that hears from
	// a current leader ignore RequestVotes of newer terms (thesis 9.6).
	PreVote bool
	// NoOp makes a new leader append an empty entry (EntryNoOp) of its
	// term, so that the entries of earlier terms commit without waiting
	// for a proposal (section 8). If the log holds no configuration after
	// its snapshot, the entry is an EntryConfig of the current
	// configuration instead, which changes nothing but puts it in the log.
	NoOp bool
	// LeaseTicks, if not 0, lets the leader serve ReadIndex at once, with
	// no round of heartbeats, for LeaseTicks ticks from the start of a
	// round that a majority acknowledged (a leader lease, thesis 6.4.1).
	// It assumes that the servers' clocks advance at rates close enough
	// that LeaseTicks of the leader's ticks pass before ElectionTicks of
	// any follower's, and that followers grant no vote within
	// ElectionTicks of hearing from the leader (leader stickiness: it
	// needs PreVote). It must be below ElectionTicks.
	LeaseTicks int
	// FollowerReads lets ReadIndex on a follower ask the leader for the
	// read index (ReadIndexArgs), so that a follower can serve
	// linearizable reads.
	FollowerReads bool

	// State, Snapshot and Log are what the server saved before it last
	// stopped: its HardState, the snapshot its service was restored from
	// (zero if none), and the entries after it.
	State    HardState
	Snapshot SnapshotMeta
	Log      []Entry

	Rand *rand.Rand // source of the randomized election timeouts

	// Trace, if set, receives one line per protocol event.
	Trace func(line string)
	// Logger, if set, receives warnings about what peers do that a
	// correct peer never does (such as a follower losing entries it had
	// acknowledged).
	Logger *slog.Logger
}

// Node is one server's protocol state.
type Node struct {
	id  int
	cfg Config

	// Persistent state on all servers (Figure 2).
	term int
	vote int
	log  raftLog

	// Volatile state on all servers (Figure 2).
	commit  int
	applied int // highest index handed out in Ready.Committed, or restored by Ready.Snapshot

	installed *SnapshotMeta // a snapshot from the leader, for the next Ready
	// snapConf is the configuration as of the log's snapshot (or the
	// initial one), confs the configurations in the log after it, in log
	// order.
	snapConf Membership
	confs    []confEntry
	initial  Membership // Config.Membership or Peers: what a snapshot without a configuration had
	// confNews: the latest configuration changed since the last Ready.
	confNews bool
	durable  int // the last index of the log known to be saved

	role Role
	lead int // leader of the current term, or None
	// unsavedTerm: this server leads a term it may not have saved yet (it
	// won alone), until an entry of the term is saved.
	unsavedTerm bool

	votes map[int]bool // candidate: votes received in this term
	// transferee is, on a leader, the target of a leadership transfer in
	// progress (thesis 3.10), or None; transferElapsed counts its ticks.
	transferee      int
	transferElapsed int
	// round numbers a leader's heartbeat rounds for ReadIndex; reads are
	// the reads waiting for theirs, readStates those ready for the next
	// Ready.
	round      uint64
	reads      []pendingRead
	readStates []ReadState
	progress   map[int]*progress // leader: nextIndex and matchIndex per follower
	elapsed    int               // ticks since the last reset of the election or heartbeat timer
	timeout    int               // randomized election timeout, in ticks
	sinceChk   int               // leader: ticks since it last checked it still has a quorum
	matchBuf   []int             // maybeCommit's, reused
	msgs       []Message         // outgoing, since the last Ready
	deferred   []Message         // outgoing once the state they depend on is saved
	saved      HardState         // hard state as of the last Ready
	trace      func(line string)

	// Reads (read.go): failedReads are the reads given up, for the next
	// Ready; rounds the recent heartbeat rounds' starts, for the lease;
	// transferTerm the last term in which this server sent TimeoutNow
	// (no lease in it); asked a follower's reads waiting for the leader's
	// read index.
	failedReads  []uint64
	rounds       []roundStart
	transferTerm int
	asked        []askedRead
	// now counts the ticks since the server started (Tick and Skip), the
	// clock of leases; leaderAt is when it last heard from a leader (its
	// start counts as such: it may have acknowledged a leader just before
	// it stopped).
	now      int
	leaderAt int
}

// New returns a Node starting as a follower from the saved state in cfg.
func New(cfg Config) (*Node, error) {
	if cfg.ElectionTicks <= 0 || cfg.HeartbeatTicks <= 0 || cfg.HeartbeatTicks >= cfg.ElectionTicks {
		return nil, fmt.Errorf("core: need 0 < HeartbeatTicks (%d) < ElectionTicks (%d)", cfg.HeartbeatTicks, cfg.ElectionTicks)
	}
	if cfg.Rand == nil {
		return nil, errors.New("core: Config.Rand is nil")
	}
	if cfg.LeaseTicks < 0 || cfg.LeaseTicks >= cfg.ElectionTicks {
		return nil, fmt.Errorf("core: need 0 <= LeaseTicks (%d) < ElectionTicks (%d)", cfg.LeaseTicks, cfg.ElectionTicks)
	}
	if cfg.LeaseTicks > 0 && !cfg.PreVote {
		return nil, errors.New("core: leader leases (LeaseTicks) need PreVote: without leader stickiness a follower may vote for another server right after acknowledging the leader, which could then be deposed during its lease")
	}
	initial := cfg.Membership.Clone()
	if initial.Empty() {
		ids := slices.Clone(cfg.Peers)
		slices.Sort(ids)
		for _, id := range slices.Compact(ids) {
			initial.Members = append(initial.Members, Member{ID: id})
		}
	}
	if err := initial.check(); err != nil {
		return nil, fmt.Errorf("core: initial configuration: %w", err)
	}
	if _, ok := initial.Find(cfg.ID); !initial.Empty() && !ok {
		return nil, fmt.Errorf("core: server %d is not in the initial configuration %v", cfg.ID, initial)
	}
	if err := decodeConfs(cfg.Log); err != nil {
		return nil, fmt.Errorf("core: saved log: %w", err)
	}
	snap := cfg.Snapshot
	if err := snap.Membership.check(); err != nil {
		return nil, fmt.Errorf("core: saved snapshot's configuration: %w", err)
	}
	if snap.Index < 0 || snap.Term < 0 || snap.Term > cfg.State.Term || (snap.Index > 0) != (snap.Term > 0) {
		return nil, fmt.Errorf("core: saved snapshot through %d at term %d is inconsistent (current term %d)", snap.Index, snap.Term, cfg.State.Term)
	}
	for i, e := range cfg.Log {
		prev := snap.Term
		if i > 0 {
			prev = cfg.Log[i-1].Term
		}
		if e.Index != snap.Index+1+i || e.Term < 1 || e.Term > cfg.State.Term || e.Term < prev {
			return nil, fmt.Errorf("core: saved log is inconsistent at position %d (index %d, term %d, snapshot through %d, current term %d)", i, e.Index, e.Term, snap.Index, cfg.State.Term)
		}
	}
	if cfg.MaxMsgBytes <= 0 {
		cfg.MaxMsgBytes = 1 << 20
	}
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = 64
	}
	if cfg.MaxInflightBytes <= 0 {
		cfg.MaxInflightBytes = 32 << 20
	}
	n := &Node{
		id:   cfg.ID,
		cfg:  cfg,
		term: cfg.State.Term,
		vote: cfg.State.Vote,
		log:  newLog(snap, cfg.Log),
		// The service starts from the snapshot.
		commit:     snap.Index,
		applied:    snap.Index,
		durable:    snap.Index + len(cfg.Log),
		lead:       None,
		saved:      cfg.State,
		transferee: None,
		trace:      cfg.Trace,
		snapConf:   initial,
		initial:    initial,
	}
	if !snap.Membership.Empty() {
		n.snapConf = snap.Membership.Clone()
	}
	n.noteEntries(cfg.Log)
	n.confNews = false // the caller has Membership to start with
	n.becomeFollower(n.term, None)
	return n, nil
}

// ID returns the server's ID.
func (n *Node) ID() int { return n.id }

// Term returns the server's current term.
func (n *Node) Term() int { return n.term }

// Vote returns the candidate the server voted for in its current term, or
// None.
func (n *Node) Vote() int { return n.vote }

// LogTerm returns the term of the entry at index i, or -1 if the log does
// not hold it: past its end, or before its snapshot (whose last index it
// knows).
func (n *Node) LogTerm(i int) int { return n.log.term(i) }

// Role returns the server's current role.
func (n *Node) Role() Role { return n.role }

// Leader returns the leader of the current term as far as the server knows,
// or None.
func (n *Node) Leader() int { return n.lead }

// Tick advances the server's clock by one tick.
func (n *Node) Tick() {
	n.now++
	n.elapsed++
	n.expireReads()
	if n.role == Leader {
		n.tickLeader()
		return
	}
	if n.elapsed >= n.timeout {
		if !n.canCampaign() {
			// A learner, or a server outside the configuration, never
			// starts an election (thesis 4.2.1, 4.2.2).
			n.resetElectionTimer()
			return
		}
		// 5.2: election timeout elapses without a leader's message.
		if n.cfg.PreVote {
			n.preCampaign()
		} else {
			n.campaign(false)
		}
	}
}

// TicksToEvent returns after how many Ticks the next timer fires (an
// election timeout, a heartbeat, a quorum check, or a new commit index due
// to followers): the Ticks before that one only count. It is at least 1. A
// driver with nothing else to do may sleep that long.
func (n *Node) TicksToEvent() int {
	if n.role != Leader {
		return max(1, min(n.timeout-n.elapsed, n.ticksToExpiry()))
	}
	for _, p := range n.progress {
		if p.commitDue(n.commit) {
			return 1
		}
	}
	next := min(n.cfg.HeartbeatTicks-n.elapsed, n.cfg.ElectionTicks-n.sinceChk)
	if n.transferee != None {
		next = min(next, n.cfg.ElectionTicks-n.transferElapsed)
	}
	return max(1, next)
}

// Step handles a message from a peer. If the message is a request, Step
// returns the reply; the caller must not deliver it before it has handled
// the Ready that follows.
func (n *Node) Step(m Message) (reply Message, ok bool) {
	// Messages from servers outside the configuration count too: a
	// server that joins learns the configuration from a leader it does not
	// know yet, and a candidate may have a newer configuration (thesis
	// 4.1); votes and acknowledgements count only from its members.
	if m.To != n.id || m.From == n.id || m.From < 0 {
		n.tracef("drop message from %d to %d", m.From, m.To)
		return Message{}, false
	}
	switch b := m.Body.(type) {
	case *RequestVoteArgs:
		r := n.handleRequestVote(m.From, b)
		return Message{From: n.id, To: m.From, Body: r}, true
	case *RequestVoteReply:
		n.handleVoteReply(m.From, b)
	case *AppendEntriesArgs:
		r := n.handleAppendEntries(m.From, b)
		return Message{From: n.id, To: m.From, Body: r}, true
	case *AppendEntriesReply:
		n.handleAppendReply(m.From, b)
	case *InstallSnapshotArgs:
		r := n.handleInstallSnapshot(m.From, b)
		return Message{From: n.id, To: m.From, Body: r}, true
	case *InstallSnapshotReply:
		n.handleSnapshotReply(m.From, b)
	case *TimeoutNowArgs:
		r := n.handleTimeoutNow(m.From, b)
		return Message{From: n.id, To: m.From, Body: r}, true
	case *TimeoutNowReply:
		n.handleTimeoutNowReply(b)
	case *ReadIndexArgs:
		n.handleReadIndex(m.From, b) // answered by a later message
	case *ReadIndexReply:
		n.handleReadIndexReply(m.From, b)
	default:
		n.tracef("drop message of type %T from %d", m.Body, m.From)
	}
	return Message{}, false
}

// Ready returns the effects of everything handled since the last call, and
// counts them as handled.
func (n *Node) Ready() Ready {
	if n.role == Leader {
		n.flush()
	}
	n.releaseAsked()
	hs := HardState{Term: n.term, Vote: n.vote}
	rd := Ready{
		HardState:    hs,
		Snapshot:     n.installed,
		Entries:      n.log.takeUnstable(),
		Messages:     n.msgs,
		AfterSave:    n.deferred,
		ReadStates:   n.readStates,
		FailedReads:  n.failedReads,
		stateChanged: hs != n.saved,
	}
	if n.confNews {
		m := n.conf().Clone()
		rd.Membership, n.confNews = &m, false
	}
	n.readStates, n.failedReads = nil, nil
	n.installed = nil
	if !n.cfg.AsyncSave && len(rd.Entries) > 0 {
		n.Saved(rd.Entries[len(rd.Entries)-1].Index, rd.Entries[len(rd.Entries)-1].Term)
	}
	if n.commit > n.applied {
		rd.Committed = n.log.slice(n.applied+1, n.commit+1)
		n.applied = n.commit
	}
	n.saved = hs
	n.msgs, n.deferred = nil, nil
	if !n.cfg.AsyncSave {
		n.unsavedTerm = false // the caller saves before it sends
	}
	return rd
}

// Compact discards the log up to index, which a snapshot of the service
// now covers (section 7): the caller has made that snapshot durable
// first. index must be at most the last index handed out in
// Ready.Committed; compacting to or before the current snapshot does
// nothing.
func (n *Node) Compact(index int) error {
	if index > n.applied {
		return fmt.Errorf("core: compact through %d, past the last applied entry %d", index, n.applied)
	}
	if index <= n.log.snapshot().Index {
		return nil
	}
	n.snapConf = n.confAt(index)
	n.confs = slices.DeleteFunc(n.confs, func(c confEntry) bool { return c.index <= index })
	n.log.compact(index)
	if n.trace != nil {
		n.tracef("compact through %d/%d", index, n.log.snapshot().Term)
	}
	return nil
}

// Status describes a server's view of the cluster.
type Status struct {
	ID, Term, Leader int
	Role             Role
	Commit, LastLog  int
	Snapshot         SnapshotMeta // what the log's snapshot covers
	LogBytes         int          // the commands' bytes in the log after the snapshot
	Match            map[int]int  // leader only: highest index known replicated on each follower (and itself)
	// Progress is, on a leader, what it is sending each follower.
	Progress map[int]Progress
	// Transferee is, on a leader, the target of a leadership transfer in
	// progress, or None.
	Transferee int
	// Membership is the latest configuration in the log, held by the
	// entry at MembershipIndex (the snapshot's index if it is the
	// snapshot's or the initial one); MembershipCommitted says whether
	// that entry is committed.
	Membership          Membership
	MembershipIndex     int
	MembershipCommitted bool
}

// Progress is what a leader is sending one follower.
type Progress struct {
	Next      int  // the index of the next entry to send
	Streaming bool // sending without waiting for answers; false: probing
	Inflight  int  // AppendEntries (or a snapshot) sent and not yet answered
}

// Status returns the server's view of the cluster.
func (n *Node) Status() Status {
	s := Status{ID: n.id, Term: n.term, Leader: n.lead, Role: n.role, Commit: n.commit, LastLog: n.log.lastIndex(), Snapshot: n.log.snapshot(), LogBytes: n.log.bytes, Transferee: n.transferee}
	s.Membership, s.MembershipIndex, s.MembershipCommitted = n.Membership()
	if n.role == Leader {
		s.Match = map[int]int{n.id: n.log.lastIndex()}
		s.Progress = make(map[int]Progress, len(n.progress))
		for id, p := range n.progress {
			s.Match[id] = p.match
			s.Progress[id] = Progress{Next: p.next, Streaming: !p.probing, Inflight: len(p.inflight)}
		}
	}
	return s
}

// send queues a message. A RequestVote leaves only once the candidate's
// new term and vote for itself are saved; what a leader sends may leave
// at once (Raft thesis 10.2.1: its term is saved already, and its own
// entries count towards a commit only once saved, see Saved), unless it
// won its term alone and may not have saved it yet.
func (n *Node) send(to int, body any) {
	m := Message{From: n.id, To: to, Body: body}
	if a, ok := body.(*RequestVoteArgs); (ok && !a.PreVote) || n.unsavedTerm {
		n.deferred = append(n.deferred, m)
		return
	}
	n.msgs = append(n.msgs, m)
}

// Saved tells the core that its log is durable up to index, whose entry
// has term term (with Config.AsyncSave; a later truncation of that entry
// makes the call a no-op). A leader counts its own log in a commit quorum
// only that far.
func (n *Node) Saved(index, term int) {
	if term == n.term {
		n.unsavedTerm = false // saved with or before its entries
	}
	if index > n.durable && n.log.term(index) == term {
		n.durable = index
		if n.role == Leader {
			n.maybeCommit()
		}
	}
}

// becomeFollower moves to term (clearing the vote if the term is new) as a
// follower of lead.
func (n *Node) becomeFollower(term, lead int) {
	n.dropReads(term, lead)
	if term > n.term {
		n.term, n.vote = term, None
	}
	if n.role != Follower || n.lead != lead {
		n.tracef("follow %d", lead)
	}
	n.role, n.lead, n.unsavedTerm = Follower, lead, false
	if lead != None {
		n.leaderAt = n.now
	}
	n.progress, n.votes = nil, nil
	n.transferee = None
	n.resetElectionTimer()
}

// stepDownIfNewer applies the rule for all servers of Figure 2: if a
// message carries a term newer than currentTerm, adopt it and become a
// follower. It reports whether the term was newer.
func (n *Node) stepDownIfNewer(term int) bool {
	if term <= n.term {
		return false
	}
	n.tracef("term %d is newer", term)
	if n.role == Follower {
		// Only a leader's message or a granted vote reset a follower's
		// election timer (Figure 2 "Followers"), so that a candidate that
		// cannot win does not hold off one that can.
		n.term, n.vote, n.lead = term, None, None
		return true
	}
	n.becomeFollower(term, None)
	return true
}

func (n *Node) resetElectionTimer() {
	n.elapsed = 0
	n.timeout = n.cfg.ElectionTicks + n.cfg.Rand.IntN(n.cfg.ElectionTicks) // 5.2: randomized election timeouts
}

// warn logs a warning, if Config.Logger is set.
func (n *Node) warn(msg string, args ...any) {
	if n.cfg.Logger != nil {
		n.cfg.Logger.Warn(msg, append([]any{"server", n.id, "term", n.term}, args...)...)
	}
}

func (n *Node) tracef(format string, args ...any) {
	if n.trace == nil {
		return
	}
	n.trace(fmt.Sprintf("S%d T%d %-9s ", n.id, n.term, n.role) + fmt.Sprintf(format, args...))
}
