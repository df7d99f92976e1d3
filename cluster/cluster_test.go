package cluster

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestProcesses3 runs 3 servers as processes over TCP with their state on
// disk, through kills, restarts and partitions, then checks what they
// applied.
func TestProcesses3(t *testing.T) { runProcesses(t, 3) }

// TestProcesses5 is TestProcesses3 with 5 servers, so up to 2 down at once.
func TestProcesses5(t *testing.T) { runProcesses(t, 5) }

func runProcesses(t *testing.T, n int) {
	dur := 16 * time.Second
	if testing.Short() {
		dur = 5 * time.Second
	}
	seed := rand.Uint64()
	if s := os.Getenv("RAFT_CLUSTER_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("RAFT_CLUSTER_SEED: %v", err)
		}
	}
	t.Logf("%d servers, %v of faults, seed %d (RAFT_CLUSTER_SEED=%d replays the choices, not the timing)", n, dur, seed, seed)

	h := newHarness(t, n, seed)
	for _, id := range h.all() {
		h.start(id)
	}
	h.awaitLeader("first election", time.Now(), h.all(), 0)
	h.startBackground()

	c := &chaos{h: h, dur: dur}
	c.run()

	// Heal everything, bring everything back, let it catch up.
	h.healAll()
	for _, id := range h.down() {
		h.restart(id)
	}
	h.awaitLeader("all up and healed", time.Now(), h.all(), 0)
	time.Sleep(300 * time.Millisecond) // a little more traffic with everyone in
	h.stopClientLoop()
	h.stopPollLoop()
	h.converge(30 * time.Second)

	h.check()
	for _, id := range h.all() {
		h.terminate(id)
	}
	h.checkLogs()
	h.summary(c)
	h.reportViolations()
}

// chaos kills, restarts and partitions servers at random for a while: it
// never has more than a minority down, except in one phase where a
// majority is down and nothing may commit.
type chaos struct {
	h    *harness
	dur  time.Duration
	done map[string]int
}

// The actions; each of the first four happens at least once.
const (
	actKillLeader   = "kill leader"
	actKillFollower = "kill follower"
	actPartition    = "partition leader into a minority"
	actMajorityDown = "majority down"
	actRestart      = "restart"
)

func (c *chaos) run() {
	h := c.h
	c.done = make(map[string]int)
	start := time.Now()
	required := []string{actKillLeader, actKillFollower, actPartition, actMajorityDown}
	for {
		elapsed := time.Since(start)
		var missing []string
		for _, a := range required {
			if c.done[a] == 0 {
				missing = append(missing, a)
			}
		}
		if elapsed >= c.dur && len(missing) == 0 {
			return
		}
		if elapsed > 3*c.dur {
			h.t.Fatalf("chaos: after %v, still not done: %v", elapsed, missing)
		}
		a := c.pick(missing, c.dur-elapsed)
		switch a {
		case actKillLeader:
			c.killLeader()
		case actKillFollower:
			c.killFollower()
		case actPartition:
			c.partitionLeader()
		case actMajorityDown:
			c.majorityDown()
		case actRestart:
			down := h.down()
			h.restart(down[h.rng.IntN(len(down))])
		}
		c.done[a]++
		time.Sleep(time.Duration(100+h.rng.IntN(400)) * time.Millisecond)
	}
}

// pick chooses the next action among those allowed now, hurrying the
// required ones that have not happened yet as time runs out.
func (c *chaos) pick(missing []string, left time.Duration) string {
	h := c.h
	down := len(h.down())
	f := h.n - h.maj // the most that may be down
	allowed := map[string]bool{
		actKillLeader:   down < f,
		actKillFollower: down < f,
		actPartition:    h.n-down >= h.maj+1,
		actMajorityDown: true,
		actRestart:      down > 0,
	}
	// The majority-down phase comes once, in the second half.
	if c.done[actMajorityDown] == 0 && left < c.dur/2 {
		return actMajorityDown
	}
	if len(missing) > 0 && left < time.Duration(len(missing))*2500*time.Millisecond {
		for _, a := range missing {
			if allowed[a] {
				return a
			}
		}
		return actRestart // what blocks them is a node down
	}
	weights := []struct {
		a string
		w int
	}{{actRestart, 3}, {actKillLeader, 2}, {actKillFollower, 2}, {actPartition, 2}}
	total := 0
	for _, w := range weights {
		if allowed[w.a] {
			total += w.w
		}
	}
	r := h.rng.IntN(total)
	for _, w := range weights {
		if allowed[w.a] {
			if r < w.w {
				return w.a
			}
			r -= w.w
		}
	}
	panic("unreachable")
}

