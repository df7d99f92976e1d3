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
	h.awaitCommits(10, 30*time.Second) // a little more traffic with everyone in
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

	// The client keeps proposing to the survivors for a while. Nothing
	// may commit past what a majority of logs holds: the logs of the
	// servers that are down are final (on disk), and the survivors'
	// only grow, so their lengths at the end bound every commit.
	hold := 1500 * time.Millisecond
	if testing.Short() {
		hold = time.Second
	}
	h.mu.Lock()
	submitted := len(h.submitted)
	h.mu.Unlock()
	commits := h.commitIndexes(survivors)
	time.Sleep(hold) // not a synchronisation: the time the survivors are given to go wrong
	commitsAfter := h.commitIndexes(survivors)
	lasts := make(map[int]int)
	for _, id := range survivors {
		st, err := h.state(id, 2*time.Second)
		if err != nil {
			h.t.Fatalf("majority down: node %d: %v", id, err)
		}
		lasts[id] = st.LastLog
	}
	for _, id := range h.down() {
		lasts[id] = h.diskLastIndex(id)
	}
	held := mapValues(lasts)
	slices.Sort(held)
	limit := held[len(held)-h.maj] // the highest index that a majority holds
	for _, id := range survivors {
		if commitsAfter[id] > limit {
			h.violation("majority down (%v killed, %v up): node %d's commit index is %d, past %d, the highest index a majority of logs holds (last indexes %v)", killed, survivors, id, commitsAfter[id], limit, lasts)
		}
	}
	h.mu.Lock()
	if h.maxIndex > limit {
		h.violationLocked("majority down (%v killed, %v up): index %d applied, past %d, the highest index a majority of logs holds (last indexes %v)", killed, survivors, h.maxIndex, limit, lasts)
	}
	proposed := len(h.submitted) - submitted
	h.mu.Unlock()
	h.t.Logf("majority down: killed %v (leader was %d) with %v already down; survivors %v had commit indexes %v, then %v after %v while %d commands were proposed to them; last indexes %v, so nothing may commit past %d",
		killed, l, already, survivors, commits, commitsAfter, hold, proposed, lasts, limit)

	for _, id := range killed {
		h.restart(id)
	}
	h.awaitLeader(fmt.Sprintf("majority back (%v restarted)", killed), time.Now(), h.up(), 0)
}

// commitIndexes returns the commit index of each of ids.
func (h *harness) commitIndexes(ids []int) map[int]int {
	h.t.Helper()
	commits := make(map[int]int)
	for _, id := range ids {
		st, err := h.state(id, 2*time.Second)
		if err != nil {
			h.t.Fatalf("node %d: %v", id, err)
		}
		commits[id] = st.Commit
	}
	return commits
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
	logs := make([][]Applied, h.n)
	byIndex := make([]map[int]string, h.n)
	for i, p := range h.procs {
		byIndex[i] = make(map[int]string)
		if p.cur == nil {
			h.violationLocked("node %d is not running at the end", p.id)
			continue
		}
		logs[i] = p.cur.applied
		for _, a := range logs[i] {
			byIndex[i][a.Index] = a.Cmd
		}
	}
	// (2) One log: every server applied the same commands at the same
	// indexes, in order.
	ref := logs[0]
	for i, lg := range logs {
		if len(lg) != len(ref) {
			h.violationLocked("node %d applied %d commands, node 1 %d", i+1, len(lg), len(ref))
		}
		for j := range min(len(lg), len(ref)) {
			if lg[j] != ref[j] {
				h.violationLocked("command %d: node %d applied %q at index %d, node 1 %q at index %d", j+1, i+1, lg[j].Cmd, lg[j].Index, ref[j].Cmd, ref[j].Index)
				break
			}
		}
	}
	// (1) Nothing that was committed got lost or changed: every command
	// seen applied at index i by any server, at any time (before kills
	// and restarts too), is at index i on every server at the end.
	lost, lostIdx := 0, make(map[int]bool)
	for idx, cmd := range h.observed {
		for i := range logs {
			if got, ok := byIndex[i][idx]; !ok || got != cmd {
				lostIdx[idx] = true
				if lost++; lost <= 10 {
					if !ok {
						got = "nothing"
					} else {
						got = strconv.Quote(got)
					}
					h.violationLocked("committed %q at index %d (applied by %s) is not on node %d at the end, which has %s there", cmd, idx, h.observedBy[idx], i+1, got)
				}
			}
		}
	}
	if len(lostIdx) > 0 {
		h.violationLocked("in all, %d of %d committed commands are missing or different on some node at the end", len(lostIdx), len(h.observed))
	}
	// Every command in the log was proposed, once, and sits where Start
	// said it would.
	seen := make(map[string]int)
	for _, a := range ref {
		if prev, dup := seen[a.Cmd]; dup {
			h.violationLocked("%q applied twice, at index %d and %d", a.Cmd, prev, a.Index)
		}
		seen[a.Cmd] = a.Index
		if !strings.HasPrefix(a.Cmd, fmt.Sprintf("n%d-", h.n)) {
			h.violationLocked("index %d: %q was never proposed", a.Index, a.Cmd)
		} else if want, ok := h.submitted[a.Cmd]; ok && want != a.Index {
			h.violationLocked("%q committed at index %d, but its Start returned index %d", a.Cmd, a.Index, want)
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
