package raft

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftkit/raft/core"
)

// timing sets the clock of a server.
type timing struct {
	tick           time.Duration // one core tick
	electionTicks  int           // election timeouts are random in [1, 2) times this
	heartbeatTicks int
}

// defaultTiming: 20 ms ticks, elections after 300-600 ms of silence,
// heartbeats every 100 ms (at most 10 per second, as the tester requires).
// The loop wakes only when a timer fires, not at every tick (see clock).
var defaultTiming = timing{tick: 20 * time.Millisecond, electionTicks: 15, heartbeatTicks: 5}

// maxBatch bounds how many queued events the loop handles before it saves
// and sends their effects together.
const maxBatch = 256

// Raft is one server of a Raft cluster. A single goroutine, the event loop,
// owns the protocol state; everything else talks to it through events.
type Raft struct {
	me        int
	peers     map[int]Peer
	out       map[int]*outbox // per peer: the goroutines calling it
	store     Storage
	transport Transport // nil for Make
	apply     *applier
	logger    *slog.Logger

	node     *core.Node // owned by the event loop
	events   chan event
	done     chan struct{} // closed by Kill
	kill     sync.Once
	state    atomic.Int64 // term<<1 | isLeader, published by the loop
	timing   timing
	maxCmd   int            // the largest encoded command accepted, or 0 for no limit
	boot     *bootstrap     // while a server with no state asks its peers; owned by the loop
	founders map[int]bool   // peers that held nothing when this server founded the cluster, and have sent nothing since but probes; owned by the loop
	wg       sync.WaitGroup // the loop and the applier
	sending  sync.WaitGroup // the goroutines calling peers
	err      error          // why the server stopped itself; set before done closes
}

// event is something for the loop to handle: a message from a peer, or a
// proposal.
type event struct {
	msg   core.Message
	reply chan core.Message // a request's reply goes here once it may be sent

	cmd    []byte // a proposal, answered on result
	result chan proposal

	status chan Status // a request for the status
}

type proposal struct{ index, term int }

// setup is what start needs to run a server.
type setup struct {
	me      int
	peers   map[int]Peer // the other servers
	store   Storage
	applyCh chan ApplyMsg
	timing  timing
	logger  *slog.Logger
	preVote bool // PreVote and leader stickiness (thesis 9.6)
	boot    bool // with no state, ask the peers before founding a cluster (see bootstrap)
	restart bool // no state is an error (ErrNoState)
	noOp    bool // a new leader appends a no-op entry
	maxCmd  int  // the largest encoded command accepted, or 0 for no limit
}

// start restores a server from its storage and starts its event loop and
// applier.
func start(su setup) (*Raft, error) {
	hs, _, ents, err := su.store.Load() // the snapshot is wired by the lead
	if err != nil {
		return nil, fmt.Errorf("load state: %w", err)
	}
	ids := []int{su.me}
	out := make(map[int]*outbox, len(su.peers))
	for id := range su.peers {
		ids = append(ids, id)
		out[id] = newOutbox()
	}
	rf := &Raft{
		me:     su.me,
		peers:  su.peers,
		out:    out,
		store:  su.store,
		events: make(chan event, maxBatch),
		done:   make(chan struct{}),
		timing: su.timing,
		maxCmd: su.maxCmd,
		logger: su.logger,
	}
	node, err := core.New(core.Config{
		ID:             su.me,
		Peers:          ids,
		ElectionTicks:  su.timing.electionTicks,
		HeartbeatTicks: su.timing.heartbeatTicks,
		PreVote:        su.preVote,
		NoOp:           su.noOp,
		State:          hs,
		Log:            ents,
		Rand:           rand.New(rand.NewPCG(rand.Uint64(), uint64(su.me))),
		Trace:          traceFunc(),
		Logger:         su.logger,
	})
	if err != nil {
		return nil, err
	}
	rf.node = node
	if hs.Term == 0 && hs.Vote == core.None && len(ents) == 0 {
		switch {
		case su.restart:
			return nil, fmt.Errorf("%w. If this server founds a new cluster, set Config.Bootstrap. "+
				"If it ran before, its data was lost: restore it, or replace the server as a new member (docs/operations.md, \"Replacing a lost disk\")", ErrNoState)
		case su.boot && len(su.peers) > 0:
			rf.boot = newBootstrap(su.peers)
		}
	}
	rf.publish()
	rf.apply = newApplier(su.applyCh, rf.done, func(err error) {
		rf.logger.Error(err.Error())
		rf.stop(err)
	})
	rf.wg.Add(2)
	go func() { defer rf.wg.Done(); rf.apply.run() }()
	go func() { defer rf.wg.Done(); rf.run() }()
	return rf, nil
}

