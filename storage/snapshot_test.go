package storage

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/raftkit/raft/core"
)

// snapData returns size bytes of snapshot data that tell meta apart.
func snapData(meta core.SnapshotMeta, size int) []byte {
	b := make([]byte, size)
	rand.New(rand.NewSource(int64(meta.Index)<<20 + int64(meta.Term))).Read(b)
	return b
}

// commitSnap writes data to a new sink of w and commits it, applying the
// commit to m (if not nil) when the snapshot is newer than m's.
func commitSnap(t testing.TB, w *WAL, m *model, meta core.SnapshotMeta, data []byte, keepLog bool) {
	t.Helper()
	sink, err := w.CreateSnapshot(meta)
	if err != nil {
		t.Fatalf("CreateSnapshot(%+v): %v", meta, err)
	}
	if !sink.Meta().Equal(meta) {
		t.Fatalf("sink's Meta = %+v, want %+v", sink.Meta(), meta)
	}
	// In pieces of several sizes, across block boundaries.
	for rest, k := data, 1; len(rest) > 0; k = k*7 + 1 {
		n := min(len(rest), k%(3*blockSize/2)+1)
		if _, err := sink.Write(rest[:n]); err != nil {
			t.Fatalf("Write: %v", err)
		}
		rest = rest[n:]
	}
	if err := sink.Commit(keepLog); err != nil {
		t.Fatalf("Commit(%v) of %+v: %v", keepLog, meta, err)
	}
	if m != nil && meta.Index > m.snap.Index {
		m.snapshot(meta, keepLog)
	}
}

// checkSnap checks that w's current snapshot is meta holding data.
func checkSnap(t testing.TB, w *WAL, meta core.SnapshotMeta, data []byte) {
	t.Helper()
	got, r, err := w.OpenSnapshot()
	if err != nil {
		t.Fatalf("OpenSnapshot: %v", err)
	}
	if !got.Equal(meta) {
		t.Fatalf("OpenSnapshot meta = %+v, want %+v", got, meta)
	}
	if meta.Index == 0 {
		if r != nil {
			t.Fatal("OpenSnapshot with no snapshot returned a reader")
		}
		return
	}
	b, err := io.ReadAll(r)
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	if err != nil || !bytes.Equal(b, data) {
		t.Fatalf("snapshot %+v holds %d bytes (%v), want %d", meta, len(b), err, len(data))
	}
}

// dirFiles returns the names of the files in dir, sorted.
func dirFiles(t testing.TB, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

// snapFiles returns the snapshot and temporary snapshot files in dir.
func snapFiles(t testing.TB, dir string) []string {
	t.Helper()
	var names []string
	for _, name := range dirFiles(t, dir) {
		if strings.Contains(name, snapSuffix) {
			names = append(names, name)
		}
	}
	return names
}

// TestSnapshotRoundTrip: a compaction keeps the entries after the
// snapshot, an install empties the log, Saves go on after either, and
// Load, before and after a reopen, returns the snapshot and the entries
// after it.
func TestSnapshotRoundTrip(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 1 << 10}
	w := openWAL(t, dir, opts)
	m := newModel()
	checkSnap(t, w, core.SnapshotMeta{}, nil)
	hs := core.HardState{Term: 1, Vote: 0}
	mustSave(t, w, &m, hs, mkEntries(1, 10, 1, 30))

	type step struct {
		name    string
		meta    core.SnapshotMeta
		keepLog bool
		then    func() // Saves after the commit
	}
	steps := []step{
		{"compaction", core.SnapshotMeta{Index: 4, Term: 1}, true, func() {
			mustSave(t, w, &m, core.HardState{Term: 2, Vote: 1}, mkEntries(8, 5, 2, 30)) // replaces 8..10
		}},
		{"compaction to the last entry", core.SnapshotMeta{Index: 12, Term: 2}, true, func() {
			mustSave(t, w, &m, m.hs, mkEntries(13, 2, 2, 30))
		}},
		{"install past the log", core.SnapshotMeta{Index: 40, Term: 3}, false, func() {
			mustSave(t, w, &m, core.HardState{Term: 3, Vote: 2}, nil)
			mustSave(t, w, &m, m.hs, mkEntries(41, 3, 3, 30))
		}},
		{"install within the log", core.SnapshotMeta{Index: 42, Term: 3}, false, func() {
			mustSave(t, w, &m, m.hs, mkEntries(43, 2, 4, 30))
		}},
		{"compaction past the log", core.SnapshotMeta{Index: 50, Term: 4}, true, func() {
			mustSave(t, w, &m, m.hs, mkEntries(51, 1, 4, 30))
		}},
	}
	for _, st := range steps {
		data := snapData(st.meta, 3*blockSize/2)
		commitSnap(t, w, &m, st.meta, data, st.keepLog)
		checkLoad(t, w, m)
		checkSnap(t, w, st.meta, data)
		w = reopen(t, w, opts, m)
		checkSnap(t, w, st.meta, data)
		st.then()
		checkLoad(t, w, m)
		w = reopen(t, w, opts, m)
		checkSnap(t, w, st.meta, data)
		if got := snapFiles(t, dir); !slices.Equal(got, []string{snapshotName(st.meta)}) {
			t.Fatalf("%s: snapshot files %v, want only the current one", st.name, got)
		}
	}
	// Saves that don't follow the snapshot are refused, and the WAL goes on.
	for _, ents := range [][]core.Entry{mkEntries(50, 1, 4, 3), mkEntries(45, 1, 4, 3), mkEntries(53, 1, 4, 3)} {
		if err := w.Save(m.hs, ents); err == nil || errors.Is(err, ErrFailed) {
			t.Fatalf("Save from index %d after a snapshot through 50 and a log to 51 = %v, want an error that isn't ErrFailed", ents[0].Index, err)
		}
	}
	mustSave(t, w, &m, m.hs, mkEntries(52, 1, 4, 3))
	w = reopen(t, w, opts, m)
	w.Close()
}

