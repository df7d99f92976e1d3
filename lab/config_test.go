package lab

//
// The Raft tester: a cluster of Raft peers on a simulated (labrpc) network,
// plus the checks the tests in raft_test.go rely on. Modeled on the MIT
// 6.5840 Raft lab's config.go, with extra safety checks:
//
//   - at most one leader in any term, ever: every (term, leader) claim the
//     tester sees, from its own GetState/Start calls and from every change
//     of term or role of every instance (reported by the instance's loop
//     through a test hook), is recorded; two different peers leading the
//     same term fails the test.
//   - a committed entry never changes: every command any peer ever applies
//     (across restarts) is recorded per index; a different command applied
//     at the same index, by any peer at any time, fails the test. (cfg.logs,
//     which nCommitted counts, holds only what each peer's current instance
//     applied: a restarted peer re-applies from index 1.)
//   - each peer instance applies indexes 1, 2, 3, ... in order, with no gaps
//     (a restarted peer starts again at 1).
//
// Errors found on non-test goroutines (appliers, observers) are recorded and
// reported from the test goroutine by the next check, by end(), and by
// cleanup(), which makeConfig also registers with t.Cleanup so it cannot be
// skipped.
//

import (
	crand "crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand"
	"os"
	"reflect"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/labrpc"
	"github.com/raftkit/raft/storage"
)

// testTimeLimit is the real-time limit on each test.
const testTimeLimit = 120 * time.Second

// stuckGrace is how long after testTimeLimit a test that never returns to a
// check is given before the tester dumps all goroutines and aborts the run.
const stuckGrace = 60 * time.Second

// The tests use math/rand's global source, which Go (1.20+) seeds randomly
// at start-up, so unlike the MIT tester there is no rand.Seed(makeSeed()).

func randstring(n int) string {
	b := make([]byte, 2*n)
	crand.Read(b)
	s := base64.URLEncoding.EncodeToString(b)
	return s[0:n]
}

// sameCommand reports whether two applied commands are equal.
func sameCommand(a, b any) bool {
	return reflect.DeepEqual(a, b)
}

type config struct {
	mu          sync.Mutex
	t           *testing.T
	finished    int32
	net         *labrpc.Network
	n           int
	rafts       []*Raft
	applyChs    []chan ApplyMsg // current instance's apply channel, per server
	applyErr    []string        // from apply channel readers
	connected   []bool          // whether each server is on the net
	saved       []*Persister    // each server's persisted state
	endnames    [][]string      // the port file names each sends to
	endgen      int             // makes end names unique across restarts
	logs        []map[int]any   // copy of the entries each server's current instance applied
	lastApplied []int           // last index applied by each server's current instance
	start       time.Time       // time at which makeConfig() was called

	// "a committed entry never changes": everything ever applied, by index.
	committed   map[int]any
	committedBy map[int]int // which server first applied it

	// "at most one leader per term": term -> the server seen leading it.
	termLeader map[int]int
	// rpcTotal() when a server was first seen leading: the RPCs the first
	// election took, without the heartbeats sent since.
	firstLeaderRPCs int
	safetyErr       []string // violations found off the test goroutine
	instances       []*Raft  // every instance made, for observers

	// dirs, when RAFT_TEST_STORAGE=disk, holds each server's data
	// directory: servers then keep their state in storage.WAL instead of
	// a Persister.
	dirs []string

	watchdog *time.Timer

	reported    map[string]bool // errors already reported via t
	cleanupOnce sync.Once

	// begin()/end() statistics
	t0        time.Time // time at which test_test.go called cfg.begin()
	rpcs0     int       // rpcTotal() at start of test
	cmds0     int       // number of agreements
	bytes0    int64
	maxIndex  int
	maxIndex0 int
}

var ncpuOnce sync.Once

