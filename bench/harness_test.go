package main

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitFor polls cond until it holds, failing the test after a generous
// bound.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// proposers runs n proposers (runProposer) on a cluster until halted, and
// records the last command each was told was applied.
type proposers struct {
	stop      atomic.Bool
	wg        sync.WaitGroup
	successes atomic.Int64
	retries   atomic.Int64
	mu        sync.Mutex
	reported  map[int]uint64 // by proposer
	errs      []error
}

func startProposers(c cluster, n int) *proposers {
	p := &proposers{reported: map[int]uint64{}, errs: make([]error, n)}
	for i := range n {
		id := i + 1
		p.wg.Go(func() {
			p.errs[i] = runProposer(c, id, 100, &p.stop, &p.retries, func(seq uint64, _ time.Time) {
				p.mu.Lock()
				p.reported[id] = seq
				p.mu.Unlock()
				p.successes.Add(1)
			})
		})
	}
	return p
}

// halt stops the proposers and returns their errors.
func (p *proposers) halt() error {
	p.stop.Store(true)
	p.wg.Wait()
	return errors.Join(p.errs...)
}

// waitMore waits until n more commands than now were reported applied.
func (p *proposers) waitMore(t *testing.T, n int64) {
	t.Helper()
	want := p.successes.Load() + n
	waitFor(t, "proposals to be applied", func() bool { return p.successes.Load() >= want })
}

// checkExactlyOnce halts p, waits until c's servers have applied the same
// commands, and checks that each applied every proposer's commands once
// and in order, up to the last one the proposer was told was applied, or
// one more (proposed as the proposers stopped, its outcome unknown to its
// proposer). It returns the duplicates skipped on the first server.
func checkExactlyOnce(t *testing.T, c cluster, p *proposers, n int) uint64 {
	t.Helper()
	if err := p.halt(); err != nil {
		t.Fatal(err)
	}
	ledgers := c.ledgers()
	waitFor(t, "the servers to apply the same commands", func() bool {
		first := ledgers[0].state()
		for _, l := range ledgers[1:] {
			if s := l.state(); s.applied != first.applied || !maps.Equal(s.last, first.last) {
				return false
			}
		}
		return true
	})
	for i, l := range ledgers {
		s := l.state()
		if s.gap != nil {
			t.Errorf("server %d: %v", i+1, s.gap)
		}
		sum := uint64(0)
		for id, last := range s.last {
			sum += last
			if id < 1 || id > n {
				t.Errorf("server %d applied commands of proposer %d, which does not exist", i+1, id)
			}
		}
		for id := 1; id <= n; id++ {
			if got, told := s.last[id], p.reported[id]; got != told && got != told+1 {
				t.Errorf("server %d applied proposer %d's commands up to %d; the proposer was told up to %d", i+1, id, got, told)
			}
		}
		if s.applied != sum {
			t.Errorf("server %d applied %d commands, want %d: each of every proposer's commands once", i+1, s.applied, sum)
		}
	}
	return ledgers[0].state().dups
}

// A round on each side measures something, and leaves no folder behind.
func TestRunRound(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	for _, s := range []side{ours, theirs} {
		res, err := runRound(s, roundConfig{clients: 4, size: 100, warmup: 200 * time.Millisecond, duration: 500 * time.Millisecond})
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if res.ops == 0 || res.cpu <= 0 || res.elapsed < 500*time.Millisecond || res.heap == 0 {
			t.Errorf("%s: %d ops, CPU %v, elapsed %v, heap %d: want a measurement", s.name, res.ops, res.cpu, res.elapsed, res.heap)
		}
		if res.p50 <= 0 || res.p50 > res.p99 || res.p99 > res.max {
			t.Errorf("%s: latencies p50 %v, p99 %v, max %v", s.name, res.p50, res.p99, res.max)
		}
		// Each command is written on three servers, in fewer writes than entries.
		if res.writes == 0 || res.entries < int64(res.ops) || res.entries < res.writes {
			t.Errorf("%s: %d log writes of %d entries for %d commands", s.name, res.writes, res.entries, res.ops)
		}
		if _, err := os.Stat("/proc/self/statm"); err == nil && res.rss == 0 {
			t.Errorf("%s: no RSS measured", s.name)
		}
		left, err := os.ReadDir(tmp)
		if err != nil {
			t.Fatal(err)
		}
		if len(left) > 0 {
			t.Errorf("%s: %s left behind in the temp folder", s.name, left[0].Name())
		}
	}
}

