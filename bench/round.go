package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
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
	side    string
	ops     int             // commands applied on the leader
	elapsed time.Duration   // of the measurement
	lat     []time.Duration // per command, from its first proposal to applied, retries included; sorted
	cpu     time.Duration   // user+sys CPU time of the whole process
	retries int             // proposals that had to be made again (leadership moved)
}

func (r roundResult) opsPerSec() float64 { return float64(r.ops) / r.elapsed.Seconds() }

// cpuPerOp is the process's CPU time per command applied.
func (r roundResult) cpuPerOp() time.Duration {
	if r.ops == 0 {
		return 0
	}
	return r.cpu / time.Duration(r.ops)
}

// done is one command's completion: when (since the round's start) and
// how long it took.
type done struct {
	at, lat time.Duration
}

// runRound starts a fresh cluster of s in a fresh temporary folder, has
// cfg.clients goroutines propose commands on it in a loop, each waiting
// for its command to be applied on the leader before the next, and
// measures after the warm-up. The cluster is stopped and its folder
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
	runtime.GC() // leave the last round's garbage out of this one
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
	var retries atomic.Int64
	dones := make([][]done, cfg.clients)
	errs := make([]error, cfg.clients)
	start := time.Now()
	var wg sync.WaitGroup
	for id := range cfg.clients {
		wg.Go(func() {
			for seq := uint64(1); !stop.Load(); seq++ {
				t0 := time.Now()
				for {
					// A fresh command each time: a library may keep it (hashicorp's log cache does).
					err := c.propose(newCommand(uint64(id+1)<<40|seq, cfg.size))
					if err == nil {
						break
					}
					if !errors.Is(err, errRetry) {
						errs[id] = err
						stop.Store(true)
						return
					}
					retries.Add(1)
					if stop.Load() {
						return
					}
				}
				t1 := time.Now()
				dones[id] = append(dones[id], done{at: t1.Sub(start), lat: t1.Sub(t0)})
			}
		})
	}
	time.Sleep(cfg.warmup)
	cpu0, err0 := cpuTime()
	from, retried := time.Since(start), retries.Load()
	time.Sleep(cfg.duration)
	cpu1, err1 := cpuTime()
	to, retried := time.Since(start), retries.Load()-retried
	stop.Store(true)
	wg.Wait()
	if err := errors.Join(append(errs, err0, err1)...); err != nil {
		return res, err
	}
	res.elapsed, res.cpu, res.retries = to-from, cpu1-cpu0, int(retried)
	for _, ds := range dones {
		for _, d := range ds {
			if d.at >= from && d.at < to {
				res.lat = append(res.lat, d.lat)
			}
		}
	}
	res.ops = len(res.lat)
	slices.Sort(res.lat)
	return res, nil
}

// cpuTime returns the user+sys CPU time this process has used.
func cpuTime() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// percentile returns the p-th percentile (0 < p <= 100) of sorted, by the
// nearest-rank method, or 0 if sorted is empty.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}
