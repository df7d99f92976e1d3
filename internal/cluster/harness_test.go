package cluster

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftkit/raft/internal/certs"
	"github.com/raftkit/raft/storage"
	"github.com/raftkit/raft/transport"
)

// TestMain makes the test binary double as the node program: started with
// RAFT_CLUSTER_NODE=1 (by the harness) it runs one node and no tests.
func TestMain(m *testing.M) {
	if os.Getenv(EnvNode) == "1" {
		// A node outlives no test: if the test process dies without
		// killing it (a panic, a timeout), Pdeathsig or this watch ends it.
		ppid := os.Getppid()
		go func() {
			for range time.Tick(500 * time.Millisecond) {
				if os.Getppid() != ppid {
					os.Exit(3)
				}
			}
		}()
		os.Exit(Main())
	}
	os.Exit(m.Run())
}

// electionBound is the protocol's promise: a leader within 5 s whenever a
// majority of servers is up and connected.
const electionBound = 5 * time.Second

// incarnation is one run of a node process, from start to exit.
type incarnation struct {
	num     int
	cmd     *exec.Cmd
	pid     int
	ctrl    string        // control API address
	exited  chan struct{} // closed once the process has exited and been waited for
	waitErr error         // set before exited is closed
	logFrom int64         // where its output starts in proc.logPath

	// Guarded by harness.mu.
	expectExit bool      // the harness killed or stopped it
	applied    []Applied // what the poller has read of its applied log
	errsSeen   int       // how many of its /state errors were reported
	last       State     // its last polled state (Applied cut off)
	polled     bool
	polledAt   time.Time
}

// proc is one server of the cluster across its incarnations.
type proc struct {
	id       int
	raftAddr string
	dir      string
	logPath  string
	log      *os.File // the node's stdout and stderr, all incarnations

	cur   *incarnation // nil while down; guarded by harness.mu
	count int          // incarnations so far
}

// election is one measured wait for a leader.
type election struct {
	what   string
	took   time.Duration
	leader int
	term   int
}

// harness runs a cluster of node processes and watches what they apply.
type harness struct {
	t     *testing.T
	n     int
	maj   int // servers in a majority
	exe   string
	procs []*proc // procs[i] has ID i+1
	peers map[int]string
	// lns[id] is node id's Raft listener, open for the whole test: each
	// incarnation inherits it, so that its address never changes and no
	// other process can take the port while the node is down.
	lns map[int]net.Listener
	rng *rand.Rand
	// certDir holds the nodes' TLS certificates (certs.WriteLocalCluster).
	certDir string
	http    *http.Client

	mu         sync.Mutex
	observed   map[int]string // index -> command applied there by some server at some time
	observedBy map[int]string // index -> who applied it first, for messages
	maxIndex   int            // highest index in observed
	violations []string
	cuts       map[int][]int  // the cuts each node should have
	submitted  map[string]int // command -> index its Start returned
	unsure     int            // Starts whose answer was lost
	hint       [2]int         // leader, term of the most recent leader polled
	elections  []election     // measured waits for a leader
	counts     map[string]int // kills, restarts, partitions, ...
	watch      struct {       // watchLeader's
		since    time.Time     // a majority up and connected since
		seen     time.Time     // a leader last seen
		longest  time.Duration // longest time without one
		reported bool
	}
	lastStart map[int]time.Time // when each node was last started

	stopPoll, stopClient chan struct{}
	pollDone, clientDone chan struct{}
}

