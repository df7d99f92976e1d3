package main

// Tests of "raftkv bench": its numbers add up, every PUT it counted as
// done is in the store afterwards, it rides out a leader's death, waits as
// Retry-After says, and never runs past its end plus the grace.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkit/raft/kv"
)

// benchRecorder collects the operations a bench ran.
type benchRecorder struct {
	mu  sync.Mutex
	ops []benchOp
	// onDone, if set, is called (under mu) with the number of measured
	// operations done so far.
	onDone func(n int)
	done   int
}

func (r *benchRecorder) record(op benchOp) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, op)
	if op.measured && op.err == nil {
		r.done++
		if r.onDone != nil {
			r.onDone(r.done)
		}
	}
}

func (r *benchRecorder) all() []benchOp {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]benchOp(nil), r.ops...)
}

// checkBenchCounts checks that run's numbers are those of the operations
// recorded, and possible ones.
func checkBenchCounts(t *testing.T, run benchRun, ops []benchOp, duration, grace time.Duration) {
	t.Helper()
	var done, puts, gets, notDone, unknown int64
	var maxLat time.Duration
	for _, op := range ops {
		if !op.measured {
			continue
		}
		switch {
		case op.err == nil:
			done++
			if op.kind == kv.Put {
				puts++
			} else {
				gets++
			}
			maxLat = max(maxLat, op.end.Sub(op.start))
		case errors.Is(op.err, kv.ErrUnknown):
			unknown++
		case errors.Is(op.err, kv.ErrNotDone):
			notDone++
		default:
			t.Errorf("operation %+v failed with %v: want kv.ErrNotDone or kv.ErrUnknown", op, op.err)
		}
	}
	if run.Ops != done || run.Puts != puts || run.Gets != gets || run.Ops != run.Puts+run.Gets {
		t.Errorf("counted %d ops (%d puts, %d gets); the operations recorded: %d done (%d puts, %d gets)",
			run.Ops, run.Puts, run.Gets, done, puts, gets)
	}
	if run.Failed["not_done"] != notDone || run.Failed["unknown"] != unknown {
		t.Errorf("counted failed %v; recorded %d not done, %d unknown", run.Failed, notDone, unknown)
	}
	if done == 0 {
		t.Errorf("no operation done")
	}
	if run.Seconds < duration.Seconds() || run.Seconds > (duration+grace+time.Second).Seconds() {
		t.Errorf("measured %.3f s; the run was %v (with %v of grace)", run.Seconds, duration, grace)
	}
	if want := float64(run.Ops) / run.Seconds; run.OpsPerSec < want*0.999 || run.OpsPerSec > want*1.001 {
		t.Errorf("ops/s %.1f; %d ops in %.3f s is %.1f", run.OpsPerSec, run.Ops, run.Seconds, want)
	}
	l := run.LatencyMs
	if !(l.P50 > 0 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.Max) {
		t.Errorf("latencies out of order or not positive: %+v", l)
	}
	if want := float64(maxLat) / float64(time.Millisecond); l.Max != want {
		t.Errorf("max latency %v ms; the slowest operation recorded took %v ms", l.Max, want)
	}
	for k, v := range run.Errors {
		if v <= 0 {
			t.Errorf("errors[%q] = %d", k, v)
		}
	}
}

