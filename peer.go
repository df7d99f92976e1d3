package raft

import (
	"sync"
	"sync/atomic"

	"github.com/raftkit/raft/core"
)

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

// remote is another server as this one reaches it.
type remote struct {
	peer     Peer
	out      *outbox     // the goroutines calling it (a Peer that is not a Sender)
	snapBusy atomic.Bool // a snapshot transfer to it is under way
}

// remotes are the servers this one reaches, and the addresses it knows.
// They grow as the configuration does (Ready.Membership): the loop adds,
// every goroutine reads.
type remotes struct {
	mu    sync.RWMutex
	byID  map[int]*remote
	addrs map[int]string
}

// get returns server id, or nil if it is unknown.
func (r *remotes) get(id int) *remote {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.byID[id]
}

// addr returns server id's address, or "" if it is unknown.
func (r *remotes) addr(id int) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.addrs[id]
}

// count returns how many servers are known.
func (r *remotes) count() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.byID)
}

// add makes server id reachable through p, at addr, unless it is known.
func (r *remotes) add(id int, p Peer, addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byID == nil {
		r.byID, r.addrs = map[int]*remote{}, map[int]string{}
	}
	if addr != "" && r.addrs[id] == "" {
		r.addrs[id] = addr
	}
	if p != nil && r.byID[id] == nil {
		r.byID[id] = &remote{peer: p, out: newOutbox()}
	}
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
	r := rf.remotes.get(m.To)
	if r == nil {
		rf.tracef("S%d drop message to %d: no address known", rf.me, m.To)
		return
	}
	if s, ok := r.peer.(Sender); ok {
		s.Send(m.Body, func(reply any, ok bool) {
			rf.answered(m, reply, ok)
		})
		return
	}
	o := r.out
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
	go rf.caller(r, m)
}

// caller calls the peer with m and later messages until the server stops.
func (rf *Raft) caller(r *remote, m core.Message) {
	defer rf.sending.Done()
	defer func() { <-r.out.callers }()
	for {
		rf.call(r.peer, m)
		select {
		case m = <-r.out.msgs:
		case <-rf.done:
			return
		}
	}
}

// call sends m to its recipient and feeds the answer back to the loop.
func (rf *Raft) call(p Peer, m core.Message) {
	var reply any
	var ok bool
	switch a := m.Body.(type) {
	case *core.RequestVoteArgs:
		r := new(core.RequestVoteReply)
		ok, reply = p.Call("Raft.RequestVote", a, r), r
	case *core.AppendEntriesArgs:
		r := new(core.AppendEntriesReply)
		ok, reply = p.Call("Raft.AppendEntries", a, r), r
	case *core.ProbeArgs:
		r := new(core.ProbeReply)
		ok, reply = p.Call("Raft.Probe", a, r), r
	case *core.TimeoutNowArgs:
		r := new(core.TimeoutNowReply)
		ok, reply = p.Call("Raft.TimeoutNow", a, r), r
	case *core.ReadIndexArgs:
		r := new(core.ReadIndexReply)
		ok, reply = p.Call("Raft.ReadIndex", a, r), r
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
