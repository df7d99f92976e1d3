package raft

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/raftkit/raft/core"
)

// Config sets up a server for New.
type Config struct {
	ID int // this server
	// Peers maps every server of the cluster, this one included, to its
	// address: the initial configuration, all voters. Once the log or a
	// snapshot holds a configuration (after a membership change, see
	// AddVoter), that one applies, and Peers only adds addresses. With
	// Join, Peers lists servers of the cluster this one may hear from.
	Peers map[int]string

	// Transport reaches the other servers and serves their calls.
	Transport Transport
	// Storage keeps the server's state across crashes.
	Storage Storage
	// StateMachine is the service: it applies the committed commands, in
	// log order, and saves and restores its state as snapshots.
	StateMachine StateMachine
	// SnapshotBytes is how many bytes of commands the StateMachine applies
	// between snapshots (default DefaultSnapshotBytes): after a snapshot,
	// the log it covers is discarded, so the storage holds about this much
	// log besides the snapshot, and a restart replays at most this much.
	SnapshotBytes int

	// Bootstrap lets a server whose Storage holds nothing found a new
	// cluster, of Peers. Such a server first asks every peer what it holds,
	// waiting (and saying so in the log) until each has answered; if the
	// cluster turns out to have state already, this server's data was lost
	// and it stops itself: Err then wraps ErrClusterExists. A server with
	// state restarts from it whatever Bootstrap says. Without Bootstrap, New
	// refuses a Storage that holds nothing (ErrNoState).
	Bootstrap bool
	// Join makes a server whose Storage holds nothing a new member of an
	// existing cluster: it starts with no configuration, neither votes nor
	// starts elections, and waits for the leader to add it (AddLearner or
	// AddVoter on the leader), which then sends it the log or a snapshot.
	// A server with state restarts from it whatever Join says. Join and
	// Bootstrap exclude each other.
	Join bool

	// TickInterval is the resolution of the server's timers (default 20 ms).
	TickInterval time.Duration
	// ElectionTimeout is the base election timeout: a follower that hears
	// from no leader for a random time in [ElectionTimeout,
	// 2*ElectionTimeout) starts an election (default 300 ms).
	ElectionTimeout time.Duration
	// HeartbeatInterval is how often an idle leader contacts each follower
	// (default 100 ms).
	HeartbeatInterval time.Duration

	// DisablePreVote turns off PreVote and leader stickiness (thesis
	// 9.6), which are on by default: with them, a server cut off from the
	// leader, or with a one-way link, cannot depose a working leader when
	// it reconnects.
	DisablePreVote bool

	// LeaderLease lets the leader serve ReadBarrier from a lease (thesis
	// 6.4.1): for a while after a majority acknowledged a round of
	// heartbeats, counted from when the round was sent, it confirms its
	// leadership without a new round. The lease lasts (ElectionTimeout -
	// TickInterval) / (1 + LeaseDrift), less one tick. It is safe only if
	// the servers' clocks advance at rates within LeaseDrift of one
	// another (a leader's lease must end before a follower's minimum
	// election timeout, counted from the same heartbeat), and if every
	// server of the cluster has PreVote on, since it rests on leader
	// stickiness: a follower grants no vote within the minimum election
	// timeout of hearing from the leader, or of its own start. New refuses
	// LeaderLease with DisablePreVote. A leader that sends TimeoutNow (a
	// leadership transfer) uses no lease for the rest of its term.
	LeaderLease bool
	// LeaseDrift is the bound on the clocks' drift that LeaderLease
	// assumes, as a fraction of their rate (default DefaultLeaseDrift;
	// at most 1).
	LeaseDrift float64
	// FollowerReads lets ReadBarrier on a follower ask the leader for a
	// read index (a round of heartbeats, or its lease) and wait until this
	// server has applied the log through it, so that followers serve
	// linearizable reads. Without it a follower's ReadBarrier fails with a
	// NotLeaderError.
	FollowerReads bool

	// MaxCommandBytes bounds the encoded size of one command (default
	// DefaultMaxCommandBytes). Propose refuses a larger one with
	// ErrTooLarge. New refuses a bound that the Transport or the Storage
	// could not carry (see MaxSizer).
	MaxCommandBytes int

	// Logger receives the server's start, stop and failures (default
	// slog.Default()). Per-event tracing is RAFT_DEBUG's business.
	Logger *slog.Logger
}