// TestSnapshotNotNewer: a commit of a snapshot not newer than the
// current one discards it and changes nothing.
func TestSnapshotNotNewer(t *testing.T) {
	dir := t.TempDir()
	w := openWAL(t, dir, Options{})
	defer w.Close()
	m := newModel()
	mustSave(t, w, &m, core.HardState{Term: 2, Vote: 1}, mkEntries(1, 20, 2, 10))
	cur := core.SnapshotMeta{Index: 10, Term: 2}
	data := snapData(cur, 100)
	commitSnap(t, w, &m, cur, data, true)
	segs := dirFiles(t, dir)
	for _, meta := range []core.SnapshotMeta{{Index: 10, Term: 2}, {Index: 10, Term: 1}, {Index: 3, Term: 1}} {
		for _, keepLog := range []bool{true, false} {
			commitSnap(t, w, nil, meta, snapData(meta, 200), keepLog)
			checkLoad(t, w, m)
			checkSnap(t, w, cur, data)
			if got := dirFiles(t, dir); !slices.Equal(got, segs) {
				t.Fatalf("after a commit of %+v: files %v, want %v", meta, got, segs)
			}
		}
	}
}

// TestSnapshotSinks: sinks open at once, written from other goroutines
// while Saves go on; aborts; misuse.
func TestSnapshotSinks(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 2 << 10}
	w := openWAL(t, dir, opts)
	m := newModel()
	hs := core.HardState{Term: 1, Vote: 0}
	mustSave(t, w, &m, hs, mkEntries(1, 5, 1, 20))
	if _, err := w.CreateSnapshot(core.SnapshotMeta{}); err == nil {
		t.Fatal("CreateSnapshot of a zero meta succeeded")
	}
	if _, err := w.CreateSnapshot(core.SnapshotMeta{Index: 3}); err == nil {
		t.Fatal("CreateSnapshot of term 0 succeeded")
	}

	// Saves in this goroutine; snapshots of what was saved, two at a
	// time, in others.
	saved := []chan int{make(chan int, 1000), make(chan int, 1000)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var newest core.SnapshotMeta
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range saved[g] {
				if i%(10+g) != 0 {
					continue
				}
				meta := core.SnapshotMeta{Index: i - g, Term: 1}
				sink, err := w.CreateSnapshot(meta)
				if err != nil {
					t.Error(err)
					return
				}
				sink.Write(snapData(meta, 5000))
				if err := sink.Commit(true); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if meta.Index > newest.Index {
					newest = meta
				}
				mu.Unlock()
			}
		}()
	}
	for i := 6; i <= 300; i++ {
		mustSave(t, w, &m, hs, mkEntries(i, 1, 1, 20))
		saved[0] <- i
		saved[1] <- i
	}
	close(saved[0])
	close(saved[1])
	wg.Wait()
	m.snapshot(newest, true)
	checkLoad(t, w, m)
	checkSnap(t, w, newest, snapData(newest, 5000))
	w = reopen(t, w, opts, m)
	checkSnap(t, w, newest, snapData(newest, 5000))

	// Abort removes the file; a sink is done after Commit or Abort.
	if newest.Index != 300 {
		t.Fatalf("newest snapshot %+v, want the one through 300", newest)
	}
	mustSave(t, w, &m, hs, mkEntries(301, 10, 1, 20))
	meta := core.SnapshotMeta{Index: 305, Term: 1}
	a, _ := w.CreateSnapshot(meta)
	a.Write([]byte("aborted"))
	if err := a.Abort(); err != nil {
		t.Fatal(err)
	}
	if err := a.Commit(true); err == nil {
		t.Fatal("Commit after Abort succeeded")
	}
	if _, err := a.Write([]byte("x")); err == nil {
		t.Fatal("Write after Abort succeeded")
	}
	if got := snapFiles(t, dir); !slices.Equal(got, []string{snapshotName(newest)}) {
		t.Fatalf("after an abort: snapshot files %v", got)
	}
	b, _ := w.CreateSnapshot(meta)
	b.Write([]byte("kept"))
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	if err := b.Abort(); err != nil {
		t.Fatalf("Abort after Commit = %v, want nil", err)
	}
	if err := b.Commit(true); err == nil {
		t.Fatal("a second Commit succeeded")
	}
	checkSnap(t, w, meta, []byte("kept"))

	// A sink left open when the WAL closes can't be committed, and its
	// file goes.
	c, _ := w.CreateSnapshot(core.SnapshotMeta{Index: 308, Term: 1})
	c.Write([]byte("late"))
	w.Close()
	if err := c.Commit(false); !errors.Is(err, ErrClosed) {
		t.Fatalf("Commit after Close = %v, want ErrClosed", err)
	}
	if _, err := w.CreateSnapshot(meta); !errors.Is(err, ErrClosed) {
		t.Fatalf("CreateSnapshot after Close = %v, want ErrClosed", err)
	}
	if _, _, err := w.OpenSnapshot(); !errors.Is(err, ErrClosed) {
		t.Fatalf("OpenSnapshot after Close = %v, want ErrClosed", err)
	}
	if got := snapFiles(t, dir); !slices.Equal(got, []string{snapshotName(meta)}) {
		t.Fatalf("after a commit after Close: snapshot files %v", got)
	}
}

