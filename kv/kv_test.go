package kv_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkit/raft/kv"
	"github.com/raftkit/raft/kv/kvcheck"
)

// electionWait bounds how long the tests wait for an election; elections
// take 300-600 ms, more when split votes repeat.
const electionWait = 5 * time.Second

// 1. Basic operations.

func TestBasic(t *testing.T) {
	cfg := makeConfig(t, 3, false)
	a, b := cfg.makeClient(), cfg.makeClient()

	if v, ok := a.get(t, "x"); ok || v != "" {
		t.Fatalf("get of a missing key: %q, found=%v; want \"\", false", v, ok)
	}
	if r := a.do(t, kv.Op{Kind: kv.Put, Key: "x", Value: "1"}); r != (kv.Result{}) {
		t.Fatalf("put of a new key reports %+v as the value before", r)
	}
	if v, ok := b.get(t, "x"); !ok || v != "1" {
		t.Fatalf("get x: %q, %v; want \"1\", true", v, ok)
	}
	if r := b.do(t, kv.Op{Kind: kv.Put, Key: "x", Value: "2"}); r != (kv.Result{Value: "1", Found: true}) {
		t.Fatalf("put over x=1 reports %+v as the value before", r)
	}
	if r := a.do(t, kv.Op{Kind: kv.Append, Key: "x", Value: "3"}); r != (kv.Result{Value: "2", Found: true}) {
		t.Fatalf("append to x=2 reports %+v as the value before", r)
	}
	if v, ok := b.get(t, "x"); !ok || v != "23" {
		t.Fatalf("get x after append: %q, %v; want \"23\", true", v, ok)
	}
	a.append(t, "y", "a") // an absent key counts as ""
	b.append(t, "y", "b")
	if v, ok := a.get(t, "y"); !ok || v != "ab" {
		t.Fatalf("get y: %q, %v; want \"ab\", true", v, ok)
	}
	if r := a.do(t, kv.Op{Kind: kv.Delete, Key: "x"}); r != (kv.Result{Value: "23", Found: true}) {
		t.Fatalf("delete of x=23 reports %+v as the value before", r)
	}
	if v, ok := b.get(t, "x"); ok || v != "" {
		t.Fatalf("get of a deleted key: %q, found=%v; want \"\", false", v, ok)
	}
	if r := b.do(t, kv.Op{Kind: kv.Delete, Key: "x"}); r != (kv.Result{}) {
		t.Fatalf("delete of a missing key reports %+v", r)
	}
	a.put(t, "z", "zz")
	b.delete(t, "z")
	if v, ok := a.get(t, "z"); ok {
		t.Fatalf("get of a key deleted by Clerk.Delete: %q, found", v)
	}
	b.put(t, "x", "")
	if v, ok := a.get(t, "x"); !ok || v != "" {
		t.Fatalf("get of a key set to \"\": %q, found=%v; want \"\", true", v, ok)
	}
	if v, ok := a.get(t, "y"); !ok || v != "ab" {
		t.Fatalf("get y at the end: %q, %v; want \"ab\", true", v, ok)
	}
	cfg.checkErrs()
}

// TestRestartReplaysLog: with no snapshots, a restarted server rebuilds its
// store, and its table of applied requests, from the log.
func TestRestartReplaysLog(t *testing.T) {
	testRestart(t, 0)
}

// TestRestartFromSnapshot: with snapshots every entry or two, a restarted
// server rebuilds its store, and its table of applied requests, from its
// snapshot and the log after it.
func TestRestartFromSnapshot(t *testing.T) {
	testRestart(t, 200)
}

