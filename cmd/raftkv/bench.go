package main

// raftkv bench: a load generator for a running cluster, over the HTTP API.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/raftkit/raft/kv"
)

// benchGrace is how long operations in flight at the end of a run may
// take to finish before they are given up (and counted as failed).
const benchGrace = 3 * time.Second

// maxBenchClients bounds -clients: the store remembers the 10,000 most
// recently active clients, and forgetting a bench client mid-run would
// make its requests fail.
const maxBenchClients = 5000

// benchConfig is what "raftkv bench" runs.
type benchConfig struct {
	addrs      []string
	conn       *clientConn   // how to reach addrs (nil: plain HTTP, no token)
	clients    []int         // one run per entry, in turn
	duration   time.Duration // measured part of a run; 0: until ops
	ops        int64         // operations per run; 0: until duration
	putRatio   float64       // the share of PUTs; the rest are GETs
	keys       int           // keys k0 .. k{keys-1}, chosen uniformly
	valueBytes int
	warmup     time.Duration // load before each run's measured part, not counted
	timeout    time.Duration // one operation, its retries included; also the longest stretch without an operation done
	grace      time.Duration // after a run, how long operations in flight may finish
	progress   io.Writer     // a line every second; nil: none
	record     func(benchOp) // if set, gets every operation as it ends (for tests)
	spread     bool          // client i starts at replica i mod len(addrs), not the first
}

// benchOp is one operation the bench ran, as benchConfig.record sees it.
type benchOp struct {
	run        int // index in benchConfig.clients
	worker     int
	kind       kv.Kind
	key, value string
	start, end time.Time
	measured   bool  // started after the warmup, so counted in the results
	err        error // nil: done; else kv.ErrNotDone or kv.ErrUnknown, wrapped
}

// benchRun is the result of one run, at one client count.
type benchRun struct {
	Clients   int     `json:"clients"`
	Seconds   float64 `json:"seconds"` // the measured part
	Ops       int64   `json:"ops"`     // operations done (answered), PUTs and GETs
	Puts      int64   `json:"puts"`
	Gets      int64   `json:"gets"`
	OpsPerSec float64 `json:"opsPerSec"`
	// LatencyMs is of the operations done, from the first try to the
	// answer, retries included.
	LatencyMs benchLatency `json:"latencyMs"`
	// Failed counts the operations given up (at the end of the run or
	// after -timeout): "not_done" (certainly not applied) and "unknown"
	// (may have been applied).
	Failed map[string]int64 `json:"failed"`
	// Errors counts the failed tries, by kind: the HTTP API's error code
	// (no_leader, not_leader, overloaded, timeout, ...), "unreachable"
	// (no connection), "lost" (the connection broke or the answer was
	// unreadable).
	Errors map[string]int64 `json:"errors"`
}

// benchLatency is a latency distribution, in milliseconds.
type benchLatency struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// benchReport is the -json output.
type benchReport struct {
	Addrs      []string   `json:"addrs"`
	PutRatio   float64    `json:"putRatio"`
	Keys       int        `json:"keys"`
	ValueBytes int        `json:"valueBytes"`
	Duration   string     `json:"duration"` // "0s": until -ops
	OpsLimit   int64      `json:"opsLimit"` // 0: until -duration
	Warmup     string     `json:"warmup"`
	Runs       []benchRun `json:"runs"`
	Error      string     `json:"error,omitempty"` // why the bench stopped early
}

