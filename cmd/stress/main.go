//go:build unix

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// errReported is a flag error already printed by the flag package.
var errReported = errors.New("bad flags")

// hardKillGrace is how long past -timeout a run may live before it is killed.
const hardKillGrace = time.Minute

type config struct {
	run     string
	n, p    int
	race    bool
	dir     string
	logs    string
	timeout time.Duration
	verbose bool
	env     envList
	extra   []string // passed through to the test binary
}

// envList is a repeatable -env KEY=VAL flag.
type envList []string

func (e *envList) String() string { return strings.Join(*e, " ") }

func (e *envList) Set(s string) error {
	if k, _, ok := strings.Cut(s, "="); !ok || k == "" {
		return fmt.Errorf("want KEY=VAL, got %q", s)
	}
	*e = append(*e, s)
	return nil
}

// splitArgs splits the command line at the first -args: what precedes it
// are stress's flags, what follows goes to the test binary.
func splitArgs(args []string) (own, pass []string) {
	if i := slices.IndexFunc(args, func(a string) bool { return a == "-args" || a == "--args" }); i >= 0 {
		return args[:i], args[i+1:]
	}
	return args, nil
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	own, pass := splitArgs(args)
	c := config{}
	fs := flag.NewFlagSet("stress", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: go run ./cmd/stress [flags] [-args test-binary-flags...]")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.run, "run", "", "run only tests matching `PATTERN` (passed as -test.run)")
	fs.IntVar(&c.n, "n", 20, "number of runs")
	fs.IntVar(&c.p, "p", runtime.NumCPU(), "maximum number of runs at once")
	fs.BoolVar(&c.race, "race", false, "build the test binary with the race detector")
	fs.StringVar(&c.dir, "dir", "./lab", "`DIR` of the package to test, also the runs' working directory")
	fs.StringVar(&c.logs, "logs", "stress-logs", "`DIR` where failed runs' output is kept")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Minute, "per-run timeout (passed as -test.timeout; 0 = none)")
	fs.BoolVar(&c.verbose, "v", true, "pass -test.v to the test binary")
	fs.Var(&c.env, "env", "extra environment variable `KEY=VAL` for the runs (repeatable)")
	if err := fs.Parse(own); err == flag.ErrHelp {
		return c, err
	} else if err != nil {
		return c, errReported // the flag package printed it, with usage
	}
	c.extra = slices.Concat(fs.Args(), pass)
	switch {
	case c.n < 1:
		return c, fmt.Errorf("-n must be at least 1, got %d", c.n)
	case c.p < 1:
		return c, fmt.Errorf("-p must be at least 1, got %d", c.p)
	case c.timeout < 0:
		return c, fmt.Errorf("-timeout must not be negative, got %v", c.timeout)
	case c.logs == "":
		return c, errors.New("-logs must not be empty")
	}
	if fi, err := os.Stat(c.dir); err != nil {
		return c, fmt.Errorf("-dir: %v", err)
	} else if !fi.IsDir() {
		return c, fmt.Errorf("-dir: %s is not a directory", c.dir)
	}
	c.p = min(c.p, c.n)
	return c, nil
}

// buildArgs are the arguments of the "go" command that builds the test
// binary bin from the package in the current directory.
func buildArgs(bin string, race bool) []string {
	args := []string{"test", "-c", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	return append(args, ".")
}

// testArgs are the arguments of each run of the test binary.
func testArgs(c config) []string {
	var args []string
	if c.run != "" {
		args = append(args, "-test.run="+c.run)
	}
	if c.verbose {
		args = append(args, "-test.v")
	}
	args = append(args, "-test.timeout="+c.timeout.String())
	return append(args, c.extra...)
}

type status int

const (
	notStarted status = iota
	passed
	failed
	killed // by an interrupt
)

type result struct {
	status status
	dur    time.Duration
	log    string // path of the kept log of a failed run
	err    error  // why the run failed, or why its log could not be kept
}

type stresser struct {
	cfg   config
	bin   string
	tmp   string
	start time.Time

	mu                    sync.Mutex
	done, pass, fail, run int
	results               []result // results[i-1] is run i
}

func main() { os.Exit(mainErr(os.Args[1:])) }

func mainErr(args []string) int {
	cfg, err := parseFlags(args, os.Stderr)
	if err == flag.ErrHelp {
		return 0
	} else if err != nil {
		if err != errReported {
			fmt.Fprintln(os.Stderr, "stress:", err)
		}
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	tmp, err := os.MkdirTemp("", "stress-")
	if err == nil {
		tmp, err = filepath.Abs(tmp)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "stress:", err)
		return 2
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "pkg.test")
	fmt.Fprintf(os.Stderr, "stress: go %s (in %s)\n", strings.Join(buildArgs("pkg.test", cfg.race), " "), cfg.dir)
	build := exec.CommandContext(ctx, "go", buildArgs(bin, cfg.race)...)
	build.Dir = cfg.dir
	if out, err := build.CombinedOutput(); ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "stress: interrupted while building")
		return 130
	} else if err != nil {
		fmt.Fprintf(os.Stderr, "%s\nstress: build failed: %v\n", out, err)
		return 2
	}
	if _, err := os.Stat(bin); err != nil {
		fmt.Fprintf(os.Stderr, "stress: no test binary built (no test files in %s?)\n", cfg.dir)
		return 2
	}

	s := &stresser{cfg: cfg, bin: bin, tmp: tmp, start: time.Now(), results: make([]result, cfg.n)}
	fmt.Fprintf(os.Stderr, "stress: %d runs, %d at a time: pkg.test %s\n", cfg.n, cfg.p, strings.Join(testArgs(cfg), " "))
	context.AfterFunc(ctx, func() {
		stop() // a second Ctrl-C kills stress itself
		s.mu.Lock()
		defer s.mu.Unlock()
		fmt.Fprintf(os.Stderr, "stress: interrupted, killing %d running runs\n", s.run)
	})
	sem := make(chan struct{}, cfg.p)
	var wg sync.WaitGroup
	for i := 1; i <= cfg.n; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		s.mu.Lock()
		s.run++
		s.mu.Unlock()
		wg.Go(func() {
			defer func() { <-sem }()
			s.finish(i, s.runOnce(ctx, i))
		})
	}
	wg.Wait()

	fmt.Fprint(os.Stderr, summary(s.results))
	switch {
	case s.fail > 0:
		return 1
	case ctx.Err() != nil:
		return 130
	}
	return 0
}