func newHarness(t *testing.T, n int, seed uint64) *harness {
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("os.Executable: %v", err)
	}
	h := &harness{
		t: t, n: n, maj: n/2 + 1, exe: exe,
		peers:      make(map[int]string),
		rng:        rand.New(rand.NewPCG(seed, seed)),
		http:       &http.Client{Timeout: 2 * time.Second},
		observed:   make(map[int]string),
		observedBy: make(map[int]string),
		cuts:       make(map[int][]int),
		submitted:  make(map[string]int),
		counts:     make(map[string]int),
		lastStart:  make(map[int]time.Time),
		hint:       [2]int{-1, 0},
	}
	root := t.TempDir()
	logDir := root
	if d := os.Getenv("RAFT_CLUSTER_LOGDIR"); d != "" { // keep the logs
		logDir = filepath.Join(d, fmt.Sprintf("%s-%d", t.Name(), time.Now().Unix()))
		if err := os.MkdirAll(logDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The nodes talk over mutual TLS, with certificates made here.
	h.certDir = filepath.Join(root, "certs")
	if err := certs.WriteLocalCluster(h.certDir, h.all(), nil); err != nil {
		t.Fatal(err)
	}
	h.lns, h.peers, err = transport.ListenLocal(h.all()...)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range h.all() {
		p := &proc{
			id:       id,
			raftAddr: h.peers[id],
			dir:      filepath.Join(root, fmt.Sprintf("node%d", id)),
			logPath:  filepath.Join(logDir, fmt.Sprintf("node%d.log", id)),
		}
		if p.log, err = os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			t.Fatal(err)
		}
		h.procs = append(h.procs, p)
	}
	t.Cleanup(h.cleanup)
	return h
}

// cleanup kills every node that is still running and, if the test failed,
// shows the end of each node's log.
func (h *harness) cleanup() {
	h.stopBackground()
	h.reportViolations()
	for _, p := range h.procs {
		h.mu.Lock()
		inc := p.cur
		if inc != nil {
			inc.expectExit = true
		}
		h.mu.Unlock()
		if inc != nil {
			inc.cmd.Process.Kill()
			select {
			case <-inc.exited:
			case <-time.After(10 * time.Second):
				h.t.Errorf("node %d (pid %d) did not exit after SIGKILL", p.id, inc.pid)
			}
		}
	}
	for _, ln := range h.lns {
		ln.Close()
	}
	for _, p := range h.procs {
		p.log.Close()
		if h.t.Failed() {
			h.t.Logf("---- end of node %d's log (%s) ----\n%s", p.id, p.logPath, tail(p.logPath, 40))
		}
	}
}

// readyWriter copies a node's standard output to its log and reports the
// control address of its "ready" line.
type readyWriter struct {
	log   io.Writer
	ready chan string
	line  []byte
	sent  bool
}

func (w *readyWriter) Write(b []byte) (int, error) {
	if !w.sent {
		w.line = append(w.line, b...)
		if i := bytes.IndexByte(w.line, '\n'); i >= 0 {
			if addr, ok := strings.CutPrefix(string(w.line[:i]), "ready "); ok {
				w.ready <- addr
				w.sent = true
			}
			w.line = w.line[i+1:]
		}
	}
	return w.log.Write(b)
}

// start starts node id, on the listener it keeps for the whole test, and
// waits until it is ready.
func (h *harness) start(id int) {
	h.t.Helper()
	if err := h.startOnce(id); err != nil {
		h.t.Fatalf("cannot start node %d: %v", id, err)
	}
}