// TestSnapshotCommitFailure: a commit that fails before its record
// (writing or syncing the snapshot's file, renaming it, syncing the
// directory) fails alone: its file goes, the previous snapshot stays
// current, and the WAL goes on.
func TestSnapshotCommitFailure(t *testing.T) {
	for _, fail := range []string{"write", "sync", "rename", "sync dir"} {
		t.Run(fail, func(t *testing.T) {
			dir := t.TempDir()
			var armed atomic.Bool
			opts := Options{Logger: slog.New(slog.DiscardHandler)}
			opts.syncFn = func(f *os.File) error {
				isDir := !strings.HasSuffix(f.Name(), segmentSuffix) && !strings.HasSuffix(f.Name(), tmpSuffix)
				if armed.Load() && ((fail == "sync" && strings.HasSuffix(f.Name(), tmpSuffix)) || (fail == "sync dir" && isDir)) {
					return errInjected
				}
				return f.Sync()
			}
			opts.renameFn = func(from, to string) error {
				if armed.Load() && fail == "rename" {
					return errInjected
				}
				return os.Rename(from, to)
			}
			w := openWAL(t, dir, opts)
			m := newModel()
			mustSave(t, w, &m, core.HardState{Term: 1, Vote: 0}, mkEntries(1, 10, 1, 5))
			old := core.SnapshotMeta{Index: 3, Term: 1}
			commitSnap(t, w, &m, old, []byte("old"), true)
			armed.Store(true)
			sk, err := w.CreateSnapshot(core.SnapshotMeta{Index: 6, Term: 1})
			if err != nil {
				t.Fatal(err)
			}
			if fail == "write" {
				sk.(*sink).f.Close() // the next write to the file fails
			}
			sk.Write(make([]byte, 2*blockSize))
			err = sk.Commit(true)
			if err == nil || errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "00000000000000000006-00000000000000000001.snap") {
				t.Fatalf("Commit = %v, want an error naming the snapshot that isn't ErrFailed", err)
			}
			armed.Store(false)
			checkLoad(t, w, m)
			checkSnap(t, w, old, []byte("old"))
			if got := snapFiles(t, dir); !slices.Equal(got, []string{snapshotName(old)}) {
				t.Fatalf("snapshot files after the failed commit: %v", got)
			}
			mustSave(t, w, &m, m.hs, mkEntries(11, 1, 1, 5))
			commitSnap(t, w, &m, core.SnapshotMeta{Index: 7, Term: 1}, []byte("seven"), true)
			w = reopen(t, w, opts, m)
			checkSnap(t, w, core.SnapshotMeta{Index: 7, Term: 1}, []byte("seven"))
			w.Close()
		})
	}
}

// TestSnapshotReaderOutlivesCommit: a reader of the current snapshot
// reads it whole while a newer one replaces it and deletes its file.
func TestSnapshotReaderOutlivesCommit(t *testing.T) {
	w := openWAL(t, t.TempDir(), Options{})
	defer w.Close()
	m := newModel()
	mustSave(t, w, &m, core.HardState{Term: 1, Vote: 0}, mkEntries(1, 10, 1, 5))
	old := core.SnapshotMeta{Index: 5, Term: 1}
	commitSnap(t, w, &m, old, snapData(old, 3*blockSize), true)
	_, r, err := w.OpenSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	first := make([]byte, 100)
	if _, err := io.ReadFull(r, first); err != nil {
		t.Fatal(err)
	}
	commitSnap(t, w, &m, core.SnapshotMeta{Index: 8, Term: 1}, []byte("new"), true)
	rest, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(append(first, rest...), snapData(old, 3*blockSize)) {
		t.Fatalf("reading the replaced snapshot: %d bytes, %v", 100+len(rest), err)
	}
}

// faults injects failures into the fsyncs, renames and removes of a WAL
// once armed: the failAt-th operation and every later one fail without
// doing anything, as if the server had crashed just before it.
type faults struct {
	armed  atomic.Bool
	failAt int64
	mu     sync.Mutex
	ops    []string // the operations tried once armed
}

var errInjected = errors.New("injected failure")

