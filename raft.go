// Package raft is a replicated log: a set of servers agree on a sequence of
// commands and hand each committed command, in log order, to the service
// that embeds them. A service calls Start on the leader and reads ApplyMsgs
// from the channel it passed to Make.
//
// The protocol itself lives in package core as a deterministic state
// machine; this package drives it: timers, calls to peers, storage and the
// apply channel.
package raft

import (
	"fmt"
	"log/slog"

	"github.com/raftkit/raft/core"
	"github.com/raftkit/raft/labrpc"
)

// ApplyMsg is sent on the apply channel for each committed command, in log
// order, starting at index 1 and without gaps.
type ApplyMsg struct {
	CommandValid bool
	Command      any
	CommandIndex int
	CommandTerm  int // the term of the entry that holds the command

	// A snapshot the service must restore its state from (installed from
	// the leader): it holds everything through SnapshotIndex, and the next
	// command has index SnapshotIndex+1.
	SnapshotValid bool
	Snapshot      []byte
	SnapshotTerm  int
	SnapshotIndex int
}

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

// Make creates a Raft server. peers holds an end for every server of the
// cluster, this one (peers[me]) included; the position in peers is a
// server's ID. The server restores its state from persister, saves it
// there from now on, and sends each committed command on applyCh. Make
// returns at once; the server runs in goroutines of its own until Kill.
func Make(peers []*labrpc.ClientEnd, me int, persister *Persister, applyCh chan ApplyMsg) *Raft {
	ps := make(map[int]Peer, len(peers))
	for i, p := range peers {
		if i != me {
			ps[i] = p
		}
	}
	// The lab's tests count command indexes from 1 without gaps: no no-op
	// entries.
	rf, err := start(setup{
		me: me, peers: ps, store: &persisterStorage{ps: persister}, applyCh: applyCh,
		timing: defaultTiming, logger: slog.Default(), preVote: true,
		maxInflight: 1, // labrpc reorders concurrent calls: no pipelining
	})
	if err != nil {
		panic(fmt.Sprintf("raft: Make: %v", err))
	}
	return rf
}

// Start proposes command for the log. If this server is the leader it
// returns at once with the index the command will have if it is ever
// committed, the current term, and true; otherwise isLeader is false.
// The command must be gob-encodable (register its type with labgob).
func (rf *Raft) Start(command interface{}) (index int, term int, isLeader bool) {
	if term, isLeader = rf.GetState(); !isLeader {
		return -1, term, false
	}
	cmd, err := encodeCommand(command)
	if err != nil {
		panic(fmt.Sprintf("raft: Start: encode command %T: %v", command, err))
	}
	index, term, err = rf.propose(cmd)
	return index, term, err == nil
}

// RequestVote is the RequestVote RPC handler of the lab's network, which
// does not tell who calls: the sender is taken from the message.
func (rf *Raft) RequestVote(args *RequestVoteArgs, reply *RequestVoteReply) {
	serveWait(rf, args.CandidateID, args, reply)
}

// InstallSnapshot is the InstallSnapshot RPC handler of the lab's network,
// which does not tell who calls: the sender is taken from the message.
func (rf *Raft) InstallSnapshot(args *InstallSnapshotArgs, reply *InstallSnapshotReply) {
	serveWait(rf, args.LeaderID, args, reply)
}

// AppendEntries is the AppendEntries RPC handler of the lab's network,
// which does not tell who calls: the sender is taken from the message.
func (rf *Raft) AppendEntries(args *AppendEntriesArgs, reply *AppendEntriesReply) {
	serveWait(rf, args.LeaderID, args, reply)
}
