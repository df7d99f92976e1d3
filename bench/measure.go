package main

import (
	"bytes"
	"fmt"
	"os"
	"runtime/metrics"
	"strconv"
	"syscall"
	"time"
)

// cpuTime returns the user+sys CPU time this process has used.
func cpuTime() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// rss returns the process's resident set size, from /proc/self/statm, or
// 0 where there is none (not Linux).
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseUint(string(f[1]), 10, 64)
	if err != nil {
		return 0
	}
	return pages * uint64(os.Getpagesize())
}

// heapLive is the metric of the Go heap sampled: the bytes of the objects
// the last garbage collection found live.
const heapLive = "/gc/heap/live:bytes"

// memEvery is how often a memSampler samples.
const memEvery = 100 * time.Millisecond

// memSampler samples the process's RSS and the Go heap's live bytes every
// memEvery, and keeps the peak of each.
type memSampler struct {
	stop, done chan struct{}
	rss, heap  uint64 // peaks, read once done is closed
}

func startMemSampler() *memSampler {
	m := &memSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		sample := []metrics.Sample{{Name: heapLive}}
		tick := time.NewTicker(memEvery)
		defer tick.Stop()
		take := func() {
			m.rss = max(m.rss, rss())
			metrics.Read(sample)
			if sample[0].Value.Kind() == metrics.KindUint64 {
				m.heap = max(m.heap, sample[0].Value.Uint64())
			}
		}
		for {
			take()
			select {
			case <-m.stop:
				take()
				return
			case <-tick.C:
			}
		}
	}()
	return m
}

// finish stops the sampling (after one last sample) and returns the
// peaks; an RSS of 0 means it could not be read.
func (m *memSampler) finish() (rss, heap uint64) {
	close(m.stop)
	<-m.done
	return m.rss, m.heap
}
