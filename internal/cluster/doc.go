// Package cluster runs Raft servers for real: each server is a process of
// its own, talking to the others over TCP (package transport) and keeping
// its state on disk (package storage).
//
// A Node is one such server with a small HTTP+JSON control API, through
// which a test (or an operator) proposes commands, reads what the server
// has applied, and cuts or heals its links to other servers. Its commands
// are strings; a service that applies commands of its own (a key/value
// store, say) follows the same pattern: open the storage, the transport
// and the raft.Raft, read the apply channel, serve clients.
//
// The package's tests start 3 and 5 nodes as separate OS processes (the
// test binary re-executing itself, see Main) and kill, restart and
// partition them while a client submits commands.
package cluster
