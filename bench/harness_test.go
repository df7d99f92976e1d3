package main

import (
	"errors"
	"io"
	"os"
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

// proposers runs n goroutines proposing on c until stopped, recording
// the tags of the commands propose reported applied.
type proposers struct {
	stop      atomic.Bool
	wg        sync.WaitGroup
	successes atomic.Int64
	retries   atomic.Int64
	mu        sync.Mutex
	tags      []uint64
	err       error
}

func startProposers(c cluster, n int) *proposers {
	p := &proposers{}
	for id := range n {
		p.wg.Go(func() {
			for seq := uint64(1); !p.stop.Load(); seq++ {
				tag := uint64(id+1)<<40 | seq
				err := c.propose(newCommand(tag, 100))
				switch {
				case err == nil:
					p.mu.Lock()
					p.tags = append(p.tags, tag)
					p.mu.Unlock()
					p.successes.Add(1)
				case errors.Is(err, errRetry):
					p.retries.Add(1)
				default:
					p.mu.Lock()
					p.err = err
					p.mu.Unlock()
					return
				}
			}
		})
	}
	return p
}

// halt stops the proposers and returns the first error one met.
func (p *proposers) halt() error {
	p.stop.Store(true)
	p.wg.Wait()
	return p.err
}

func (p *proposers) waitSuccesses(t *testing.T, n int64) {
	t.Helper()
	waitFor(t, "proposals to succeed", func() bool { return p.successes.Load() >= n || p.stop.Load() })
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
		if res.ops == 0 || len(res.lat) != res.ops || res.cpu <= 0 || res.elapsed < 500*time.Millisecond {
			t.Errorf("%s: %d ops, %d latencies, CPU %v, elapsed %v: want commands measured", s.name, res.ops, len(res.lat), res.cpu, res.elapsed)
		}
		for i := 1; i < len(res.lat); i++ {
			if res.lat[i] < res.lat[i-1] {
				t.Fatalf("%s: latencies not sorted", s.name)
			}
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

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, 50}, {99, 99}, {100, 100}, {0.5, 1}} {
		if got := percentile(d, tc.p); got != tc.want {
			t.Errorf("percentile(1..100, %v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile(nil) = %v", got)
	}
	if got := percentile([]time.Duration{7}, 99); got != 7 {
		t.Errorf("percentile([7], 99) = %v", got)
	}
}

func TestSummarize(t *testing.T) {
	rs := []roundResult{
		{ops: 100, elapsed: time.Second, lat: []time.Duration{1, 2}, cpu: 100 * time.Microsecond},
		{ops: 300, elapsed: time.Second, lat: []time.Duration{3}, cpu: 300 * time.Microsecond, retries: 2},
		{ops: 200, elapsed: time.Second, lat: []time.Duration{4}, cpu: 200 * time.Microsecond},
	}
	s := summarize(rs)
	if s.min != 100 || s.median != 200 || s.max != 300 || s.retries != 2 || s.cpuPerOp != time.Microsecond {
		t.Errorf("summarize = %+v", s)
	}
	if s.p50 != 2 || s.p99 != 4 {
		t.Errorf("p50, p99 = %v, %v; want 2, 4 (over all rounds' commands)", s.p50, s.p99)
	}
	if got := median([]float64{1, 2, 3, 10}); got != 2.5 {
		t.Errorf("median of 4 = %v", got)
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-clients", "1, 16,64", "-rounds", "2", "-duration", "1s", "-size", "200", "-only", "ours"}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.clients) != 3 || o.clients[1] != 16 || o.rounds != 2 || o.duration != time.Second || o.size != 200 ||
		len(o.sides) != 1 || o.sides[0].name != "ours" {
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