func (f *faults) fail(op string) bool {
	if !f.armed.Load() {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops = append(f.ops, op)
	return f.failAt > 0 && int64(len(f.ops)) >= f.failAt
}

func (f *faults) options(opts Options) Options {
	opts.syncFn = func(file *os.File) error {
		if f.fail("sync " + filepath.Base(file.Name())) {
			return errInjected
		}
		return file.Sync()
	}
	opts.renameFn = func(from, to string) error {
		if f.fail("rename " + filepath.Base(from) + " " + filepath.Base(to)) {
			return errInjected
		}
		return os.Rename(from, to)
	}
	opts.removeFn = func(path string) error {
		if f.fail("remove " + filepath.Base(path)) {
			return errInjected
		}
		return os.Remove(path)
	}
	return opts
}

// copyDir copies the files of dir into a new directory.
func copyDir(t testing.TB, dir string) string {
	t.Helper()
	dst := t.TempDir()
	for _, name := range dirFiles(t, dir) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// segmentSizes returns the size of each segment file in dir.
func segmentSizes(t testing.TB, dir string) map[string]int {
	t.Helper()
	sizes := map[string]int{}
	for _, name := range dirFiles(t, dir) {
		if _, ok := parseSegmentName(name); ok {
			sizes[name] = fileSize(t, filepath.Join(dir, name))
		}
	}
	return sizes
}

// TestSnapshotCrashAtEveryStep makes a snapshot's commit stop at each of
// its fsyncs, renames and removes in turn, as a crash there would, and
// checks that the WAL then opens with everything saved before, the
// previous snapshot or the new one whole, and nothing left over.
func TestSnapshotCrashAtEveryStep(t *testing.T) {
	for _, keepLog := range []bool{true, false} {
		t.Run(fmt.Sprintf("keepLog=%v", keepLog), func(t *testing.T) {
			testCrashAtEveryStep(t, keepLog)
		})
	}
}

func testCrashAtEveryStep(t *testing.T, keepLog bool) {
	// The state before: an older snapshot, a log over several segments.
	base := t.TempDir()
	opts := Options{SegmentBytes: 400, Logger: slog.New(slog.DiscardHandler)}
	w := openWAL(t, base, opts)
	before := newModel()
	mustSave(t, w, &before, core.HardState{Term: 1, Vote: 0}, mkEntries(1, 10, 1, 40))
	oldMeta := core.SnapshotMeta{Index: 3, Term: 1}
	oldData := snapData(oldMeta, blockSize+10)
	commitSnap(t, w, &before, oldMeta, oldData, true)
	for i := 11; i <= 20; i++ {
		mustSave(t, w, &before, core.HardState{Term: 2, Vote: 1}, mkEntries(i, 1, 2, 40))
	}
	w.Close()
	newMeta := core.SnapshotMeta{Index: 15, Term: 2}
	newData := snapData(newMeta, 2*blockSize+10)
	after := before.clone()
	after.snapshot(newMeta, keepLog)

	var full []string // the operations of a commit that does not fail
	for n := int64(1); ; n++ {
		dir := copyDir(t, base)
		f := &faults{failAt: n}
		w := openWAL(t, dir, f.options(opts))
		f.armed.Store(true)
		sizes := segmentSizes(t, dir)
		sink, err := w.CreateSnapshot(newMeta)
		if err != nil {
			t.Fatal(err)
		}
		sink.Write(newData)
		err = sink.Commit(keepLog)
		crashed := int64(len(f.ops)) >= n
		w.Close()
		if !crashed {
			if err != nil {
				t.Fatalf("commit without failures: %v", err)
			}
			full = f.ops
		}
		// What a crash leaves: the commit's record durable if it was
		// written (the failed fsync of a segment), or not.
		variants := []struct {
			dir  string
			want model
		}{{dir, before}}
		if err == nil || errors.Is(err, ErrFailed) {
			variants[0].want = after
		}
		if errors.Is(err, ErrFailed) {
			lost := copyDir(t, dir)
			for name := range segmentSizes(t, lost) {
				if old, ok := sizes[name]; ok {
					os.Truncate(filepath.Join(lost, name), int64(old))
				} else {
					os.Remove(filepath.Join(lost, name))
				}
			}
			variants = append(variants, struct {
				dir  string
				want model
			}{lost, before})
		}
		step := fmt.Sprintf("crash at operation %d (%s)", n, f.ops[min(int(n), len(f.ops))-1])
		if !crashed {
			step = "no crash"
		}
		for _, v := range variants {
			checkAfterCrash(t, step, v.dir, v.want, map[int][]byte{oldMeta.Index: oldData, newMeta.Index: newData})
		}
		if !crashed {
			break
		}
	}
	// The steps that were crashed at, in order.
	var kinds []string
	for _, op := range full {
		kind, _, _ := strings.Cut(op, " ")
		switch {
		case strings.HasSuffix(op, tmpSuffix):
			kind += " temporary snapshot"
		case strings.HasSuffix(op, snapSuffix):
			kind += " snapshot"
		case strings.HasSuffix(op, segmentSuffix):
			kind += " segment"
		default:
			kind += " dir"
		}
		if len(kinds) == 0 || kinds[len(kinds)-1] != kind {
			kinds = append(kinds, kind)
		}
	}
	want := []string{"sync temporary snapshot", "rename snapshot", "sync dir", "sync segment", "remove snapshot", "remove segment", "sync dir"}
	if len(kinds) < len(want) || !slices.Equal(kinds[:len(want)], want) {
		t.Fatalf("a commit's operations %v (%q), want them to start %v", kinds, full, want)
	}
}

// checkAfterCrash opens the WAL in dir and checks that it holds want,
// with the current snapshot's data (by index) whole and no other
// snapshot file left, each removal logged; then that it takes Saves.
func checkAfterCrash(t *testing.T, step, dir string, want model, data map[int][]byte) {
	t.Helper()
	filesBefore := dirFiles(t, dir)
	logger, logBuf := captureLogger()
	opts := Options{SegmentBytes: 400, Logger: logger}
	w, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("%s: Open: %v", step, err)
	}
	hs, snap, ents, err := w.Load()
	if err != nil {
		t.Fatalf("%s: Load: %v", step, err)
	}
	if !snap.Equal(want.snap) {
		t.Fatalf("%s: reopened with the snapshot %+v, want %+v", step, snap, want.snap)
	}
	checkState(t, hs, snap, ents, want)
	checkSnap(t, w, want.snap, data[want.snap.Index])
	if got := snapFiles(t, dir); !slices.Equal(got, []string{snapshotName(want.snap)}) {
		t.Fatalf("%s: snapshot files after Open %v, want only the current one", step, got)
	}
	for _, name := range filesBefore {
		if strings.Contains(name, snapSuffix) && name != snapshotName(want.snap) && !strings.Contains(logBuf.String(), name) {
			t.Fatalf("%s: Open removed %s without a log line naming it: %q", step, name, logBuf.String())
		}
	}
	m := want.clone()
	mustSave(t, w, &m, core.HardState{Term: 9, Vote: 2}, mkEntries(m.last()+1, 2, 9, 40))
	w = reopen(t, w, opts, m)
	w.Close()
}

// TestSnapshotOldKeptUntilRecord: until the new snapshot's record is
// durable, the previous snapshot's file is there and current.
func TestSnapshotOldKeptUntilRecord(t *testing.T) {
	dir := t.TempDir()
	w := openWAL(t, dir, Options{})
	m := newModel()
	mustSave(t, w, &m, core.HardState{Term: 1, Vote: 0}, mkEntries(1, 10, 1, 5))
	old := core.SnapshotMeta{Index: 4, Term: 1}
	commitSnap(t, w, &m, old, []byte("old"), true)
	var seen atomic.Bool
	w.opts.syncFn = func(file *os.File) error {
		if strings.HasSuffix(file.Name(), segmentSuffix) {
			// The new snapshot's record is being made durable: the
			// old one is still on disk.
			seen.Store(true)
			if _, err := os.Stat(filepath.Join(dir, snapshotName(old))); err != nil {
				t.Errorf("old snapshot gone before the new one's record is durable: %v", err)
			}
		}
		return file.Sync()
	}
	commitSnap(t, w, &m, core.SnapshotMeta{Index: 8, Term: 1}, []byte("new"), true)
	if !seen.Load() {
		t.Fatal("the commit synced no segment")
	}
	if _, err := os.Stat(filepath.Join(dir, snapshotName(old))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("old snapshot after the new one's commit: %v", err)
	}
	w = reopen(t, w, Options{}, m)
	w.Close()
}

// snapshotDir returns a WAL directory whose current snapshot meta holds
// data, and the model.
func snapshotDir(t *testing.T, meta core.SnapshotMeta, data []byte) (string, model) {
	t.Helper()
	dir := t.TempDir()
	w := openWAL(t, dir, Options{})
	m := newModel()
	mustSave(t, w, &m, core.HardState{Term: meta.Term, Vote: 0}, mkEntries(1, meta.Index+2, meta.Term, 8))
	commitSnap(t, w, &m, meta, data, true)
	w.Close()
	return dir, m
}

// TestSnapshotCorrupt: damage to the current snapshot's file makes Open
// fail with ErrCorrupt naming the file and the offset of the bad block,
// changing nothing, even when an older snapshot file is at hand.
func TestSnapshotCorrupt(t *testing.T) {
	meta := core.SnapshotMeta{Index: 20, Term: 3}
	data := snapData(meta, 3*blockSize+100)
	name := snapshotName(meta)
	hdr := snapHeaderFixed + metaSize(meta)
	block := func(i int) int { return hdr + i*(blockHeaderSize+blockSize) }
	end := block(3) + blockHeaderSize + 100 // the end block
	cases := []struct {
		name   string
		damage func(b []byte) []byte
		off    int
		msg    string
	}{
		{"magic", func(b []byte) []byte { b[0] ^= 1; return b }, 0, "no snapshot file header"},
		{"header checksum", func(b []byte) []byte { b[hdr-5] ^= 1; return b }, 0, "header checksum mismatch"},
		{"meta length", func(b []byte) []byte { b[len(snapMagic)+1] = 0xff; b[len(snapMagic)+4] = 0xff; return b }, 0, "meta length"},
		{"first block data", func(b []byte) []byte { b[block(0)+blockHeaderSize+7] ^= 0x40; return b }, block(0), "checksum mismatch"},
		{"second block data", func(b []byte) []byte { b[block(1)+blockHeaderSize+blockSize-1] ^= 1; return b }, block(1), "checksum mismatch"},
		{"block length", func(b []byte) []byte { b[block(2)+3] = 1; return b }, block(2), "block length"},
		{"cut in a block", func(b []byte) []byte { return b[:block(2)+100] }, block(2), "cut short"},
		{"no end block", func(b []byte) []byte { return b[:end] }, end, "cut short"},
		{"end block size", func(b []byte) []byte { b[end+8]++; return b }, end, "checksum mismatch in the end block"},
		{"bytes after the end", func(b []byte) []byte { return append(b, 0) }, end + 16, "after the end block"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir, _ := snapshotDir(t, meta, data)
			p := filepath.Join(dir, name)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != end+16 {
				t.Fatalf("snapshot file of %d bytes, want %d", len(b), end+16)
			}
			// An older snapshot file next to it must not be used instead.
			older := core.SnapshotMeta{Index: 10, Term: 3}
			os.WriteFile(filepath.Join(dir, snapshotName(older)), appendSnapHeader(nil, older), 0o600)
			if err := os.WriteFile(p, tc.damage(b), 0o600); err != nil {
				t.Fatal(err)
			}
			files := dirFiles(t, dir)
			_, err = Open(dir, Options{})
			want := fmt.Sprintf("storage: snapshot %s offset %d: ", name, tc.off)
			if !errors.Is(err, ErrCorrupt) || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Open = %v, want ErrCorrupt starting %q saying %q", err, want, tc.msg)
			}
			if got := dirFiles(t, dir); !slices.Equal(got, files) {
				t.Fatalf("a refused Open changed the files: %v, was %v", got, files)
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		dir, _ := snapshotDir(t, meta, data)
		os.Remove(filepath.Join(dir, name))
		if _, err := Open(dir, Options{}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), name) {
			t.Fatalf("Open = %v, want ErrCorrupt naming %s", err, name)
		}
	})
	t.Run("another snapshot's file", func(t *testing.T) {
		dir, _ := snapshotDir(t, meta, data)
		other := core.SnapshotMeta{Index: 20, Term: 2}
		b := appendSnapHeader(nil, other)
		b = appendEndBlock(b, 0)
		os.WriteFile(filepath.Join(dir, name), b, 0o600)
		want := fmt.Sprintf("storage: snapshot %s offset 0: holds the snapshot through index 20 term 2", name)
		if _, err := Open(dir, Options{}); !errors.Is(err, ErrCorrupt) || !strings.HasPrefix(err.Error(), want) {
			t.Fatalf("Open = %v, want ErrCorrupt starting %q", err, want)
		}
	})
	t.Run("damaged while open", func(t *testing.T) {
		// OpenSnapshot's reader hands out the good blocks, then the
		// error naming the bad one, and nothing of it.
		dir, _ := snapshotDir(t, meta, data)
		w := openWAL(t, dir, Options{})
		defer w.Close()
		p := filepath.Join(dir, name)
		b, _ := os.ReadFile(p)
		b[block(1)+blockHeaderSize+5] ^= 1
		os.WriteFile(p, b, 0o600)
		_, r, err := w.OpenSnapshot()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		got, err := io.ReadAll(r)
		want := fmt.Sprintf("storage: snapshot %s offset %d: checksum mismatch", name, block(1))
		if !errors.Is(err, ErrCorrupt) || !strings.HasPrefix(err.Error(), want) {
			t.Fatalf("read = %v, want ErrCorrupt starting %q", err, want)
		}
		if !bytes.Equal(got, data[:blockSize]) {
			t.Fatalf("read %d bytes before the damage, want the %d of the first block", len(got), blockSize)
		}
		if _, err2 := r.Read(make([]byte, 10)); err2 != err {
			t.Fatalf("a later Read = %v, want %v", err2, err)
		}
		// Damage to the header is found by OpenSnapshot itself.
		b[3] ^= 1
		os.WriteFile(p, b, 0o600)
		if _, _, err := w.OpenSnapshot(); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), name+" offset 0") {
			t.Fatalf("OpenSnapshot of a damaged header = %v, want ErrCorrupt naming %s offset 0", err, name)
		}
	})
}