func makeConfig(t *testing.T, n int, unreliable bool) *config {
	ncpuOnce.Do(func() {
		if runtime.NumCPU() < 2 {
			fmt.Printf("warning: only one CPU, which may conceal locking bugs\n")
		}
	})
	// Unlike the MIT tester, this one does not set GOMAXPROCS(4): it runs
	// with the runtime's default, one P per CPU. More Ps than CPUs add
	// scheduler wake-ups, not interleavings the race detector needs.
	cfg := &config{}
	cfg.t = t
	cfg.net = labrpc.MakeNetwork()
	cfg.n = n
	cfg.applyErr = make([]string, cfg.n)
	cfg.rafts = make([]*Raft, cfg.n)
	cfg.applyChs = make([]chan ApplyMsg, cfg.n)
	cfg.connected = make([]bool, cfg.n)
	cfg.saved = make([]*Persister, cfg.n)
	cfg.endnames = make([][]string, cfg.n)
	cfg.logs = make([]map[int]any, cfg.n)
	cfg.lastApplied = make([]int, cfg.n)
	cfg.committed = map[int]any{}
	cfg.committedBy = map[int]int{}
	cfg.termLeader = map[int]int{}
	cfg.reported = map[string]bool{}
	cfg.start = time.Now()
	if os.Getenv("RAFT_TEST_STORAGE") == "disk" {
		for i := 0; i < n; i++ {
			cfg.dirs = append(cfg.dirs, t.TempDir())
		}
	}

	// cleanup (kill everything, report recorded errors)
	// runs even if a test forgets to defer cfg.cleanup().
	t.Cleanup(cfg.cleanup)

	// a test stuck past the time limit (e.g. blocked inside Start or
	// GetState) never reaches a check; dump the goroutines and abort.
	name := t.Name()
	cfg.watchdog = time.AfterFunc(testTimeLimit+stuckGrace, func() {
		if atomic.LoadInt32(&cfg.finished) != 0 {
			return
		}
		fmt.Fprintf(os.Stderr, "%s: still running %v after start (limit %v); goroutines:\n",
			name, time.Since(cfg.start).Round(time.Second), testTimeLimit)
		pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
		panic(fmt.Sprintf("%s: test took longer than %v and is stuck", name, testTimeLimit))
	})

	cfg.setunreliable(unreliable)

	cfg.net.LongDelays(true)

	// create a full set of Rafts.
	for i := 0; i < cfg.n; i++ {
		cfg.start1(i, cfg.applier)
	}

	// connect everyone
	for i := 0; i < cfg.n; i++ {
		cfg.connect(i)
	}

	return cfg
}

// observe records that server i reported (term, isLeader); two different
// servers leading the same term is a safety violation.
func (cfg *config) observe(i int, term int, isLeader bool) {
	if !isLeader {
		return
	}
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	if len(cfg.termLeader) == 0 {
		cfg.firstLeaderRPCs = cfg.rpcTotal()
	}
	if other, ok := cfg.termLeader[term]; ok {
		if other != i {
			msg := fmt.Sprintf("two leaders in term %v: server %v and server %v", term, other, i)
			if !slices.Contains(cfg.safetyErr, msg) && len(cfg.safetyErr) < 10 {
				cfg.safetyErr = append(cfg.safetyErr, msg)
			}
		}
		return
	}
	cfg.termLeader[term] = i
}

// getState calls GetState on server i's current instance (if any) and
// records the answer. ok is false if server i is crashed.
func (cfg *config) getState(i int) (term int, isLeader bool, ok bool) {
	cfg.mu.Lock()
	rf := cfg.rafts[i]
	cfg.mu.Unlock()
	if rf == nil {
		return 0, false, false
	}
	term, isLeader = rf.GetState()
	cfg.observe(i, term, isLeader)
	return term, isLeader, true
}

// startOn calls Start(cmd) on server i's current instance (if any) and
// records the leadership claim it returns. ok is false if server i is
// crashed or not the leader.
func (cfg *config) startOn(i int, cmd any) (index int, term int, ok bool) {
	cfg.mu.Lock()
	rf := cfg.rafts[i]
	cfg.mu.Unlock()
	if rf == nil {
		return -1, -1, false
	}
	index, term, ok = rf.Start(cmd)
	cfg.observe(i, term, ok)
	return index, term, ok
}

// observers maps each Raft instance the tester made to its observer; every
// change of term or role of every instance is seen, so the "one leader per
// term" check is exact.
var observers sync.Map // *Raft -> func(term int, isLeader bool)

func init() {
	observeState = func(rf *Raft, term int, isLeader bool) {
		if f, ok := observers.Load(rf); ok {
			f.(func(int, bool))(term, isLeader)
		}
	}
}

