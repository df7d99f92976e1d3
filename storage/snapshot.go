package storage

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/raftkit/raft/core"
)

// CreateSnapshot returns a sink for a snapshot covering the log through
// meta.Index, writing through to a temporary file in the WAL's directory
// (see core.SnapshotSink). Several may be open at once. Commit makes the
// snapshot current durably; a Commit of a snapshot not newer than the
// current one (by index) discards it and returns nil.
//
// A sink is used by one goroutine at a time, which need not be the one
// calling Save: the WAL's lock is taken only by Commit, while it writes
// its record and deletes what the snapshot covers.
func (w *WAL) CreateSnapshot(meta core.SnapshotMeta) (core.SnapshotSink, error) {
	name := snapshotName(meta)
	if err := checkMeta(meta); err != nil {
		return nil, fmt.Errorf("storage: create snapshot through index %d term %d: %w", meta.Index, meta.Term, err)
	}
	w.mu.Lock()
	err := w.usable()
	w.mu.Unlock()
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(w.dir, name+".*"+tmpSuffix)
	if err != nil {
		return nil, fmt.Errorf("storage: create snapshot %s: %w", name, err)
	}
	s := &sink{w: w, meta: meta, f: f, tmp: filepath.Base(f.Name())}
	if s.bw, err = newBlockWriter(f, meta); err != nil {
		err = fmt.Errorf("storage: write snapshot %s: %w", s.tmp, err)
		s.Abort()
		return nil, err
	}
	return s, nil
}

// sink is a snapshot being written to a temporary file.
type sink struct {
	w    *WAL
	meta core.SnapshotMeta
	f    *os.File
	tmp  string // the temporary file's name in the WAL's directory
	bw   *blockWriter
	err  error // the first write error
	done bool  // committed or aborted
}

// Meta returns what the snapshot covers.
func (s *sink) Meta() core.SnapshotMeta { return s.meta }

// Write appends p to the snapshot.
func (s *sink) Write(p []byte) (int, error) {
	if s.done {
		return 0, s.finished("write")
	}
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.bw.Write(p)
	if err != nil {
		s.err = fmt.Errorf("storage: write snapshot %s: %w", s.tmp, err)
	}
	return n, s.err
}

func (s *sink) finished(what string) error {
	return fmt.Errorf("storage: %s snapshot %s: already committed or aborted", what, snapshotName(s.meta))
}

// Commit makes the snapshot durable and the current one (see
// core.SnapshotSink): it finishes and fsyncs the file, renames it to its
// snapshot name and fsyncs the directory, then records it in the log.
// The snapshot is current once that record is durable. Then the older
// snapshot files, and the segments that hold nothing the log still needs,
// are deleted.
//
// An error before the record is written leaves the WAL as it was, and
// the file is removed. A failed write of the record finishes the WAL, as
// a failed Save does (ErrFailed).
func (s *sink) Commit(keepLog bool) error {
	if s.done {
		return s.finished("commit")
	}
	s.done = true
	err := s.err
	if err == nil {
		if err = s.bw.finish(); err != nil {
			err = fmt.Errorf("storage: write snapshot %s: %w", s.tmp, err)
		}
	}
	if err == nil {
		if err = s.w.opts.syncFn(s.f); err != nil {
			err = fmt.Errorf("storage: sync snapshot %s: %w", s.tmp, err)
		}
	}
	if cerr := s.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("storage: close snapshot %s: %w", s.tmp, cerr)
	}
	if err != nil {
		s.w.removeQuietly(s.tmp)
		return err
	}
	return s.w.commitSnapshot(s.tmp, s.meta, keepLog)
}

// Abort drops the snapshot and removes its file. It does nothing after
// Commit or Abort.
func (s *sink) Abort() error {
	if s.done {
		return nil
	}
	s.done = true
	s.f.Close()
	if err := s.w.remove(s.tmp); err != nil {
		return fmt.Errorf("storage: abort snapshot: %w", err)
	}
	return nil
}

