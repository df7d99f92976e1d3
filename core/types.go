package core

import "fmt"

// None is the Vote of a server that has voted for nobody in its current term,
// and the leader a server knows of when it knows of none.
const None = -1

// Entry is one slot of the replicated log.
type Entry struct {
	Index   int
	Term    int
	Type    EntryType
	Command []byte
}

// EntryType says what an Entry holds.
type EntryType uint8

// The entry types.
const (
	// EntryNormal holds a command of the service.
	EntryNormal EntryType = iota
	// EntryNoOp is the empty entry a new leader appends to commit the
	// entries of earlier terms (section 8 of the extended Raft paper); it
	// is not handed to the service.
	EntryNoOp
	// EntryConfig holds a configuration of the cluster, a Membership
	// encoded by its AppendBinary (thesis 4.1). It is not handed to the
	// service's state machine.
	EntryConfig
)

func (t EntryType) String() string {
	switch t {
	case EntryNormal:
		return "normal"
	case EntryNoOp:
		return "no-op"
	case EntryConfig:
		return "config"
	}
	return fmt.Sprintf("EntryType(%d)", uint8(t))
}

// HardState is what a server must save before it answers or sends anything
// that depends on it (Figure 2, "Persistent state on all servers"), besides
// the log itself.
type HardState struct {
	Term int // latest term the server has seen
	Vote int // candidate that received its vote in Term, or None
}

// Role is what a server currently is in its term.
type Role int

// The three roles of section 5.1, and the pre-candidate of PreVote
// (section 9.6 of Ongaro's thesis): a server that asks whether it could
// win an election before it starts one.
const (
	Follower Role = iota
	Candidate
	Leader
	PreCandidate
)

func (r Role) String() string {
	switch r {
	case Follower:
		return "follower"
	case Candidate:
		return "candidate"
	case Leader:
		return "leader"
	case PreCandidate:
		return "pre-candidate"
	}
	return "unknown"
}

// RequestVoteArgs is the RequestVote RPC's request (Figure 2). With
// PreVote set it only asks whether the receiver would grant its vote in
// Term (thesis 9.6): neither side changes its term or vote for it.
type RequestVoteArgs struct {
	Term         int // candidate's term (a pre-candidate's term + 1)
	CandidateID  int
	LastLogIndex int // index of candidate's last log entry (5.4)
	LastLogTerm  int // term of candidate's last log entry (5.4)
	PreVote      bool
	// Transfer marks the election of a leadership transfer's target
	// (thesis 3.10): voters grant it despite leader stickiness (thesis
	// 4.2.3).
	Transfer bool
}

// RequestVoteReply is the RequestVote RPC's reply (Figure 2). A granted
// pre-vote carries the Term it was asked for.
type RequestVoteReply struct {
	Term        int // currentTerm, for the candidate to update itself
	VoteGranted bool
	PreVote     bool // answers a pre-vote
}

// AppendEntriesArgs is the AppendEntries RPC's request (Figure 2): log
// entries to replicate, or none as a heartbeat.
type AppendEntriesArgs struct {
	Term         int // leader's term
	LeaderID     int
	PrevLogIndex int // index of the entry just before Entries
	PrevLogTerm  int // term of the PrevLogIndex entry
	Entries      []Entry
	LeaderCommit int // leader's commitIndex
	// Round is the leader's heartbeat round (ReadIndex, thesis 6.4), which
	// the reply repeats.
	Round uint64
}

// AppendEntriesReply is the AppendEntries RPC's reply (Figure 2), with the
// fields of the fast back-up optimisation at the end of section 5.3.
type AppendEntriesReply struct {
	Term    int // currentTerm, for the leader to update itself
	Success bool

	// Index is, on success, the index of the last entry the follower now
	// knows to match the leader's log; on failure, the rejected PrevLogIndex.
	Index int

	// On failure for a log inconsistency: the term of the follower's entry
	// at PrevLogIndex and the first index it holds for that term; or, when
	// its log is too short, ConflictTerm 0 and ConflictIndex one past its
	// last entry. ConflictIndex is 0 when the request was refused for its
	// term or as malformed.
	ConflictTerm  int
	ConflictIndex int

	// Round repeats the request's Round: the follower took the sender as
	// the leader of Term after that heartbeat round began.
	Round uint64
}

// Message is an RPC request or reply travelling between two servers. Body
// is one of *RequestVoteArgs, *RequestVoteReply, *AppendEntriesArgs,
// *AppendEntriesReply, *InstallSnapshotArgs, *InstallSnapshotReply,
// *TimeoutNowArgs, *TimeoutNowReply, *ReadIndexArgs or *ReadIndexReply
// (a ReadIndexArgs gets its ReadIndexReply as a message of its own, not
// from Step). Receivers never modify a Body.
type Message struct {
	From, To int
	Body     any
}

// Ready holds the effects of the events a Node has handled since the last
// call to Ready. The caller must handle them in this order: save
// Snapshot, HardState and Entries (if MustSave), then send AfterSave and
// deliver the replies Step returned, then restore the service from
// Snapshot (if set), then apply Committed. Messages may be sent at any
// point, before or while the state is saved (Raft thesis 10.2.1); with
// Config.AsyncSave the caller then tells the core, by Saved, when the
// entries are durable.
type Ready struct {
	HardState HardState
	// Snapshot, if set, is a snapshot received from the leader
	// (InstallSnapshot) that the server accepted: it becomes the saved
	// snapshot, and the saved log after it is replaced by Entries. The
	// service is restored from it before Committed is applied.
	Snapshot *SnapshotMeta
	// Entries replace the saved log from Entries[0].Index onwards.
	Entries []Entry
	// Messages may leave before the state is saved: a leader's
	// AppendEntries and InstallSnapshot, pre-votes.
	Messages []Message
	// AfterSave may leave only once the state is saved: RequestVote.
	AfterSave []Message
	Committed []Entry // newly committed entries, in log order
	// ReadStates are the reads started by ReadIndex that are ready: each
	// may be served once the service has applied through its Index.
	ReadStates []ReadState
	// FailedReads are the IDs of reads started by ReadIndex that will not
	// come out.
	FailedReads []uint64
	// Membership, if set, is the latest configuration in the log, which
	// changed since the last Ready: the servers the driver must be able to
	// reach.
	Membership *Membership

	stateChanged bool
}

// MustSave reports whether the Ready holds state that must be saved before
// its Messages are sent.
func (rd *Ready) MustSave() bool {
	return rd.stateChanged || len(rd.Entries) > 0 || rd.Snapshot != nil
}

// Empty reports whether the Ready has nothing to do.
func (rd *Ready) Empty() bool {
	return !rd.MustSave() && len(rd.Messages) == 0 && len(rd.AfterSave) == 0 && len(rd.Committed) == 0 && len(rd.ReadStates) == 0 && len(rd.FailedReads) == 0 && rd.Membership == nil
}

// ProbeArgs asks a server what state it holds. A server that starts with
// no state at all sends it to its peers to tell a brand-new cluster from
// one that exists and lost this server's data (raft.Config.Bootstrap). It
// is not part of the protocol: the core never sends or handles it.
type ProbeArgs struct{}

// ProbeReply answers ProbeArgs.
type ProbeReply struct {
	Term      int  // the server's current term
	LastIndex int  // the index of its last log entry
	Empty     bool // it holds no state: term 0, no vote, no entries
	// Founder: the server started a new cluster after hearing, among
	// others, that the asker held no state either, and has heard nothing
	// from it since but probes; so the asker lost nothing it had
	// acknowledged.
	Founder bool
}