// shut down a Raft server but save its persistent state.
func (cfg *config) crash1(i int) {
	cfg.disconnect(i)
	cfg.net.DeleteServer(i) // disable client connections to the server.

	cfg.mu.Lock()
	defer cfg.mu.Unlock()

	// a fresh persister, in case old instance
	// continues to update the Persister.
	// but copy old persister's content so that we always
	// pass Make() the last persisted state.
	if cfg.saved[i] != nil {
		cfg.saved[i] = cfg.saved[i].Copy()
	}

	rf := cfg.rafts[i]
	if rf != nil {
		cfg.mu.Unlock()
		if cfg.dirs != nil {
			rf.Close() // waits until its log on disk is closed and unlocked
		} else {
			rf.Kill()
		}
		cfg.mu.Lock()
		cfg.rafts[i] = nil
	}
}

// checkLogs records that server i applied m, and returns a description of
// any inconsistency with what the servers' current instances applied
// (cfg.logs) or with anything any instance ever applied (cfg.committed).
// Only the current instance of server i (current == true) updates
// cfg.logs[i]; a killed instance's late applies are checked but not
// counted. cfg.mu must be held.
func (cfg *config) checkLogs(i int, m ApplyMsg, current bool) string {
	errMsg := ""
	v := m.Command
	for j := 0; j < len(cfg.logs); j++ {
		if old, oldok := cfg.logs[j][m.CommandIndex]; oldok && !sameCommand(old, v) {
			// some server has already committed a different value for this entry!
			errMsg = fmt.Sprintf("commit index=%v server=%v %v != server=%v %v",
				m.CommandIndex, i, m.Command, j, old)
		}
	}
	if old, ok := cfg.committed[m.CommandIndex]; ok {
		if !sameCommand(old, v) && errMsg == "" {
			errMsg = fmt.Sprintf("committed entry changed: index=%v was %v (first applied by server %v), now server %v applied %v",
				m.CommandIndex, old, cfg.committedBy[m.CommandIndex], i, v)
		}
	} else {
		cfg.committed[m.CommandIndex] = v
		cfg.committedBy[m.CommandIndex] = i
	}
	if current {
		cfg.logs[i][m.CommandIndex] = v
	}
	if m.CommandIndex > cfg.maxIndex {
		cfg.maxIndex = m.CommandIndex
	}
	return errMsg
}

// applier reads messages from one Raft instance's apply channel and checks
// that they agree with everything committed so far and arrive in order.
func (cfg *config) applier(i int, applyCh chan ApplyMsg) {
	last := 0 // last index this instance applied
	for m := range applyCh {
		if !m.CommandValid {
			// ignore other types of ApplyMsg
			continue
		}
		cfg.mu.Lock()
		errMsg := ""
		if m.CommandIndex != last+1 {
			errMsg = fmt.Sprintf("server %v apply out of order %v (expected index %v)", i, m.CommandIndex, last+1)
		}
		current := cfg.applyChs[i] == applyCh
		if e := cfg.checkLogs(i, m, current); e != "" && errMsg == "" {
			errMsg = e
		}
		last = m.CommandIndex
		if current {
			cfg.lastApplied[i] = m.CommandIndex
		}
		if errMsg != "" && cfg.applyErr[i] == "" {
			cfg.applyErr[i] = errMsg
		}
		cfg.mu.Unlock()
		// keep reading after an error so that Raft doesn't block
		// holding locks...
	}
}