// GetState returns the current term and whether this server believes it is
// the leader.
func (rf *Raft) GetState() (term int, isLeader bool) {
	s := rf.state.Load()
	return int(s >> 1), s&1 == 1 && !rf.killed()
}

// Kill stops the server. It returns at once; the server's goroutines end
// promptly, and it sends and saves nothing more.
func (rf *Raft) Kill() {
	rf.stop(nil)
}

// stop makes the server stop, recording why if err is not nil.
func (rf *Raft) stop(err error) {
	rf.kill.Do(func() {
		rf.err = err
		close(rf.done)
	})
}

// Close stops the server, waits until its goroutines have ended, and
// closes its storage and transport. (Calls a server made by Make has in
// progress end on their own, as labrpc has no way to cancel them.) It returns the error that made the
// server stop itself, if one did, or the first error of closing.
func (rf *Raft) Close() error {
	rf.Kill()
	rf.wg.Wait()
	err := rf.store.Close()
	if rf.transport != nil {
		rf.transport.Close()
		rf.sending.Wait() // the transport has ended them
	}
	if rf.err != nil {
		return rf.err
	}
	return err
}

// Err returns why the server stopped itself (it could not save its state,
// or could not decode a committed command), or nil.
func (rf *Raft) Err() error {
	select {
	case <-rf.done:
		return rf.err
	default:
		return nil
	}
}

// Status returns the server's view of the cluster, or false if it has
// stopped.
func (rf *Raft) Status() (Status, bool) {
	ch := make(chan Status, 1)
	if !rf.post(event{status: ch}) {
		return Status{}, false
	}
	select {
	case s := <-ch:
		return s, true
	case <-rf.done:
		return Status{}, false
	}
}

func (rf *Raft) killed() bool {
	select {
	case <-rf.done:
		return true
	default:
		return false
	}
}

// post hands an event to the loop; it reports false if the server was killed.
func (rf *Raft) post(ev event) bool {
	select {
	case rf.events <- ev:
		return true
	case <-rf.done:
		return false
	}
}

// request runs an incoming RPC through the loop and returns the reply body
// once the state it depends on is saved.
func (rf *Raft) request(from int, args interface{}) (interface{}, error) {
	ch := make(chan core.Message, 1)
	if !rf.post(event{msg: core.Message{From: from, To: rf.me, Body: args}, reply: ch}) {
		return nil, ErrStopped
	}
	select {
	case m := <-ch:
		if m.Body == nil {
			return nil, fmt.Errorf("raft: server %d refuses a message from %d", rf.me, from)
		}
		return m.Body, nil
	case <-rf.done:
		return nil, ErrStopped
	}
}

// propose hands an encoded command to the loop. It fails with
// ErrTooLarge, ErrNotLeader or ErrStopped.
func (rf *Raft) propose(cmd []byte) (index, term int, err error) {
	if rf.maxCmd > 0 && len(cmd) > rf.maxCmd {
		return -1, 0, fmt.Errorf("%w: %d bytes encoded, over the maximum of %d", ErrTooLarge, len(cmd), rf.maxCmd)
	}
	ch := make(chan proposal, 1)
	if !rf.post(event{cmd: cmd, result: ch}) {
		return -1, 0, ErrStopped
	}
	select {
	case p := <-ch:
		if p.index == 0 {
			return -1, p.term, ErrNotLeader
		}
		return p.index, p.term, nil
	case <-rf.done:
		return -1, 0, ErrStopped
	}
}

