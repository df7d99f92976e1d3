package core

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// The simulation drives several Nodes from one seeded, single-threaded loop
// over a network that drops, duplicates, delays and reorders messages,
// partitions servers and crash-restarts them from what they saved. After
// every step it checks the safety properties of Figure 3. A failure names
// its seed; -sim.seed replays exactly that run.
var (
	simSeeds = flag.Int("sim.seeds", 2000, "number of seeds TestSimulation runs (200 with -short)")
	simSeed  = flag.Uint64("sim.seed", 0, "run TestSimulation for this seed only")
	simSteps = flag.Int("sim.steps", 5000, "steps per seed")
	simTrace = flag.Bool("sim.trace", false, "print the protocol trace of the simulated servers")
)

func TestSimulation(t *testing.T) {
	if *simSeed != 0 {
		if err := simulate(*simSeed, *simSteps, *simTrace, t.Logf); err != nil {
			t.Fatalf("seed %d: %v", *simSeed, err)
		}
		return
	}
	seeds := *simSeeds
	if testing.Short() {
		seeds = min(seeds, 200)
	}
	for seed := uint64(1); seed <= uint64(seeds); seed++ {
		if err := simulate(seed, *simSteps, false, nil); err != nil {
			t.Fatalf("seed %d: %v\nreplay: go test ./core -run TestSimulation -sim.seed %d -sim.trace", seed, err, seed)
		}
	}
}

// simSaved is what a simulated server has saved: its disk.
type simSaved struct {
	hs  HardState
	log []Entry
}

type simServer struct {
	node    *Node
	saved   simSaved
	up      bool
	applied []Entry // what its state machine applied since its last start
}

type simMsg struct {
	m   Message
	age int // ticks spent in the network
}

type sim struct {
	rng     *rand.Rand
	servers []*simServer
	ids     []int
	net     []simMsg
	group   []int // partition: servers talk only within a group
	trace   func(string)

	leaders   map[int]int   // term -> the server that led it
	committed map[int]Entry // index -> entry applied by some server
	nextCmd   int
	elTicks   int
	delivered int
}

func simulate(seed uint64, steps int, trace bool, logf func(string, ...interface{})) (err error) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	n := []int{3, 5}[rng.IntN(2)]
	s := &sim{
		rng:       rng,
		leaders:   map[int]int{},
		committed: map[int]Entry{},
		group:     make([]int, n),
		elTicks:   10,
	}
	if trace && logf != nil {
		s.trace = func(l string) { logf("%s", l) }
	}
	for i := 0; i < n; i++ {
		s.ids = append(s.ids, i)
	}
	for i := 0; i < n; i++ {
		s.servers = append(s.servers, &simServer{saved: simSaved{hs: HardState{Vote: None}}})
		if err := s.restart(i); err != nil {
			return err
		}
	}
	// Phase 1: chaos.
	for step := 0; step < steps; step++ {
		if err := s.step(true); err != nil {
			return fmt.Errorf("step %d: %w", step, err)
		}
	}
	// Phase 2: heal everything; a leader must emerge and commit a new
	// command on every server within a bounded time.
	for i, sv := range s.servers {
		s.group[i] = 0
		if !sv.up {
			if err := s.restart(i); err != nil {
				return err
			}
		}
	}
	final := -1
	for step := 0; step < 200*s.elTicks; step++ {
		if err := s.step(false); err != nil {
			return fmt.Errorf("healed step %d: %w", step, err)
		}
		if final < 0 {
			for _, sv := range s.servers {
				if sv.node.Role() == Leader {
					final, _, _ = s.propose(sv)
					break
				}
			}
			continue
		}
		done := true
		for _, sv := range s.servers {
			if len(sv.applied) < final {
				done = false
			}
		}
		if done {
			if logf != nil {
				logf("seed %d: %d servers, %d terms with a leader, %d entries committed, %d messages delivered", seed, n, len(s.leaders), len(s.committed), s.delivered)
			}
			return nil
		}
	}
	return fmt.Errorf("no progress after healing: final command index %d, applied %v", final, s.appliedLens())
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
	cfg := Config{
		ID: i, Peers: s.ids, ElectionTicks: s.elTicks, HeartbeatTicks: 3,
		MaxMsgBytes: 64,
		State:       sv.saved.hs, Log: slices.Clone(sv.saved.log),
		Rand:  rand.New(rand.NewPCG(s.rng.Uint64(), uint64(i))),
		Trace: s.trace,
	}
	node, err := New(cfg)
	if err != nil {
		return fmt.Errorf("restart %d: %w", i, err)
	}
	sv.node, sv.up, sv.applied = node, true, nil
	return nil
}