func testRestart(t *testing.T, maxRaftState int) {
	cfg := makeConfigSnap(t, 3, false, maxRaftState)
	c := cfg.makeClient()
	want := map[string]string{}
	for i := range 20 {
		k := fmt.Sprintf("k%d", i%4)
		c.append(t, k, fmt.Sprintf("%d;", i))
		want[k] += fmt.Sprintf("%d;", i)
	}
	c.delete(t, "k3")
	delete(want, "k3")
	l := cfg.waitLeader(electionWait)
	dup := kv.Op{Kind: kv.Append, Key: "k0", Value: "dup;", ClientID: 777, Seq: 1}
	if r, ok := c.rpc(l, dup); !ok || r.Err != "" {
		t.Fatalf("append to leader %d: delivered=%v, err %q", l, ok, r.Err)
	}
	want["k0"] += "dup;"
	if maxRaftState > 0 {
		if with, _, _ := cfg.snapshotStats(); with == 0 {
			t.Fatalf("no server snapshotted, with MaxRaftState %d", maxRaftState)
		}
	}

	for i := range cfg.n {
		cfg.crash(i)
	}
	for i := range cfg.n {
		cfg.start(i)
	}
	for k, v := range want {
		if got, ok := c.get(t, k); !ok || got != v {
			t.Fatalf("after restarting every server, %s = %q (found=%v), want %q", k, got, ok, v)
		}
	}
	if got, ok := c.get(t, "k3"); ok {
		t.Fatalf("after restarting every server, deleted k3 = %q", got)
	}
	// The retry of an applied request is still recognized.
	l = cfg.waitLeader(electionWait)
	if r, ok := c.rpc(l, dup); !ok || r.Err != "" {
		t.Fatalf("retried append to leader %d: delivered=%v, err %q", l, ok, r.Err)
	}
	if got, _ := c.get(t, "k0"); got != want["k0"] {
		t.Fatalf("a retry after the restart applied again: k0 = %q, want %q", got, want["k0"])
	}
	cfg.checkErrs()
	cfg.checkReplicasAgree()
}

// TestSnapshotInstallCatchUp: a server cut off while the others apply
// (and snapshot, and discard) many entries catches up, once back, through
// the leader's snapshot, and then holds what the others hold.
func TestSnapshotInstallCatchUp(t *testing.T) {
	cfg := makeConfigSnap(t, 3, false, 500)
	c := cfg.makeClient()
	c.put(t, "a", "1")
	l := cfg.waitLeader(electionWait)
	lag, other := (l+1)%3, (l+2)%3
	cfg.partition([]int{l, other})
	want := ""
	for i := range 100 {
		c.append(t, "k", fmt.Sprintf("%d;", i))
		want += fmt.Sprintf("%d;", i)
	}
	cfg.heal()
	c.put(t, "b", "2")
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, _, installs := cfg.snapshotStats(); installs > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server %d, cut off for 100 entries, got no snapshot from the leader within 20 s", lag)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cfg.checkErrs()
	cfg.checkReplicasAgree()
	// And it serves: with the old leader gone, it is in every majority.
	cfg.crash(l)
	if got, _ := c.get(t, "k"); got != want {
		t.Fatalf("k = %q after the catch-up and a crash of the leader, want %q", got, want)
	}
}

// 2. Linearizability under faults.

// A nemesis injects faults until stop is closed.
type nemesis func(cfg *config, rng *rand.Rand, stop <-chan struct{})

type linOpts struct {
	servers, clients, keys int
	dur                    time.Duration // how long the clients run while the nemesis acts
	opTimeout              time.Duration // each operation's context
	maxOps                 int           // per client, to bound the history
	think                  time.Duration // a client pauses up to this long between operations
	unreliable             bool
	nemesis                nemesis
	minOK                  int // fewer successful operations fail the test (half as many with -short)
	maxRaftState           int // the servers snapshot at this size of Raft state; 0: never
}

