package core

import "io"

// SnapshotMeta describes a snapshot of the service's state: the last log
// entry it covers (Figure 13, lastIncludedIndex and lastIncludedTerm). A
// zero SnapshotMeta means no snapshot.
type SnapshotMeta struct {
	Index int // index of the last entry the snapshot covers
	Term  int // term of that entry
	// Membership is the latest configuration as of Index (Figure 13's
	// "last config"; thesis 4.1), or none if the snapshot was taken before
	// configurations were kept (the initial one then applies).
	Membership Membership
}

// Equal reports whether m and o describe the same snapshot.
func (m SnapshotMeta) Equal(o SnapshotMeta) bool {
	return m.Index == o.Index && m.Term == o.Term && m.Membership.Equal(o.Membership)
}

// InstallSnapshotArgs is the InstallSnapshot RPC's request (Figure 13):
// a leader sends its snapshot to a follower that needs entries it has
// discarded. The core sends and is stepped with it without data: the
// driver moves the snapshot's bytes in chunks (Data, from Offset on, the
// last one with Done set) and steps the core with the request once all of
// them have arrived.
type InstallSnapshotArgs struct {
	Term              int // leader's term
	LeaderID          int
	LastIncludedIndex int // the snapshot replaces all entries up to and including this index
	LastIncludedTerm  int // term of lastIncludedIndex
	// Membership is the latest configuration as of LastIncludedIndex, or
	// none for a snapshot taken without one (the initial configuration
	// applies: a cluster of fixed membership, or a snapshot older than
	// configurations).
	Membership Membership
	Offset     int64
	Data       []byte
	Done       bool
}

// InstallSnapshotReply is the InstallSnapshot RPC's reply (Figure 13).
type InstallSnapshotReply struct {
	Term int // currentTerm, for the leader to update itself
	// Index is, once the follower has the snapshot, its commit index: the
	// leader's log matches the follower's up to it. 0 for a refusal, or
	// the answer to a chunk that was not the last.
	Index int
}

// SnapshotSink receives the bytes of a snapshot as they are written (by
// the service, or as they arrive from a leader), then makes it a
// storage's current snapshot durably (Commit) or drops it (Abort).
type SnapshotSink interface {
	io.Writer
	// Meta returns what the snapshot covers.
	Meta() SnapshotMeta
	// Commit makes the snapshot durable and the current one. With keepLog
	// the saved entries after the snapshot's index stay (a service
	// compacting its log); without, the saved log after it is empty (a
	// snapshot installed from a leader, whose entries, if any, are saved
	// next). Earlier snapshots, and the saved entries the snapshot covers,
	// are discarded afterwards.
	Commit(keepLog bool) error
	// Abort drops the snapshot.
	Abort() error
}