func (h *harness) startOnce(id int) error {
	p := h.procs[id-1]
	h.mu.Lock()
	if p.cur != nil {
		h.mu.Unlock()
		return fmt.Errorf("node %d is already running", id)
	}
	cfg := Config{ID: id, Peers: h.peers, Dir: p.dir, ControlAddr: "127.0.0.1:0", Cut: h.cuts[id], CertDir: h.certDir}
	h.mu.Unlock()

	// The child gets a copy of the listener; the harness keeps its own
	// open, so that the port stays this node's while it is down.
	lnFile, err := h.lns[id].(*net.TCPListener).File()
	if err != nil {
		return fmt.Errorf("node %d's listener: %w", id, err)
	}
	defer lnFile.Close()
	p.count++
	fmt.Fprintf(p.log, "==== harness: %s: starting node %d, incarnation %d, cut from %v\n",
		time.Now().Format("15:04:05.000"), id, p.count, cfg.Cut)
	logFrom, err := p.log.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("node %d's log: %w", id, err)
	}
	cmd := exec.Command(h.exe)
	cmd.Env = append(append(os.Environ(), cfg.Environ()...), ListenFDEnv(0))
	cmd.ExtraFiles = []*os.File{lnFile}
	ready := make(chan string, 1)
	cmd.Stdout = &readyWriter{log: p.log, ready: ready}
	cmd.Stderr = p.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	inc := &incarnation{num: p.count, cmd: cmd, pid: cmd.Process.Pid, exited: make(chan struct{}), logFrom: logFrom}
	go func() {
		inc.waitErr = cmd.Wait()
		close(inc.exited)
	}()
	select {
	case inc.ctrl = <-ready:
	case <-inc.exited:
		return fmt.Errorf("node %d exited before it was ready (%v); its log ends with:\n%s", id, inc.waitErr, tail(p.logPath, 15))
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-inc.exited
		return fmt.Errorf("node %d not ready after 30 s", id)
	}
	h.mu.Lock()
	p.cur = inc
	h.lastStart[id] = time.Now()
	h.mu.Unlock()
	return nil
}

// kill9 kills node id with SIGKILL and waits for it to be gone.
func (h *harness) kill9(id int) {
	h.t.Helper()
	p := h.procs[id-1]
	h.mu.Lock()
	inc := p.cur
	if inc == nil {
		h.mu.Unlock()
		h.t.Fatalf("kill9(%d): node is not running", id)
	}
	inc.expectExit = true
	h.counts["kills"]++
	h.mu.Unlock()
	fmt.Fprintf(p.log, "==== harness: %s: SIGKILL to node %d\n", time.Now().Format("15:04:05.000"), id)
	inc.cmd.Process.Kill()
	select {
	case <-inc.exited:
	case <-time.After(10 * time.Second):
		h.t.Fatalf("node %d (pid %d) still there 10 s after SIGKILL", id, inc.pid)
	}
	h.mu.Lock()
	p.cur = nil
	h.mu.Unlock()
}

// awaitExit waits up to timeout for node id to exit on its own, and
// returns its output (from its start) and how it exited. ok is false if
// it is still running after timeout.
func (h *harness) awaitExit(id int, timeout time.Duration) (output string, waitErr error, ok bool) {
	h.t.Helper()
	p := h.procs[id-1]
	inc := h.incOf(id)
	if inc == nil {
		h.t.Fatalf("awaitExit(%d): node is not running", id)
	}
	select {
	case <-inc.exited:
	case <-time.After(timeout):
		return "", nil, false
	}
	h.mu.Lock()
	inc.expectExit = true
	p.cur = nil
	h.mu.Unlock()
	return h.output(p, inc), inc.waitErr, true
}

// output returns what incarnation inc of p wrote so far.
func (h *harness) output(p *proc, inc *incarnation) string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if _, err := f.Seek(inc.logFrom, io.SeekStart); err != nil {
		return err.Error()
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// restart starts a killed node again from its data directory, with the
// cuts the current partition gives it.
func (h *harness) restart(id int) {
	h.t.Helper()
	h.start(id)
	h.mu.Lock()
	h.counts["restarts"]++
	h.mu.Unlock()
}

// terminate stops node id with SIGTERM and checks it exits cleanly.
func (h *harness) terminate(id int) {
	h.t.Helper()
	p := h.procs[id-1]
	h.mu.Lock()
	inc := p.cur
	if inc != nil {
		inc.expectExit = true
	}
	h.mu.Unlock()
	if inc == nil {
		return
	}
	inc.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-inc.exited:
		if inc.waitErr != nil {
			h.violation("node %d did not exit cleanly on SIGTERM: %v", id, inc.waitErr)
		}
	case <-time.After(15 * time.Second):
		h.violation("node %d did not exit within 15 s of SIGTERM", id)
		inc.cmd.Process.Kill()
		<-inc.exited
	}
	h.mu.Lock()
	p.cur = nil
	h.mu.Unlock()
}