// run is the event loop: it feeds ticks, messages and proposals to the
// core, then handles the Ready: save, then reply and send, then apply.
func (rf *Raft) run() {
	clock := newClock(rf.timing.tick)
	defer clock.timer.Stop()
	var replies []pendingReply
	for {
		if rf.boot != nil {
			rf.probe()
			if rf.killed() {
				return
			}
			clock.sleep(rf.timing.heartbeatTicks)
		} else {
			clock.sleep(rf.node.TicksToEvent())
		}
		var ev event
		hasEvent := false
		select {
		case <-rf.done:
			return
		case <-clock.timer.C:
		case ev = <-rf.events:
			hasEvent = true
		}
		for n := clock.elapsed(); n > 0 && rf.boot == nil; n-- {
			rf.node.Tick()
		}
		if hasEvent {
			replies = rf.handle(ev, replies)
		}
		// Whatever else is queued shares one save and one round of messages.
	drain:
		for i := 0; i < maxBatch; i++ {
			select {
			case ev := <-rf.events:
				replies = rf.handle(ev, replies)
			default:
				break drain
			}
		}
		rd := rf.node.Ready()
		if rd.MustSave() {
			if rf.killed() {
				return
			}
			// Figure 2: update stable storage before responding to RPCs.
			if err := rf.store.Save(rd.HardState, rd.Entries); err != nil {
				// A server that cannot save must not answer anything
				// that depends on what it failed to save.
				err = fmt.Errorf("raft: server %d stops: save state: %w", rf.me, err)
				rf.logger.Error(err.Error())
				rf.stop(err)
				return
			}
		}
		rf.publish()
		for _, r := range replies {
			r.ch <- r.msg
		}
		replies = replies[:0]
		if rf.killed() {
			return
		}
		for _, m := range rd.Messages {
			rf.send(m)
		}
		if len(rd.Committed) > 0 {
			rf.apply.push(rd.Committed)
		}
	}
}

type pendingReply struct {
	ch  chan core.Message
	msg core.Message
}

func (rf *Raft) handle(ev event, replies []pendingReply) []pendingReply {
	switch {
	case ev.result != nil:
		index, term, _ := rf.node.Propose(ev.cmd)
		ev.result <- proposal{index, term}
		return replies
	case ev.status != nil:
		st := Status{Status: rf.node.Status()}
		if rf.boot != nil {
			st.Bootstrapping, st.WaitingFor = true, rf.boot.waitingFor()
		}
		ev.status <- st
		return replies
	}
	switch b := ev.msg.Body.(type) {
	case *core.ProbeArgs:
		return append(replies, pendingReply{ev.reply, core.Message{From: rf.me, To: ev.msg.From, Body: rf.probeReply(ev.msg.From)}})
	case *core.ProbeReply:
		if rf.boot != nil {
			rf.probed(ev.msg.From, b)
		}
		return replies
	}
	if rf.boot != nil {
		// Bootstrapping: no vote, no acknowledgement (see bootstrap).
		if ev.reply != nil {
			replies = append(replies, pendingReply{ev.reply, core.Message{}})
		}
		return replies
	}
	// A founder that hears from a peer no longer vouches for it.
	delete(rf.founders, ev.msg.From)
	reply, _ := rf.node.Step(ev.msg)
	if ev.reply != nil {
		replies = append(replies, pendingReply{ev.reply, reply})
	}
	return replies
}

// observeState, if set (by tests, before any server starts), is called
// by a server's loop on every change of its term or role.
var observeState func(rf *Raft, term int, isLeader bool)

// publish makes the term and role visible to GetState.
func (rf *Raft) publish() {
	s := int64(rf.node.Term()) << 1
	if rf.node.Role() == core.Leader {
		s |= 1
	}
	if rf.state.Swap(s) != s && observeState != nil {
		observeState(rf, int(s>>1), s&1 == 1)
	}
}
