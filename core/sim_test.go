package core

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// The simulation drives several Nodes from one seeded, single-threaded loop
// over a network that drops, duplicates, delays and reorders messages, cuts
// links (both ways or one way), partitions servers and crash-restarts them
// from what reached their disks. Each seed draws its own cluster (1 to 7
// servers), timing, clock skew, message size bound and options. After every
// step it checks the properties of Figure 3 and more (sim_check_test.go). A
// failure names its seed and the command that replays it.
var (
	simSeeds = flag.Int("sim.seeds", 0, "number of seeds TestSimulation runs (default 2000, 300 under -race, 100 with -short)")
	simBase  = flag.Uint64("sim.base", 0, "first seed of TestSimulation (default: a random base, printed)")
	simSeed  = flag.Uint64("sim.seed", 0, "run TestSimulation for this seed only")
	simSteps = flag.Int("sim.steps", 5000, "chaos steps per seed")
	simTrace = flag.Bool("sim.trace", false, "print the protocol trace of the simulated servers")
	simAll   = flag.Bool("sim.all", false, "run every seed even after a failure, and count the failures")
)

// replayCommand is how to run one seed again, with every flag that shapes
// the run.
func replayCommand(seed uint64) string {
	return fmt.Sprintf("go test ./core -run 'TestSimulation$' -sim.seed %d -sim.steps %d -sim.trace -v", seed, *simSteps)
}

func TestSimulation(t *testing.T) {
	if *simSeed != 0 {
		s, err := simulate(*simSeed, *simSteps, *simTrace, t.Logf)
		if err != nil {
			t.Fatalf("seed %d: %v\n%s", *simSeed, err, s.describe())
		}
		t.Logf("seed %d: %s", *simSeed, s.summary())
		return
	}
	seeds := *simSeeds
	if seeds == 0 {
		seeds = 2000
		if raceEnabled {
			seeds = 300 // the simulation is single-threaded: -race finds nothing here
		}
	}
	if testing.Short() {
		seeds = min(seeds, 100)
	}
	base := *simBase
	if base == 0 {
		base = uint64(time.Now().UnixNano())%1_000_000_000*1000 + 1
	}
	t.Logf("seeds %d..%d (-sim.base %d -sim.seeds %d)", base, base+uint64(seeds)-1, base, seeds)
	start := time.Now()
	var totals simTotals
	failed := 0
	for seed := base; seed < base+uint64(seeds); seed++ {
		s, err := simulate(seed, *simSteps, false, nil)
		if err != nil && !*simAll {
			t.Fatalf("seed %d: %v\n%s\nreplay: %s", seed, err, s.describe(), replayCommand(seed))
		}
		if err != nil {
			if failed++; failed <= 3 {
				t.Errorf("seed %d: %v", seed, err)
			}
			continue
		}
		totals.add(s)
	}
	if failed > 0 {
		t.Errorf("%d of %d seeds failed", failed, seeds)
	}
	t.Logf("%d seeds in %v: %s", seeds, time.Since(start).Round(time.Millisecond), totals)
}

// simParams is what a seed draws about its run.
type simParams struct {
	n              int
	electionTicks  int
	heartbeatTicks int
	maxMsgBytes    int
	maxCmdBytes    int
	preVote, noOp  bool
	asyncSave      bool // messages that may leave before the save do, and Saved follows the write
	maxInflight    int
	maxInflightB   int
	drop, dup      int       // per mille of messages lost, duplicated
	skew           []float64 // per server: the chance that a tick of the simulation is a tick of its clock
	flushChance    float64   // per step: the chance that a server's disk completes its pending writes
	// spares are servers outside the initial configuration, which
	// membership changes may add; reconfig says whether changes happen.
	spares   int
	reconfig bool
	// leaseTicks, if not 0, gives the leaders a lease (Config.LeaseTicks);
	// the clocks then tick at steady rates, skew[i] ticks per tick of the
	// simulation (a lease assumes clocks that drift within a bound), and
	// the lease is as long as those rates allow.
	leaseTicks    int
	followerReads bool // Config.FollowerReads, and reads started on followers too
}