// commitSnapshot makes the snapshot meta, written and synced to the
// temporary file tmp, the current one: see sink.Commit.
func (w *WAL) commitSnapshot(tmp string, meta core.SnapshotMeta, keepLog bool) error {
	w.snapMu.Lock()
	defer w.snapMu.Unlock()
	w.mu.Lock()
	cur, err := w.snap, w.usable()
	w.mu.Unlock()
	if err == nil && meta.Index <= cur.Index {
		return w.remove(tmp) // not newer: discarded
	}
	if err != nil {
		w.removeQuietly(tmp)
		return err
	}
	name := snapshotName(meta)
	if err := w.opts.renameFn(filepath.Join(w.dir, tmp), filepath.Join(w.dir, name)); err != nil {
		w.removeQuietly(tmp)
		return fmt.Errorf("storage: commit snapshot %s: %w", name, err)
	}
	if err := syncDir(w.dir, w.opts.syncFn); err != nil {
		w.removeQuietly(name)
		return fmt.Errorf("storage: commit snapshot %s: %w", name, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil { // a Save failed meanwhile
		w.removeQuietly(name)
		return err
	}
	if err := w.write(&record{typ: typeSnapshot, snap: meta, keepLog: keepLog}); err != nil {
		return err // the WAL is finished; Open sorts out whether the record is durable
	}
	w.loaded = nil
	w.compact(false)
	return nil
}

// OpenSnapshot returns the current snapshot's meta and a reader of its
// bytes, which the caller closes; or a zero meta and a nil reader if
// there is no snapshot. The reader streams from the file, checking each
// block as it goes: damage is an error wrapping ErrCorrupt that names the
// file and offset, returned before any byte of the damaged block. The
// reader goes on working after later commits and Close.
func (w *WAL) OpenSnapshot() (core.SnapshotMeta, io.ReadCloser, error) {
	w.mu.Lock()
	meta, err := w.snap, w.usable()
	var f *os.File
	if err == nil && meta.Index > 0 {
		f, err = w.openSnapshotFile(meta) // under the lock: a commit may delete it
	}
	w.mu.Unlock()
	if err != nil || meta.Index == 0 {
		return core.SnapshotMeta{}, nil, err
	}
	r, err := newSnapshotReader(f, snapshotName(meta), meta)
	if err != nil {
		return core.SnapshotMeta{}, nil, err
	}
	return meta, r, nil
}

// openSnapshotFile opens the file of snapshot meta, which the log names
// as current: a missing file is damage.
func (w *WAL) openSnapshotFile(meta core.SnapshotMeta) (*os.File, error) {
	name := snapshotName(meta)
	f, err := os.Open(filepath.Join(w.dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("storage: %s: snapshot %s, the current one, is missing: %w", w.dir, name, ErrCorrupt)
	}
	if err != nil {
		return nil, fmt.Errorf("storage: open snapshot %s: %w", name, err)
	}
	return f, nil
}

// verifySnapshot reads the whole file of snapshot meta, checking it.
func (w *WAL) verifySnapshot(meta core.SnapshotMeta) error {
	f, err := w.openSnapshotFile(meta)
	if err != nil {
		return err
	}
	r, err := newSnapshotReader(f, snapshotName(meta), meta)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, r)
	r.Close()
	return err
}

// compact deletes what the current snapshot makes unneeded: the older
// snapshot files, and the segments at the front of the log up to the
// last one that starts with a segment header (which holds the HardState
// and snapshot they had) and that only segments holding no entry after
// the snapshot precede. Segments are deleted in order, each deletion
// synced before the next, so that a crash leaves them consecutive. A
// failure is logged and stops the deletions; the next commit, or Open,
// tries again. w.mu must be held, or the WAL be opening (atOpen: see
// removeSnapshots; each deletion is logged).
func (w *WAL) compact(atOpen bool) {
	w.removeSnapshots(atOpen)
	k := 0 // delete w.segs[:k]
	for i := 1; i < len(w.segs) && w.segs[i-1].maxIndex <= w.snap.Index; i++ {
		if w.segs[i].header {
			k = i
		}
	}
	for ; k > 0; k-- {
		name := segmentName(w.segs[0].seq)
		err := w.remove(name)
		if err == nil {
			err = syncDir(w.dir, w.opts.syncFn)
		}
		if err != nil {
			w.opts.Logger.Warn("storage: could not delete a segment that the snapshot covers; will try again after the next snapshot",
				"dir", w.dir, "file", name, "snapshot_index", w.snap.Index, "err", err)
			return
		}
		if atOpen {
			w.opts.Logger.Info("storage: removed a segment that the snapshot covers", "dir", w.dir, "file", name, "snapshot_index", w.snap.Index)
		}
		w.segs = w.segs[1:]
	}
}

// removeLeftovers removes, at Open, the segments before the one the log
// was replayed from (see replayStart): left over from a compaction that
// a crash interrupted, and covered by the snapshot. Each removal is
// logged.
func (w *WAL) removeLeftovers(segs []segment) {
	for _, seg := range segs {
		if err := w.remove(seg.name); err != nil {
			w.opts.Logger.Warn("storage: could not remove a segment that the snapshot covers", "dir", w.dir, "file", seg.name, "err", err)
			continue
		}
		w.opts.Logger.Info("storage: removed a segment that the snapshot covers, left over from an interrupted deletion",
			"dir", w.dir, "file", seg.name, "snapshot_index", w.snap.Index)
	}
}

// removeSnapshots removes the snapshot files older than the current
// snapshot. At Open (atOpen) it also removes the temporary files of
// snapshots being written and the snapshot files that are newer than the
// current one or of its index but another term: a commit that crashed
// after its rename but before its record was durable. Each removal at
// Open is logged. Failures are logged.
func (w *WAL) removeSnapshots(atOpen bool) {
	des, err := os.ReadDir(w.dir)
	if err != nil {
		w.opts.Logger.Warn("storage: could not list old snapshot files", "dir", w.dir, "err", err)
		return
	}
	for _, de := range des {
		name := de.Name()
		m, isSnap := parseSnapshotName(name)
		var why string
		switch {
		case !de.Type().IsRegular():
			continue
		case atOpen && isSnapshotTemp(name):
			why = "a snapshot that was being written when the server stopped"
		case !isSnap || (m.Index == w.snap.Index && m.Term == w.snap.Term):
			continue
		case m.Index < w.snap.Index:
			why = "a snapshot older than the current one"
		case !atOpen:
			continue
		default:
			why = "a snapshot that was never recorded in the log (the server stopped during its commit)"
		}
		if err := w.remove(name); err != nil {
			w.opts.Logger.Warn("storage: could not remove "+why, "dir", w.dir, "file", name, "err", err)
			continue
		}
		if atOpen {
			w.opts.Logger.Info("storage: removed "+why, "dir", w.dir, "file", name, "current_snapshot_index", w.snap.Index)
		}
	}
}

// remove removes file name of the WAL's directory; one that does not
// exist is no error.
func (w *WAL) remove(name string) error {
	if err := w.opts.removeFn(filepath.Join(w.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return nil
}

// removeQuietly removes file name after a failure that is being
// reported: its own failure is logged. Open removes what is left.
func (w *WAL) removeQuietly(name string) {
	if err := w.remove(name); err != nil {
		w.opts.Logger.Warn("storage: could not remove a snapshot file after a failed commit; Open will", "dir", w.dir, "file", name, "err", err)
	}
}