// runOnce runs the test binary once, as run i, and keeps its output if it fails.
func (s *stresser) runOnce(ctx context.Context, i int) result {
	tmpLog := filepath.Join(s.tmp, fmt.Sprintf("run-%d.log", i))
	out, err := os.Create(tmpLog)
	if err != nil {
		return result{status: failed, err: err}
	}
	runCtx := ctx
	if s.cfg.timeout > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, s.cfg.timeout+hardKillGrace)
		defer cancel()
	}
	cmd := exec.CommandContext(runCtx, s.bin, testArgs(s.cfg)...)
	cmd.Dir = s.cfg.dir
	cmd.Env = append(os.Environ(), s.cfg.env...)
	cmd.Stdout, cmd.Stderr = out, out
	// Own process group: a terminal's Ctrl-C reaches only stress, which
	// then kills the whole group, including any children of the test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var wasKilled atomic.Bool
	cmd.Cancel = func() error {
		wasKilled.Store(true)
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 5 * time.Second

	start := time.Now()
	err = cmd.Run()
	r := result{dur: time.Since(start)}
	switch {
	case err == nil:
		r.status = passed
	case wasKilled.Load() && ctx.Err() != nil:
		r.status = killed
	default:
		r.status = failed
		if wasKilled.Load() {
			err = fmt.Errorf("killed %v after -test.timeout=%v", hardKillGrace, s.cfg.timeout)
		}
		r.err = err
		fmt.Fprintf(out, "\n--- stress: run %d failed after %v: %v\n", i, fmtDur(r.dur), err)
	}
	if cerr := out.Close(); cerr != nil && r.status == failed {
		r.err = fmt.Errorf("%v; writing log: %v", r.err, cerr)
	}
	if r.status != failed {
		os.Remove(tmpLog)
		return r
	}
	r.log = filepath.Join(s.cfg.logs, fmt.Sprintf("run-%d.log", i))
	if err := keepLog(tmpLog, r.log); err != nil {
		r.log, r.err = "", fmt.Errorf("%v; log not kept: %v", r.err, err)
	}
	return r
}

// keepLog moves the log at src to dst, creating dst's directory.
func keepLog(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if os.Rename(src, dst) == nil {
		return nil
	}
	data, err := os.ReadFile(src) // different file systems: copy
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o644)
}

// finish records the result of run i and reports progress.
func (s *stresser) finish(i int, r result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.results[i-1] = r
	s.run--
	switch r.status {
	case killed:
		return
	case passed:
		s.pass++
	case failed:
		s.fail++
	}
	s.done++
	fmt.Fprintln(os.Stderr, progressLine(s.done, s.cfg.n, s.pass, s.fail, s.run, time.Since(s.start)))
	if r.status == failed {
		fmt.Fprintf(os.Stderr, "stress: run %d FAILED after %v (%v): %s\n", i, fmtDur(r.dur), r.err, orNone(r.log))
	}
}

func progressLine(done, n, pass, fail, running int, elapsed time.Duration) string {
	w := len(strconv.Itoa(n))
	return fmt.Sprintf("[%*d/%d] pass=%d fail=%d running=%d elapsed=%v",
		w, done, n, pass, fail, running, elapsed.Round(time.Second))
}

// summary describes the results of all runs, those not started included.
func summary(results []result) string {
	var b strings.Builder
	var pass, fail, nkilled, notRun int
	var durs []time.Duration
	for _, r := range results {
		switch r.status {
		case passed:
			pass++
		case failed:
			fail++
		case killed:
			nkilled++
		case notStarted:
			notRun++
		}
		if r.status == passed || r.status == failed {
			durs = append(durs, r.dur)
		}
	}
	fmt.Fprintf(&b, "passed %d/%d, failed %d", pass, len(results), fail)
	if nkilled+notRun > 0 {
		fmt.Fprintf(&b, " (interrupted: %d killed, %d not started)", nkilled, notRun)
	}
	b.WriteString("\n")
	if len(durs) > 0 {
		lo, med, hi := durStats(durs)
		fmt.Fprintf(&b, "run time: min %v, median %v, max %v\n", fmtDur(lo), fmtDur(med), fmtDur(hi))
	}
	if fail > 0 {
		b.WriteString("failed runs:\n")
		for i, r := range results {
			if r.status == failed {
				fmt.Fprintf(&b, "  run %d: %s\n", i+1, orNone(r.log))
			}
		}
	}
	return b.String()
}

func orNone(log string) string {
	if log == "" {
		return "(no log)"
	}
	return log
}

// durStats returns the minimum, median and maximum of a non-empty list.
func durStats(durs []time.Duration) (lo, med, hi time.Duration) {
	d := slices.Sorted(slices.Values(durs))
	n := len(d)
	med = d[n/2]
	if n%2 == 0 {
		med = (d[n/2-1] + d[n/2]) / 2
	}
	return d[0], med, d[n-1]
}

// fmtDur rounds d for display: to 10ms, or to 1ms below a second.
func fmtDur(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(10 * time.Millisecond)
}