func drawParams(rng *rand.Rand) simParams {
	p := simParams{
		n:             1 + rng.IntN(7),
		electionTicks: 5 + rng.IntN(16),
		maxMsgBytes:   8 << rng.IntN(6),
		maxCmdBytes:   1 + rng.IntN(48),
		preVote:       rng.IntN(2) == 0,
		noOp:          rng.IntN(2) == 0,
		asyncSave:     rng.IntN(2) == 0,
		maxInflight:   1 + rng.IntN(8),
		maxInflightB:  64 << rng.IntN(6),
		drop:          rng.IntN(150),
		dup:           rng.IntN(150),
		flushChance:   0.3 + 0.7*rng.Float64(),
	}
	if p.n > 1 && rng.IntN(4) > 0 {
		p.n = 3 + 2*rng.IntN(2) // clusters of 3 and 5 more often than not
	}
	p.heartbeatTicks = 1 + rng.IntN(p.electionTicks/2)
	if p.reconfig = rng.IntN(3) == 0; p.reconfig {
		p.spares = rng.IntN(3)
	}
	for i := 0; i < p.n+p.spares; i++ {
		p.skew = append(p.skew, 0.6+0.4*rng.Float64())
	}
	p.followerReads = rng.IntN(3) == 0
	if p.preVote && rng.IntN(2) == 0 {
		p.leaseTicks = leaseFor(p.electionTicks, p.skew)
	}
	return p
}

// leaseFor returns the longest lease that clocks ticking at steady rates
// allow. A follower that heard from the leader refuses votes until its
// clock has ticked electionTicks times, which takes more than
// (electionTicks-1)/rate ticks of the simulation; the leader's clock
// ticks lease times in at most lease/rate of them; and at a check, a
// follower may have taken one tick of the simulation more than the
// leader (they tick in turn). So lease/lo + 1 <= (electionTicks-1)/hi.
func leaseFor(electionTicks int, rates []float64) int {
	lo, hi := slices.Min(rates), slices.Max(rates)
	return max(1, int(lo*(float64(electionTicks-1)/hi-1)))
}

func (p simParams) String() string {
	return fmt.Sprintf("%d servers (+%d spares, membership changes %v), election %d ticks, heartbeat %d, MaxMsgBytes %d, commands up to %d bytes, window %d/%d B, PreVote %v, NoOp %v, AsyncSave %v, drop %d‰, dup %d‰, flush %.2f, lease %d ticks, follower reads %v",
		p.n, p.spares, p.reconfig, p.electionTicks, p.heartbeatTicks, p.maxMsgBytes, p.maxCmdBytes, p.maxInflight, p.maxInflightB, p.preVote, p.noOp, p.asyncSave, p.drop, p.dup, p.flushChance, p.leaseTicks, p.followerReads)
}

// simDisk is what a simulated server has saved: what survives a crash.
type simDisk struct {
	hs        HardState
	snap      SnapshotMeta
	snapState []Entry // the service's state in the snapshot: the entries 1..snap.Index it applied
	log       []Entry // the entries after the snapshot
}

// entry returns the entry at index i as the disk holds it, in the log or
// in the snapshot's state.
func (d *simDisk) entry(i int) (Entry, bool) {
	switch {
	case i < 1:
		return Entry{}, false
	case i <= d.snap.Index:
		return d.snapState[i-1], true
	case i-d.snap.Index <= len(d.log):
		return d.log[i-d.snap.Index-1], true
	}
	return Entry{}, false
}

// lastIndex returns the index of the last entry the disk holds.
func (d *simDisk) lastIndex() int { return d.snap.Index + len(d.log) }

// simBatch is the handling of one Ready: its state to save (if any), then
// the messages it lets leave and the entries it commits. Batches complete
// in order, each once its write is durable.
type simBatch struct {
	write     bool
	hs        HardState
	snap      *SnapshotMeta // a snapshot installed from a leader
	snapState []Entry       // its state
	ents      []Entry
	msgs      []Message
	committed []Entry
}

type simServer struct {
	id         int
	node       *Node
	disk       simDisk
	pending    []simBatch // not yet durable: lost by a crash
	up         bool
	clock      float64 // with steady clock rates: the fraction of a tick its clock has run
	applied    []Entry // its service's state: the entries applied from index 1 (restored from a snapshot, then applied)
	lastCommit int     // the commit index at the last check, this incarnation

	// Leader Append-Only: the log as it was at the last check while leader.
	leaderTerm int
	leaderLog  []Entry
}