// checkPutsReadable reads every key the bench wrote and checks that what
// it holds is the value of a PUT that was done (or whose outcome is
// unknown) and that no PUT done after that one finished was lost: every
// PUT counted as done is there, unless a later PUT overwrote it.
func checkPutsReadable(t *testing.T, urls []string, ops []benchOp) {
	t.Helper()
	puts := map[string][]benchOp{}
	for _, op := range ops {
		if op.kind == kv.Put {
			puts[op.key] = append(puts[op.key], op)
		}
	}
	if len(puts) == 0 {
		t.Fatal("the bench ran no PUT")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ck := kv.NewClerk(testConns(urls...))
	for key, ps := range puts {
		v, found, err := ck.Get(ctx, key)
		if err != nil {
			t.Fatalf("get %s: %v", key, err)
		}
		var w *benchOp
		anyDone := false
		for i := range ps {
			if ps[i].value == v {
				if w != nil {
					t.Fatalf("two PUTs of %s with the value %q: values are not unique", key, v)
				}
				w = &ps[i]
			}
			anyDone = anyDone || ps[i].err == nil
		}
		switch {
		case !found && anyDone:
			t.Errorf("key %s is missing; PUTs of it were done", key)
			continue
		case !found:
			continue
		case w == nil:
			t.Errorf("key %s holds %q, which no PUT wrote", key, v)
			continue
		case w.err != nil && !errors.Is(w.err, kv.ErrUnknown):
			t.Errorf("key %s holds %q, from a PUT that failed as not done: %v", key, v, w.err)
			continue
		}
		for _, p := range ps {
			if p.err == nil && w.err == nil && p.start.After(w.end) {
				t.Errorf("key %s holds %q (PUT done at %v), but the PUT of %q started after that, at %v, and was done",
					key, v, w.end.Format(time.StampMicro), p.value, p.start.Format(time.StampMicro))
			}
		}
	}
}

// TestBench runs the bench against a 3-process cluster: for a second
// with 4 clients, then for 3 seconds while the leader is killed; its
// counts match the operations it ran, and the store holds every PUT it
// counted as done. Then the command's -json and table outputs.
func TestBench(t *testing.T) {
	c := startProcCluster(t, 3, "-log-level", "warn")
	c.waitLeader(20 * time.Second)
	urls := []string{c.urls[2], c.urls[3], c.urls[1]}
	const grace = benchGrace

	rec := &benchRecorder{}
	cfg := benchConfig{addrs: urls, conn: testClientConn(urls), clients: []int{4}, duration: time.Second, putRatio: 0.5, keys: 20, valueBytes: 40,
		warmup: 200 * time.Millisecond, timeout: 20 * time.Second, grace: grace, record: rec.record}
	start := time.Now()
	runs, err := runBench(context.Background(), cfg)
	if err != nil {
		t.Fatalf("bench: %v", err)
	}
	if took := time.Since(start); took > cfg.warmup+cfg.duration+grace+5*time.Second {
		t.Errorf("the bench took %v; want at most its warmup, duration and grace, and the status requests", took)
	}
	if len(runs) != 1 || runs[0].Clients != 4 {
		t.Fatalf("runs %+v; want one of 4 clients", runs)
	}
	ops := rec.all()
	checkBenchCounts(t, runs[0], ops, cfg.duration, grace)
	checkPutsReadable(t, urls, ops)

	// The leader dies once 50 operations are done.
	killed := make(chan int, 1)
	rec2 := &benchRecorder{}
	rec2.onDone = func(n int) {
		if n == 50 {
			go func() {
				l := c.leader()
				for deadline := time.Now().Add(20 * time.Second); l == 0 && time.Now().Before(deadline); l = c.leader() {
					time.Sleep(50 * time.Millisecond)
				}
				if l != 0 {
					c.replicas[l].kill()
				}
				killed <- l
			}()
		}
	}
	cfg.clients, cfg.duration, cfg.record, cfg.warmup = []int{4}, 3*time.Second, rec2.record, 0
	runs, err = runBench(context.Background(), cfg)
	if err != nil {
		t.Fatalf("bench with the leader killed: %v", err)
	}
	var l int
	select {
	case l = <-killed:
	case <-time.After(30 * time.Second):
	}
	if l == 0 {
		t.Fatalf("the leader was not killed: %d operations done in %v, or no leader found", rec2.done, cfg.duration)
	}
	ops2 := rec2.all()
	checkBenchCounts(t, runs[0], ops2, cfg.duration, grace)
	if len(runs[0].Errors) == 0 {
		t.Errorf("no error counted, with the leader killed during the run")
	}
	t.Logf("with replica %d (the leader) killed: %+v", l, runs[0])
	checkPutsReadable(t, urls, append(ops, ops2...))

	// The command: -ops, several client counts, JSON.
	addr := strings.Join(urls, ",")
	code, stdout, stderr := runCmd(t, "bench", "-addr", addr, "-clients", "1,3", "-ops", "60", "-put-ratio", "1", "-keys", "5", "-json")
	var rep benchReport
	if err := json.Unmarshal([]byte(stdout), &rep); code != 0 || err != nil {
		t.Fatalf("bench -json: exit %d, %v\n%s%s", code, err, stdout, stderr)
	}
	if len(rep.Runs) != 2 || rep.Runs[0].Clients != 1 || rep.Runs[1].Clients != 3 || rep.OpsLimit != 60 || rep.Duration != "0s" {
		t.Fatalf("bench -json: %s", stdout)
	}
	for _, r := range rep.Runs {
		if r.Ops+r.Failed["not_done"]+r.Failed["unknown"] != 60 || r.Puts != r.Ops || r.Gets != 0 {
			t.Errorf("bench -ops 60 -put-ratio 1: run %+v; want 60 operations, all PUTs", r)
		}
	}
	code, stdout, stderr = runCmd(t, "bench", "-addr", addr, "-clients", "2", "-duration", "2s")
	if code != 0 || !strings.Contains(stdout, "CLIENTS  SECONDS  OPS") || !strings.Contains(stdout, "\n2   ") ||
		!strings.Contains(stderr, "bench: 2 clients    1s  ops ") {
		t.Errorf("bench: exit %d\n%s%s", code, stdout, stderr)
	}
}

// fakeReplica is an HTTP server that answers /status as replica 1 of a
// cluster of one, and every /kv request with kvHandler.
func fakeReplica(t *testing.T, kvHandler http.HandlerFunc) *httptest.Server {
	t.Helper()
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/status" {
			json.NewEncoder(w).Encode(kv.StatusReply{ID: 1, Role: "follower", Leader: -1, Peers: map[int]string{1: srv.URL}})
			return
		}
		kvHandler(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestBenchNoLeader: with no leader (every answer 503 no_leader, with
// Retry-After), nothing is done, the failed tries are counted by kind,
// the bench waits as told between tries, and it stops at its end.
func TestBenchNoLeader(t *testing.T) {
	const retryAfter = 400 * time.Millisecond
	srv := fakeReplica(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, `{"error":"no leader","code":"no_leader","retryAfterMs":%d}`, retryAfter.Milliseconds())
	})
	rec := &benchRecorder{}
	cfg := benchConfig{addrs: []string{srv.URL}, clients: []int{1}, duration: time.Second, putRatio: 0.5, keys: 10,
		valueBytes: 10, timeout: 20 * time.Second, grace: 500 * time.Millisecond, record: rec.record}
	start := time.Now()
	runs, err := runBench(context.Background(), cfg)
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "no operation done") || !strings.Contains(err.Error(), "no_leader=") {
		t.Errorf("bench with no leader: error %v; want one saying no operation got done, with the errors", err)
	}
	if took > cfg.duration+cfg.grace+5*time.Second {
		t.Errorf("the bench took %v; want at most its duration, its grace and the status requests", took)
	}
	if len(runs) != 1 {
		t.Fatalf("runs %+v", runs)
	}
	r := runs[0]
	// An operation whose last try the bench's end cut short fails as
	// outcome unknown; the others as not done.
	failed := r.Failed["not_done"] + r.Failed["unknown"]
	if r.Ops != 0 || r.Errors["no_leader"] == 0 || len(r.Errors) != 1 || failed == 0 || failed != int64(len(rec.all())) {
		t.Errorf("run %+v; want no operation done, no_leader errors only, every operation failed", r)
	}
	// One client, a try every 400 ms at most, for 1.5 s: 4 tries and
	// change. Without the wait, the Clerk retries every 100 ms or sooner.
	if limit := int64((cfg.duration+cfg.grace)/retryAfter) + 2; r.Errors["no_leader"] > limit {
		t.Errorf("%d tries in %v; with Retry-After %v, want at most %d", r.Errors["no_leader"], cfg.duration+cfg.grace, retryAfter, limit)
	}
	for _, op := range rec.all() {
		if !errors.Is(op.err, kv.ErrNotDone) && !errors.Is(op.err, kv.ErrUnknown) {
			t.Errorf("operation %+v: error %v, want kv.ErrNotDone or kv.ErrUnknown", op, op.err)
		}
	}
}

