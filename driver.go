package raft

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
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
	remotes   remotes // the other servers
	store     Storage
	transport Transport // nil for Make
	apply     *applier
	saver     *saver
	metrics   *metrics
	watch     watchers
	logger    *slog.Logger

	node      *core.Node // owned by the event loop
	events    chan event
	done      chan struct{} // closed by Kill
	kill      sync.Once
	state     atomic.Int64 // term<<1 | isLeader, published by the loop
	timing    timing
	onState   func(term int, isLeader bool) // see setup
	maxCmd    int                           // the largest encoded command accepted, or 0 for no limit
	boot      *bootstrap                    // while a server with no state asks its peers; owned by the loop
	joining   bool                          // started with no state under Config.Join, and not yet in a configuration; owned by the loop
	founders  map[int]bool                  // peers that held nothing when this server founded the cluster, and have sent nothing since but probes; owned by the loop
	incoming  core.SnapshotSink             // the snapshot received from a leader and stepped last, until its Ready; owned by the loop
	transfers []*transferReq                // leadership transfers under way, answered by checkTransfers; owned by the loop
	reads     map[uint64]*readReq           // ReadBarrier calls waiting for the core, by ReadIndex ID; owned by the loop
	nextRead  uint64                        // the last ReadIndex ID; owned by the loop
	asks      map[askKey]func(core.Message) // followers' requests for a read index, waiting for the core's answer; owned by the loop

	recv       snapshotReceiver // chunks of a snapshot arriving
	chunkBytes int              // the most snapshot bytes per InstallSnapshot call

	wg      sync.WaitGroup // the loop and the applier
	sending sync.WaitGroup // the goroutines calling peers
	err     error          // why the server stopped itself; set before done closes
}

// event is something for the loop to handle: a message from a peer, or a
// proposal.
type event struct {
	msg     core.Message
	respond func(core.Message) // takes a request's reply once it may be sent

	cmd     []byte        // a proposal, answered on result or outcome
	result  chan proposal // takes where the proposal went, or its refusal (propose)
	outcome chan outcome  // takes the refusal, or what became of the proposal (Apply)

	status chan Status // a request for the status

	transfer *transferReq // a leadership transfer to start
	change   *changeReq   // a configuration change to propose
	read     *readReq     // a ReadBarrier to start

	snap    *snapshotReq      // a snapshot the service took
	saved   core.SnapshotMeta // the saver made the log durable up to here
	compact int               // the applier saved a snapshot through this index
	sink    core.SnapshotSink // with an InstallSnapshotArgs msg: the snapshot that arrived
}

// proposal is the answer to a proposal: index 0 if refused, with the
// leader if known.
type proposal struct{ index, term, leader int }

// setup is what start needs to run a server.
type setup struct {
	me          int
	peers       map[int]Peer    // the other servers
	addrs       map[int]string  // the servers' addresses (Config.Peers; nil for Make)
	members     core.Membership // the initial configuration (New), or none: the voters are me and peers (Make), or the server joins (Config.Join)
	join        bool            // the server joins an existing cluster: no configuration until the leader sends one
	transport   Transport       // nil for Make
	store       Storage
	sm          StateMachine // the service
	snapBytes   int          // the StateMachine is snapshotted after this many command bytes
	timing      timing
	logger      *slog.Logger
	preVote     bool // PreVote and leader stickiness (thesis 9.6)
	boot        bool // with no state, ask the peers before founding a cluster (see bootstrap)
	restart     bool // no state is an error (ErrNoState)
	noOp        bool // a new leader appends a no-op entry
	maxInflight int  // AppendEntries in flight per follower, or 0 for the core's default
	maxCmd      int  // the largest encoded command accepted, or 0 for no limit
	leaseTicks  int  // the leader's lease (core.Config.LeaseTicks), or 0 for none
	followerRd  bool // reads on followers (core.Config.FollowerReads)

	onState func(term int, isLeader bool) // if not nil, told of every change of term or role (lab)
}