// TestSnapshotLeftoversRemovedAtOpen: at Open, temporary snapshot files
// and snapshot files the log never recorded go, each with a log line;
// other files stay.
func TestSnapshotLeftoversRemovedAtOpen(t *testing.T) {
	meta := core.SnapshotMeta{Index: 6, Term: 2}
	dir, m := snapshotDir(t, meta, []byte("current"))
	leftovers := []string{
		snapshotName(core.SnapshotMeta{Index: 7, Term: 2}),                      // newer, never recorded
		snapshotName(core.SnapshotMeta{Index: 6, Term: 1}),                      // same index, another term
		snapshotName(core.SnapshotMeta{Index: 2, Term: 1}),                      // older
		snapshotName(core.SnapshotMeta{Index: 9, Term: 3}) + ".123" + tmpSuffix, // being written
	}
	others := []string{"notes.txt", "1.snap", "00000000000000000009-00000000000000000003.snap.tmp.x"}
	for _, name := range append(slices.Clone(leftovers), others...) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	logger, logBuf := captureLogger()
	w := openWAL(t, dir, Options{Logger: logger})
	checkLoad(t, w, m)
	checkSnap(t, w, meta, []byte("current"))
	w.Close()
	for _, name := range leftovers {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is still there: %v", name, err)
		}
		if !strings.Contains(logBuf.String(), name) {
			t.Errorf("no log line names %s: %q", name, logBuf.String())
		}
	}
	for _, name := range others {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s was removed: %v", name, err)
		}
	}
}

