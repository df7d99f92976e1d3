// Package raft is a replicated state machine library: a set of servers
// keep one log of commands, and each server applies the committed
// commands, in log order, to its copy of the service, so that the service
// keeps working while a majority of its servers are alive and can talk.
// It implements Raft (Ongaro and Ousterhout, "In Search of an
// Understandable Consensus Algorithm", extended version, and Ongaro's
// thesis): leader election with PreVote and leader stickiness, log
// replication with pipelining, persistence, and snapshots with log
// compaction.
//
// A server is made by New from a Config: its ID and the addresses of all
// servers (Peers), a Transport (TCP wraps package transport), a Storage
// (package storage's write-ahead log is one) and the service, a
// StateMachine. Apply proposes a command on the leader and returns once it
// is committed and applied there, with the StateMachine's result or an
// error that says what became of it (NotLeaderError, ErrOutcomeUnknown,
// ErrNotCommitted, ...). ReadBarrier makes linearizable reads possible
// without a log entry: on the leader (ReadIndex, or with
// Config.LeaderLease a lease that assumes bounded clock drift), and with
// Config.FollowerReads on followers too. WatchLeader tells of leadership
// changes, Status describes the server's view of the cluster, and Metrics
// counts what it does.
//
// The protocol itself is package core, a deterministic state machine with
// no goroutines or I/O; this package drives it with one event loop per
// server, a goroutine that saves to the Storage (group commit) while the
// loop goes on, and one that applies committed commands. Package lab
// offers the classic lab interface (Make, Start, ApplyMsg) over the same
// servers.
package raft
