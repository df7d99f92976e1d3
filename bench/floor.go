package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// The disk's floor under the harness (-floor). The three servers of a
// cluster share this machine's disk, and a commit waits for two of their
// fsyncs (the leader's and a follower's, or two followers'), which run at
// once and slow each other down: however fast the rest, no commit of one
// proposer beats the time two of three concurrent fsyncs take. diskFloor
// measures it with no Raft at all, next to the time of one fsync alone.

// floorResult is what diskFloor measured.
type floorResult struct {
	alone latencies // one file: append, fsync
	two   latencies // three files at once: until two of them are synced
}

// diskFloor appends size bytes to a file and fsyncs it, rounds times; then
// appends size bytes to each of three files and fsyncs them, all three at
// once, rounds times, timing each round until two are done. The files are
// in a fresh temporary folder, removed before it returns.
func diskFloor(rounds, size int) (res *floorResult, err error) {
	dir, err := os.MkdirTemp("", "raftbench-floor-")
	if err != nil {
		return nil, fmt.Errorf("floor: temp dir: %w", err)
	}
	defer func() {
		if rmErr := os.RemoveAll(dir); rmErr != nil && err == nil {
			err = fmt.Errorf("floor: remove %s: %w", dir, rmErr)
		}
	}()
	var files [3]*os.File
	for i := range files {
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprint(i)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, fmt.Errorf("floor: %w", err)
		}
		defer f.Close()
		files[i] = f
	}
	b := make([]byte, size)
	appendSync := func(f *os.File) error {
		if _, err := f.Write(b); err != nil {
			return fmt.Errorf("floor: write %s: %w", f.Name(), err)
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("floor: fsync %s: %w", f.Name(), err)
		}
		return nil
	}
	res = &floorResult{}
	for range rounds {
		start := time.Now()
		if err := appendSync(files[0]); err != nil {
			return nil, err
		}
		res.alone.add(time.Since(start))
	}
	for range rounds {
		if err := res.round(files, appendSync); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// round syncs the three files at once and records when two are done.
func (r *floorResult) round(files [3]*os.File, appendSync func(*os.File) error) error {
	start := time.Now()
	done := make(chan error, len(files))
	var wg sync.WaitGroup
	for _, f := range files {
		wg.Go(func() { done <- appendSync(f) })
	}
	var errs []error
	for n := 0; n < len(files); n++ {
		if err := <-done; err != nil {
			errs = append(errs, err)
		}
		if n == 1 {
			r.two.add(time.Since(start))
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

// String sums the floor up in a line.
func (r *floorResult) String() string {
	return fmt.Sprintf("disk floor: one fsync alone p50 %.2f ms; two of three at once (a commit's floor here) p50 %.2f ms, p90 %.2f ms",
		ms(r.alone.percentile(50)), ms(r.two.percentile(50)), ms(r.two.percentile(90)))
}