// TestBenchHangingReplica: a replica that never answers; the bench gives
// up the operations in flight after its end and the grace, as outcome
// unknown.
func TestBenchHangingReplica(t *testing.T) {
	release := make(chan struct{})
	srv := fakeReplica(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release) // before srv.Close, which waits for the handlers
	cfg := benchConfig{addrs: []string{srv.URL}, clients: []int{3}, duration: 500 * time.Millisecond, putRatio: 0.5, keys: 10,
		valueBytes: 10, timeout: 20 * time.Second, grace: 500 * time.Millisecond}
	start := time.Now()
	runs, err := runBench(context.Background(), cfg)
	took := time.Since(start)
	if err == nil || len(runs) != 1 {
		t.Fatalf("bench against a replica that never answers: runs %+v, error %v; want a run with no operation done, and an error", runs, err)
	}
	if took > cfg.duration+cfg.grace+5*time.Second {
		t.Errorf("the bench took %v; want at most its duration, its grace and the status requests", took)
	}
	if r := runs[0]; r.Ops != 0 || r.Failed["unknown"] != 3 || len(r.Errors) != 0 {
		t.Errorf("run %+v; want the 3 clients' operations failed, outcome unknown, and no error counted (the bench's own deadline is none)", r)
	}
}

// TestBenchFlags: bad flags and an unreachable cluster get clear errors.
func TestBenchFlags(t *testing.T) {
	dead := fmt.Sprintf("http://127.0.0.1:%d", freePorts(t, 1)[0])
	cases := []struct {
		args  []string
		code  int
		inErr string
	}{
		{[]string{"-put-ratio", "1.5"}, exitUsage, "-put-ratio 1.5: want a share from 0"},
		{[]string{"-put-ratio", "NaN"}, exitUsage, "-put-ratio NaN"},
		{[]string{"-clients", "0"}, exitUsage, `-clients "0": bad entry "0"`},
		{[]string{"-clients", "4,x"}, exitUsage, `bad entry "x"`},
		{[]string{"-clients", "99999"}, exitUsage, "from 1 to 5000"},
		{[]string{"-keys", "0"}, exitUsage, "-keys 0"},
		{[]string{"-value-bytes", "-1"}, exitUsage, "-value-bytes -1"},
		{[]string{"-duration", "0"}, exitUsage, "-duration 0 and no -ops"},
		{[]string{"-duration", "-1s"}, exitUsage, "-duration -1s"},
		{[]string{"-ops", "-3"}, exitUsage, "-ops -3"},
		{[]string{"-timeout", "0"}, exitUsage, "-timeout 0s"},
		{[]string{"-warmup", "-1s"}, exitUsage, "-warmup -1s"},
		{[]string{"-addr", " , "}, exitUsage, "-addr is empty"},
		{[]string{"extra"}, exitUsage, `raftkv bench: takes no arguments, got 1 argument: ["extra"]`},
		{[]string{"-bogus"}, exitUsage, "flag provided but not defined"},
		{[]string{"-addr", dead, "-duration", "1s"}, exitFailed, "no replica reachable (is the cluster running?)"},
	}
	for _, tc := range cases {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"bench"}, tc.args...), &stdout, &stderr)
		if code != tc.code || !strings.Contains(stderr.String(), tc.inErr) {
			t.Errorf("raftkv bench %q: exit %d, stderr %q; want exit %d, stderr with %q", tc.args, code, stderr.String(), tc.code, tc.inErr)
		}
	}
}

