package raft

import "github.com/raftkit/raft/core"

// The RPC messages and log entries, as the protocol core defines them.
type (
	// RequestVoteArgs is the RequestVote RPC's request.
	RequestVoteArgs = core.RequestVoteArgs
	// RequestVoteReply is the RequestVote RPC's reply.
	RequestVoteReply = core.RequestVoteReply
	// AppendEntriesArgs is the AppendEntries RPC's request.
	AppendEntriesArgs = core.AppendEntriesArgs
	// AppendEntriesReply is the AppendEntries RPC's reply.
	AppendEntriesReply = core.AppendEntriesReply
	// InstallSnapshotArgs is the InstallSnapshot RPC's request: one chunk
	// of a leader's snapshot.
	InstallSnapshotArgs = core.InstallSnapshotArgs
	// InstallSnapshotReply is the InstallSnapshot RPC's reply.
	InstallSnapshotReply = core.InstallSnapshotReply
	// Entry is one slot of the log; its Command is the encoded command.
	Entry = core.Entry
	// HardState is the term and vote a server must not forget.
	HardState = core.HardState
)