// killLeader kills the leader and waits for the others to elect one.
func (c *chaos) killLeader() {
	h := c.h
	l, term := h.findLeader()
	t0 := time.Now()
	h.kill9(l)
	h.mu.Lock()
	h.counts["leader kills"]++
	h.mu.Unlock()
	h.awaitLeader(fmt.Sprintf("leader %d killed", l), t0, h.up(), term)
}

// killFollower kills a running server other than the leader.
func (c *chaos) killFollower() {
	h := c.h
	l, _ := h.findLeader()
	var cand []int
	for _, id := range h.up() {
		if id != l {
			cand = append(cand, id)
		}
	}
	h.kill9(cand[h.rng.IntN(len(cand))])
}

// partitionLeader cuts the leader, with some followers, off from a
// majority of servers that are up; waits for the majority to elect a
// leader; lets it work a while; heals and waits for a leader of all.
func (c *chaos) partitionLeader() {
	h := c.h
	l, term := h.findLeader()
	up := h.up()
	var others []int
	for _, id := range up {
		if id != l {
			others = append(others, id)
		}
	}
	h.rng.Shuffle(len(others), func(i, j int) { others[i], others[j] = others[j], others[i] })
	// The minority: the leader and k others, leaving a majority that is up.
	k := h.rng.IntN(min(h.n-h.maj-1, len(up)-1-h.maj) + 1)
	minority := append([]int{l}, others[:k]...)
	var majority, majorityUp []int
	for _, id := range h.all() {
		if !slices.Contains(minority, id) {
			majority = append(majority, id)
			if slices.Contains(up, id) {
				majorityUp = append(majorityUp, id)
			}
		}
	}
	slices.Sort(minority)
	t0 := time.Now()
	h.partition(minority, majority)
	h.awaitLeader(fmt.Sprintf("leader %d partitioned into %v", l, minority), t0, majorityUp, term)
	time.Sleep(time.Duration(400+h.rng.IntN(800)) * time.Millisecond)
	t1 := time.Now()
	h.healAll()
	h.awaitLeader(fmt.Sprintf("healed %v | %v", minority, majority), t1, h.up(), 0)
}

// majorityDown kills servers until a majority is down, checks that
// nothing commits while the client keeps proposing to the survivors, then
// restarts them and waits for a leader.
func (c *chaos) majorityDown() {
	h := c.h
	l, _ := h.findLeader()
	up := h.up()
	h.rng.Shuffle(len(up), func(i, j int) { up[i], up[j] = up[j], up[i] })
	if h.rng.IntN(2) == 0 { // with the leader among the dead half the time
		i := slices.Index(up, l)
		up[0], up[i] = up[i], up[0]
	} else {
		i := slices.Index(up, l)
		up[len(up)-1], up[i] = up[i], up[len(up)-1]
	}
	already := h.down()
	var killed []int
	for _, id := range up[:h.maj-len(already)] {
		h.kill9(id)
		killed = append(killed, id)
	}
	survivors := h.up()
	time.Sleep(300 * time.Millisecond) // replies in flight before the kills land

	hold := 1500 * time.Millisecond
	if testing.Short() {
		hold = time.Second
	}
	commits := make(map[int]int)
	for _, id := range survivors {
		st, err := h.state(id, time.Second)
		if err != nil {
			h.t.Fatalf("majority down: node %d: %v", id, err)
		}
		commits[id] = st.Commit
	}
	h.mu.Lock()
	before := h.maxIndex
	submitted := len(h.submitted)
	h.mu.Unlock()
	time.Sleep(hold)
	for _, id := range survivors {
		st, err := h.state(id, time.Second)
		if err != nil {
			h.t.Fatalf("majority down: node %d: %v", id, err)
		}
		if st.Commit != commits[id] {
			h.violation("majority down (%v killed, %v up): node %d's commit index moved from %d to %d", killed, survivors, id, commits[id], st.Commit)
		}
	}
	h.mu.Lock()
	if limit := max(before, slices.Max(mapValues(commits))); h.maxIndex > limit {
		h.violationLocked("majority down (%v killed, %v up): index %d applied, past %d, the highest commit index left", killed, survivors, h.maxIndex, limit)
	}
	proposed := len(h.submitted) - submitted
	h.mu.Unlock()
	h.t.Logf("majority down: killed %v (leader was %d) with %v already down; survivors %v kept commit indexes %v for %v while %d commands were proposed to them",
		killed, l, already, survivors, commits, hold, proposed)

	for _, id := range killed {
		h.restart(id)
	}
	h.awaitLeader(fmt.Sprintf("majority back (%v restarted)", killed), time.Now(), h.up(), 0)
}