// DefaultMaxCommandBytes is the default of Config.MaxCommandBytes.
const DefaultMaxCommandBytes = 8 << 20

// DefaultLeaseDrift is the default of Config.LeaseDrift: clocks that
// advance at rates within 10% of one another.
const DefaultLeaseDrift = 0.1

// leaseTicks returns the lease of a leader, in ticks, that c asks for,
// or 0 for none (see Config.LeaderLease).
func (c *Config) leaseTicks(t timing) (int, error) {
	if !c.LeaderLease {
		return 0, nil
	}
	if c.DisablePreVote {
		return 0, errors.New("LeaderLease needs PreVote and leader stickiness: leave DisablePreVote false (a follower that may vote right after hearing from the leader could help elect another leader during the lease)")
	}
	drift := c.LeaseDrift
	if drift == 0 {
		drift = DefaultLeaseDrift
	}
	if drift < 0 || drift > 1 {
		return 0, fmt.Errorf("LeaseDrift %v: want a fraction above 0, at most 1", c.LeaseDrift)
	}
	// A follower refuses votes for more than electionTicks-1 of its
	// ticks after a heartbeat (its ticks count whole intervals), which
	// take at least (electionTicks-1)/(1+drift) of the leader's; one tick
	// less covers the time between the loop's reading of the clock and
	// its decision.
	lease := int(float64(t.electionTicks-1)/(1+drift)) - 1
	if lease < 1 {
		return 0, fmt.Errorf("LeaderLease: an election timeout of %d ticks leaves no lease with LeaseDrift %v: raise ElectionTimeout or lower TickInterval", t.electionTicks, drift)
	}
	return lease, nil
}

// MaxSizer is implemented by a Transport or a Storage that cannot carry
// arbitrarily large commands: MaxCommandBytes returns the largest command
// it can carry in one log entry.
type MaxSizer interface {
	MaxCommandBytes() int
}

// Transport carries RPCs between servers; TCP(tr) makes a *transport.TCP
// one. Its servers must be those of Config.Peers, at the same addresses.
type Transport interface {
	// Peer returns the way to reach the server with this ID.
	Peer(id int) (Peer, error)
	// Serve starts delivering the calls of other servers to h.
	Serve(h Handler)
	// Close stops serving and calling.
	Close() error
}

// Handler serves the requests of other servers; *Raft is one. from is the
// caller's server ID as the transport authenticated it: a message whose
// CandidateID or LeaderID names another server is refused. req is a
// *RequestVoteArgs, *AppendEntriesArgs, *InstallSnapshotArgs or
// *core.ProbeArgs. Serve returns without waiting for the reply; respond is
// called once the reply may be sent (the state it depends on is saved),
// from any goroutine, with the reply or with an error (no answer). A
// transport that calls Serve for the requests of one peer in the order
// they were sent lets the leader keep several AppendEntries in flight to
// the peer (see Sender).
type Handler interface {
	Serve(from int, req any, respond func(reply any, err error))
}