// TestSnapshotCompactsSegments: with snapshots now and then, the
// segments they cover are deleted, so the files stay few however much is
// written, and the log replays the same.
func TestSnapshotCompactsSegments(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 4 << 10}
	w := openWAL(t, dir, opts)
	m := newModel()
	maxSegs := 0
	var lastMeta core.SnapshotMeta
	for i := 1; i <= 400; i++ { // 10 segments' worth
		mustSave(t, w, &m, core.HardState{Term: 1 + i/100, Vote: i % 3}, mkEntries(i, 1, 1+i/100, 100))
		if i%50 == 0 {
			lastMeta = core.SnapshotMeta{Index: i - 10, Term: 1 + (i-10)/100}
			commitSnap(t, w, &m, lastMeta, snapData(lastMeta, 1000), true)
			checkLoad(t, w, m)
		}
		segs, err := listSegments(dir)
		if err != nil {
			t.Fatal(err)
		}
		maxSegs = max(maxSegs, len(segs))
	}
	if maxSegs > 4 {
		t.Fatalf("up to %d segments with a snapshot every 50 entries, about 1.3 segments' worth", maxSegs)
	}
	segs, _ := listSegments(dir)
	if segs[0].seq < 8 {
		t.Fatalf("the first segment left is %s after writing 10 segments' worth", segs[0].name)
	}
	if got := snapFiles(t, dir); !slices.Equal(got, []string{snapshotName(lastMeta)}) {
		t.Fatalf("snapshot files %v", got)
	}
	w = reopen(t, w, opts, m)
	checkSnap(t, w, lastMeta, snapData(lastMeta, 1000))
	w.Close()
}

// TestSnapshotInterruptedCompaction: a crash while a commit deletes the
// segments that its snapshot covers leaves the last of them; the WAL
// opens with the same state and deletes them.
func TestSnapshotInterruptedCompaction(t *testing.T) {
	base := t.TempDir()
	opts := Options{SegmentBytes: 300}
	w := openWAL(t, base, opts)
	m := newModel()
	for i := 1; i <= 20; i++ {
		mustSave(t, w, &m, core.HardState{Term: 1, Vote: i % 2}, mkEntries(i, 1, 1, 60))
	}
	saved := copyDir(t, base)
	meta := core.SnapshotMeta{Index: 17, Term: 1}
	commitSnap(t, w, &m, meta, []byte("s"), true)
	w.Close()
	var deleted []string
	for _, name := range dirFiles(t, saved) {
		if _, err := os.Stat(filepath.Join(base, name)); errors.Is(err, os.ErrNotExist) {
			deleted = append(deleted, name)
		}
	}
	if len(deleted) < 3 {
		t.Fatalf("the commit deleted %v; want 3 segments or more", deleted)
	}
	after := dirFiles(t, base)
	for j := range deleted {
		dir := copyDir(t, base)
		back := deleted[j:]
		for _, name := range back {
			b, _ := os.ReadFile(filepath.Join(saved, name))
			os.WriteFile(filepath.Join(dir, name), b, 0o600)
		}
		logger, logBuf := captureLogger()
		w, err := Open(dir, Options{SegmentBytes: 300, Logger: logger})
		if err != nil {
			t.Fatalf("%v back: Open: %v", back, err)
		}
		checkLoad(t, w, m)
		checkSnap(t, w, meta, []byte("s"))
		w.Close()
		if got := dirFiles(t, dir); !slices.Equal(got, after) {
			t.Fatalf("%v back: files after Open %v, want %v", back, got, after)
		}
		for _, name := range back {
			if !strings.Contains(logBuf.String(), name) {
				t.Fatalf("%v back: no log line names %s: %q", back, name, logBuf.String())
			}
		}
	}
	// A gap is not what a crash leaves: Open refuses it.
	dir := copyDir(t, base)
	b, _ := os.ReadFile(filepath.Join(saved, deleted[0]))
	os.WriteFile(filepath.Join(dir, deleted[0]), b, 0o600)
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), deleted[1]+" is missing") {
		t.Fatalf("Open with a gap after %s = %v, want ErrCorrupt saying %s is missing", deleted[0], err, deleted[1])
	}
}