// start or re-start a Raft.
// if one already exists, "kill" it first.
// allocate new outgoing port file names, and a new
// state persister, to isolate previous instance of
// this server. since we cannot really kill it.
func (cfg *config) start1(i int, applier func(int, chan ApplyMsg)) {
	cfg.crash1(i)

	// a fresh set of outgoing ClientEnd names.
	// so that old crashed instance's ClientEnds can't send.
	cfg.mu.Lock()
	cfg.endgen++
	names := make([]string, cfg.n)
	for j := 0; j < cfg.n; j++ {
		names[j] = fmt.Sprintf("raft-end-%d-to-%d-gen%d-%s", i, j, cfg.endgen, randstring(8))
	}
	cfg.endnames[i] = names
	cfg.mu.Unlock()

	// a fresh set of ClientEnds.
	ends := make([]*labrpc.ClientEnd, cfg.n)
	for j := 0; j < cfg.n; j++ {
		ends[j] = cfg.net.MakeEnd(names[j])
		cfg.net.Connect(names[j], j)
	}

	cfg.mu.Lock()

	cfg.lastApplied[i] = 0
	// the new instance re-applies from index 1; what earlier instances
	// applied stays in cfg.committed, which it must agree with.
	cfg.logs[i] = map[int]any{}

	// a fresh persister, so old instance doesn't overwrite
	// new instance's persisted state.
	// but copy old persister's content so that we always
	// pass Make() the last persisted state.
	if cfg.saved[i] != nil {
		cfg.saved[i] = cfg.saved[i].Copy()
	} else {
		cfg.saved[i] = MakePersister()
	}
	persister := cfg.saved[i]

	applyCh := make(chan ApplyMsg)
	cfg.applyChs[i] = applyCh

	cfg.mu.Unlock()

	// The service restarts from its snapshot, if it saved one, as the lab's
	// services read it from their Persister.
	var store raft.Storage
	snap := persister.ReadSnapshot()
	if cfg.dirs != nil {
		// The same server over the disk log: its directory is what survives.
		wal, err := storage.Open(cfg.dirs[i], storage.Options{})
		if err != nil {
			cfg.t.Fatalf("start server %d on disk: %v", i, err)
		}
		store, snap = wal, readSnapshot(cfg.t, wal)
	}
	if len(snap) > 0 {
		cfg.mu.Lock()
		if e := cfg.ingestSnap(i, snap, -1); e != "" && cfg.applyErr[i] == "" {
			cfg.applyErr[i] = e
		}
		cfg.mu.Unlock()
	}

	var rf *Raft
	if cfg.dirs != nil {
		var err error
		rf, err = start(ends, i, store, applyCh)
		if err != nil {
			cfg.t.Fatalf("start server %d on disk: %v", i, err)
		}
	} else {
		rf = Make(ends, i, persister, applyCh)
	}

	// Leadership needs an election timeout, so no change of role is
	// missed before this.
	observers.Store(rf, func(term int, isLeader bool) { cfg.observe(i, term, isLeader) })
	cfg.mu.Lock()
	cfg.rafts[i] = rf
	cfg.instances = append(cfg.instances, rf)
	cfg.mu.Unlock()
	go applier(i, applyCh)

	svc := labrpc.MakeService(rf)
	srv := labrpc.MakeServer()
	srv.AddService(svc)
	cfg.net.AddServer(i, srv)
}

// pendingErr returns the first recorded error not yet reported, or "".
func (cfg *config) pendingErr() string {
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	for i := 0; i < cfg.n; i++ {
		if cfg.applyErr[i] != "" {
			return "apply error: " + cfg.applyErr[i]
		}
	}
	if len(cfg.safetyErr) > 0 {
		return "safety violation: " + cfg.safetyErr[0]
	}
	if time.Since(cfg.start) > testTimeLimit {
		return fmt.Sprintf("test took longer than %v", testTimeLimit)
	}
	return ""
}

// checkErrs fails the test if an applier or an observer recorded an
// error, or the test has run too long. Call only from the test goroutine.
func (cfg *config) checkErrs() {
	cfg.t.Helper()
	if e := cfg.pendingErr(); e != "" {
		cfg.fatal(e)
	}
}

// fatal fails the test with msg, remembering it so that cleanup does not
// report it a second time. Call only from the test goroutine.
func (cfg *config) fatal(msg string) {
	cfg.t.Helper()
	cfg.mu.Lock()
	cfg.reported[msg] = true
	cfg.mu.Unlock()
	cfg.t.Fatal(msg)
}

func (cfg *config) checkTimeout() {
	cfg.t.Helper()
	// enforce a two minute real-time limit on each test
	if !cfg.t.Failed() && time.Since(cfg.start) > testTimeLimit {
		cfg.t.Fatalf("test took longer than %v", testTimeLimit)
	}
}

func (cfg *config) checkFinished() bool {
	z := atomic.LoadInt32(&cfg.finished)
	return z != 0
}

