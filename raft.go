// Package raft is a replicated log: a set of servers agree on a sequence of
// commands and hand each committed command, in order, to the service that
// embeds them.
package raft

import "github.com/raftkit/raft/labrpc"

// ApplyMsg is sent on the apply channel for each committed command, in log order.
type ApplyMsg struct {
	CommandValid bool
	Command      interface{}
	CommandIndex int

	// Reserved for snapshots; unset for now.
	SnapshotValid bool
	Snapshot      []byte
	SnapshotTerm  int
	SnapshotIndex int
}

// Raft is one server of a Raft cluster. (STUB: being implemented.)
type Raft struct{}

// Make creates a Raft server. (STUB)
func Make(peers []*labrpc.ClientEnd, me int, persister *Persister, applyCh chan ApplyMsg) *Raft {
	return &Raft{}
}

// Start proposes command. (STUB)
func (rf *Raft) Start(command interface{}) (int, int, bool) { return -1, 0, false }

// GetState returns the current term and whether this server believes it is the leader. (STUB)
func (rf *Raft) GetState() (int, bool) { return 0, false }

// Kill stops the server. (STUB)
func (rf *Raft) Kill() {}
