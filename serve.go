package raft

import (
	"fmt"

	"github.com/raftkit/raft/core"
)

// Serve handles a request from server from (see Handler): it hands the
// request to the event loop and returns; respond gets the reply once the
// state it depends on is saved (Figure 2: update stable storage before
// responding to RPCs). Requests are handled in the order of the Serve
// calls. A stopped server answers ErrStopped, or nothing.
func (rf *Raft) Serve(from int, req any, respond func(reply any, err error)) {
	switch a := req.(type) {
	case *InstallSnapshotArgs:
		rf.serveChunk(from, a, respond)
	case *RequestVoteArgs, *AppendEntriesArgs, *core.ProbeArgs, *core.TimeoutNowArgs, *core.ReadIndexArgs:
		rf.serveLoop(from, req, nil, respond)
	default:
		respond(nil, fmt.Errorf("raft: server %d: a %T from %d is not a request", rf.me, req, from))
	}
}

// serveLoop hands a request to the loop, with the snapshot that arrived
// for it, if any (which the loop then owns: it commits or aborts it).
func (rf *Raft) serveLoop(from int, req any, sink core.SnapshotSink, respond func(any, error)) {
	done := func(m core.Message) {
		switch {
		case m.Body != nil:
			respond(m.Body, nil)
		case rf.killed():
			respond(nil, ErrStopped)
		default:
			respond(nil, fmt.Errorf("raft: server %d refuses a message from %d", rf.me, from))
		}
	}
	if !rf.post(event{msg: core.Message{From: from, To: rf.me, Body: req}, respond: done, sink: sink}) {
		if sink != nil {
			sink.Abort()
		}
		respond(nil, ErrStopped)
	}
}

// serveSync serves req from server from and waits for the reply: for
// transports that wait (labrpc).
func (rf *Raft) serveSync(from int, req any) (any, error) {
	type answer struct {
		reply any
		err   error
	}
	ch := make(chan answer, 1)
	rf.Serve(from, req, func(r any, err error) { ch <- answer{r, err} })
	select {
	case a := <-ch:
		return a.reply, a.err
	case <-rf.done:
		return nil, ErrStopped
	}
}