// step takes one random action; chaos allows crashes and partitions.
func (s *sim) step(chaos bool) error {
	r := s.rng.Float64()
	switch {
	case r < 0.60:
		return s.deliver(chaos)
	case r < 0.75:
		for i, sv := range s.servers {
			if sv.up {
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
		}
		for k := range s.net {
			s.net[k].age++
		}
		// A message that has been in the network too long is lost.
		s.net = slices.DeleteFunc(s.net, func(m simMsg) bool { return m.age > 3*s.elTicks })
	case r < 0.83:
		i := s.rng.IntN(len(s.servers))
		if sv := s.servers[i]; sv.up {
			if _, _, ok := s.propose(sv); ok {
				return s.ready(i, nil)
			}
		}
	case !chaos || r < 0.975:
	case r < 0.98:
		// Crash a server, a leader more often than not (as in the Figure 8
		// test): it keeps only what it saved.
		i := s.rng.IntN(len(s.servers))
		for j, sv := range s.servers {
			if sv.up && sv.node.Role() == Leader && s.rng.IntN(3) > 0 {
				i = j
			}
		}
		s.servers[i].up = false
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
	case r < 0.995:
		// Partition the servers at random.
		for i := range s.group {
			s.group[i] = s.rng.IntN(3)
		}
	default:
		clear(s.group) // heal
	}
	return nil
}

func (s *sim) propose(sv *simServer) (int, int, bool) {
	s.nextCmd++
	return sv.node.Propose([]byte(fmt.Sprintf("c%d", s.nextCmd)))
}

// deliver hands a random message in the network (so any order is
// possible) to its recipient, unless it is lost or cut off.
func (s *sim) deliver(chaos bool) error {
	if len(s.net) == 0 {
		return nil
	}
	k := s.rng.IntN(len(s.net))
	m := s.net[k].m
	if !chaos || s.rng.IntN(10) != 0 { // 1 in 10 is duplicated: it stays in the network
		s.net = slices.Delete(s.net, k, k+1)
	}
	to := s.servers[m.To]
	if !to.up || s.group[m.From] != s.group[m.To] || (chaos && s.rng.IntN(10) == 0) {
		return nil // lost
	}
	s.delivered++
	reply, ok := to.node.Step(m)
	var r *Message
	if ok {
		r = &reply
	}
	return s.ready(m.To, r)
}

// ready handles server i's Ready as the driver does: save, then send
// (reply included), then apply; then checks the invariants.
func (s *sim) ready(i int, reply *Message) error {
	sv := s.servers[i]
	rd := sv.node.Ready()
	if rd.MustSave() {
		sv.saved.hs = rd.HardState
		if len(rd.Entries) > 0 {
			at := rd.Entries[0].Index - 1
			if at > len(sv.saved.log) {
				return fmt.Errorf("server %d: Ready saves entries from %d after a saved log ending at %d", i, at+1, len(sv.saved.log))
			}
			sv.saved.log = append(sv.saved.log[:at:at], rd.Entries...)
		}
	}
	for _, m := range rd.Messages {
		s.net = append(s.net, simMsg{m: m})
	}
	if reply != nil {
		s.net = append(s.net, simMsg{m: *reply})
	}
	for _, e := range rd.Committed {
		if e.Index != len(sv.applied)+1 {
			return fmt.Errorf("server %d applied index %d after %d", i, e.Index, len(sv.applied))
		}
		if c, ok := s.committed[e.Index]; ok && (c.Term != e.Term || string(c.Command) != string(e.Command)) {
			// State Machine Safety.
			return fmt.Errorf("server %d applied %v at index %d where another applied %v", i, e, e.Index, c)
		}
		s.committed[e.Index] = e
		sv.applied = append(sv.applied, e)
	}
	return s.check(i)
}

// check verifies the properties of Figure 3 that server i's last step could
// have broken.
func (s *sim) check(i int) error {
	n := s.servers[i].node
	// The saved state is the state: nothing is acted on before it is saved.
	if sv := s.servers[i]; sv.saved.hs != (HardState{n.term, n.vote}) || len(sv.saved.log) != n.log.lastIndex() {
		return fmt.Errorf("server %d: saved %v with %d entries, but runs with term %d vote %d and %d entries",
			i, sv.saved.hs, len(sv.saved.log), n.term, n.vote, n.log.lastIndex())
	}
	if n.role == Leader {
		// Election Safety: at most one leader per term.
		if l, ok := s.leaders[n.term]; ok && l != i {
			return fmt.Errorf("servers %d and %d both lead term %d", l, i, n.term)
		}
		if _, ok := s.leaders[n.term]; !ok {
			s.leaders[n.term] = i
			// Leader Completeness: a new leader holds every committed entry.
			for idx, e := range s.committed {
				if n.log.term(idx) != e.Term {
					return fmt.Errorf("server %d leads term %d without committed entry %d (term %d)", i, n.term, idx, e.Term)
				}
			}
		}
	}
	// Log Matching: if two logs hold an entry with the same index and term,
	// they are identical up to it. It is enough to check from the highest
	// such index down.
	for j, o := range s.servers {
		if j == i || o.node == nil {
			continue
		}
		a, b := n.log, o.node.log
		k := min(a.lastIndex(), b.lastIndex())
		for k > 0 && a.term(k) != b.term(k) {
			k--
		}
		for ; k > 0; k-- {
			if x, y := a.ents[k], b.ents[k]; x.Term != y.Term || string(x.Command) != string(y.Command) {
				return fmt.Errorf("logs of servers %d and %d differ at %d (%v vs %v) below a matching entry", i, j, k, x, y)
			}
		}
	}
	if n.commit > n.log.lastIndex() {
		return fmt.Errorf("server %d commits %d beyond its last entry %d", i, n.commit, n.log.lastIndex())
	}
	return nil
}