// runBenchCmd runs "raftkv bench".
func runBenchCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bench", stderr)
	cf := addClientFlags(fs)
	clients := fs.String("clients", "16", "")
	duration := fs.Duration("duration", 10*time.Second, "")
	ops := fs.Int64("ops", 0, "")
	putRatio := fs.Float64("put-ratio", 0.5, "")
	keys := fs.Int("keys", 10000, "")
	valueBytes := fs.Int("value-bytes", 100, "")
	warmup := fs.Duration("warmup", 0, "")
	timeout := fs.Duration("timeout", 10*time.Second, "")
	asJSON := fs.Bool("json", false, "")
	spread := fs.Bool("spread", false, "")
	pos, code, ok := parseFlags(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "raftkv bench: "+format+"\n"+usageHint("bench")+"\n", a...)
		return exitUsage
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	cfg := benchConfig{ops: *ops, putRatio: *putRatio, keys: *keys, valueBytes: *valueBytes,
		warmup: *warmup, timeout: *timeout, grace: benchGrace, progress: stderr, spread: *spread}
	cfg.duration = *duration
	if set["ops"] && !set["duration"] {
		cfg.duration = 0 // -ops alone: as long as N operations take
	}
	var err error
	switch {
	case len(pos) > 0:
		return fail("%s", noArgs(pos))
	case *ops < 0:
		return fail("-ops %d: want a positive number of operations (or 0: no limit)", *ops)
	case cfg.duration < 0:
		return fail("-duration %v: want a positive duration (or 0 with -ops: no limit)", cfg.duration)
	case cfg.duration == 0 && *ops == 0:
		return fail("-duration 0 and no -ops: give a duration, a number of operations, or both")
	case math.IsNaN(*putRatio) || *putRatio < 0 || *putRatio > 1:
		return fail("-put-ratio %v: want a share from 0 (GETs only) to 1 (PUTs only)", *putRatio)
	case *keys < 1:
		return fail("-keys %d: want at least 1 key", *keys)
	case *valueBytes < 0:
		return fail("-value-bytes %d: want a size of 0 or more", *valueBytes)
	case *warmup < 0:
		return fail("-warmup %v: want a duration of 0 or more", *warmup)
	case *timeout <= 0:
		return fail("-timeout %v: want a positive duration", *timeout)
	}
	if cfg.clients, err = parseClients(*clients); err != nil {
		return fail("-clients %q: %v", *clients, err)
	}
	if cfg.conn, err = cf.setup(); err != nil {
		return fail("%v", err)
	}
	cfg.addrs = cfg.conn.addrs

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	runs, err := runBench(ctx, cfg)
	if *asJSON {
		rep := benchReport{Addrs: cfg.addrs, PutRatio: cfg.putRatio, Keys: cfg.keys, ValueBytes: cfg.valueBytes,
			Duration: cfg.duration.String(), OpsLimit: cfg.ops, Warmup: cfg.warmup.String(), Runs: runs}
		if rep.Runs == nil {
			rep.Runs = []benchRun{}
		}
		if err != nil {
			rep.Error = err.Error()
		}
		b, _ := json.MarshalIndent(rep, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
	} else if len(runs) > 0 {
		printBench(stdout, cfg, runs)
	}
	if err != nil {
		fmt.Fprintf(stderr, "raftkv bench: %v\n", err)
		return exitFailed
	}
	return exitOK
}

// parseClients parses -clients: "16" or "1,16,64,256".
func parseClients(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > maxBenchClients {
			return nil, fmt.Errorf("bad entry %q: want numbers of clients from 1 to %d, comma-separated (1,16,64)", f, maxBenchClients)
		}
		out = append(out, n)
	}
	return out, nil
}

// runBench runs one run per client count, in turn, and returns the
// results of those it ran. It stops early, with an error, when ctx ends
// (the runs so far are returned), when no replica answers, or when a run
// got no operation done for cfg.timeout.
func runBench(ctx context.Context, cfg benchConfig) ([]benchRun, error) {
	cc := cfg.conn
	if cc == nil {
		cc = plainClientConn(cfg.addrs)
	}
	ids, err := replicaPositions(ctx, cc)
	if err != nil {
		return nil, err
	}
	tr := cc.tr.Clone()
	tr.MaxIdleConnsPerHost = slices.Max(cfg.clients) + 8
	defer tr.CloseIdleConnections()
	var runs []benchRun
	for i, n := range cfg.clients {
		if ctx.Err() != nil {
			return runs, fmt.Errorf("interrupted before the run with %d clients", n)
		}
		r, err := benchOnce(ctx, &cfg, i, n, ids, tr, cc.token)
		runs = append(runs, r)
		if err != nil {
			return runs, err
		}
		if ctx.Err() != nil {
			return runs, errors.New("interrupted; the last run is partial")
		}
		tr.CloseIdleConnections()
	}
	return runs, nil
}

// replicaPositions asks the replicas at addrs for their status and returns
// the position in addrs of each replica ID, as far as it can tell (to
// follow the leader, which answers name by ID).
func replicaPositions(ctx context.Context, cc *clientConn) (map[int]int, error) {
	addrs := cc.addrs
	pos := map[int]int{}
	var errs []string
	for i, a := range addrs {
		st, err := cc.status(ctx, a)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", a, err))
			continue
		}
		pos[st.ID] = i
		for id, h := range st.Peers {
			for j, b := range addrs {
				if sameAddr(h, b) {
					pos[id] = j
				}
			}
		}
	}
	if len(errs) == len(addrs) {
		return nil, fmt.Errorf("no replica reachable (is the cluster running?): %s", strings.Join(errs, "; "))
	}
	return pos, nil
}