type simMsg struct {
	m    Message
	age  int     // ticks spent in the network
	hold int     // ticks before it can arrive: a few messages are delayed long
	snap []Entry // an InstallSnapshot's data: the sender's snapshot state
}

type sim struct {
	seed    uint64
	rng     *rand.Rand
	p       simParams
	servers []*simServer
	ids     []int
	net     []simMsg
	group   []int           // partition: servers talk only within a group
	oneWay  map[[2]int]bool // links cut in one direction, from→to
	arrived []Entry         // the data of the InstallSnapshot being stepped
	trace   func(string)
	step    int
	healed  bool

	hist simHistory
}

func simulate(seed uint64, steps int, trace bool, logf func(string, ...any)) (s *sim, err error) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	s, err = newSim(seed, rng, drawParams(rng), trace, logf)
	if err != nil {
		return s, err
	}
	// Phase 1: chaos.
	for s.step = 0; s.step < steps; s.step++ {
		if err := s.act(true); err != nil {
			return s, fmt.Errorf("step %d: %w", s.step, err)
		}
	}
	// Phase 2: heal everything; a leader must emerge and commit a new
	// command on every server within a bounded time.
	return s, s.heal(logf)
}

// newSim starts a simulation of a cluster as p describes.
func newSim(seed uint64, rng *rand.Rand, p simParams, trace bool, logf func(string, ...any)) (*sim, error) {
	s := &sim{seed: seed, rng: rng, p: p, oneWay: map[[2]int]bool{}}
	s.hist.init()
	s.group = make([]int, s.p.n+s.p.spares)
	if trace && logf != nil {
		s.trace = func(l string) { logf("%5d %s", s.step, l) }
		logf("seed %d: %v", seed, s.p)
	}
	for i := 0; i < s.p.n; i++ {
		s.ids = append(s.ids, i)
	}
	for i := 0; i < s.p.n+s.p.spares; i++ {
		s.servers = append(s.servers, &simServer{id: i, disk: simDisk{hs: HardState{Vote: None}}})
		if err := s.restart(i); err != nil {
			return s, err
		}
	}
	return s, nil
}

// heal ends the faults and checks that the cluster makes progress.
func (s *sim) heal(logf func(string, ...any)) error {
	// Liveness needs messages to arrive within an election timeout:
	// healed, the network delivers in order and disks keep up.
	s.healed = true
	s.p.flushChance = 1
	for k := range s.net {
		s.net[k].hold = 0
	}
	clear(s.group)
	clear(s.oneWay)
	for i, sv := range s.servers {
		if !sv.up {
			if err := s.restart(i); err != nil {
				return err
			}
		}
	}
	final := -1
	for k := 0; k < 300*s.p.electionTicks; k, s.step = k+1, s.step+1 {
		if err := s.act(false); err != nil {
			return fmt.Errorf("healed step %d: %w", k, err)
		}
		if final < 0 {
			for i, sv := range s.servers {
				if sv.node.Role() == Leader {
					if idx, _, ok := s.propose(i); ok {
						final = idx
					}
					if err := s.ready(i, nil); err != nil {
						return err
					}
					break
				}
			}
			continue
		}
		done := true
		for i, sv := range s.servers {
			_, member := s.leaderConf().Find(i)
			if member && len(sv.applied) < final {
				done = false
			}
			if !member && s.untold(sv.node) {
				done = false // removed, but has not learned it yet
			}
		}
		if done {
			if logf != nil {
				logf("seed %d: %s", s.seed, s.summary())
			}
			return nil
		}
	}
	return fmt.Errorf("no progress after healing: final command index %d, applied %v", final, s.appliedLens())
}

// untold reports whether n, outside the leader's configuration, should
// yet learn of its removal: it asks the leader for votes (it may campaign,
// and the leader is a member of a configuration it knows), and has not
// committed a configuration without itself (the driver then stops it).
func (s *sim) untold(n *Node) bool {
	lead := s.leader()
	_, stillIn := n.confAt(n.commit).Find(n.id)
	return lead != None && n.canCampaign() && stillIn && slices.Contains(n.voteTargets(), lead)
}

func (s *sim) appliedLens() []int {
	var l []int
	for _, sv := range s.servers {
		l = append(l, len(sv.applied))
	}
	return l
}