func TestLedger(t *testing.T) {
	l := newLedger()
	cmd := func(proposer int, seq uint64) []byte { return newCommand(makeTag(proposer, seq), 16) }
	for _, c := range []struct {
		proposer int
		seq      uint64
		dup      bool
	}{{1, 1, false}, {2, 1, false}, {1, 2, false}, {1, 2, true}, {1, 1, true}, {2, 2, false}} {
		if got := l.apply(cmd(c.proposer, c.seq)); got != c.dup {
			t.Errorf("apply(%d, %d) duplicate = %v, want %v", c.proposer, c.seq, got, c.dup)
		}
	}
	s := l.state()
	if s.applied != 4 || s.dups != 2 || s.last[1] != 2 || s.last[2] != 2 || s.gap != nil {
		t.Errorf("state %+v; want 4 applied, 2 duplicates, both proposers at 2, no gap", s)
	}
	restored := newLedger()
	if err := restored.unmarshal(l.marshal()); err != nil {
		t.Fatal(err)
	}
	if r := restored.state(); r.applied != 4 || r.dups != 2 || !maps.Equal(r.last, s.last) {
		t.Errorf("restored %+v, want %+v", r, s)
	}
	for _, bad := range [][]byte{nil, make([]byte, 23), append(l.marshal(), 0)} {
		if err := newLedger().unmarshal(bad); err == nil {
			t.Errorf("unmarshal of %d bytes accepted", len(bad))
		}
	}
	l.apply(cmd(1, 4)) // 3 is lost
	if gap := l.state().gap; gap == nil || !strings.Contains(gap.Error(), "proposer 1's command 4 applied after its command 2") {
		t.Errorf("gap = %v", gap)
	}
}

func TestLatencies(t *testing.T) {
	var l latencies
	if l.percentile(50) != 0 {
		t.Error("percentile of nothing is not 0")
	}
	for i := 1; i <= 100; i++ {
		l.add(time.Duration(i) * time.Millisecond)
	}
	within := func(got, want time.Duration) bool { return math.Abs(float64(got-want)) <= float64(want)/64 }
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {0.5, time.Millisecond}} {
		if got := l.percentile(tc.p); !within(got, tc.want) {
			t.Errorf("percentile(1..100 ms, %v) = %v, want %v within 1/64", tc.p, got, tc.want)
		}
	}
	if l.count() != 100 {
		t.Errorf("count %d", l.count())
	}
	for _, d := range []time.Duration{0, 1, 63, 64, 65, 127, 128, 1000, 123456789, time.Hour, 1<<63 - 1} {
		if got := valueOf(bucketOf(d)); !within(got, d) {
			t.Errorf("valueOf(bucketOf(%d)) = %d", d, got)
		}
	}
}

func TestTable(t *testing.T) {
	res := func(ops int, p50 time.Duration) roundResult {
		return roundResult{ops: ops, elapsed: time.Second, p50: p50, p99: 2 * p50, cpu: time.Duration(ops) * time.Millisecond,
			rss: 64 << 20, heap: 8 << 20, writes: int64(ops), entries: int64(ops) * 3}
	}
	s := spreadOf([]roundResult{res(300, 1), res(100, 1), res(200, 1)}, roundResult.opsPerSec)
	if s != (spread{100, 200, 300}) {
		t.Errorf("spread %+v", s)
	}
	if got := median([]float64{1, 2, 3, 10}); got != 2.5 {
		t.Errorf("median of 4 = %v", got)
	}
	rows := []row{{clients: 16, results: map[string][]roundResult{
		ours.name:   {res(3000, 2*time.Millisecond), res(1000, 2*time.Millisecond), res(2000, 2*time.Millisecond)},
		theirs.name: {res(1000, 4*time.Millisecond), res(1000, 4*time.Millisecond), res(1000, 4*time.Millisecond)},
	}}}
	var b bytes.Buffer
	printTable(&b, rows, []side{ours, theirs})
	out := b.String()
	for _, want := range []string{
		"| 16 | ours | 3 | 2000 (1000–3000) | 2.00 (2.00–2.00) | 4.00 (4.00–4.00) | 1.000 (1.000–1.000) | 64 (64–64) | 8.0 (8.0–8.0) | 3.0 (3.0–3.0) |",
		"| 16 | hashicorp | 3 | 1000 (1000–1000) |",
		"| 16 | **ours / hashicorp** |  | **2.00** | **0.50** | **0.50** | **1.00** | **1.00** | **1.00** | **1.00** |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	printTable(&b, rows[:1], []side{ours})
	if strings.Contains(b.String(), "hashicorp |") {
		t.Errorf("one side ran, yet the table shows the other:\n%s", b.String())
	}
}

// The disk's floor times every round of each kind, and leaves no folder
// behind.
func TestDiskFloor(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	f, err := diskFloor(20, 100)
	if err != nil {
		t.Fatal(err)
	}
	if f.alone.count() != 20 || f.two.count() != 20 {
		t.Errorf("timed %d fsyncs alone and %d rounds of three, want 20 each", f.alone.count(), f.two.count())
	}
	if f.alone.percentile(50) <= 0 || f.two.percentile(50) <= 0 {
		t.Errorf("floor %s: want durations", f)
	}
	left, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("%s left behind in the temp folder", left[0].Name())
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-clients", "1, 16,64", "-rounds", "2", "-duration", "1s", "-size", "200", "-only", "ours", "-floor"}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.clients) != 3 || o.clients[1] != 16 || o.rounds != 2 || o.duration != time.Second || o.size != 200 ||
		len(o.sides) != 1 || o.sides[0].name != "ours" || !o.floor {
		t.Errorf("parsed %+v", o)
	}
	for _, args := range [][]string{
		{"-clients", "1,x"}, {"-clients", "0"}, {"-rounds", "0"}, {"-duration", "0s"},
		{"-size", "7"}, {"-only", "etcd"}, {"-logcache", "-1"}, {"extra"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
}