// sameAddr reports whether two HTTP addresses ("host:port" or base URLs)
// are the same.
func sameAddr(a, b string) bool {
	return strings.TrimSuffix(urlOf(a), "/") == strings.TrimSuffix(urlOf(b), "/")
}

// benchStats are one worker's numbers for one phase (warmup or measured).
type benchStats struct {
	lat        []time.Duration // of the operations done
	puts, gets int64
	lastDone   time.Time
	failed     map[string]int64
	errors     map[string]int64
}

func newBenchStats() *benchStats {
	return &benchStats{failed: map[string]int64{}, errors: map[string]int64{}}
}

// benchShared is what a run's workers and its monitor share.
type benchShared struct {
	cfg          *benchConfig
	run          int
	measureStart time.Time
	soft         context.Context // ends when no new operation may start
	stopSoft     context.CancelFunc
	hard         context.Context // ends when operations in flight are given up
	claimed      atomic.Int64    // measured operations started, against cfg.ops
	done         [2]atomic.Int64 // operations done, [warmup, measured]
	errs         [2]atomic.Int64 // failed tries
	lastDone     atomic.Int64    // UnixNano of the latest operation done
	stopOnce     sync.Once
	stopAt       atomic.Int64 // UnixNano of the soft stop
}

func (s *benchShared) stop() {
	s.stopOnce.Do(func() {
		s.stopAt.Store(time.Now().UnixNano())
		s.stopSoft()
	})
}

// benchWorker is one client: a kv.Clerk (its own client ID and sequence
// numbers, so that retries take effect once) over a benchConn per
// replica.
type benchWorker struct {
	sh       *benchShared
	id       int
	ids      map[int]int // replica ID -> position in the addresses
	conns    []*kv.HTTPConn
	ck       *kv.Clerk
	leader   int    // position of the replica that served the last answer; -1: not known
	servedBy string // the last answer's X-Raftkv-Served-By
	st       *benchStats
	phase    int // 0 warmup, 1 measured: of the operation in progress
	stats    [2]*benchStats
}

// benchConn is a kv.Conn for the Clerk: position pos of the replica
// list. It sends to the replica that served the last answer instead,
// when that is known, so a worker whose requests a follower forwarded
// goes to the leader itself next time. It counts failed tries, and waits
// as told by Retry-After when the answer names no replica to go to.
type benchConn struct {
	w   *benchWorker
	pos int
}