// rolledWithHeaders writes a log of several segments, each started with
// a segment header, and returns its model.
func rolledWithHeaders(t *testing.T, dir string) model {
	t.Helper()
	w := openWAL(t, dir, Options{SegmentBytes: 200})
	m := newModel()
	for i := 1; i <= 12; i++ {
		mustSave(t, w, &m, core.HardState{Term: i, Vote: 1}, mkEntries(i, 1, i, 40))
	}
	w.Close()
	if segs, _ := listSegments(dir); len(segs) < 4 {
		t.Fatalf("%d segments, want 4 or more", len(segs))
	}
	return m
}

// TestMissingEntries: a log whose first segments are gone opens only if
// the snapshot covers what they held; otherwise Open names what is
// missing.
func TestMissingEntries(t *testing.T) {
	t.Run("no snapshot", func(t *testing.T) {
		dir := t.TempDir()
		rolledWithHeaders(t, dir)
		b, _ := os.ReadFile(segPath(dir, 2))
		r, _, err := decodeRecord(b)
		if err != nil || r.typ != typeSegmentHeader || r.last < 1 {
			t.Fatalf("segment 2 starts with %+v, %v; want a header after some entries", r, err)
		}
		os.Remove(segPath(dir, 1))
		want := fmt.Sprintf("entries 1 through %d are missing", r.last)
		if _, err := Open(dir, Options{}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), want) {
			t.Fatalf("Open = %v, want ErrCorrupt saying %q", err, want)
		}
	})
	t.Run("old segment without header", func(t *testing.T) {
		// Segments of an older version have no header: the first one
		// left must be segment 1.
		dir := t.TempDir()
		rolledWithHeaders(t, dir)
		b, _ := os.ReadFile(segPath(dir, 3))
		offs := recordOffsets(t, b)
		os.WriteFile(segPath(dir, 3), b[offs[1]:], 0o600)
		os.Remove(segPath(dir, 1))
		os.Remove(segPath(dir, 2))
		if _, err := Open(dir, Options{}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "segment "+segmentName(2)+" is missing") {
			t.Fatalf("Open = %v, want ErrCorrupt saying segment 2 is missing", err)
		}
	})
	t.Run("header mismatch", func(t *testing.T) {
		// Segment 3 in place of segment 2: its header does not match
		// the log that segment 1 leaves.
		dir := t.TempDir()
		rolledWithHeaders(t, dir)
		segs, _ := listSegments(dir)
		for _, s := range segs[1:] {
			os.Remove(filepath.Join(dir, s.name))
		}
		src := t.TempDir()
		rolledWithHeaders(t, src)
		seg3, _ := os.ReadFile(segPath(src, 3))
		os.WriteFile(segPath(dir, 2), seg3, 0o600)
		want := fmt.Sprintf("storage: segment %s offset 0: segment header", segmentName(2))
		if _, err := Open(dir, Options{}); !errors.Is(err, ErrCorrupt) || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "does not match") {
			t.Fatalf("Open = %v, want ErrCorrupt starting %q", err, want)
		}
	})
	t.Run("covered by the snapshot", func(t *testing.T) {
		// What compaction does: the first segments go once a snapshot
		// covers them, and the log opens from the first one left.
		dir := t.TempDir()
		m := rolledWithHeaders(t, dir)
		w := openWAL(t, dir, Options{SegmentBytes: 200})
		meta := core.SnapshotMeta{Index: 11, Term: 11}
		commitSnap(t, w, &m, meta, []byte("s"), true)
		w = reopen(t, w, Options{SegmentBytes: 200}, m)
		w.Close()
		if _, err := os.Stat(segPath(dir, 1)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("segment 1 is still there: %v", err)
		}
	})
}