// start restores a server from its storage and starts its event loop and
// applier.
func start(su setup) (*Raft, error) {
	hs, snap, ents, err := su.store.Load()
	if err != nil {
		return nil, fmt.Errorf("load state: %w", err)
	}
	ids := []int{su.me}
	for id := range su.peers {
		ids = append(ids, id)
	}
	voters := ids // the initial configuration, if su.members is empty
	if su.join {
		// No configuration until the leader sends one: the peers are only
		// where the cluster may be reached, and a server without one
		// neither votes nor campaigns (see joinedAs).
		voters = nil
	}
	chunk := defaultChunkBytes
	if c, ok := su.transport.(chunkSizer); ok && c.MaxChunkBytes() > 0 {
		chunk = min(chunk, c.MaxChunkBytes())
	}
	rf := &Raft{
		me:      su.me,
		store:   su.store,
		events:  make(chan event, maxBatch),
		done:    make(chan struct{}),
		timing:  su.timing,
		maxCmd:  su.maxCmd,
		logger:  su.logger,
		onState: su.onState,

		chunkBytes: chunk,
		transport:  su.transport,
	}
	node, err := core.New(core.Config{
		ID:             su.me,
		Peers:          voters,
		Membership:     su.members,
		ElectionTicks:  su.timing.electionTicks,
		HeartbeatTicks: su.timing.heartbeatTicks,
		PreVote:        su.preVote,
		AsyncSave:      true, // see saver
		MaxInflight:    su.maxInflight,
		NoOp:           su.noOp,
		LeaseTicks:     su.leaseTicks,
		FollowerReads:  su.followerRd,
		State:          hs,
		Snapshot:       snap,
		Log:            ents,
		Rand:           rand.New(rand.NewPCG(rand.Uint64(), uint64(su.me))),
		Trace:          traceFunc(),
		Logger:         su.logger,
	})
	if err != nil {
		return nil, err
	}
	rf.node = node
	for id, p := range su.peers {
		rf.remotes.add(id, p, su.addrs[id])
	}
	for id, a := range su.addrs {
		rf.remotes.add(id, nil, a)
	}
	m, _, _ := node.Membership()
	rf.learnMembers(m)
	rf.metrics = newMetrics()
	rf.watch.last = Leadership{Term: hs.Term, Leader: core.None}
	if hs.Term == 0 && hs.Vote == core.None && len(ents) == 0 {
		switch {
		case su.join:
			rf.joining = true
		case su.restart:
			return nil, fmt.Errorf("%w. If this server founds a new cluster, set Config.Bootstrap. "+
				"If it ran before, its data was lost: restore it, or replace the server as a new member under a new ID (docs/operations.md, \"Replacing a lost disk\")", ErrNoState)
		case su.boot && len(su.peers) > 0:
			rf.boot = newBootstrap(su.peers)
		}
	}
	rf.publish()
	rf.apply = &applier{
		wake: make(chan struct{}, 1), sm: su.sm, store: su.store, snapBytes: su.snapBytes,
		compact: func(index int) bool { return rf.post(event{compact: index}) },
		metrics: rf.metrics,
		last:    snap,
		me:      su.me,
		done:    rf.done,
		fail: func(err error) {
			rf.logger.Error(err.Error())
			rf.stop(err)
		},
	}
	rf.apply.applied.Store(int64(snap.Index))
	if initial := su.members; snap.Membership.Empty() {
		// A snapshot taken before configurations were kept, or none: the
		// initial configuration.
		if initial.Empty() && !su.join {
			for _, id := range ids {
				initial.Members = append(initial.Members, core.Member{ID: id})
			}
			slices.SortFunc(initial.Members, func(a, b core.Member) int { return a.ID - b.ID })
		}
		rf.apply.setConfig(initial)
	} else {
		rf.apply.setConfig(snap.Membership)
	}
	rf.saver = &saver{rf: rf, wake: make(chan struct{}, 1)}
	rf.wg.Add(3)
	go func() { defer rf.wg.Done(); rf.saver.run() }()
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
	rf.stop(nil)
	rf.wg.Wait()
	rf.recv.abort()
	if rf.incoming != nil { // the loop has ended
		rf.incoming.Abort()
	}
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

// propose hands an encoded command to the loop. It fails with
// ErrTooLarge, ErrNotLeader or ErrStopped.
func (rf *Raft) propose(cmd []byte) (index, term int, err error) {
	if err := rf.checkSize(cmd); err != nil {
		return -1, 0, err
	}
	ch := make(chan proposal, 1)
	if !rf.post(event{cmd: cmd, result: ch}) {
		return -1, 0, ErrStopped
	}
	select {
	case p := <-ch:
		if p.index == 0 {
			return -1, p.term, &NotLeaderError{Leader: p.leader, Addr: rf.remotes.addr(p.leader)}
		}
		return p.index, p.term, nil
	case <-rf.done:
		return -1, 0, ErrStopped
	}
}

// checkSize refuses an encoded command over the maximum (ErrTooLarge).
func (rf *Raft) checkSize(cmd []byte) error {
	if rf.maxCmd > 0 && len(cmd) > rf.maxCmd {
		return fmt.Errorf("%w: %d bytes encoded, over the maximum of %d", ErrTooLarge, len(cmd), rf.maxCmd)
	}
	return nil
}

// run is the event loop: it feeds ticks, messages and proposals to the
// core, then handles the Ready: save, then reply and send, then apply.
func (rf *Raft) run() {
	clock := newClock(rf.timing.tick)
	defer clock.timer.Stop()
	defer rf.watch.closeAll()
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
		n, skipped := clock.elapsed()
		for ; n > 0 && rf.boot == nil; n-- {
			rf.node.Tick()
		}
		rf.node.Skip(skipped) // they count for the lease

		last := false // an event whose effects must be handled before the next
		if hasEvent {
			replies, last = rf.handle(ev, replies)
		}
		// Whatever else is queued shares one save and one round of messages.
		for i := 0; i < maxBatch && !last; i++ {
			select {
			case ev := <-rf.events:
				replies, last = rf.handle(ev, replies)
			default:
				last = true
			}
		}
		if rf.killed() {
			return
		}
		rd := rf.node.Ready()
		rf.publish()
		rf.removedCheck()
		rf.checkTransfers()
		rf.readsReady(rd)
		rf.countCommits(rd.Committed)
		if rd.Membership != nil {
			if rf.joinedAs(*rd.Membership) {
				return // ErrIDInUse: nothing of this Ready is saved or sent
			}
			rf.learnMembers(*rd.Membership)
		}
		// Raft thesis 10.2.1: these leave while the state is saved.
		for _, m := range rd.Messages {
			rf.send(m)
		}
		b := saveBatch{hs: rd.HardState, mustSave: rd.MustSave(), snap: rd.Snapshot, sink: rf.incoming,
			ents: rd.Entries, after: rd.AfterSave, replies: replies, commits: rd.Committed}
		rf.incoming = nil
		if b.mustSave || b.sink != nil || len(b.after) > 0 || len(b.replies) > 0 || len(b.commits) > 0 {
			rf.saver.push(b)
			replies = nil
		}
	}
}