func (c benchConn) Do(ctx context.Context, op kv.Op) (kv.Result, int, error) {
	w := c.w
	target := c.pos
	if w.leader >= 0 {
		target = w.leader
	}
	w.servedBy = ""
	res, hint, err := w.conns[target].Do(ctx, op)
	if err == nil {
		w.leader = -1
		if id, e := strconv.Atoi(w.servedBy); e == nil {
			if p, ok := w.ids[id]; ok {
				w.leader = p
			}
		}
		return res, hint, nil
	}
	w.leader = -1
	if ctx.Err() != nil {
		return res, hint, err // the run's end or -timeout, not the cluster's error
	}
	w.st.errors[benchErrorKind(err)]++
	w.sh.errs[w.phase].Add(1)
	var he *kv.HTTPError
	if errors.As(err, &he) && he.RetryAfter > 0 && hint < 0 && !kv.Refused(err) {
		t := time.NewTimer(he.RetryAfter)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	return res, hint, err
}

// benchErrorKind names a failed try for the counts.
func benchErrorKind(err error) string {
	var he *kv.HTTPError
	switch {
	case errors.As(err, &he) && he.Code != "":
		return he.Code
	case he != nil:
		return fmt.Sprintf("http_%d", he.StatusCode)
	case errors.Is(err, kv.ErrStopped):
		return "unreachable"
	case errors.Is(err, kv.ErrLost):
		return "lost"
	}
	return "other"
}

// servedByTransport notes each answer's X-Raftkv-Served-By for its
// worker (whose requests it carries, one at a time).
type servedByTransport struct {
	rt http.RoundTripper
	w  *benchWorker
}

func (t servedByTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.rt.RoundTrip(req)
	if err == nil {
		t.w.servedBy = resp.Header.Get(kv.HeaderServedBy)
	}
	return resp, err
}

// benchOnce runs the workers of one run (clients of them), with the
// warmup first, and gathers their numbers.
func benchOnce(ctx context.Context, cfg *benchConfig, run, clients int, ids map[int]int, tr http.RoundTripper, token string) (benchRun, error) {
	begin := time.Now()
	sh := &benchShared{cfg: cfg, run: run, measureStart: begin.Add(cfg.warmup)}
	sh.soft, sh.stopSoft = context.WithCancel(ctx)
	defer sh.stopSoft()
	hard, stopHard := context.WithCancel(context.Background())
	defer stopHard()
	sh.hard = hard
	sh.lastDone.Store(begin.UnixNano())
	if cfg.duration > 0 {
		t := time.AfterFunc(cfg.warmup+cfg.duration, sh.stop)
		defer t.Stop()
	}
	go func() {
		<-sh.soft.Done()
		sh.stop() // an interrupt, too, is a stop
		t := time.NewTimer(cfg.grace)
		defer t.Stop()
		select {
		case <-t.C:
			stopHard()
		case <-hard.Done():
		}
	}()

	workers := make([]*benchWorker, clients)
	var wg sync.WaitGroup
	for i := range workers {
		w := &benchWorker{sh: sh, id: i, ids: ids, leader: -1, stats: [2]*benchStats{newBenchStats(), newBenchStats()}}
		if cfg.spread {
			w.leader = i % len(cfg.addrs) // its first request goes there
		}
		client := &http.Client{Transport: servedByTransport{tr, w}}
		conns := make([]kv.Conn, len(cfg.addrs))
		for j, a := range cfg.addrs {
			w.conns = append(w.conns, &kv.HTTPConn{Addr: a, Addrs: cfg.addrs, Client: client, Token: token})
			conns[j] = benchConn{w, j}
		}
		w.ck = kv.NewClerk(conns)
		workers[i] = w
		wg.Go(w.loop)
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	abort := sh.monitor(clients, begin, finished)
	stopHard()

	r := benchRun{Clients: clients, Failed: map[string]int64{}, Errors: map[string]int64{}}
	var lat []time.Duration
	var lastDone time.Time
	for _, w := range workers {
		s := w.stats[1]
		lat = append(lat, s.lat...)
		r.Puts += s.puts
		r.Gets += s.gets
		for k, v := range s.failed {
			r.Failed[k] += v
		}
		for k, v := range s.errors {
			r.Errors[k] += v
		}
		if s.lastDone.After(lastDone) {
			lastDone = s.lastDone
		}
	}
	r.Ops = r.Puts + r.Gets
	end := time.Unix(0, sh.stopAt.Load())
	if lastDone.After(end) {
		end = lastDone
	}
	if elapsed := end.Sub(sh.measureStart); elapsed > 0 {
		r.Seconds = elapsed.Seconds()
		r.OpsPerSec = float64(r.Ops) / r.Seconds
	}
	r.LatencyMs = latencies(lat)
	if abort != nil {
		return r, abort
	}
	if r.Ops == 0 && ctx.Err() == nil {
		return r, fmt.Errorf("the run with %d clients got no operation done (errors: %s)", clients, countList(r.Errors))
	}
	return r, nil
}

// monitor prints a progress line every second (of the warmup, then of
// the measured part) until the workers have finished, and stops the run
// if no operation got done for cfg.timeout; it returns why, then.
func (sh *benchShared) monitor(clients int, begin time.Time, finished <-chan struct{}) error {
	var abort error
	last := [2]int64{}
	// The next tick: a whole number of seconds into the warmup, or into
	// the measured part.
	next := func(now time.Time) time.Time {
		from := sh.measureStart
		if now.Before(from) {
			from = begin
		}
		t := from.Add(now.Sub(from).Truncate(time.Second) + time.Second)
		if now.Before(sh.measureStart) && t.After(sh.measureStart) {
			t = sh.measureStart.Add(time.Second)
		}
		return t
	}
	tick := time.NewTimer(time.Until(next(begin)))
	defer tick.Stop()
	for {
		select {
		case <-finished:
			return abort
		case now := <-tick.C:
			tick.Reset(time.Until(next(now)))
			phase, label, from := 1, "", sh.measureStart
			if now.Before(sh.measureStart) {
				phase, label, from = 0, " warmup", begin
			}
			done := sh.done[phase].Load()
			if sh.cfg.progress != nil {
				fmt.Fprintf(sh.cfg.progress, "bench: %d clients%s %4.0fs  ops %d  ops/s %d  errors %d\n",
					clients, label, now.Sub(from).Seconds(), done, done-last[phase], sh.errs[phase].Load())
			}
			last[phase] = done
			idle := now.Sub(time.Unix(0, sh.lastDone.Load()))
			if abort == nil && idle > sh.cfg.timeout && sh.soft.Err() == nil {
				abort = fmt.Errorf("no operation done for %v (-timeout) with %d clients; stopped (is the cluster up, with a leader?)", idle.Round(time.Second), clients)
				sh.stop()
			}
		}
	}
}

// loop runs operations until the run stops.
func (w *benchWorker) loop() {
	sh, cfg := w.sh, w.sh.cfg
	rng := rand.New(rand.NewPCG(rand.Uint64(), uint64(w.id)))
	pad := strings.Repeat("x", cfg.valueBytes)
	tag := strconv.FormatUint(rng.Uint64(), 36) // this worker's, in its values
	for n := 0; sh.soft.Err() == nil; n++ {
		start := time.Now()
		w.phase = 0
		if !start.Before(sh.measureStart) {
			w.phase = 1
			if cfg.ops > 0 {
				c := sh.claimed.Add(1)
				if c > cfg.ops {
					sh.stop()
					return
				}
				if c == cfg.ops {
					sh.stop() // this one is the last to start
				}
			}
		}
		w.st = w.stats[w.phase]
		op := kv.Op{Kind: kv.Get, Key: "k" + strconv.Itoa(rng.IntN(cfg.keys))}
		if rng.Float64() < cfg.putRatio {
			// The value says who wrote it (the worker's random tag, the
			// operation's number), as far as -value-bytes leaves room.
			op.Kind = kv.Put
			op.Value = tag + "." + strconv.Itoa(n) + ":"
			if len(op.Value) >= len(pad) {
				op.Value = op.Value[:len(pad)]
			} else {
				op.Value += pad[len(op.Value):]
			}
		}
		ctx, cancel := context.WithTimeout(sh.hard, cfg.timeout)
		_, err := w.ck.Do(ctx, op)
		cancel()
		end := time.Now()
		if err == nil {
			w.st.lat = append(w.st.lat, end.Sub(start))
			w.st.lastDone = end
			if op.Kind == kv.Put {
				w.st.puts++
			} else {
				w.st.gets++
			}
			sh.done[w.phase].Add(1)
			sh.lastDone.Store(end.UnixNano())
		} else if errors.Is(err, kv.ErrUnknown) {
			w.st.failed["unknown"]++
		} else {
			w.st.failed["not_done"]++
		}
		if cfg.record != nil {
			cfg.record(benchOp{run: sh.run, worker: w.id, kind: op.Kind, key: op.Key, value: op.Value,
				start: start, end: end, measured: w.phase == 1, err: err})
		}
	}
}

// latencies returns the percentiles of lat (nearest rank), in ms.
func latencies(lat []time.Duration) benchLatency {
	if len(lat) == 0 {
		return benchLatency{}
	}
	slices.Sort(lat)
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(lat)))) - 1
		return float64(lat[max(i, 0)]) / float64(time.Millisecond)
	}
	return benchLatency{P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: at(1)}
}