// runLinearizability runs clients issuing random operations while the
// nemesis acts, heals everything, checks that the store still answers, and
// checks the history with porcupine.
func runLinearizability(t *testing.T, o linOpts) {
	if testing.Short() {
		o.dur /= 2
		o.minOK /= 2
	}
	seed := testSeed(t)
	cfg := makeConfigSnap(t, o.servers, o.unreliable, o.maxRaftState)
	h := kvcheck.NewHistory()
	keys := make([]string, o.keys)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i)
	}
	var nOK, nUnknown, nNotDone atomic.Int64
	var errMu sync.Mutex
	var clientErrs []string

	stopClients := make(chan struct{})
	var wg sync.WaitGroup
	for range o.clients {
		c := cfg.makeClient()
		rng := rand.New(rand.NewPCG(seed, uint64(c.id)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < o.maxOps; n++ {
				if !pause(rng, 0, o.think, stopClients) {
					return
				}
				in := randomInput(rng, keys, c.id, n)
				ctx, cancel := context.WithTimeout(context.Background(), o.opTimeout)
				call := h.Now()
				res, err := c.ck.Do(ctx, kv.Op{Kind: in.Kind, Key: in.Key, Value: in.Value})
				ret := h.Now()
				cancel()
				meta := fmt.Sprintf("client %d, op %d", c.id, n)
				switch {
				case err == nil:
					nOK.Add(1)
					h.Add(c.id, in, kvcheck.Output{Value: res.Value, Found: res.Found}, call, ret, meta)
				case errors.Is(err, kv.ErrUnknown) && !kv.Refused(err):
					nUnknown.Add(1)
					h.AddUnknown(c.id, in, call, meta)
				case errors.Is(err, kv.ErrNotDone) && !kv.Refused(err):
					nNotDone.Add(1) // certainly not applied: not part of the history
				default: // a refusal (stale, seq reused...) is a bug here
					errMu.Lock()
					clientErrs = append(clientErrs, fmt.Sprintf("client %d: %s %s: unexpected error %v", c.id, in.Kind, in.Key, err))
					errMu.Unlock()
					h.AddUnknown(c.id, in, call, meta) // whatever it did, the check stays sound
				}
			}
		}()
	}

	stopNemesis, nemesisDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(nemesisDone)
		if o.nemesis != nil {
			o.nemesis(cfg, rand.New(rand.NewPCG(seed, 1<<32)), stopNemesis)
		}
	}()
	time.Sleep(o.dur) // the faults happen meanwhile
	close(stopNemesis)
	<-nemesisDone
	close(stopClients)
	cfg.heal()

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(o.opTimeout + 10*time.Second):
		t.Fatalf("clients did not finish their last operations (context %v) after healing", o.opTimeout)
	}

	// After healing the store must answer; these reads end the history.
	final := cfg.makeClient()
	for _, k := range keys {
		call := h.Now()
		res := final.do(t, kv.Op{Kind: kv.Get, Key: k})
		h.Add(final.id, kvcheck.Input{Kind: kv.Get, Key: k}, kvcheck.Output{Value: res.Value, Found: res.Found}, call, h.Now(), "final read")
	}
	cfg.checkErrs()
	cfg.checkReplicasAgree()
	for _, e := range clientErrs {
		t.Error(e)
	}
	t.Logf("%d operations: %d ok, %d unknown outcome, %d not done", nOK.Load()+nUnknown.Load()+nNotDone.Load(), nOK.Load(), nUnknown.Load(), nNotDone.Load())
	if o.maxRaftState > 0 {
		cfg.checkSnapshots(o.maxRaftState)
	}
	if min := int64(o.minOK); nOK.Load() < min {
		t.Errorf("only %d operations succeeded, want at least %d", nOK.Load(), min)
	}
	kvcheck.Check(t, h.Operations(), 30*time.Second)
}

// seedFlag fixes the seed of the tests' random choices.
var seedFlag = flag.Uint64("kv.seed", 0, "seed of the random choices of the linearizability tests (operations, faults); 0 picks one")

// testSeed returns the seed of t's random choices (-kv.seed, or a random
// one), logs it, and has a failure of t say how to replay it. The seed
// makes the same choices (operations, keys, faults, pauses); the
// interleavings still depend on timing.
func testSeed(t *testing.T) uint64 {
	seed := *seedFlag
	if seed == 0 {
		seed = rand.Uint64()
	}
	replay := fmt.Sprintf("go test -race -run '^%s$' ./kv -kv.seed=%d", t.Name(), seed)
	t.Logf("seed %d (replay: %s)", seed, replay)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("FAILED with seed %d; to replay the same random choices: %s", seed, replay)
		}
	})
	return seed
}