// pendingReply is the reply to a request, for respond once the state it
// depends on is saved.
type pendingReply struct {
	respond func(core.Message)
	msg     core.Message
}

// handle feeds an event to the core. It reports whether the effects of the
// event must be handled before the next one: a snapshot stepped in pairs
// with the Ready that follows it.
func (rf *Raft) handle(ev event, replies []pendingReply) ([]pendingReply, bool) {
	switch {
	case ev.result != nil || ev.outcome != nil:
		index, term, ok := rf.node.Propose(ev.cmd)
		if ok {
			rf.metrics.proposals.Add(1)
			rf.metrics.proposedAt[index] = time.Now()
		}
		switch {
		case ev.result != nil:
			ev.result <- proposal{index, term, rf.leaderHint()}
		case ok:
			rf.apply.wait(index, term, ev.outcome)
		default:
			ev.outcome <- outcome{err: rf.notLeader()}
		}
		return replies, false
	case ev.snap != nil:
		ev.snap.done <- rf.saveSnapshot(ev.snap.index, ev.snap.data)
		return replies, false
	case ev.saved.Index > 0:
		rf.node.Saved(ev.saved.Index, ev.saved.Term)
		return replies, false
	case ev.compact > 0:
		if err := rf.node.Compact(ev.compact); err != nil {
			rf.logger.Error("raft: compact the log", "err", err)
		}
		return replies, false
	case ev.transfer != nil:
		rf.startTransfer(ev.transfer)
		return replies, false
	case ev.change != nil:
		rf.startChange(ev.change)
		return replies, false
	case ev.read != nil:
		rf.startRead(ev.read)
		return replies, false
	case ev.status != nil:
		st := Status{Status: rf.node.Status(), Applied: int(rf.apply.applied.Load())}
		if rf.boot != nil {
			st.Bootstrapping, st.WaitingFor = true, rf.boot.waitingFor()
		}
		ev.status <- st
		return replies, false
	}
	switch b := ev.msg.Body.(type) {
	case *core.ProbeArgs:
		return append(replies, pendingReply{ev.respond, core.Message{From: rf.me, To: ev.msg.From, Body: rf.probeReply(ev.msg.From)}}), false
	case *core.ProbeReply:
		if rf.boot != nil {
			rf.probed(ev.msg.From, b)
		}
		return replies, false
	}
	if rf.boot != nil {
		// Bootstrapping: no vote, no acknowledgement (see bootstrap).
		if ev.sink != nil {
			ev.sink.Abort()
		}
		if ev.respond != nil {
			replies = append(replies, pendingReply{ev.respond, core.Message{}})
		}
		return replies, false
	}
	// A founder that hears from a peer no longer vouches for it.
	delete(rf.founders, ev.msg.From)
	if _, ok := ev.msg.Body.(*core.ReadIndexArgs); ok && ev.respond != nil {
		rf.serveAsk(ev.msg, ev.respond) // answered by a later message of the core
		return replies, false
	}
	reply, _ := rf.node.Step(ev.msg)
	if ev.respond != nil {
		replies = append(replies, pendingReply{ev.respond, reply})
	}
	if ev.sink != nil {
		rf.incoming = ev.sink
		return replies, true
	}
	return replies, false
}