// countList formats counts as "a=1 b=2", by name, or "-" if there are none.
func countList(m map[string]int64) string {
	var parts []string
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k, v := range m {
			if v > 0 && !yield(k) {
				return
			}
		}
	}) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

// printBench prints the results as a table, a row per run.
func printBench(w io.Writer, cfg benchConfig, runs []benchRun) {
	limit := fmt.Sprintf("%v per run", cfg.duration)
	switch {
	case cfg.duration == 0:
		limit = fmt.Sprintf("%d operations per run", cfg.ops)
	case cfg.ops > 0:
		limit = fmt.Sprintf("%v or %d operations per run", cfg.duration, cfg.ops)
	}
	fmt.Fprintf(w, "raftkv bench: %s; PUTs %.0f%%, GETs the rest; %d keys; %d-byte values; %s; warmup %v\n\n",
		strings.Join(cfg.addrs, ","), 100*cfg.putRatio, cfg.keys, cfg.valueBytes, limit, cfg.warmup)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENTS\tSECONDS\tOPS\tOPS/S\tP50 MS\tP90 MS\tP99 MS\tMAX MS\tPUTS\tGETS\tFAILED\tERRORS")
	for _, r := range runs {
		fmt.Fprintf(tw, "%d\t%.1f\t%d\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t%d\t%s\t%s\n", r.Clients, r.Seconds, r.Ops, r.OpsPerSec,
			r.LatencyMs.P50, r.LatencyMs.P90, r.LatencyMs.P99, r.LatencyMs.Max, r.Puts, r.Gets, countList(r.Failed), countList(r.Errors))
	}
	tw.Flush()
}