// TestSnapshotOldFormatSegments: a log of segments without headers, as
// older versions wrote, takes snapshots; a segment goes once a snapshot
// covers it and the segment after it starts with a header, never before.
func TestSnapshotOldFormatSegments(t *testing.T) {
	m := newModel()
	var segs [2][]byte
	for i, r := range []record{
		{typ: typeHardStateV1, hs: core.HardState{Term: 1, Vote: 0}},
		{typ: typeEntriesV1, ents: mkEntries(1, 6, 1, 10)},
		{typ: typeEntriesV1, ents: mkEntries(7, 2, 1, 10)},
	} {
		segs[i/2] = appendRecord(segs[i/2], &r)
		m.save(core.HardState{Term: 1, Vote: 0}, r.ents)
	}
	dir := writeSegment(t, segs[0])
	if err := os.WriteFile(segPath(dir, 2), segs[1], 0o600); err != nil {
		t.Fatal(err)
	}
	opts := Options{SegmentBytes: 300}
	w := openWAL(t, dir, opts)
	checkLoad(t, w, m)
	// Segment 1 is covered, but segment 2 has no header to start from.
	meta := core.SnapshotMeta{Index: 6, Term: 1}
	commitSnap(t, w, &m, meta, []byte("six"), true)
	w = reopen(t, w, opts, m)
	if _, err := os.Stat(segPath(dir, 1)); err != nil {
		t.Fatalf("segment 1, before a segment without a header, is gone: %v", err)
	}
	for i := 9; i <= 20; i++ {
		mustSave(t, w, &m, m.hs, mkEntries(i, 1, 1, 50))
	}
	meta = core.SnapshotMeta{Index: 18, Term: 1}
	pre := copyDir(t, dir)
	commitSnap(t, w, &m, meta, []byte("eighteen"), true)
	for _, seq := range []uint64{1, 2} {
		if _, err := os.Stat(segPath(dir, seq)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("old-format segment %d is still there: %v", seq, err)
		}
	}
	w.Close()
	// A crash after the first deletion leaves segment 2, without a
	// header, first: the log is replayed from segment 3, the first with a
	// header, and the segments before it go.
	crashed := copyDir(t, dir)
	left, _ := listSegments(dir)
	var back []string
	for seq := uint64(2); seq < left[0].seq; seq++ {
		b, _ := os.ReadFile(segPath(pre, seq))
		os.WriteFile(segPath(crashed, seq), b, 0o600)
		back = append(back, segmentName(seq))
	}
	logger, logBuf := captureLogger()
	w = openWAL(t, crashed, Options{SegmentBytes: 300, Logger: logger})
	checkLoad(t, w, m)
	w.Close()
	if got, want := dirFiles(t, crashed), dirFiles(t, dir); !slices.Equal(got, want) {
		t.Fatalf("with %v back: files after Open %v, want %v", back, got, want)
	}
	if !strings.Contains(logBuf.String(), segmentName(2)) {
		t.Fatalf("no log line names %s: %q", segmentName(2), logBuf.String())
	}
	w = openWAL(t, dir, opts)
	checkLoad(t, w, m)
	checkSnap(t, w, meta, []byte("eighteen"))
	w.Close()
}

// TestSnapshotLarge writes a snapshot of more than 100 MiB and reads it
// back, streaming: what the sink, Open's check and the reader allocate
// stays far below the snapshot's size.
func TestSnapshotLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 110 MiB")
	}
	const size = 110 << 20
	dir := t.TempDir()
	w := openWAL(t, dir, Options{})
	m := newModel()
	mustSave(t, w, &m, core.HardState{Term: 1, Vote: 0}, mkEntries(1, 3, 1, 10))
	meta := core.SnapshotMeta{Index: 3, Term: 1}
	chunk := make([]byte, 1<<20+13) // not a multiple of the block size
	fill := func(i int) []byte {
		n := min(len(chunk), size-i*len(chunk))
		for j := 0; j < n; j += 8 {
			chunk[j] = byte(i)
			chunk[min(j+3, n-1)] = byte(j >> 8)
		}
		return chunk[:n]
	}
	allocs := func() uint64 {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.TotalAlloc
	}
	got := make([]byte, len(chunk))
	start := allocs()
	sink, err := w.CreateSnapshot(meta)
	if err != nil {
		t.Fatal(err)
	}
	written := 0
	for i := 0; written < size; i++ {
		n, err := sink.Write(fill(i))
		if err != nil {
			t.Fatal(err)
		}
		written += n
	}
	if err := sink.Commit(true); err != nil {
		t.Fatal(err)
	}
	if a := allocs() - start; a > 8<<20 {
		t.Fatalf("writing a %d MiB snapshot allocated %d KiB", size>>20, a>>10)
	}
	w.Close()
	start = allocs()
	w = openWAL(t, dir, Options{}) // reads the whole file to check it
	_, r, err := w.OpenSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	read := 0
	for i := 0; read < size; i++ {
		want := fill(i)
		if _, err := io.ReadFull(r, got[:len(want)]); err != nil {
			t.Fatalf("read at %d: %v", read, err)
		}
		if !bytes.Equal(got[:len(want)], want) {
			t.Fatalf("data differs in the %d bytes at %d", len(want), read)
		}
		read += len(want)
	}
	if n, err := r.Read(got); n != 0 || err != io.EOF {
		t.Fatalf("read past the end = %d, %v; want io.EOF", n, err)
	}
	r.Close()
	if a := allocs() - start; a > 8<<20 {
		t.Fatalf("opening and reading a %d MiB snapshot allocated %d KiB", size>>20, a>>10)
	}
	w.Close()
}

// The entries Load returns after a reopen hold their commands in memory of
// their own, not in the segment read at Open: a segment of 4 MiB whose
// entries a snapshot covers but the last 10 is not kept in memory for
// those 10.
func TestLoadDetachesCommands(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 64 << 20, Logger: slog.New(slog.DiscardHandler)}
	w, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	const n = 4096
	for i := 1; i <= n; i += 64 {
		var batch []core.Entry
		for k := i; k < i+64; k++ {
			batch = append(batch, core.Entry{Index: k, Term: 1, Command: bytes.Repeat([]byte{byte(k)}, 1<<10)})
		}
		if err := w.Save(core.HardState{Term: 1, Vote: core.None}, batch); err != nil {
			t.Fatal(err)
		}
	}
	sink, err := w.CreateSnapshot(core.SnapshotMeta{Index: n - 10, Term: 1})
	if err != nil {
		t.Fatal(err)
	}
	sink.Write([]byte("state"))
	if err := sink.Commit(true); err != nil {
		t.Fatal(err)
	}
	w.Close()
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	w, err = Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	_, _, ents, err := w.Load()
	if err != nil || len(ents) != 10 {
		t.Fatalf("Load: %d entries, %v; want 10", len(ents), err)
	}
	if grew := heap() - before; grew > 1<<20 {
		t.Errorf("10 entries of 1 KiB loaded keep %d KiB of heap: the segment read at Open is kept", grew>>10)
	}
	runtime.KeepAlive(ents)
}