// publish makes the term and role visible to GetState. A leader that
// stepped down tells the Apply calls waiting for entries not yet
// committed that their outcome is unknown.
func (rf *Raft) publish() {
	s := int64(rf.node.Term()) << 1
	if rf.node.Role() == core.Leader {
		s |= 1
	}
	rf.tellLeader()
	old := rf.state.Swap(s)
	if old == s {
		return
	}
	if s>>1 > old>>1 && rf.node.Vote() == rf.me {
		rf.metrics.electionsStarted.Add(1)
	}
	if s&1 == 1 {
		rf.metrics.leaderTerms.Add(1)
	}
	if old&1 == 1 && (s&1 == 0 || old>>1 != s>>1) {
		rf.apply.abandon(rf.node.Status().Commit+1, ErrLeadershipLost)
		clear(rf.metrics.proposedAt)
	}
	if rf.onState != nil {
		rf.onState(int(s>>1), s&1 == 1)
	}
}

// tellLeader tells the watchers of the leadership (WatchLeader) of a change.
func (rf *Raft) tellLeader() {
	l := Leadership{Term: rf.node.Term(), Leader: rf.node.Leader()}
	if l.Leader != core.None {
		l.Addr = rf.remotes.addr(l.Leader)
	}
	if rf.watch.last == l { // written by this goroutine only
		return
	}
	if l.Leader != core.None && l.Leader != rf.watch.last.Leader {
		rf.metrics.leaderChanges.Add(1)
	}
	rf.watch.tell(l)
}

// countCommits counts the newly committed entries, and on a leader how
// long its own took.
func (rf *Raft) countCommits(ents []core.Entry) {
	rf.metrics.committed.Add(int64(len(ents)))
	for _, e := range ents {
		if t, ok := rf.metrics.proposedAt[e.Index]; ok {
			rf.metrics.commitLatency.since(t)
			delete(rf.metrics.proposedAt, e.Index)
		}
	}
}