func (s *sim) restart(i int) error {
	sv := s.servers[i]
	peers := s.ids
	if i >= s.p.n {
		peers = nil // a spare: it joins when a leader adds it
	}
	cfg := Config{
		ID: i, Peers: peers, ElectionTicks: s.p.electionTicks, HeartbeatTicks: s.p.heartbeatTicks,
		MaxMsgBytes: s.p.maxMsgBytes, PreVote: s.p.preVote, NoOp: s.p.noOp,
		LeaseTicks: s.p.leaseTicks, FollowerReads: s.p.followerReads,
		AsyncSave: s.p.asyncSave, MaxInflight: s.p.maxInflight, MaxInflightBytes: s.p.maxInflightB,
		State: sv.disk.hs, Snapshot: sv.disk.snap, Log: slices.Clone(sv.disk.log),
		Rand:  rand.New(rand.NewPCG(s.rng.Uint64(), uint64(i))),
		Trace: s.trace,
	}
	node, err := New(cfg)
	if err != nil {
		return fmt.Errorf("restart %d: %w", i, err)
	}
	// The service restarts from the snapshot.
	sv.node, sv.up, sv.applied, sv.pending = node, true, sv.disk.snapState, nil
	sv.lastCommit, sv.leaderTerm, sv.leaderLog = 0, 0, nil
	return s.check(i)
}

// crash stops server i: what its disk has not made durable is lost, and
// the messages waiting for it with it.
func (s *sim) crash(i int) {
	sv := s.servers[i]
	sv.up, sv.pending = false, nil
	if s.trace != nil {
		s.trace(fmt.Sprintf("S%d crashes", i))
	}
}

// act takes one random action; chaos allows crashes and partitions.
func (s *sim) act(chaos bool) error {
	r := s.rng.Float64()
	if !chaos && r < 0.70 {
		// Healed: every message arrives before the next tick.
		for len(s.net) > 0 {
			if err := s.deliver(false); err != nil {
				return err
			}
		}
	}
	switch {
	case r < 0.55:
		return s.deliver(chaos)
	case r < 0.70:
		return s.tick()
	case r < 0.78:
		i := s.rng.IntN(len(s.servers))
		if s.servers[i].up {
			s.propose(i)
			return s.ready(i, nil)
		}
	case r < 0.88:
		return s.flushSome()
	case r < 0.90:
		return s.snapshot(s.rng.IntN(len(s.servers)))
	case chaos && r < 0.91:
		return s.transfer()
	case chaos && r < 0.93:
		return s.read()
	case chaos && s.p.reconfig && r < 0.94:
		return s.reconfigure()
	case !chaos || r < 0.975:
	case r < 0.98:
		// Crash a server, a leader more often than not (as in the Figure 8
		// test): it keeps only what reached its disk.
		i := s.rng.IntN(len(s.servers))
		for j, sv := range s.servers {
			if sv.up && sv.node.Role() == Leader && s.rng.IntN(3) > 0 {
				i = j
			}
		}
		s.crash(i)
		if s.rng.IntN(3) == 0 {
			return s.restart(i) // a reboot: down for no time at all
		}
	case r < 0.99:
		// Restart one that is down.
		var down []int
		for i, sv := range s.servers {
			if !sv.up {
				down = append(down, i)
			}
		}
		if len(down) > 0 {
			return s.restart(down[s.rng.IntN(len(down))])
		}
	case r < 0.994:
		s.partition()
	case r < 0.997:
		// Cut a link one way.
		from, to := s.rng.IntN(len(s.servers)), s.rng.IntN(len(s.servers))
		if from != to {
			s.oneWay[[2]int{from, to}] = true
		}
	default:
		clear(s.group) // heal
		clear(s.oneWay)
	}
	return nil
}

// partition splits the servers: at random into up to three groups, or the
// leader (if any) and a random minority away from the rest, or one server
// away from the rest; or it cuts every link from the leader (if any) one
// way: it hears the others, they do not hear it.
func (s *sim) partition() {
	switch s.rng.IntN(4) {
	case 3:
		for i, sv := range s.servers {
			if sv.up && sv.node.role == Leader {
				for j := range s.servers {
					if j != i {
						s.oneWay[[2]int{i, j}] = true
					}
				}
				return
			}
		}
	case 0:
		for i := range s.group {
			s.group[i] = s.rng.IntN(3)
		}
	case 1:
		lead := s.rng.IntN(len(s.servers))
		for i, sv := range s.servers {
			if sv.up && sv.node.role == Leader {
				lead = i
			}
		}
		for i := range s.group {
			s.group[i] = 0
		}
		// The leader and others, a minority in all.
		s.group[lead] = 1
		for _, i := range s.rng.Perm(len(s.servers))[:max(0, (len(s.servers)-1)/2-1)] {
			s.group[i] = 1
		}
	default:
		clear(s.group)
		s.group[s.rng.IntN(len(s.servers))] = 1
	}
}

