package main

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// roundConfig is what one round runs.
type roundConfig struct {
	clients  int           // concurrent proposers
	size     int           // bytes per command, tagLen at least
	warmup   time.Duration // proposing before the measurement starts
	duration time.Duration // the measurement
}

// roundResult is what one round measured, between the end of the warm-up
// and the end of the round.
type roundResult struct {
	side          string
	ops           int           // commands applied on the leader
	elapsed       time.Duration // of the measurement
	p50, p99, max time.Duration // latency of a command, from its first proposal to applied, retries included
	cpu           time.Duration // user+sys CPU time of the whole process
	retries       int           // proposals that had to be made again (leadership moved)
	rss, heap     uint64        // peaks of the process's RSS (0: unknown) and of the Go heap's live bytes
	writes        int64         // log writes (each one fsync), all three servers
	entries       int64         // entries those writes carried
}

func (r roundResult) opsPerSec() float64 { return float64(r.ops) / r.elapsed.Seconds() }

// cpuPer1000 is the process's CPU time, in seconds, per 1,000 commands
// applied.
func (r roundResult) cpuPer1000() float64 {
	if r.ops == 0 {
		return 0
	}
	return r.cpu.Seconds() / float64(r.ops) * 1000
}

// entriesPerWrite is how many entries a log write carried on average.
func (r roundResult) entriesPerWrite() float64 {
	if r.writes == 0 {
		return 0
	}
	return float64(r.entries) / float64(r.writes)
}

// Phases of a round, as the proposers see them.
const (
	warming = iota
	measuring
	ending
)

// runRound starts a fresh cluster of s in a fresh temporary folder, has
// cfg.clients goroutines propose commands on it in a loop (runProposer),
// and measures after the warm-up. It fails if a server's state machine
// found a command lost (see ledger). The cluster is stopped and its folder
// removed before it returns.
func runRound(s side, cfg roundConfig) (res roundResult, err error) {
	res.side = s.name
	dir, err := os.MkdirTemp("", "raftbench-"+s.name+"-")
	if err != nil {
		return res, fmt.Errorf("%s: temp dir: %w", s.name, err)
	}
	defer func() {
		if rmErr := os.RemoveAll(dir); rmErr != nil && err == nil {
			err = fmt.Errorf("%s: remove %s: %w", s.name, dir, rmErr)
		}
	}()
	// Leave the last round's garbage out of this one, and give its memory
	// back to the system, so that the RSS measured is this round's.
	debug.FreeOSMemory()
	c, err := s.startCluster(dir)
	if err != nil {
		return res, err
	}
	defer func() {
		if stopErr := c.stop(); stopErr != nil && err == nil {
			err = fmt.Errorf("%s: stop: %w", s.name, stopErr)
		}
	}()

	var stop atomic.Bool
	var phase atomic.Int32
	var retries atomic.Int64
	var lat latencies
	errs := make([]error, cfg.clients)
	var wg sync.WaitGroup
	for id := range cfg.clients {
		wg.Go(func() {
			errs[id] = runProposer(c, id+1, cfg.size, &stop, &retries, func(_ uint64, first time.Time) {
				if phase.Load() == measuring {
					lat.add(time.Since(first))
				}
			})
			if errs[id] != nil {
				stop.Store(true)
			}
		})
	}
	time.Sleep(cfg.warmup)
	cpu0, err0 := cpuTime()
	writes0, entries0 := c.saves()
	retried := retries.Load()
	mem := startMemSampler()
	from := time.Now()
	phase.Store(measuring)
	time.Sleep(cfg.duration)
	phase.Store(ending)
	res.elapsed = time.Since(from)
	cpu1, err1 := cpuTime()
	writes1, entries1 := c.saves()
	res.rss, res.heap = mem.finish()
	res.retries = int(retries.Load() - retried)
	stop.Store(true)
	wg.Wait()
	if err := errors.Join(append(errs, err0, err1)...); err != nil {
		return res, err
	}
	for i, l := range c.ledgers() {
		if gap := l.state().gap; gap != nil {
			return res, fmt.Errorf("%s: server %d: %w", s.name, i+1, gap)
		}
	}
	res.cpu, res.writes, res.entries = cpu1-cpu0, writes1-writes0, entries1-entries0
	res.ops = lat.count()
	res.p50, res.p99, res.max = lat.percentile(50), lat.percentile(99), lat.percentile(100)
	return res, nil
}

// runProposer proposes commands of size bytes on c as proposer id (1 or
// more) until stop: each once the previous one was applied, and a command
// again, with the same tag, as long as c.propose says it may not have
// been (errRetry, counted in retried). After each command applied, it
// calls applied with the command's sequence number and when it was first
// proposed. It returns the first error other than errRetry.
func runProposer(c cluster, id, size int, stop *atomic.Bool, retried *atomic.Int64, applied func(seq uint64, first time.Time)) error {
	for seq := uint64(1); !stop.Load(); seq++ {
		first := time.Now()
		for {
			// A fresh command each time: a library may keep it (hashicorp's log cache does).
			err := c.propose(newCommand(makeTag(id, seq), size))
			if err == nil {
				break
			}
			if !errors.Is(err, errRetry) {
				return err
			}
			retried.Add(1)
			if stop.Load() {
				return nil
			}
		}
		applied(seq, first)
	}
	return nil
}