// Errors of Propose and of the RPC handlers.
var (
	// ErrStopped is the answer of a server that was killed or closed, or
	// that stopped itself (see Raft.Err).
	ErrStopped = errors.New("raft: server stopped")
	// ErrNotLeader is the answer of a server that is not the leader.
	ErrNotLeader = errors.New("raft: not the leader")
	// ErrTooLarge refuses a command over Config.MaxCommandBytes.
	ErrTooLarge = errors.New("raft: command too large")
)

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
	if cfg.Join && cfg.Bootstrap {
		return nil, errors.New("raft: Config sets both Join and Bootstrap: a server either founds a cluster or joins one")
	}
	if cfg.Transport == nil || cfg.Storage == nil || cfg.StateMachine == nil {
		return nil, errors.New("raft: Config needs a Transport, a Storage and a StateMachine")
	}
	snapBytes := cfg.SnapshotBytes
	if snapBytes == 0 {
		snapBytes = DefaultSnapshotBytes
	}
	if snapBytes < 0 {
		return nil, fmt.Errorf("raft: SnapshotBytes %d: want a positive size", snapBytes)
	}
	t, err := cfg.timing()
	if err != nil {
		return nil, fmt.Errorf("raft: %w", err)
	}
	lease, err := cfg.leaseTicks(t)
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
	maxCmd := cfg.MaxCommandBytes
	if maxCmd == 0 {
		maxCmd = DefaultMaxCommandBytes
	}
	if maxCmd < 0 {
		return nil, fmt.Errorf("raft: MaxCommandBytes %d: want a positive size", maxCmd)
	}
	for _, c := range []struct {
		what string
		v    any
	}{{"transport", cfg.Transport}, {"storage", cfg.Storage}} {
		if m, ok := c.v.(MaxSizer); ok && m.MaxCommandBytes() < maxCmd {
			return nil, fmt.Errorf("raft: MaxCommandBytes %d is over what the %s carries (%d bytes): lower it, or raise the %s's limit", maxCmd, c.what, m.MaxCommandBytes(), c.what)
		}
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("raft_server", cfg.ID) // on every line
	var members core.Membership
	if !cfg.Join {
		for id, addr := range cfg.Peers {
			members.Members = append(members.Members, core.Member{ID: id, Addr: addr})
		}
		slices.SortFunc(members.Members, func(a, b core.Member) int { return a.ID - b.ID })
	}
	rf, err := start(setup{
		me: cfg.ID, peers: peers, addrs: cfg.Peers, members: members, join: cfg.Join,
		transport: cfg.Transport, store: cfg.Storage, sm: cfg.StateMachine, snapBytes: snapBytes,
		timing: t, logger: logger, preVote: !cfg.DisablePreVote, noOp: true, maxCmd: maxCmd,
		leaseTicks: lease, followerRd: cfg.FollowerReads,
		boot: cfg.Bootstrap, restart: !cfg.Bootstrap && !cfg.Join,
	})
	if err != nil {
		return nil, fmt.Errorf("raft: server %d: %w", cfg.ID, err)
	}
	term, _ := rf.GetState() // the loop owns rf.node now
	logger.Info("raft: server started", "term", term, "peers", len(cfg.Peers))
	cfg.Transport.Serve(rf)
	return rf, nil
}

// Propose proposes command for the log. If this server is the leader it
// returns at once with the index the command will have if it is ever
// committed, and the current term; the StateMachine of every server
// applies it there once it is committed. Otherwise it fails with
// ErrNotLeader, ErrTooLarge or ErrStopped. Propose does not keep cmd.
func (rf *Raft) Propose(cmd []byte) (index, term int, err error) {
	if rf.killed() {
		return -1, 0, ErrStopped
	}
	if term, isLeader := rf.GetState(); !isLeader {
		return -1, term, ErrNotLeader
	}
	return rf.propose(slices.Clone(cmd))
}

// Status describes a server's view of the cluster: its term, role and
// leader, its commit index and last log index, and (on a leader) how far
// each follower's log is known to match.
type Status struct {
	core.Status
	// Applied is the index of the last entry the service applied (or
	// restored from a snapshot).
	Applied int
	// Bootstrapping: the server holds no state and waits for its peers'
	// answers before it founds a cluster (Config.Bootstrap); WaitingFor
	// lists the peers that have not answered yet.
	Bootstrapping bool
	WaitingFor    []int
}