// tick advances the simulated time by one tick. Each server's clock ticks
// with its own chance (clock skew), and messages age.
func (s *sim) tick() error {
	for i, sv := range s.servers {
		if s.p.leaseTicks > 0 {
			// Steady rates: the clock runs on while the server is down.
			if sv.clock += s.p.skew[i]; sv.clock < 1 {
				continue
			}
			sv.clock--
			if !sv.up {
				continue
			}
		} else if !sv.up || s.rng.Float64() >= s.p.skew[i] {
			continue
		}
		// TicksToEvent: a Tick before the next timer fires only counts.
		if err := s.ready(i, nil); err != nil {
			return err
		}
		quiet, before := sv.node.TicksToEvent() > 1, sv.node.Status()
		sv.node.Tick()
		if quiet {
			after, rd := sv.node.Status(), sv.node.Ready()
			if !rd.Empty() || after.Term != before.Term || after.Role != before.Role || after.Leader != before.Leader {
				return fmt.Errorf("server %d: a Tick with TicksToEvent > 1 had an effect: %+v -> %+v, %+v", i, before, after, rd)
			}
		}
		if err := s.ready(i, nil); err != nil {
			return err
		}
	}
	for k := range s.net {
		s.net[k].age++
	}
	// A message that has been in the network too long is lost.
	s.net = slices.DeleteFunc(s.net, func(m simMsg) bool { return m.age > m.hold+3*s.p.electionTicks })
	return nil
}

// flushSome completes the pending writes of servers at random.
func (s *sim) flushSome() error {
	for i, sv := range s.servers {
		if sv.up && len(sv.pending) > 0 && s.rng.Float64() < s.p.flushChance {
			if err := s.flush(i, 1+s.rng.IntN(len(sv.pending))); err != nil {
				return err
			}
			if err := s.ready(i, nil); err != nil { // Saved may have committed more
				return err
			}
		}
	}
	return nil
}

func (s *sim) propose(i int) (int, int, bool) {
	// A unique name, padded to a random length.
	cmd := fmt.Appendf(nil, "c%d.", s.hist.nextCmd)
	for pad := s.rng.IntN(s.p.maxCmdBytes); pad > 0; pad-- {
		cmd = append(cmd, byte('a'+s.rng.IntN(26)))
	}
	s.hist.nextCmd++
	return s.servers[i].node.Propose(cmd)
}

// deliver hands a random message in the network (so any order is
// possible) to its recipient, unless it is lost or cut off.
func (s *sim) deliver(chaos bool) error {
	if len(s.net) == 0 {
		return nil
	}
	k := 0 // healed: in order
	if chaos {
		k = s.rng.IntN(len(s.net))
	}
	if s.net[k].age < s.net[k].hold {
		return nil // delayed: not yet
	}
	msg := s.net[k]
	m := msg.m
	if !chaos || s.rng.IntN(1000) >= s.p.dup { // a duplicated message stays in the network
		s.net = slices.Delete(s.net, k, k+1)
	}
	to := s.servers[m.To]
	if !to.up || s.group[m.From] != s.group[m.To] || s.oneWay[[2]int{m.From, m.To}] || (chaos && s.rng.IntN(1000) < s.p.drop) {
		return nil // lost
	}
	s.hist.delivered++
	if err := s.hist.beforeStep(s, m); err != nil {
		return err
	}
	s.arrived = msg.snap
	reply, ok := to.node.Step(m)
	if isRequest(m.Body) != ok {
		return fmt.Errorf("server %d: Step(%T from %d) returned a reply: %v, want %v", m.To, m.Body, m.From, ok, isRequest(m.Body))
	}
	var r *Message
	if ok {
		r = &reply
	}
	return s.ready(m.To, r)
}