func mapValues(m map[int]int) []int {
	var vs []int
	for _, v := range m {
		vs = append(vs, v)
	}
	return vs
}

// check compares, after convergence, what each server applied: the same
// commands at the same indexes on every server (check 2), which include
// every command that any server was seen to apply during the run (check
// 1), each proposed once and at the index its Start returned.
func (h *harness) check() {
	h.mu.Lock()
	defer h.mu.Unlock()
	logs := make([][]string, h.n)
	for i, p := range h.procs {
		if p.cur == nil {
			h.violationLocked("node %d is not running at the end", p.id)
			continue
		}
		logs[i] = p.cur.applied
	}
	// (2) One log: every server applied the same commands, in order.
	ref := logs[0]
	for i, lg := range logs {
		if len(lg) != len(ref) {
			h.violationLocked("node %d applied %d commands, node 1 %d", i+1, len(lg), len(ref))
		}
		for j := range min(len(lg), len(ref)) {
			if lg[j] != ref[j] {
				h.violationLocked("index %d: node %d applied %q, node 1 %q", j+1, i+1, lg[j], ref[j])
				break
			}
		}
	}
	// (1) Nothing that was committed got lost or changed: every command
	// seen applied at index i by any server, at any time (before kills
	// and restarts too), is at index i on every server at the end.
	lost := 0
	for idx, cmd := range h.observed {
		for i, lg := range logs {
			if idx > len(lg) || lg[idx-1] != cmd {
				if lost++; lost <= 10 {
					got := "nothing"
					if idx <= len(lg) {
						got = strconv.Quote(lg[idx-1])
					}
					h.violationLocked("committed %q at index %d (applied by %s) is not on node %d at the end, which has %s there", cmd, idx, h.observedBy[idx], i+1, got)
				}
			}
		}
	}
	// Every command in the log was proposed, once, and sits where Start
	// said it would.
	seen := make(map[string]int)
	for j, cmd := range ref {
		idx := j + 1
		if prev, dup := seen[cmd]; dup {
			h.violationLocked("%q applied twice, at index %d and %d", cmd, prev, idx)
		}
		seen[cmd] = idx
		if !strings.HasPrefix(cmd, fmt.Sprintf("n%d-", h.n)) {
			h.violationLocked("index %d: %q was never proposed", idx, cmd)
		} else if want, ok := h.submitted[cmd]; ok && want != idx {
			h.violationLocked("%q committed at index %d, but its Start returned index %d", cmd, idx, want)
		}
	}
}

// checkLogs looks for data races and panics in the nodes' logs (the nodes
// are the race-enabled test binary when the test runs with -race).
func (h *harness) checkLogs() {
	for _, p := range h.procs {
		b, err := os.ReadFile(p.logPath)
		if err != nil {
			h.violation("node %d's log: %v", p.id, err)
			continue
		}
		for _, bad := range []string{"WARNING: DATA RACE", "panic:", "fatal error:"} {
			if i := strings.Index(string(b), bad); i >= 0 {
				h.violation("node %d's log has %q:\n%s", p.id, bad, string(b[i:min(len(b), i+3000)]))
			}
		}
	}
}

// summary logs what happened.
func (h *harness) summary(c *chaos) {
	h.mu.Lock()
	defer h.mu.Unlock()
	committed := 0
	for cmd, idx := range h.submitted {
		if h.observed[idx] == cmd {
			committed++
		}
	}
	var acts []string
	for _, a := range []string{actKillLeader, actKillFollower, actPartition, actMajorityDown, actRestart} {
		acts = append(acts, fmt.Sprintf("%s %d", a, c.done[a]))
	}
	h.t.Logf("summary: %d commands acknowledged by a leader's Start, %d of them committed; %d Starts unanswered; %d entries in the final log",
		len(h.submitted), committed, h.unsure, h.maxIndex)
	h.t.Logf("summary: actions: %s; processes: %d SIGKILLs (%d of leaders), %d restarts, %d partitions",
		strings.Join(acts, ", "), h.counts["kills"], h.counts["leader kills"], h.counts["restarts"], h.counts["partitions"])
	var worst time.Duration
	var lines []string
	for _, e := range h.elections {
		worst = max(worst, e.took)
		lines = append(lines, fmt.Sprintf("  %-45s %6d ms -> leader %d, term %d", e.what, e.took.Milliseconds(), e.leader, e.term))
	}
	h.t.Logf("summary: %d waits for a leader after an event, longest %v; longest time without a leader while a majority was up and connected (polled every 50 ms): %v\n%s",
		len(h.elections), worst.Round(time.Millisecond), h.watch.longest.Round(time.Millisecond), strings.Join(lines, "\n"))
}