// randomInput returns a random operation; every written value is unique.
func randomInput(rng *rand.Rand, keys []string, client, n int) kvcheck.Input {
	k := keys[rng.IntN(len(keys))]
	switch r := rng.IntN(100); {
	case r < 40:
		return kvcheck.Input{Kind: kv.Get, Key: k}
	case r < 60:
		return kvcheck.Input{Kind: kv.Put, Key: k, Value: fmt.Sprintf("p%d.%d;", client, n)}
	case r < 95:
		return kvcheck.Input{Kind: kv.Append, Key: k, Value: fmt.Sprintf("a%d.%d;", client, n)}
	default:
		return kvcheck.Input{Kind: kv.Delete, Key: k}
	}
}

// pause lets a random time in [lo, hi) pass; it reports false if stop
// closed first.
func pause(rng *rand.Rand, lo, hi time.Duration, stop <-chan struct{}) bool {
	d := lo
	if hi > lo {
		d += time.Duration(rng.Int64N(int64(hi - lo)))
	}
	select {
	case <-time.After(d):
		return true
	case <-stop:
		return false
	}
}

// partitioner splits the servers into a random minority and majority every
// lo-hi, sometimes healing for a while in between. Each client reaches all
// servers, or only the minority's, or only the majority's.
func partitioner(lo, hi time.Duration) nemesis {
	return func(cfg *config, rng *rand.Rand, stop <-chan struct{}) { partition(cfg, rng, stop, lo, hi) }
}

func partition(cfg *config, rng *rand.Rand, stop <-chan struct{}, lo, hi time.Duration) {
	for {
		perm := rng.Perm(cfg.n)
		k := 1 + rng.IntN(cfg.n/2)
		minority, majority := perm[:k], perm[k:]
		cfg.partition(minority, majority)
		cfg.mu.Lock()
		clients := append([]*client(nil), cfg.clients...)
		cfg.mu.Unlock()
		for _, c := range clients {
			switch rng.IntN(4) {
			case 0:
				cfg.connectClient(c, minority...)
			case 1:
				cfg.connectClient(c, majority...)
			default:
				cfg.connectClient(c, cfg.all()...)
			}
		}
		if !pause(rng, lo, hi, stop) {
			return
		}
		if rng.IntN(3) == 0 {
			cfg.partition(cfg.all())
			for _, c := range clients {
				cfg.connectClient(c, cfg.all()...)
			}
			if !pause(rng, 200*time.Millisecond, 500*time.Millisecond, stop) {
				return
			}
		}
	}
}

// crasher crashes a server (the leader half the time) or restarts one every
// lo-hi, with at most maxDown servers down at once.
func crasher(lo, hi time.Duration, maxDown int) nemesis {
	return func(cfg *config, rng *rand.Rand, stop <-chan struct{}) { crash(cfg, rng, stop, lo, hi, maxDown) }
}

func crash(cfg *config, rng *rand.Rand, stop <-chan struct{}, lo, hi time.Duration, maxDown int) {
	for {
		if !pause(rng, lo, hi, stop) {
			return
		}
		var up, down []int
		for i := range cfg.n {
			if cfg.alive(i) {
				up = append(up, i)
			} else {
				down = append(down, i)
			}
		}
		if len(down) < maxDown && (len(down) == 0 || rng.IntN(2) == 0) {
			victim := up[rng.IntN(len(up))]
			if l := cfg.leader(); l >= 0 && rng.IntN(2) == 0 {
				victim = l
			}
			cfg.crash(victim)
		} else {
			cfg.start(down[rng.IntN(len(down))])
		}
	}
}

// both runs two nemeses at once.
func both(a, b nemesis) nemesis {
	return func(cfg *config, rng *rand.Rand, stop <-chan struct{}) {
		rng2 := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
		done := make(chan struct{})
		go func() { defer close(done); b(cfg, rng2, stop) }()
		a(cfg, rng, stop)
		<-done
	}
}

