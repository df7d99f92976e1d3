package raft

import (
	"log/slog"
	"math"

	"github.com/raftkit/raft/internal/labhook"
)

// The lab's settings (see package labhook): package lab starts servers
// through startLab.
func init() { labhook.Start = startLab }

func startLab(s labhook.Setup) (labhook.Server, error) {
	peers := make(map[int]Peer, len(s.Peers))
	for id, p := range s.Peers {
		peers[id] = p.(Peer)
	}
	rf, err := start(setup{
		me: s.Me, peers: peers, store: s.Storage.(Storage), sm: s.StateMachine.(StateMachine),
		snapBytes: math.MaxInt, // the service asks (SaveSnapshot)
		timing:    defaultTiming, logger: slog.Default(), preVote: true,
		maxInflight: 1, // labrpc reorders concurrent calls: no pipelining
		onState:     s.OnState,
	})
	if err != nil {
		return labhook.Server{}, err
	}
	return labhook.Server{
		Raft:         rf,
		Kill:         func() { rf.stop(nil) },
		Fail:         rf.stop,
		SaveSnapshot: rf.takeSnapshot,
		Serve:        rf.serveSync,
	}, nil
}