// reportViolations fails the test with every violation found so far.
func (h *harness) reportViolations() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, v := range h.violations {
		h.t.Error(v)
	}
	h.violations = nil
}

func (h *harness) violation(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.violationLocked(format, args...)
}

func (h *harness) violationLocked(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if len(h.violations) < 50 {
		h.violations = append(h.violations, time.Now().Format("15:04:05.000 ")+msg)
	}
}

// up returns the IDs of the running nodes; down those of the others.
func (h *harness) up() []int { return h.ids(true) }

func (h *harness) down() []int { return h.ids(false) }

func (h *harness) ids(running bool) []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	var ids []int
	for _, p := range h.procs {
		if (p.cur != nil) == running {
			ids = append(ids, p.id)
		}
	}
	return ids
}

func (h *harness) all() []int {
	ids := make([]int, h.n)
	for i := range ids {
		ids[i] = i + 1
	}
	return ids
}

// The control API, from the harness's side.

func (h *harness) call(ctrl, method, path string, in, out any, timeout time.Duration) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+ctrl+path, body)
	if err != nil {
		return err
	}
	c := *h.http
	c.Timeout = timeout
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// ctrlOf returns the running incarnation of node id, or nil.
func (h *harness) incOf(id int) *incarnation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.procs[id-1].cur
}

// state asks node id for its state, without applied commands.
func (h *harness) state(id int, timeout time.Duration) (State, error) {
	inc := h.incOf(id)
	if inc == nil {
		return State{}, fmt.Errorf("node %d is down", id)
	}
	var st State
	err := h.call(inc.ctrl, "GET", "/state?max=0", nil, &st, timeout)
	return st, err
}

// setFaults sends node id its cuts: all links healed but those to cut.
func (h *harness) setFaults(id int, cut []int) error {
	inc := h.incOf(id)
	if inc == nil {
		return nil // it gets them when it restarts
	}
	var st State
	if err := h.call(inc.ctrl, "POST", "/faults", FaultsRequest{HealAll: true, Cut: cut}, &st, 2*time.Second); err != nil {
		return fmt.Errorf("node %d: %w", id, err)
	}
	if !slices.Equal(st.Cut, cut) {
		return fmt.Errorf("node %d: cut from %v after asking for %v", id, st.Cut, cut)
	}
	return nil
}

// partition splits the cluster into groups that cannot talk to each
// other; nodes that are down get their cuts when they restart.
func (h *harness) partition(groups ...[]int) {
	h.t.Helper()
	cuts := make(map[int][]int)
	for _, g := range groups {
		for _, id := range g {
			for _, other := range h.all() {
				if !slices.Contains(g, other) {
					cuts[id] = append(cuts[id], other)
				}
			}
		}
	}
	h.mu.Lock()
	h.cuts = cuts
	h.counts["partitions"]++
	h.mu.Unlock()
	for _, id := range h.up() {
		if err := h.setFaults(id, cuts[id]); err != nil {
			h.t.Fatalf("partition %v: %v", groups, err)
		}
	}
}

// healAll reconnects every node with every other.
func (h *harness) healAll() {
	h.t.Helper()
	h.mu.Lock()
	h.cuts = make(map[int][]int)
	h.mu.Unlock()
	for _, id := range h.up() {
		if err := h.setFaults(id, nil); err != nil {
			h.t.Fatalf("heal: %v", err)
		}
	}
}

// leaderAmong looks for a leader known to a majority of the nodes among:
// one that says it leads in a term above minTerm, with enough others in
// that term naming it as their leader.
func (h *harness) leaderAmong(among []int, minTerm int) (leader, term int, ok bool) {
	states := make(map[int]State)
	for _, id := range among {
		if st, err := h.state(id, 500*time.Millisecond); err == nil {
			states[id] = st
		}
	}
	for id, st := range states {
		if !st.IsLeader || st.Term <= minTerm {
			continue
		}
		n := 0
		for _, o := range states {
			if o.Term == st.Term && o.Leader == id {
				n++
			}
		}
		if n >= h.maj {
			return id, st.Term, true
		}
	}
	return -1, 0, false
}