// cleanup kills every server, tears down the
// network and reports any recorded error. Idempotent.
func (cfg *config) cleanup() {
	cfg.cleanupOnce.Do(func() {
		atomic.StoreInt32(&cfg.finished, 1)
		cfg.watchdog.Stop()

		for i := 0; i < cfg.n; i++ {
			cfg.mu.Lock()
			rf := cfg.rafts[i]
			cfg.mu.Unlock()
			if rf != nil {
				term, isLeader := rf.GetState()
				cfg.observe(i, term, isLeader)
				rf.Kill()
			}
		}
		cfg.net.Cleanup()
		cfg.mu.Lock()
		for _, rf := range cfg.instances {
			observers.Delete(rf)
		}
		cfg.mu.Unlock()

		// report errors recorded since the last check (or never checked,
		// e.g. after the last check of a test that failed otherwise).
		if e := cfg.pendingErr(); e != "" {
			cfg.mu.Lock()
			dup := cfg.reported[e]
			cfg.mu.Unlock()
			if !dup {
				cfg.t.Errorf("at cleanup: %s", e)
			}
		}
	})
}

// attach server i to the net.
func (cfg *config) connect(i int) {
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	cfg.connected[i] = true

	// outgoing ClientEnds
	for j := 0; j < cfg.n; j++ {
		if cfg.connected[j] {
			endname := cfg.endnames[i][j]
			cfg.net.Enable(endname, true)
		}
	}

	// incoming ClientEnds
	for j := 0; j < cfg.n; j++ {
		if cfg.connected[j] {
			endname := cfg.endnames[j][i]
			cfg.net.Enable(endname, true)
		}
	}
}

// detach server i from the net.
func (cfg *config) disconnect(i int) {
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	cfg.connected[i] = false

	// outgoing ClientEnds
	for j := 0; j < cfg.n; j++ {
		if cfg.endnames[i] != nil {
			endname := cfg.endnames[i][j]
			cfg.net.Enable(endname, false)
		}
	}

	// incoming ClientEnds
	for j := 0; j < cfg.n; j++ {
		if cfg.endnames[j] != nil {
			endname := cfg.endnames[j][i]
			cfg.net.Enable(endname, false)
		}
	}
}

func (cfg *config) isConnected(i int) bool {
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	return cfg.connected[i]
}

func (cfg *config) isAlive(i int) bool {
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	return cfg.rafts[i] != nil
}

func (cfg *config) rpcCount(server int) int {
	return cfg.net.GetCount(server)
}

func (cfg *config) rpcTotal() int {
	return cfg.net.GetTotalCount()
}

func (cfg *config) setunreliable(unrel bool) {
	cfg.net.Reliable(!unrel)
}

func (cfg *config) bytesTotal() int64 {
	return cfg.net.GetTotalBytes()
}

func (cfg *config) setlongreordering(longrel bool) {
	cfg.net.LongReordering(longrel)
}

// check that one of the connected servers thinks
// it is the leader, and that no other connected
// server thinks otherwise.
//
// try a few times in case re-elections are needed.
func (cfg *config) checkOneLeader() int {
	cfg.t.Helper()
	for iters := 0; iters < 10; iters++ {
		ms := 450 + (rand.Int63() % 100)
		time.Sleep(time.Duration(ms) * time.Millisecond)
		cfg.checkErrs()

		leaders := make(map[int][]int)
		for i := 0; i < cfg.n; i++ {
			if cfg.isConnected(i) {
				if term, leader, ok := cfg.getState(i); ok && leader {
					leaders[term] = append(leaders[term], i)
				}
			}
		}

		lastTermWithLeader := -1
		for term, leaders := range leaders {
			if len(leaders) > 1 {
				cfg.t.Fatalf("term %d has %d (>1) leaders: %v", term, len(leaders), leaders)
			}
			if term > lastTermWithLeader {
				lastTermWithLeader = term
			}
		}

		if len(leaders) != 0 {
			return leaders[lastTermWithLeader][0]
		}
	}
	cfg.t.Fatalf("expected one leader, got none")
	return -1
}

// rpcsToFirstLeader returns how many RPCs had been sent when a server was
// first seen leading (by its own loop, or by GetState or Start), or 0 if
// none has led yet.
func (cfg *config) rpcsToFirstLeader() int {
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	return cfg.firstLeaderRPCs
}

// termsAgree reports whether every connected server is in the same term,
// and returns that term and each connected server's.
func (cfg *config) termsAgree() (term int, agree bool, terms map[int]int) {
	terms = make(map[int]int)
	term, agree = -1, true
	for i := 0; i < cfg.n; i++ {
		if !cfg.isConnected(i) {
			continue
		}
		xterm, _, ok := cfg.getState(i)
		if !ok {
			continue
		}
		terms[i] = xterm
		if term == -1 {
			term = xterm
		} else if term != xterm {
			agree = false
		}
	}
	return term, agree, terms
}