// The scenarios: five servers, five clients, three keys. An operation's
// context is short enough that some end with ErrUnknown while servers are
// cut off or down; those go into the history as "maybe happened".
//
// Each asks for a number of successful operations (minOK) so that a run
// in which little got done, and so little was checked, fails. The bounds
// are a third or less of the fewest seen in 14 runs of each (24 of
// AllFaults), with -race, on a loaded 2-core machine, random seeds:
// Unreliable 371-462 (bound 100), Partitions 379-4705 (100), CrashRestart
// 170-5292 (50), AllFaults 63-287 (20). How many succeed depends on how
// long the faults leave no majority, which the seed decides.

// (a) requests and replies are delayed and dropped.
func TestLinearizableUnreliable(t *testing.T) {
	runLinearizability(t, linOpts{servers: 5, clients: 5, keys: 3, dur: 6 * time.Second,
		opTimeout: time.Second, maxOps: 1500, think: 5 * time.Millisecond, unreliable: true, minOK: 100})
}

// (b) partitions come and go.
func TestLinearizablePartitions(t *testing.T) {
	runLinearizability(t, linOpts{servers: 5, clients: 5, keys: 3, dur: 8 * time.Second,
		opTimeout: time.Second, maxOps: 1500, think: 5 * time.Millisecond,
		nemesis: partitioner(500*time.Millisecond, time.Second), minOK: 100})
}

// (c) servers crash and restart.
func TestLinearizableCrashRestart(t *testing.T) {
	runLinearizability(t, linOpts{servers: 5, clients: 5, keys: 3, dur: 8 * time.Second,
		opTimeout: time.Second, maxOps: 1500, think: 5 * time.Millisecond,
		nemesis: crasher(300*time.Millisecond, 700*time.Millisecond, 2), minOK: 50})
}

// All at once, at a slower pace and with at most one server down; still,
// the cluster is often without a majority, and less gets done.
func TestLinearizableAllFaults(t *testing.T) {
	runLinearizability(t, linOpts{servers: 5, clients: 5, keys: 3, dur: 8 * time.Second,
		opTimeout: 2 * time.Second, maxOps: 1500, think: 5 * time.Millisecond, unreliable: true,
		nemesis: both(partitioner(time.Second, 2*time.Second), crasher(time.Second, 2*time.Second, 1)), minOK: 20})
}

// The same with snapshots: the servers snapshot every few entries, so
// restarted servers start from snapshots, and servers cut off or down for
// a while catch up through InstallSnapshot.

// snapState is the servers' MaxRaftState in the tests with snapshots:
// small, so that they snapshot every ten entries or so.
const snapState = 1000

func TestLinearizableUnreliableSnapshots(t *testing.T) {
	runLinearizability(t, linOpts{servers: 5, clients: 5, keys: 3, dur: 6 * time.Second,
		opTimeout: time.Second, maxOps: 1500, think: 5 * time.Millisecond, unreliable: true, minOK: 100, maxRaftState: snapState})
}

func TestLinearizablePartitionsSnapshots(t *testing.T) {
	runLinearizability(t, linOpts{servers: 5, clients: 5, keys: 3, dur: 8 * time.Second,
		opTimeout: time.Second, maxOps: 1500, think: 5 * time.Millisecond,
		nemesis: partitioner(500*time.Millisecond, time.Second), minOK: 100, maxRaftState: snapState})
}

func TestLinearizableCrashRestartSnapshots(t *testing.T) {
	runLinearizability(t, linOpts{servers: 5, clients: 5, keys: 3, dur: 8 * time.Second,
		opTimeout: time.Second, maxOps: 1500, think: 5 * time.Millisecond,
		nemesis: crasher(300*time.Millisecond, 700*time.Millisecond, 2), minOK: 50, maxRaftState: snapState})
}

func TestLinearizableAllFaultsSnapshots(t *testing.T) {
	runLinearizability(t, linOpts{servers: 5, clients: 5, keys: 3, dur: 8 * time.Second,
		opTimeout: 2 * time.Second, maxOps: 1500, think: 5 * time.Millisecond, unreliable: true,
		nemesis: both(partitioner(time.Second, 2*time.Second), crasher(time.Second, 2*time.Second, 1)), minOK: 20, maxRaftState: snapState})
}

