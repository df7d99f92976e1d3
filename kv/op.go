// Package kv is a replicated key/value store built on package raft: every
// operation, reads included, goes through the Raft log, so each one is
// linearizable; client IDs and sequence numbers make a retried request take
// effect once.
package kv

import (
	"errors"

	"github.com/raftkit/raft/labgob"
)

// Kind names an operation.
type Kind string

// The operations.
const (
	Get    Kind = "get"
	Put    Kind = "put"
	Append Kind = "append"
	Delete Kind = "delete"
)

// Op is one client request, as it travels to a server and through the log.
type Op struct {
	Kind     Kind
	Key      string
	Value    string // Put and Append
	ClientID int64  // the client that issued it
	Seq      int64  // the client's count of its requests, from 1; a retry keeps it; 0: not deduplicated
}

// Result is the outcome of an applied Op.
type Result struct {
	Value string // Get: the value; Put, Append and Delete: the value before
	Found bool   // whether the key existed before the operation
}

// Errors a server answers with. Neither means the request took effect.
var (
	// ErrWrongLeader: the server is not the leader; try another.
	ErrWrongLeader = errors.New("kv: not the leader")
	// ErrLeadershipLost: the server lost leadership while the request
	// waited; it may or may not take effect, and a retry is safe.
	ErrLeadershipLost = errors.New("kv: leadership lost before the request committed")
	// ErrStale: the client already had a later request applied, so this
	// one was not executed.
	ErrStale = errors.New("kv: request older than the client's latest")
	// ErrStopped: the server has stopped; it did not start the request.
	ErrStopped = errors.New("kv: server stopped")
)

func init() {
	labgob.Register(Op{})
}
