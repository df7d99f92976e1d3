package raft

import (
	"io"

	"github.com/raftkit/raft/core"
)

// The snapshot types, as the protocol core defines them.
type (
	// SnapshotMeta describes a snapshot: the last log entry it covers.
	SnapshotMeta = core.SnapshotMeta
	// SnapshotSink receives a snapshot's bytes, then makes it a Storage's
	// current snapshot (Commit) or drops it (Abort).
	SnapshotSink = core.SnapshotSink
)

// Storage keeps what a server must not forget across a crash: its
// HardState, its latest snapshot, and its log after the snapshot.
type Storage interface {
	// Load returns what was saved last: the HardState (Vote core.None
	// and term 0 if nothing was), the current snapshot's meta (zero if
	// none), and the saved entries after the snapshot, in order.
	Load() (HardState, SnapshotMeta, []Entry, error)
	// Save durably records hs and replaces the saved log from
	// ents[0].Index on with ents (if not empty); ents start after the
	// snapshot and at most one past the last saved entry.
	Save(hs HardState, ents []Entry) error
	// CreateSnapshot returns a sink for a snapshot covering the log
	// through meta.Index (see core.SnapshotSink: Commit(keepLog) makes it
	// current durably; Abort drops it). Several may be open at once (a
	// service's own snapshot while one arrives from a leader); a Commit
	// of a snapshot not newer than the current one does nothing but
	// discard it.
	CreateSnapshot(meta SnapshotMeta) (SnapshotSink, error)
	// OpenSnapshot returns the current snapshot's meta and a reader of
	// its bytes (the caller closes it), or a zero meta and a nil reader
	// if there is none.
	OpenSnapshot() (SnapshotMeta, io.ReadCloser, error)
	// Close releases the storage.
	Close() error
}