// checkSnapshots checks that the servers did snapshot, and that their Raft
// state stays within a few times maxRaftState (a server snapshots once
// its state passes maxRaftState, and Raft then discards the log covered).
func (cfg *config) checkSnapshots(maxRaftState int) {
	cfg.t.Helper()
	with, state, installs := cfg.snapshotStats()
	cfg.t.Logf("snapshots: %d of %d servers hold one; %d installed from a leader; largest Raft state %d bytes", with, cfg.n, installs, state)
	if with == 0 {
		cfg.t.Fatalf("no server snapshotted, with MaxRaftState %d", maxRaftState)
	}
	if state > 8*maxRaftState {
		cfg.t.Fatalf("a server's Raft state is %d bytes, over 8 times MaxRaftState (%d)", state, maxRaftState)
	}
}

// 3. Exactly once.

// TestExactlyOnceUnreliable: on a network that drops requests and replies,
// one client appends distinct tokens to one key; each must appear once, in
// order. The test goes on until the Clerk has retried some requests that
// had already taken effect (a failed attempt that ended after the request
// was applied somewhere).
func TestExactlyOnceUnreliable(t *testing.T) {
	cfg := makeConfig(t, 3, true)
	c := cfg.makeClient()
	minN, maxN, wantRetried := 30, 300, 3
	if testing.Short() {
		wantRetried = 1
	}
	var want strings.Builder
	retried, n := 0, 0
	for ; n < maxN && (n < minN || retried < wantRetried); n++ {
		tok := fmt.Sprintf("t%d;", n)
		c.append(t, "k", tok)
		want.WriteString(tok)
		seq := lastAttempt(c).seq
		at, ok := cfg.appliedAt(opID{c.ck.ID(), seq})
		if !ok {
			t.Fatalf("append %d succeeded but no server applied it", n)
		}
		for _, a := range c.attemptsFor(seq) {
			if a.err != nil && a.end.After(at) {
				retried++
				break
			}
		}
	}
	t.Logf("%d appends, %d retried after taking effect", n, retried)
	if retried == 0 {
		t.Fatalf("no request was retried after taking effect in %d appends: nothing tested", n)
	}
	for _, r := range []*client{c, cfg.makeClient()} {
		if got, _ := r.get(t, "k"); got != want.String() {
			t.Fatalf("client %d reads\n%q\nwant\n%q", r.id, got, want.String())
		}
	}
	cfg.checkErrs()
}

// TestExactlyOnceDuplicateRPC sends the same request (same ClientID and
// Seq) to the leader more than once, as a client does after losing a reply:
// one after the other, then several at once.
func TestExactlyOnceDuplicateRPC(t *testing.T) {
	cfg := makeConfig(t, 3, false)
	c := cfg.makeClient()
	c.put(t, "k", "x;")
	l := cfg.waitLeader(electionWait)

	first := kv.Op{Kind: kv.Append, Key: "k", Value: "a;", ClientID: 4242, Seq: 1}
	for try := range 2 {
		r, ok := c.rpc(l, first)
		if !ok || r.Err != "" {
			t.Fatalf("try %d at leader %d: delivered=%v, err %q", try, l, ok, r.Err)
		}
		if r.Res != (kv.Result{Value: "x;", Found: true}) {
			t.Fatalf("try %d: result %+v, want the value before the first append", try, r.Res)
		}
	}

	second := kv.Op{Kind: kv.Append, Key: "k", Value: "b;", ClientID: 4242, Seq: 2}
	const copies = 4
	replies := make([]kv.OpReply, copies)
	oks := make([]bool, copies)
	var wg sync.WaitGroup
	for i := range copies {
		wg.Go(func() { replies[i], oks[i] = c.rpc(l, second) })
	}
	wg.Wait()
	for i := range copies {
		if !oks[i] || replies[i].Err != "" {
			t.Fatalf("copy %d at leader %d: delivered=%v, err %q", i, l, oks[i], replies[i].Err)
		}
		if replies[i].Res != (kv.Result{Value: "x;a;", Found: true}) {
			t.Fatalf("copy %d: result %+v, want the value before the append", i, replies[i].Res)
		}
	}
	t.Logf("the concurrent copies took %d log entries", cfg.logCount(opID{4242, 2}))

	if got, _ := c.get(t, "k"); got != "x;a;b;" {
		t.Fatalf("k = %q, want %q", got, "x;a;b;")
	}
	cfg.checkErrs()
}

