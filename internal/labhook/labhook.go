package labhook

// Setup is what Start needs.
type Setup struct {
	Me           int
	Peers        map[int]any // raft.Peer, by ID: the other servers
	Storage      any         // raft.Storage
	StateMachine any         // raft.StateMachine; Snapshot is never called
	// OnState, if not nil, is called by the server's loop on every change
	// of its term or role; it must not block.
	OnState func(term int, isLeader bool)
}

// Server is a started server, with the calls package lab needs besides
// those of *raft.Raft.
type Server struct {
	Raft any // *raft.Raft
	// Kill stops the server without waiting for its goroutines.
	Kill func()
	// Fail stops the server, which then reports err (Raft.Err).
	Fail func(err error)
	// SaveSnapshot saves the service's snapshot through index and discards
	// the log it covers.
	SaveSnapshot func(index int, data []byte) error
	// Serve serves a request of server from and returns the reply once it
	// may be sent.
	Serve func(from int, req any) (any, error)
}

// Start starts a server; package raft sets it.
var Start func(Setup) (Server, error)