// awaitTermAgreement waits, with a generous bound, until every connected
// server is in the same term (followers learn of an election from its
// RequestVotes and the new leader's first AppendEntries), and returns it.
func (cfg *config) awaitTermAgreement() int {
	cfg.t.Helper()
	deadline := time.Now().Add(5 * RaftElectionTimeout)
	for {
		cfg.checkErrs()
		term, agree, terms := cfg.termsAgree()
		if agree {
			return term
		}
		if time.Now().After(deadline) {
			cfg.t.Fatalf("servers disagree on the term for %v: %v", 5*RaftElectionTimeout, terms)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stallLimit is how late the tester's own timers may fire in a window in
// which it asserts that nothing happens: a Raft follower elects only
// after an election timeout (at least 300 ms) without the leader's
// heartbeats (every 100 ms), which a machine that did not run the
// process's goroutines for about that long can bring about.
const stallLimit = 100 * time.Millisecond

// sleepWatched sleeps for d and returns the longest that a 10 ms timer
// fired late meanwhile: how long the process was not run, at worst.
func sleepWatched(d time.Duration) time.Duration {
	const step = 10 * time.Millisecond
	var worst time.Duration
	end := time.Now().Add(d)
	for prev := time.Now(); prev.Before(end); {
		time.Sleep(step)
		now := time.Now()
		worst = max(worst, now.Sub(prev)-step)
		prev = now
	}
	return worst
}

// check that everyone agrees on the term.
func (cfg *config) checkTerms() int {
	cfg.t.Helper()
	cfg.checkErrs()
	term := -1
	for i := 0; i < cfg.n; i++ {
		if cfg.isConnected(i) {
			xterm, _, ok := cfg.getState(i)
			if !ok {
				continue
			}
			if term == -1 {
				term = xterm
			} else if term != xterm {
				cfg.t.Fatalf("servers disagree on term: %v vs %v (server %v)", term, xterm, i)
			}
		}
	}
	return term
}

// check that none of the connected servers
// thinks it is the leader.
func (cfg *config) checkNoLeader() {
	cfg.t.Helper()
	cfg.checkErrs()
	for i := 0; i < cfg.n; i++ {
		if cfg.isConnected(i) {
			_, isLeader, ok := cfg.getState(i)
			if ok && isLeader {
				cfg.t.Fatalf("expected no leader among connected servers, but %v claims to be leader", i)
			}
		}
	}
}

// nCommittedE reports how many servers think a log entry is committed,
// and the command; err is non-nil if they disagree or an error was recorded.
// Safe to call from any goroutine.
func (cfg *config) nCommittedE(index int) (int, any, error) {
	if e := cfg.pendingErr(); e != "" {
		return 0, nil, fmt.Errorf("%s", e)
	}
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	count := 0
	var cmd any = nil
	for i := 0; i < len(cfg.rafts); i++ {
		cmd1, ok := cfg.logs[i][index]
		if ok {
			if count > 0 && !sameCommand(cmd, cmd1) {
				return 0, nil, fmt.Errorf("committed values do not match: index %v, %v, %v", index, cmd, cmd1)
			}
			count += 1
			cmd = cmd1
		}
	}
	return count, cmd, nil
}

// how many servers think a log entry is committed?
func (cfg *config) nCommitted(index int) (int, any) {
	cfg.t.Helper()
	n, cmd, err := cfg.nCommittedE(index)
	if err != nil {
		cfg.fatal(err.Error())
	}
	return n, cmd
}

// wait for at least n servers to commit.
// but don't wait forever.
func (cfg *config) wait(index int, n int, startTerm int) any {
	cfg.t.Helper()
	to := 10 * time.Millisecond
	for iters := 0; iters < 30; iters++ {
		nd, _ := cfg.nCommitted(index)
		if nd >= n {
			break
		}
		time.Sleep(to)
		if to < time.Second {
			to *= 2
		}
		if startTerm > -1 {
			for i := 0; i < cfg.n; i++ {
				if t, _, ok := cfg.getState(i); ok && t > startTerm {
					// someone has moved on
					// can no longer guarantee that we'll "win"
					return -1
				}
			}
		}
	}
	nd, cmd := cfg.nCommitted(index)
	if nd < n {
		cfg.t.Fatalf("only %d decided for index %d; wanted %d", nd, index, n)
	}
	return cmd
}

// do a complete agreement.
// it might choose the wrong leader initially,
// and have to re-submit after giving up.
// entirely gives up after about 10 seconds.
// indirectly checks that the servers agree on the
// same value, since nCommitted() checks this,
// as do the threads that read from applyCh.
// returns index.
// if retry==true, may submit the command multiple
// times, in case a leader fails just after Start().
// if retry==false, calls Start() only once, in order
// to simplify the early Lab 4B tests.
func (cfg *config) one(cmd any, expectedServers int, retry bool) int {
	cfg.t.Helper()
	index, err := cfg.oneE(cmd, expectedServers, retry)
	if err != nil {
		cfg.fatal(err.Error())
	}
	return index
}

// oneE is one() for use from goroutines other than the test's: it returns
// an error instead of failing the test.
func (cfg *config) oneE(cmd any, expectedServers int, retry bool) (int, error) {
	t0 := time.Now()
	starts := 0
	for time.Since(t0).Seconds() < 10 && !cfg.checkFinished() {
		if e := cfg.pendingErr(); e != "" {
			return -1, fmt.Errorf("%s", e)
		}
		// try all the servers, maybe one is the leader.
		index := -1
		for si := 0; si < cfg.n; si++ {
			starts = (starts + 1) % cfg.n
			if cfg.isConnected(starts) {
				index1, _, ok := cfg.startOn(starts, cmd)
				if ok {
					index = index1
					break
				}
			}
		}

		if index != -1 {
			// somebody claimed to be the leader and to have
			// submitted our command; wait a while for agreement.
			t1 := time.Now()
			for time.Since(t1).Seconds() < 2 {
				nd, cmd1, err := cfg.nCommittedE(index)
				if err != nil {
					return -1, err
				}
				if nd > 0 && nd >= expectedServers {
					// committed
					if sameCommand(cmd1, cmd) {
						// and it was the command we submitted.
						return index, nil
					}
				}
				time.Sleep(20 * time.Millisecond)
			}
			if !retry {
				return -1, fmt.Errorf("one(%v) failed to reach agreement", cmd)
			}
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if !cfg.checkFinished() {
		if e := cfg.pendingErr(); e != "" {
			return -1, fmt.Errorf("%s", e)
		}
		return -1, fmt.Errorf("one(%v) failed to reach agreement", cmd)
	}
	return -1, nil
}

// start a Test.
// print the Test message.
// e.g. cfg.begin("Test (4B): RPC counts aren't too high")
func (cfg *config) begin(description string) {
	fmt.Printf("%s ...\n", description)
	cfg.t0 = time.Now()
	cfg.rpcs0 = cfg.rpcTotal()
	cfg.bytes0 = cfg.bytesTotal()
	cfg.cmds0 = 0
	cfg.mu.Lock()
	cfg.maxIndex0 = cfg.maxIndex
	cfg.mu.Unlock()
}

// end a Test -- the fact that we got here means there
// was no failure.
// print the Passed message,
// and some performance numbers.
func (cfg *config) end() {
	cfg.t.Helper()
	cfg.checkErrs()
	cfg.checkTimeout()
	if !cfg.t.Failed() {
		cfg.mu.Lock()
		t := time.Since(cfg.t0).Seconds()       // real time
		npeers := cfg.n                         // number of Raft peers
		nrpc := cfg.rpcTotal() - cfg.rpcs0      // number of RPC sends
		nbytes := cfg.bytesTotal() - cfg.bytes0 // number of bytes
		ncmds := cfg.maxIndex - cfg.maxIndex0   // number of Raft agreements reported
		cfg.mu.Unlock()

		fmt.Printf("  ... Passed --")
		fmt.Printf("  %4.1f  %d %4d %7d %4d\n", t, npeers, nrpc, nbytes, ncmds)
	}
}

// readSnapshot returns the service snapshot in store, or nil.
func readSnapshot(t *testing.T, store raft.Storage) []byte {
	_, rc, err := store.OpenSnapshot()
	if err != nil {
		t.Fatalf("read the saved snapshot: %v", err)
	}
	if rc == nil {
		return nil
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read the saved snapshot: %v", err)
	}
	return b
}