// 4. Speed.

// sequentialPuts does n Puts one after the other and returns their
// average latency.
func sequentialPuts(tb testing.TB, c *client, n int) time.Duration {
	start := time.Now()
	for i := range n {
		c.put(tb, "k", fmt.Sprintf("v%d", i))
	}
	return time.Since(start) / time.Duration(n)
}

// heartbeat is Raft's heartbeat interval: a request that waited for the next
// heartbeat to be replicated would average at least half of it; one that
// waited for two, a whole one.
const heartbeat = 100 * time.Millisecond

func TestSpeedSequentialPut(t *testing.T) {
	cfg := makeConfig(t, 3, false)
	c := cfg.makeClient()
	c.put(t, "k", "warm-up") // elects a leader and finds it
	n := 300
	if testing.Short() {
		n = 100
	}
	avg := sequentialPuts(t, c, n)
	t.Logf("%d sequential puts: %v per put on average", n, avg)
	if avg > heartbeat {
		t.Fatalf("%v per put on average, more than the heartbeat interval %v: requests wait for heartbeats", avg, heartbeat)
	}
	cfg.checkErrs()
}

func BenchmarkSequentialPut(b *testing.B) {
	cfg := makeConfig(b, 3, false)
	c := cfg.makeClient()
	c.put(b, "k", "warm-up")
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		c.put(b, "k", fmt.Sprintf("v%d", i))
	}
}

// 5. The Clerk's outcomes.

// TestClerkUnreachable: a client that reaches no server cannot have had its
// request accepted, but over labrpc a request that was never delivered
// cannot be told from one whose reply was lost (Call returns false either
// way), so the Clerk can only say ErrUnknown; what it must not do is apply
// the request.
func TestClerkUnreachable(t *testing.T) {
	cfg := makeConfig(t, 3, false)
	c := cfg.makeClient()
	c.put(t, "k", "old")
	cfg.connectClient(c)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := c.ck.Put(ctx, "k", "new")
	if !errors.Is(err, context.DeadlineExceeded) || !isAny(err, kv.ErrNotDone, kv.ErrUnknown) {
		t.Fatalf("put from a disconnected client: %v; want ErrNotDone or ErrUnknown wrapping the context's error", err)
	}
	t.Logf("put from a disconnected client: %v", err)
	cfg.heal()
	if got, _ := c.get(t, "k"); got != "old" {
		t.Fatalf("k = %q after a put that reached no server, want %q", got, "old")
	}
	cfg.checkErrs()
}

// TestClerkUnknown: the leader accepts the request, then is cut off from
// the other servers (and the client from them) before the request commits:
// the outcome is ErrUnknown, and after healing the store shows it either
// applied or not, consistently for every client.
func TestClerkUnknown(t *testing.T) {
	cfg := makeConfig(t, 3, false)
	c := cfg.makeClient()
	c.put(t, "k", "old")
	l := cfg.waitLeader(electionWait)
	if s := lastAttempt(c).server; s != l {
		t.Fatalf("the client's last request went to %d, but %d leads", s, l)
	}
	others := []int{(l + 1) % 3, (l + 2) % 3}
	cfg.partition([]int{l}, others)
	cfg.connectClient(c, l)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := c.ck.Put(ctx, "k", "new")
	if !errors.Is(err, kv.ErrUnknown) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("put at a leader cut off before committing: %v; want ErrUnknown wrapping the context's error", err)
	}
	as := c.attemptsFor(lastAttempt(c).seq)
	if as[0].server != l || !errors.Is(as[0].err, kv.ErrLeadershipLost) {
		t.Fatalf("first attempt: server %d, %v; want leader %d answering ErrLeadershipLost", as[0].server, as[0].err, l)
	}

	cfg.heal()
	got, _ := c.get(t, "k")
	if got != "old" && got != "new" {
		t.Fatalf("k = %q after an unknown put of %q over %q", got, "new", "old")
	}
	t.Logf("the put with an unknown outcome was %s", map[bool]string{true: "applied", false: "not applied"}[got == "new"])
	for range 3 {
		if again, _ := cfg.makeClient().get(t, "k"); again != got {
			t.Fatalf("k = %q, then %q", got, again)
		}
	}
	cfg.checkErrs()
}

