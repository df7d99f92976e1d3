package raft

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/raftkit/raft/core"
)

// Config sets up a server for New.
type Config struct {
	ID int // this server
	// Peers maps every server of the cluster, this one included, to its
	// address.
	Peers map[int]string

	// Transport reaches the other servers and serves their calls.
	Transport Transport
	// Storage keeps the server's state across crashes.
	Storage Storage
	// ApplyCh receives each committed command, in log order.
	ApplyCh chan ApplyMsg

	// TickInterval is the resolution of the server's timers (default 20 ms).
	TickInterval time.Duration
	// ElectionTimeout is the base election timeout: a follower that hears
	// from no leader for a random time in [ElectionTimeout,
	// 2*ElectionTimeout) starts an election (default 300 ms).
	ElectionTimeout time.Duration
	// HeartbeatInterval is how often an idle leader contacts each follower
	// (default 100 ms).
	HeartbeatInterval time.Duration

	// Logger receives the server's start, stop and failures (default
	// slog.Default()). Per-event tracing is RAFT_DEBUG's business.
	Logger *slog.Logger
}

// Transport carries RPCs between servers; transport.TCP is one.
type Transport interface {
	// Peer returns the way to reach the server with this ID.
	Peer(id int) (Peer, error)
	// Serve starts delivering the calls of other servers to h.
	Serve(h Handler)
	// Close stops serving and calling.
	Close() error
}

// Handler answers the RPCs of other servers; *Raft is one. An error means
// no answer.
type Handler interface {
	ServeRequestVote(args *RequestVoteArgs, reply *RequestVoteReply) error
	ServeAppendEntries(args *AppendEntriesArgs, reply *AppendEntriesReply) error
}

// ErrStopped is the answer of a server that was killed or closed, or that
// stopped itself (see Raft.Err).
var ErrStopped = errors.New("raft: server stopped")

func (c *Config) timing() (timing, error) {
	t := timing{tick: c.TickInterval}
	if t.tick == 0 {
		t.tick = defaultTiming.tick
	}
	election, heartbeat := c.ElectionTimeout, c.HeartbeatInterval
	if election == 0 {
		election = time.Duration(defaultTiming.electionTicks) * defaultTiming.tick
	}
	if heartbeat == 0 {
		heartbeat = time.Duration(defaultTiming.heartbeatTicks) * defaultTiming.tick
	}
	t.electionTicks, t.heartbeatTicks = int(election/t.tick), int(heartbeat/t.tick)
	if t.tick < 0 || t.heartbeatTicks < 1 || t.heartbeatTicks >= t.electionTicks {
		return t, fmt.Errorf("need 0 < TickInterval (%v) <= HeartbeatInterval (%v) < ElectionTimeout (%v)", t.tick, heartbeat, election)
	}
	return t, nil
}

// New starts a server as cfg describes, restoring its state from
// cfg.Storage. The server owns the transport and the storage from then on:
// Close closes them. Bad configuration and start-up failures come back as
// errors.
func New(cfg Config) (*Raft, error) {
	if _, ok := cfg.Peers[cfg.ID]; !ok {
		return nil, fmt.Errorf("raft: server %d is not among the peers %v", cfg.ID, cfg.Peers)
	}
	if cfg.Transport == nil || cfg.Storage == nil || cfg.ApplyCh == nil {
		return nil, errors.New("raft: Config needs a Transport, a Storage and an ApplyCh")
	}
	t, err := cfg.timing()
	if err != nil {
		return nil, fmt.Errorf("raft: %w", err)
	}
	peers := make(map[int]Peer, len(cfg.Peers))
	for id := range cfg.Peers {
		if id == cfg.ID {
			continue
		}
		if peers[id], err = cfg.Transport.Peer(id); err != nil {
			return nil, fmt.Errorf("raft: peer %d: %w", id, err)
		}
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	rf, err := start(cfg.ID, peers, cfg.Storage, cfg.ApplyCh, t, logger)
	if err != nil {
		return nil, fmt.Errorf("raft: server %d: %w", cfg.ID, err)
	}
	rf.transport = cfg.Transport
	cfg.Transport.Serve(rf)
	logger.Info("raft: server started", "id", cfg.ID, "term", rf.node.Term(), "peers", len(cfg.Peers))
	return rf, nil
}

// ServeRequestVote answers a RequestVote RPC.
func (rf *Raft) ServeRequestVote(args *RequestVoteArgs, reply *RequestVoteReply) error {
	r, err := rf.request(args.CandidateID, args)
	if err != nil {
		return err
	}
	*reply = *r.(*RequestVoteReply)
	return nil
}

// ServeAppendEntries answers an AppendEntries RPC.
func (rf *Raft) ServeAppendEntries(args *AppendEntriesArgs, reply *AppendEntriesReply) error {
	r, err := rf.request(args.LeaderID, args)
	if err != nil {
		return err
	}
	*reply = *r.(*AppendEntriesReply)
	return nil
}

// Status describes a server's view of the cluster: its term, role and
// leader, its commit index and last log index, and (on a leader) how far
// each follower's log is known to match.
type Status = core.Status
