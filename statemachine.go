package raft

import (
	"io"
)

// StateMachine is the service a server made by New replicates. Raft calls
// its methods from one goroutine, one at a time, in log order: Apply for
// each committed command; Snapshot when the log since the last snapshot
// has grown past Config.SnapshotBytes, so that Raft can discard it; and
// Restore when the server starts from a snapshot, or installs one from the
// leader because it fell too far behind.
type StateMachine interface {
	// Apply applies a committed command and returns its result, which
	// Raft.Apply hands to the proposer if it runs on this server.
	Apply(c Command) any
	// Snapshot writes the state machine's state, everything applied so
	// far, to w. The snapshot goes straight to storage: it need not fit
	// in memory.
	Snapshot(w io.Writer) error
	// Restore replaces the state machine's state with the one a Snapshot
	// wrote, read from r.
	Restore(r io.Reader) error
}

// Command is a committed command, as a StateMachine gets it.
type Command struct {
	Index int    // its position in the log
	Term  int    // the term of the leader that proposed it
	Data  []byte // the bytes proposed; the StateMachine must not keep them past Apply
}

// DefaultSnapshotBytes is the default of Config.SnapshotBytes.
const DefaultSnapshotBytes = 16 << 20