func lastAttempt(c *client) attempt {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.attempts[len(c.attempts)-1]
}

// 6. Leadership change while a request waits.

// TestLeadershipLostFailover: five servers; the leader L accepts an Append
// and replicates it to F1 only, every other server being cut off; L steps
// down and answers ErrLeadershipLost, and the Clerk goes on trying. Then
// F1, F2 and F3 are connected: only F1 can win (its log has the Append),
// the Clerk's retry lands after the first copy, and both commit. The Append
// must take effect once and report the value before it.
func TestLeadershipLostFailover(t *testing.T) {
	cfg, c, l, f1, f2, f3, f4 := leaderWithOneFollower(t)

	type result struct {
		res kv.Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		res, err := c.ck.Do(ctx, kv.Op{Kind: kv.Append, Key: "k", Value: "tok;"})
		done <- result{res, err}
	}()

	// Wait until the deposed leader has answered ErrLeadershipLost.
	deadline := time.Now().Add(electionWait)
	for {
		c.mu.Lock()
		var seen bool
		for _, a := range c.attempts {
			seen = seen || (a.server == l && errors.Is(a.err, kv.ErrLeadershipLost))
		}
		c.mu.Unlock()
		if seen {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("leader %d cut off from a majority never answered ErrLeadershipLost", l)
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case r := <-done:
		t.Fatalf("the append returned (%+v, %v) while no majority could commit it", r.res, r.err)
	default:
	}

	cfg.partition([]int{f1, f2, f3}, []int{l}, []int{f4})
	r := <-done
	if r.err != nil {
		t.Fatalf("append after the leadership change: %v", r.err)
	}
	if r.res != (kv.Result{Value: "x;", Found: true}) {
		t.Fatalf("append reports %+v as the value before, want \"x;\"", r.res)
	}
	seq := lastAttempt(c).seq
	as := c.attemptsFor(seq)
	if last := as[len(as)-1]; last.err != nil || last.server != f1 {
		t.Fatalf("the append succeeded at %d (%v), want F1 = %d, the only server that can win", last.server, last.err, f1)
	}
	if n := cfg.logCount(opID{c.ck.ID(), seq}); n < 2 {
		t.Errorf("the append is in the log %d times; the scenario expects the deposed leader's copy and the retry", n)
	}
	cfg.heal()
	for _, r := range []*client{c, cfg.makeClient()} {
		if got, _ := r.get(t, "k"); got != "x;tok;" {
			t.Fatalf("client %d reads k = %q, want %q", r.id, got, "x;tok;")
		}
	}
	cfg.checkErrs()
}

// leaderWithOneFollower sets up five servers where k = "x;" and the
// client's last request went to the leader l, then partitions l with one
// follower f1 and leaves f2, f3 and f4 each alone.
func leaderWithOneFollower(t *testing.T) (cfg *config, c *client, l, f1, f2, f3, f4 int) {
	t.Helper()
	cfg = makeConfig(t, 5, false)
	c = cfg.makeClient()
	c.put(t, "k", "x;")
	l = cfg.waitLeader(electionWait)
	if s := lastAttempt(c).server; s != l {
		t.Fatalf("the client's last request went to %d, but %d leads", s, l)
	}
	f1, f2, f3, f4 = (l+1)%5, (l+2)%5, (l+3)%5, (l+4)%5
	cfg.partition([]int{l, f1}) // f2, f3, f4 alone
	return cfg, c, l, f1, f2, f3, f4
}