func isRequest(body any) bool {
	switch body.(type) {
	case *RequestVoteArgs, *AppendEntriesArgs, *InstallSnapshotArgs, *TimeoutNowArgs:
		return true
	}
	return false // ReadIndexArgs too: its answer is a message of its own
}

// ready takes server i's Ready as a driver does: its state goes to the
// disk, and its messages (with reply, if not nil) and committed entries
// wait for that write to be durable. It then checks the invariants.
func (s *sim) ready(i int, reply *Message) error {
	sv := s.servers[i]
	rd := sv.node.Ready()
	s.noteCommits(i) // Ready may commit: a lone server's entries once saved
	if err := s.hist.readsReady(s, i, rd.ReadStates, rd.FailedReads); err != nil {
		return err
	}
	b := simBatch{write: rd.MustSave(), hs: rd.HardState, snap: rd.Snapshot, ents: rd.Entries, msgs: rd.AfterSave, committed: rd.Committed}
	if s.p.asyncSave {
		// Raft thesis 10.2.1: these leave while the state is being saved.
		for _, m := range rd.Messages {
			if err := s.sendNow(m); err != nil {
				return err
			}
		}
	} else {
		b.msgs = append(rd.Messages, b.msgs...)
	}
	if b.snap != nil {
		if len(s.arrived) != b.snap.Index {
			return fmt.Errorf("server %d installs snapshot %+v, but the data that arrived covers %d entries", i, *b.snap, len(s.arrived))
		}
		b.snapState = s.arrived
	}
	s.arrived = nil
	if reply != nil {
		b.msgs = append(b.msgs, *reply)
	}
	if b.write || len(b.msgs) > 0 || len(b.committed) > 0 {
		sv.pending = append(sv.pending, b)
	}
	if len(sv.pending) > 0 && s.rng.Float64() < s.p.flushChance {
		wrote := slices.ContainsFunc(sv.pending, func(b simBatch) bool { return len(b.ents) > 0 })
		if err := s.flush(i, len(sv.pending)); err != nil {
			return err
		}
		if s.p.asyncSave && wrote {
			return s.ready(i, nil) // Saved may have committed more
		}
	}
	return s.check(i)
}

// flush makes the first k pending batches of server i durable, then lets
// their messages leave and applies their committed entries, in order.
func (s *sim) flush(i, k int) error {
	sv := s.servers[i]
	for _, b := range sv.pending[:k] {
		if b.write {
			d := &sv.disk
			d.hs = b.hs
			if b.snap != nil {
				// The snapshot, then its entries in place of the log.
				if err := s.hist.checkSnapshot(s, i, b.snapState); err != nil {
					return err
				}
				d.snap, d.snapState, d.log = *b.snap, b.snapState, nil
			}
			if len(b.ents) > 0 {
				at := b.ents[0].Index - 1 - d.snap.Index
				if at > len(d.log) || at < 0 {
					return fmt.Errorf("server %d: Ready saves entries from %d with a saved log from %d to %d", i, b.ents[0].Index, d.snap.Index+1, d.lastIndex())
				}
				if at < len(d.log) {
					d.log = d.log[:at:at] // a fresh array: checkNewEntries relies on it
				}
				d.log = append(d.log, b.ents...)
				if s.p.asyncSave {
					last := b.ents[len(b.ents)-1]
					sv.node.Saved(last.Index, last.Term)
				}
			}
			if err := s.hist.saved(s, i); err != nil {
				return err
			}
		}
		for _, m := range b.msgs {
			if err := s.sendNow(m); err != nil {
				return err
			}
		}
		if b.snap != nil {
			sv.applied = b.snapState // the service restored from the snapshot
		}
		for _, e := range b.committed {
			if err := s.apply(i, e); err != nil {
				return err
			}
		}
	}
	sv.pending = sv.pending[k:]
	if len(sv.pending) == 0 {
		return s.checkSaved(i)
	}
	return nil
}

// sendNow sends m, and sometimes, for an AppendEntries, another slice of
// the leader's log (see rewind).
func (s *sim) sendNow(m Message) error {
	if err := s.send(m); err != nil {
		return err
	}
	if a, ok := m.Body.(*AppendEntriesArgs); ok && !s.healed && s.rng.IntN(20) == 0 {
		return s.rewind(m.From, m.To, a)
	}
	return nil
}

