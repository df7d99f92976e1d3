package raft

import (
	"fmt"

	"github.com/raftkit/raft/core"
	"github.com/raftkit/raft/transport"
)

// TCP makes a TCP transport a Transport for New.
func TCP(t *transport.TCP) Transport { return tcpTransport{t} }

type tcpTransport struct{ *transport.TCP }

func (t tcpTransport) Peer(id int) (Peer, error) {
	p, err := t.TCP.Peer(id)
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (t tcpTransport) Serve(h Handler) { t.TCP.Serve(syncHandler{h}) }

// syncHandler serves the transport's requests with the synchronous
// methods of a Handler: each request in a goroutine of its own, which
// calls the method and responds with its answer. The requests of a
// connection may therefore reach the Handler in any order.
//
// TODO: Raft is to serve the transport's requests itself, in order
// (transport.Handler); this adapter goes then.
type syncHandler struct{ h Handler }

func (s syncHandler) Serve(from int, req any, respond func(reply any, err error)) {
	go func() {
		var reply any
		var err error
		switch a := req.(type) {
		case *core.RequestVoteArgs:
			r := new(core.RequestVoteReply)
			reply, err = r, s.h.ServeRequestVote(from, a, r)
		case *core.AppendEntriesArgs:
			r := new(core.AppendEntriesReply)
			reply, err = r, s.h.ServeAppendEntries(from, a, r)
		case *core.InstallSnapshotArgs:
			r := new(core.InstallSnapshotReply)
			reply, err = r, s.h.ServeInstallSnapshot(from, a, r)
		case *core.ProbeArgs:
			r := new(core.ProbeReply)
			reply, err = r, s.h.ServeProbe(from, a, r)
		default:
			err = fmt.Errorf("raft: no handler for a %T request", req)
		}
		respond(reply, err)
	}()
}