// awaitLeader waits for a leader known to a majority among the given
// nodes, in a term above minTerm, and records how long it took from t0.
// Over electionBound is a violation of the protocol's promise.
func (h *harness) awaitLeader(what string, t0 time.Time, among []int, minTerm int) (leader, term int) {
	h.t.Helper()
	if len(among) < h.maj {
		h.t.Fatalf("%s: awaitLeader among %v, not a majority", what, among)
	}
	for {
		if l, term, ok := h.leaderAmong(among, minTerm); ok {
			took := time.Since(t0)
			h.mu.Lock()
			h.elections = append(h.elections, election{what, took, l, term})
			h.mu.Unlock()
			if took > electionBound {
				h.violation("%s: leader %d (term %d) among %v took %v, over the %v bound", what, l, term, among, took.Round(time.Millisecond), electionBound)
			}
			return l, term
		}
		if time.Since(t0) > electionBound+5*time.Second {
			h.violation("%s: no leader among %v (above term %d) %v after the event", what, among, minTerm, time.Since(t0).Round(time.Millisecond))
			return -1, 0
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// findLeader returns the current leader, known to a majority, waiting for
// one if need be. It is used where no event just happened, so it records
// nothing and only fails after a generous wait.
func (h *harness) findLeader() (leader, term int) {
	h.t.Helper()
	deadline := time.Now().Add(2 * electionBound)
	for time.Now().Before(deadline) {
		if l, term, ok := h.leaderAmong(h.up(), 0); ok {
			return l, term
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.t.Fatalf("no leader known to a majority for %v, with nodes %v up", 2*electionBound, h.up())
	return -1, 0
}

// Background work: the poller reads what every node has applied, the
// client submits commands.

func (h *harness) startBackground() {
	h.stopPoll, h.pollDone = make(chan struct{}), make(chan struct{})
	h.stopClient, h.clientDone = make(chan struct{}), make(chan struct{})
	go h.pollLoop()
	go h.clientLoop(h.rng.Uint64())
}

func (h *harness) stopClientLoop() {
	if h.stopClient != nil {
		close(h.stopClient)
		<-h.clientDone
		h.stopClient = nil
	}
}

func (h *harness) stopPollLoop() {
	if h.stopPoll != nil {
		close(h.stopPoll)
		<-h.pollDone
		h.stopPoll = nil
	}
}

func (h *harness) stopBackground() {
	h.stopClientLoop()
	h.stopPollLoop()
}

func (h *harness) pollLoop() {
	defer close(h.pollDone)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-h.stopPoll:
			return
		case <-tick.C:
		}
		round := time.Now()
		for _, id := range h.all() {
			h.poll(id)
		}
		h.watchLeader(round)
	}
}

// watchLeader checks, after each round of polls, that whenever a majority
// of servers is up and connected, a leader known to a majority appears
// within electionBound: the clock runs from the later of the last time a
// leader was seen and the time the majority came together.
func (h *harness) watchLeader(round time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	// The connected group of running servers that is a majority, if any.
	var up []int
	for _, p := range h.procs {
		if p.cur != nil {
			up = append(up, p.id)
		}
	}
	linked := func(a, b int) bool { return !slices.Contains(h.cuts[a], b) && !slices.Contains(h.cuts[b], a) }
	var group []int
	for _, a := range up {
		g := []int{a}
		for _, b := range up {
			if b != a && linked(a, b) {
				g = append(g, b)
			}
		}
		// Partitions are into disjoint groups, so a's neighbours and a
		// form its group.
		if len(g) >= h.maj {
			slices.Sort(g)
			group = g
			break
		}
	}
	w := &h.watch
	if group == nil {
		w.since = time.Time{}
		return
	}
	if w.since.IsZero() {
		w.since, w.reported = round, false
	}
	for _, id := range group {
		inc := h.procs[id-1].cur
		if !inc.polled || inc.polledAt.Before(round) || !inc.last.IsLeader {
			continue
		}
		n := 0
		for _, o := range group {
			oi := h.procs[o-1].cur
			if oi.polled && !oi.polledAt.Before(round) && oi.last.Term == inc.last.Term && oi.last.Leader == id {
				n++
			}
		}
		if n >= h.maj {
			w.seen = time.Now()
			return
		}
	}
	from := w.since
	if w.seen.After(from) {
		from = w.seen
	}
	gap := time.Since(from)
	w.longest = max(w.longest, gap)
	if gap > electionBound && !w.reported {
		w.reported = true
		h.violationLocked("no leader known to a majority of %v, which are up and connected, for %v", group, gap.Round(time.Millisecond))
	}
}

// poll reads node id's state and its applied commands past those already
// read, checking them against what every server applied so far. It
// reports whether it got an answer.
func (h *harness) poll(id int) bool {
	p := h.procs[id-1]
	h.mu.Lock()
	inc := p.cur
	if inc == nil {
		h.mu.Unlock()
		return false
	}
	select {
	case <-inc.exited:
		if !inc.expectExit {
			h.violationLocked("node %d (pid %d, incarnation %d) exited on its own: %v; its log ends with:\n%s", id, inc.pid, inc.num, inc.waitErr, tail(p.logPath, 15))
			p.cur = nil
		}
		h.mu.Unlock()
		return false
	default:
	}
	since := len(inc.applied)
	h.mu.Unlock()

	var st State
	if err := h.call(inc.ctrl, "GET", fmt.Sprintf("/state?since=%d&max=5000", since), nil, &st, 2*time.Second); err != nil {
		return false
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	if len(inc.applied) != since {
		return false // another poll got there first
	}
	for _, e := range st.Errors[min(inc.errsSeen, len(st.Errors)):] {
		switch inc.errsSeen++; {
		case inc.errsSeen <= 5:
			h.violationLocked("node %d (incarnation %d) reports: %s", id, inc.num, e)
		case inc.errsSeen == 6:
			h.violationLocked("node %d (incarnation %d) reports more errors; see its log", id, inc.num)
		}
	}
	who := fmt.Sprintf("node %d (incarnation %d)", id, inc.num)
	for _, a := range st.Applied {
		if last := lastIndex(inc.applied); a.Index <= last {
			h.violationLocked("%s: applied index %d after index %d", who, a.Index, last)
			break
		}
		inc.applied = append(inc.applied, a)
		if prev, ok := h.observed[a.Index]; !ok {
			h.observed[a.Index], h.observedBy[a.Index] = a.Cmd, who
			h.maxIndex = max(h.maxIndex, a.Index)
		} else if prev != a.Cmd {
			h.violationLocked("index %d: %s applied %q, but %s applied %q there", a.Index, who, a.Cmd, h.observedBy[a.Index], prev)
		}
	}
	st.Applied = nil
	inc.last, inc.polled, inc.polledAt = st, true, time.Now()
	if st.IsLeader && st.Term >= h.hint[1] {
		h.hint = [2]int{id, st.Term}
	}
	return true
}

// clientLoop submits commands, one every few milliseconds, to the node the
// poller last saw leading, trying the others in turn when that one is
// down or says it does not lead.
func (h *harness) clientLoop(seed uint64) {
	defer close(h.clientDone)
	rng := rand.New(rand.NewPCG(seed, 1))
	target, lastHint := 1, [2]int{-1, 0}
	for seq := 1; ; {
		select {
		case <-h.stopClient:
			return
		default:
		}
		h.mu.Lock()
		if h.hint != lastHint && h.hint[0] > 0 {
			lastHint, target = h.hint, h.hint[0]
		}
		h.mu.Unlock()
		inc := h.incOf(target)
		if inc == nil {
			target = target%h.n + 1
			time.Sleep(5 * time.Millisecond)
			continue
		}
		cmd := fmt.Sprintf("n%d-c%d", h.n, seq)
		seq++ // a value is never submitted twice
		var rep StartReply
		err := h.call(inc.ctrl, "POST", "/start", StartRequest{Cmd: cmd}, &rep, time.Second)
		h.mu.Lock()
		switch {
		case err != nil:
			h.unsure++ // it may or may not be in a log
		case rep.IsLeader:
			h.submitted[cmd] = rep.Index
		}
		h.mu.Unlock()
		if err != nil || !rep.IsLeader {
			target = target%h.n + 1
			time.Sleep(5 * time.Millisecond)
			continue
		}
		time.Sleep(time.Duration(3+rng.IntN(5)) * time.Millisecond)
	}
}

// converge waits, with the client stopped and every node up and
// connected, until a final command is committed and every node has applied
// the same number of commands, at least up to it.
func (h *harness) converge(timeout time.Duration) {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	barrier, index := "", 0
	for k := 1; barrier == "" && time.Now().Before(deadline); k++ {
		l, _ := h.findLeader()
		cmd := fmt.Sprintf("n%d-barrier%d", h.n, k)
		var rep StartReply
		if err := h.call(h.incOf(l).ctrl, "POST", "/start", StartRequest{Cmd: cmd}, &rep, time.Second); err != nil || !rep.IsLeader {
			continue
		}
		h.mu.Lock()
		h.submitted[cmd] = rep.Index
		h.mu.Unlock()
		for wait := time.Now().Add(electionBound); time.Now().Before(wait); time.Sleep(20 * time.Millisecond) {
			h.poll(l)
			h.mu.Lock()
			got, ok := h.observed[rep.Index]
			h.mu.Unlock()
			if ok {
				if got == cmd {
					barrier, index = cmd, rep.Index
				}
				break
			}
		}
	}
	if barrier == "" {
		h.t.Fatalf("no final command committed within %v", timeout)
	}
	for {
		counts, lasts := make([]int, h.n), make([]int, h.n)
		for _, id := range h.all() {
			for h.poll(id) {
				h.mu.Lock()
				done := true
				if inc := h.procs[id-1].cur; inc != nil {
					done = len(inc.applied) == inc.last.AppliedCount
					counts[id-1], lasts[id-1] = len(inc.applied), lastIndex(inc.applied)
				}
				h.mu.Unlock()
				if done {
					break
				}
			}
		}
		if slices.Min(lasts) >= index && slices.Min(counts) == slices.Max(counts) {
			h.t.Logf("converged: every node applied %d commands; final command %q at index %d", counts[0], barrier, index)
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("no convergence within %v: nodes applied %v commands, up to indexes %v; final command at index %d", timeout, counts, lasts, index)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// awaitCommits waits, while the client and the poller run, until k more
// indexes have been seen applied.
func (h *harness) awaitCommits(k int, timeout time.Duration) {
	h.t.Helper()
	h.mu.Lock()
	from := h.maxIndex
	h.mu.Unlock()
	for deadline := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		h.mu.Lock()
		now := h.maxIndex
		h.mu.Unlock()
		if now >= from+k {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%d commands committed in %v (from index %d to %d), want %d", now-from, timeout, from, now, k)
		}
	}
}

// diskLastIndex returns the index of the last entry that node id, which
// is down, holds on disk (in its log, or in its snapshot).
func (h *harness) diskLastIndex(id int) int {
	h.t.Helper()
	if h.incOf(id) != nil {
		h.t.Fatalf("diskLastIndex(%d): the node is running", id)
	}
	w, err := storage.Open(h.procs[id-1].dir, storage.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		h.t.Fatalf("node %d's log: %v", id, err)
	}
	defer w.Close()
	_, snap, ents, err := w.Load()
	if err != nil {
		h.t.Fatalf("node %d's log: %v", id, err)
	}
	return snap.Index + len(ents)
}

// lastIndex returns the index of the last of applied, or 0.
func lastIndex(applied []Applied) int {
	if len(applied) == 0 {
		return 0
	}
	return applied[len(applied)-1].Index
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		lines = append(lines, s.Text())
		if len(lines) > 2*n {
			lines = lines[len(lines)-n:]
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