// send puts m in the network; an InstallSnapshot carries the sender's
// saved snapshot, as a driver sends its storage's.
func (s *sim) send(m Message) error {
	if err := s.hist.sent(s, m); err != nil {
		return err
	}
	msg := simMsg{m: m}
	if a, ok := m.Body.(*InstallSnapshotArgs); ok {
		d := s.servers[m.From].disk
		b := *a
		b.LastIncludedIndex, b.LastIncludedTerm, b.Membership = d.snap.Index, d.snap.Term, d.snap.Membership
		msg.m.Body, msg.snap = &b, d.snapState
	}
	chance := 40
	switch m.Body.(type) {
	case *AppendEntriesReply:
		chance = 4 // late acknowledgements are the ones that test a leader
	case *TimeoutNowArgs:
		chance = 4 // and a late TimeoutNow, a transfer's target
	}
	if !s.healed && s.rng.IntN(chance) == 0 {
		msg.hold = 1 + s.rng.IntN(10*s.p.electionTicks)
	}
	s.net = append(s.net, msg)
	return nil
}

// rewind sends, besides the AppendEntries a, another that a leader may
// send as well (Figure 2 lets it retry from any nextIndex): an earlier
// slice of its log, from a random index at most a's, with a's
// leaderCommit. Followers must stay safe whatever slice of its log a
// leader sends them.
func (s *sim) rewind(from, to int, a *AppendEntriesArgs) error {
	n := s.servers[from].node
	if n.role != Leader || n.term != a.Term || a.PrevLogIndex > n.log.lastIndex() {
		return nil
	}
	first := n.log.snapshot().Index
	if a.PrevLogIndex < first {
		return nil
	}
	prev := first + s.rng.IntN(a.PrevLogIndex-first+1)
	hi := prev + 1 + s.rng.IntN(a.PrevLogIndex+len(a.Entries)-prev+1)
	hi = min(hi, n.log.lastIndex()+1)
	r := &AppendEntriesArgs{Term: a.Term, LeaderID: from, PrevLogIndex: prev, PrevLogTerm: n.log.term(prev),
		Entries: n.log.slice(prev+1, hi), LeaderCommit: a.LeaderCommit}
	return s.send(Message{From: from, To: to, Body: r})
}

// transfer has a leader, if one is up, hand its leadership to another
// server, or to the most up-to-date one (thesis 3.10).
func (s *sim) transfer() error {
	for i, sv := range s.servers {
		if !sv.up || sv.node.Role() != Leader {
			continue
		}
		to := s.rng.IntN(len(s.servers)+1) - 1 // None now and then
		voters := sv.node.conf().Voters()
		if err := sv.node.TransferLeadership(to); err != nil && to != i && (to != None || len(voters) > 1) && (to == None || slices.Contains(voters, to)) {
			return fmt.Errorf("leader %d: TransferLeadership(%d): %w", i, to, err)
		}
		s.hist.transfers++
		return s.ready(i, nil)
	}
	return nil
}

// reconfigure has a leader, if one is up, change the configuration by one
// server at random: add a server outside it as a learner, promote a
// learner, or remove a member (itself now and then).
func (s *sim) reconfigure() error {
	for i, sv := range s.servers {
		if !sv.up || sv.node.Role() != Leader {
			continue
		}
		conf := sv.node.conf()
		id := s.rng.IntN(len(s.servers))
		c := Change{Type: Remove, ID: id}
		if m, ok := conf.Find(id); !ok {
			c.Type = AddLearner
		} else if m.Learner && s.rng.IntN(3) > 0 {
			c.Type = Promote
		}
		if _, _, err := sv.node.ProposeChange(c); err == nil {
			s.hist.changes++
		}
		return s.ready(i, nil)
	}
	return nil
}

// leader returns the first server that is up and leads, or None.
func (s *sim) leader() int {
	for i, sv := range s.servers {
		if sv.up && sv.node.Role() == Leader {
			return i
		}
	}
	return None
}

// leaderConf returns the latest configuration of a leader that is up, or
// the initial one.
func (s *sim) leaderConf() Membership {
	if l := s.leader(); l != None {
		return s.servers[l].node.conf()
	}
	return s.servers[0].node.snapConf
}