// fakeReplicas starts three HTTP servers that play replicas 1-3 of a
// cluster led by 3: /status says so, and every other request gets 404 with
// servedBy(id) in X-Raftkv-Served-By. It returns their URLs and the
// requests each got.
func fakeReplicas(t *testing.T, servedBy func(id int) int) (addrs []string, hits func() map[int]int) {
	var mu sync.Mutex
	got := map[int]int{}
	var urls [3]string
	for i := range urls {
		id := i + 1
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/status" {
				json.NewEncoder(w).Encode(kv.StatusReply{ID: id, Role: "follower", Leader: 3,
					Peers: map[int]string{1: urls[0], 2: urls[1], 3: urls[2]}})
				return
			}
			mu.Lock()
			got[id]++
			mu.Unlock()
			w.Header().Set(kv.HeaderServedBy, strconv.Itoa(servedBy(id)))
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"error":"not found","code":"not_found"}`)
		}))
		t.Cleanup(srv.Close)
		urls[i] = strings.TrimPrefix(srv.URL, "http://") // as -http-peers gives them
		addrs = append(addrs, srv.URL)
	}
	return addrs, func() map[int]int {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(got)
	}
}

// TestBenchFollowsLeader: a follower that forwards answers with the
// leader's X-Raftkv-Served-By; the bench sends its next requests to the
// leader itself.
func TestBenchFollowsLeader(t *testing.T) {
	// Every replica answers as if replica 3, the leader, served the
	// request (a follower forwards it).
	addrs, hits := fakeReplicas(t, func(int) int { return 3 })
	cfg := benchConfig{addrs: addrs, clients: []int{1}, ops: 20, putRatio: 0, keys: 10,
		valueBytes: 10, timeout: 20 * time.Second, grace: time.Second}
	runs, err := runBench(context.Background(), cfg)
	if err != nil || len(runs) != 1 || runs[0].Ops != 20 || runs[0].Gets != 20 {
		t.Fatalf("bench: runs %+v, error %v; want 20 GETs done", runs, err)
	}
	if h := hits(); h[1] != 1 || h[2] != 0 || h[3] != 19 {
		t.Errorf("requests per replica %v; want the first at replica 1, the first in the list, and the rest at replica 3, the leader", h)
	}
}

// With spread, client i starts at replica i and stays with the replica
// that answers it, as when followers serve GETs (serve -follower-reads);
// without it, every client starts at the first replica.
func TestBenchSpread(t *testing.T) {
	for _, spread := range []bool{false, true} {
		addrs, hits := fakeReplicas(t, func(id int) int { return id }) // served here
		cfg := benchConfig{addrs: addrs, clients: []int{3}, ops: 60, putRatio: 0, keys: 10,
			valueBytes: 10, timeout: 20 * time.Second, grace: time.Second, spread: spread}
		runs, err := runBench(context.Background(), cfg)
		if err != nil || len(runs) != 1 || runs[0].Gets != 60 {
			t.Fatalf("spread %v: runs %+v, error %v; want 60 GETs done", spread, runs, err)
		}
		if h := hits(); spread && (h[1] == 0 || h[2] == 0 || h[3] == 0) || !spread && h[1] != 60 {
			t.Errorf("spread %v: requests per replica %v", spread, h)
		}
	}
}
