package raft

import "github.com/raftkit/raft/core"

// Peer reaches another server of the cluster: Call runs the handler named
// by svcMeth ("Raft.RequestVote" or "Raft.AppendEntries") on that server
// and reports whether reply holds its answer. *labrpc.ClientEnd is a Peer.
type Peer interface {
	Call(svcMeth string, args any, reply any) bool
}

// A Sender is a Peer that also sends without waiting: the requests given
// to Send for one peer reach its Handler's Serve in the order of the
// calls, and done gets the reply (ok true) or learns that there will be
// none (ok false), once, from any goroutine; done may block for a while
// (it hands the reply to the server's loop). Send must not block. A leader
// keeps several AppendEntries in flight to a Sender (pipelining);
// *transport.Peer is one.
type Sender interface {
	Peer
	Send(req any, done func(reply any, ok bool))
}

// maxCallsPerPeer bounds the calls in progress to one peer. Raft tolerates
// lost messages, so a message over the bound is dropped: a peer that never
// answers costs a bounded number of goroutines and delays no other peer.
const maxCallsPerPeer = 32

// An outbox holds the goroutines that call one peer, at most
// maxCallsPerPeer. Each makes one call at a time and, when idle, waits for
// the next message, so that a message costs no new goroutine (nor a new
// stack grown deep enough to encode it).
type outbox struct {
	msgs    chan core.Message // unbuffered: taken only by an idle caller
	callers chan struct{}     // a slot per caller
}

func newOutbox() *outbox {
	return &outbox{msgs: make(chan core.Message), callers: make(chan struct{}, maxCallsPerPeer)}
}

// send hands the message to an idle caller of its recipient, or to a new
// one; it drops the message if maxCallsPerPeer calls are in progress.
func (rf *Raft) send(m core.Message) {
	switch b := m.Body.(type) {
	case *core.InstallSnapshotArgs:
		rf.sendSnapshot(m) // long: a goroutine of its own
		return
	case *core.AppendEntriesArgs:
		for _, e := range b.Entries {
			rf.metrics.bytesSent.Add(int64(len(e.Command)))
		}
	case *core.ReadIndexReply:
		rf.answerAsk(m) // the answer to a follower's call
		return
	}
	if s, ok := rf.peers[m.To].(Sender); ok {
		s.Send(m.Body, func(reply any, ok bool) {
			rf.answered(m, reply, ok)
		})
		return
	}
	o := rf.out[m.To]
	select {
	case o.msgs <- m:
		return
	default:
	}
	select {
	case o.callers <- struct{}{}:
	default:
		rf.tracef("S%d drop message to %d: %d calls in progress", rf.me, m.To, maxCallsPerPeer)
		return
	}
	rf.sending.Add(1) // called from the loop, which Close waits for before sending.Wait
	go rf.caller(o, m)
}

// caller calls the peer with m and later messages until the server stops.
func (rf *Raft) caller(o *outbox, m core.Message) {
	defer rf.sending.Done()
	defer func() { <-o.callers }()
	for {
		rf.call(m)
		select {
		case m = <-o.msgs:
		case <-rf.done:
			return
		}
	}
}

// call sends m to its recipient and feeds the answer back to the loop.
func (rf *Raft) call(m core.Message) {
	var reply any
	var ok bool
	switch a := m.Body.(type) {
	case *core.RequestVoteArgs:
		r := new(core.RequestVoteReply)
		ok, reply = rf.peers[m.To].Call("Raft.RequestVote", a, r), r
	case *core.AppendEntriesArgs:
		r := new(core.AppendEntriesReply)
		ok, reply = rf.peers[m.To].Call("Raft.AppendEntries", a, r), r
	case *core.ProbeArgs:
		r := new(core.ProbeReply)
		ok, reply = rf.peers[m.To].Call("Raft.Probe", a, r), r
	case *core.TimeoutNowArgs:
		r := new(core.TimeoutNowReply)
		ok, reply = rf.peers[m.To].Call("Raft.TimeoutNow", a, r), r
	case *core.ReadIndexArgs:
		r := new(core.ReadIndexReply)
		ok, reply = rf.peers[m.To].Call("Raft.ReadIndex", a, r), r
	}
	rf.answered(m, reply, ok)
}

// answered feeds the reply to request m back to the loop. A request for
// a read index that got no answer is answered as refused, so that the
// read fails at once rather than when the core gives it up.
func (rf *Raft) answered(m core.Message, reply any, ok bool) {
	if !ok {
		a, isRead := m.Body.(*core.ReadIndexArgs)
		if !isRead {
			return
		}
		reply = &core.ReadIndexReply{ID: a.ID}
	}
	rf.post(event{msg: core.Message{From: m.To, To: rf.me, Body: reply}})
}