// read starts a ReadIndex on a server that thinks it leads, or, with
// follower reads, on a follower, if one is up (thesis 6.4).
func (s *sim) read() error {
	var can []int
	for i, sv := range s.servers {
		if sv.up && (sv.node.Role() == Leader || s.p.followerReads && sv.node.Role() == Follower) {
			can = append(can, i)
		}
	}
	if len(can) == 0 {
		return nil
	}
	i := can[s.rng.IntN(len(can))]
	s.hist.startRead(s, i)
	return s.ready(i, nil)
}

// snapshot has server i's service snapshot its state at a random index it
// applied, save it, and compact its log (section 7).
func (s *sim) snapshot(i int) error {
	sv := s.servers[i]
	d := &sv.disk
	if !sv.up || len(sv.applied) <= d.snap.Index {
		return nil
	}
	idx := d.snap.Index + 1 + s.rng.IntN(len(sv.applied)-d.snap.Index)
	e, ok := d.entry(idx)
	if !ok || e.Term != sv.applied[idx-1].Term {
		return fmt.Errorf("server %d applied entry %d/%d, which its disk does not hold", i, idx, sv.applied[idx-1].Term)
	}
	s.hist.snapshots++
	// The snapshot is durable before the log is compacted.
	d.log = slices.Clone(d.log[idx-d.snap.Index:])
	d.snap = SnapshotMeta{Index: idx, Term: e.Term, Membership: sv.node.confAt(idx)}
	d.snapState = sv.applied[:idx:idx]
	return sv.node.Compact(idx)
}

// summary says what a run did.
func (s *sim) summary() string {
	return fmt.Sprintf("%v; %d terms with a leader, %d entries committed, %d messages delivered, %d snapshots taken, %d installed, %d transfers started, %d reads served (%d from a lease, %d on followers), %d given up, %d configuration changes",
		s.p, len(s.hist.leaders), len(s.hist.committed), s.hist.delivered, s.hist.snapshots, s.hist.installs, s.hist.transfers, s.hist.readsDone, s.hist.leaseReads, s.hist.followerReads, s.hist.readsFailed, s.hist.changes)
}

// describe says where the servers were, for a failure report.
func (s *sim) describe() string {
	if s == nil {
		return ""
	}
	out := fmt.Sprintf("run: %v\n", s.p)
	for i, sv := range s.servers {
		if sv.node == nil {
			continue
		}
		st := sv.node.Status()
		m, at, _ := sv.node.Membership()
		out += fmt.Sprintf("  S%d up=%v %v term %d vote %d commit %d log %d disk %+v/%d pending %d configuration %v at %d\n",
			i, sv.up, st.Role, st.Term, sv.node.vote, st.Commit, st.LastLog, sv.disk.hs, len(sv.disk.log), len(sv.pending), m, at)
	}
	return out
}

// simTotals adds up what the runs of TestSimulation did.
type simTotals struct {
	runs, leaders, committed, delivered, snapshots, installs, transfers, reads, changes int
	leaseReads, followerReads, leaseRuns, followerRuns                                  int
	sizes                                                                               [8]int
}

func (t *simTotals) add(s *sim) {
	t.runs++
	t.leaders += len(s.hist.leaders)
	t.committed += len(s.hist.committed)
	t.delivered += s.hist.delivered
	t.snapshots += s.hist.snapshots
	t.installs += s.hist.installs
	t.transfers += s.hist.transfers
	t.reads += s.hist.readsDone
	t.changes += s.hist.changes
	t.leaseReads += s.hist.leaseReads
	t.followerReads += s.hist.followerReads
	if s.p.leaseTicks > 0 {
		t.leaseRuns++
	}
	if s.p.followerReads {
		t.followerRuns++
	}
	t.sizes[s.p.n]++
}

func (t simTotals) String() string {
	r := max(t.runs, 1)
	return fmt.Sprintf("per seed on average %d terms with a leader, %d entries committed, %d messages delivered, %d snapshots taken, %.1f installed from a leader, %d leadership transfers started, %d reads served, %.1f configuration changes; %d seeds with leases (%d reads from a lease in all), %d with follower reads (%d served on followers in all); initial cluster sizes 1..7: %v",
		t.leaders/r, t.committed/r, t.delivered/r, t.snapshots/r, float64(t.installs)/float64(r), t.transfers/r, t.reads/r, float64(t.changes)/float64(r), t.leaseRuns, t.leaseReads, t.followerRuns, t.followerReads, t.sizes[1:])
}
