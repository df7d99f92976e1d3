package raft

import "github.com/raftkit/raft/core"

// Peer reaches another server of the cluster: Call runs the handler named
// by svcMeth ("Raft.RequestVote" or "Raft.AppendEntries") on that server
// and reports whether reply holds its answer. *labrpc.ClientEnd is a Peer.
type Peer interface {
	Call(svcMeth string, args interface{}, reply interface{}) bool
}

// maxCallsPerPeer bounds the calls in progress to one peer. Raft tolerates
// lost messages, so a message over the bound is dropped: a peer that never
// answers costs a bounded number of goroutines and delays no other peer.
const maxCallsPerPeer = 32

// send calls the message's recipient in a goroutine of its own and feeds
// the answer back to the event loop.
func (rf *Raft) send(m core.Message) {
	slots := rf.calls[m.To]
	select {
	case slots <- struct{}{}:
	default:
		rf.tracef("S%d drop message to %d: %d calls in progress", rf.me, m.To, maxCallsPerPeer)
		return
	}
	rf.sending.Add(1) // called from the loop, which Close waits for before sending.Wait
	go func() {
		defer rf.sending.Done()
		defer func() { <-slots }()
		var reply interface{}
		var ok bool
		switch a := m.Body.(type) {
		case *core.RequestVoteArgs:
			r := new(core.RequestVoteReply)
			ok, reply = rf.peers[m.To].Call("Raft.RequestVote", a, r), r
		case *core.AppendEntriesArgs:
			r := new(core.AppendEntriesReply)
			ok, reply = rf.peers[m.To].Call("Raft.AppendEntries", a, r), r
		}
		if ok {
			rf.post(event{msg: core.Message{From: m.To, To: rf.me, Body: reply}})
		}
	}()
}
