package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/raftkit/raft/core"
)

// DefaultSegmentBytes is the segment size at which the WAL starts a new
// segment if Options.SegmentBytes is not set.
const DefaultSegmentBytes = 64 << 20

// ErrLocked is returned, wrapped, by Open when another WAL, in this
// process or another, has the directory open.
var ErrLocked = errors.New("storage: directory in use by another WAL")

// ErrCorrupt is wrapped by the errors of Open for damage that is not a
// torn write at the end of the log, and by those of OpenSnapshot and its
// reader for a damaged snapshot file.
var ErrCorrupt = errors.New("storage: corrupt log")

// ErrFailed is wrapped by the error that Save returns, then and forever
// after, once a write or fsync has failed.
var ErrFailed = errors.New("storage: WAL failed")

// ErrClosed is returned by the methods of a closed WAL.
var ErrClosed = errors.New("storage: WAL closed")

// Options tunes a WAL. The zero value is the defaults.
type Options struct {
	// SegmentBytes is the size past which the WAL starts a new segment
	// file; 0 means DefaultSegmentBytes. A segment holds at least one
	// record, so one larger than this gets a segment of its own.
	SegmentBytes int64
	// Logger gets a line when Open cuts a torn record off the log or
	// removes files left over by a crash, and when deleting what a
	// snapshot covers fails; nil means slog.Default().
	Logger *slog.Logger

	// syncFn fsyncs a file or directory; nil means (*os.File).Sync.
	// renameFn and removeFn rename and remove a file; nil means os.Rename
	// and os.Remove. Tests set them to inject failures.
	syncFn   func(*os.File) error
	renameFn func(oldpath, newpath string) error
	removeFn func(path string) error
	// maxPayload is the payload size past which Save splits a batch
	// into several records; 0 means maxPayload. Tests set it lower.
	maxPayload int
}

// WAL is a write-ahead log in a directory, opened by Open. Its methods
// are safe for concurrent use, though Save is meant to be called by one
// goroutine.
type WAL struct {
	// snapMu serialises the commits of snapshots, and Close with them.
	// It is taken before mu, which a commit holds only while it writes
	// its record and deletes what the snapshot covers.
	snapMu sync.Mutex
	mu     sync.Mutex
	dir    string
	opts   Options
	lock   *os.File // dir/LOCK, flocked

	seg     *os.File // the last segment, open for appending
	segSeq  uint64
	segSize int64
	segs    []segInfo // the segments in order, the last one seg

	hs     core.HardState    // the last one saved
	snap   core.SnapshotMeta // the current snapshot, zero if none
	last   int               // index of the last entry saved, or snap.Index if none follows it
	loaded *state            // the state replayed at Open, until Load or Save
	buf    []byte            // encoding buffer

	err    error // set once a write or fsync failed
	closed bool
}

// Open opens the WAL in dir, creating dir if it does not exist, replays
// it, and reads the current snapshot's file whole to check it. It fails
// with an error wrapping ErrLocked if another WAL has dir open, and with
// one wrapping ErrCorrupt if the log is damaged other than by a torn write
// at its end, or the snapshot's file is damaged or missing (see the
// package doc); a torn write at the end is cut off, and what a crash left
// over is removed.
func Open(dir string, opts Options) (*WAL, error) {
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = DefaultSegmentBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.syncFn == nil {
		opts.syncFn = (*os.File).Sync
	}
	if opts.renameFn == nil {
		opts.renameFn = os.Rename
	}
	if opts.removeFn == nil {
		opts.removeFn = os.Remove
	}
	if opts.maxPayload <= 0 || opts.maxPayload > maxPayload {
		opts.maxPayload = maxPayload
	}
	if err := mkdirAll(dir, opts.syncFn); err != nil {
		return nil, err
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	w := &WAL{dir: dir, opts: opts, lock: lock}
	if err := w.open(); err != nil {
		lock.Close() // releases the flock
		return nil, err
	}
	return w, nil
}

// open replays the log, checks the current snapshot's file, opens the
// last segment for appending, and deletes what is left over from a crash
// or that the snapshot covers.
func (w *WAL) open() error {
	rp, err := w.replay(true)
	if err != nil {
		return err
	}
	st, segs, size := rp.st, rp.segs, rp.size
	if st.snap.Index > 0 {
		if err := w.verifySnapshot(st.snap); err != nil {
			return err
		}
	}
	w.loaded, w.hs, w.snap, w.last, w.segs = st, st.hs, st.snap, st.last(), segs
	w.removeLeftovers(rp.leftovers)
	if len(segs) == 0 {
		if err := w.createSegment(1, nil); err != nil {
			return fmt.Errorf("storage: %w", err)
		}
		w.compact(true)
		return nil
	}
	w.segSeq, w.segSize = segs[len(segs)-1].seq, size
	name := segmentName(w.segSeq)
	w.seg, err = os.OpenFile(filepath.Join(w.dir, name), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("storage: open segment %s: %w", name, err)
	}
	if size == 0 {
		// Its header was torn off by a crash: write it again, so that
		// the segment can be replayed without the ones before it.
		if err := w.appendSynced(w.appendHeader(nil)); err != nil {
			return fmt.Errorf("storage: %w", err)
		}
		w.segs[len(w.segs)-1].header = true
	}
	w.compact(true)
	return nil
}

// mkdirAll creates dir and any missing parents, and fsyncs the directory
// above each one it creates so that the new directories survive a crash.
func mkdirAll(dir string, syncFn func(*os.File) error) error {
	var created []string
	for p := filepath.Clean(dir); ; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil || !errors.Is(err, fs.ErrNotExist) {
			break
		}
		created = append(created, p)
		if filepath.Dir(p) == p {
			break
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("storage: create dir %s: %w", dir, err)
	}
	for _, p := range created {
		if err := syncDir(filepath.Dir(p), syncFn); err != nil {
			return fmt.Errorf("storage: create dir %s: %w", dir, err)
		}
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("storage: open dir %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("storage: open dir %s: not a directory", dir)
	}
	return nil
}

// syncDir fsyncs directory dir.
func syncDir(dir string, syncFn func(*os.File) error) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	err = syncFn(d)
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// lockDir takes an exclusive flock on dir/LOCK without waiting. flock
// locks belong to an open file, so a second lockDir of the same dir fails
// in this process too.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("storage: open lock file in %s: %w", dir, err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		if err == syscall.EWOULDBLOCK {
			return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
		}
		return nil, fmt.Errorf("storage: lock %s: %w", dir, err)
	}
	return f, nil
}

// Load returns the state that was saved last: the HardState, the
// current snapshot's meta, and the log after the snapshot. For a new
// directory that is a HardState with Vote core.None, a zero meta and no
// entries. The first Load after Open hands over the state replayed at
// Open; a later one, or one after a Save or a snapshot's commit, reads the
// segments again. The caller owns what it gets.
func (w *WAL) Load() (core.HardState, core.SnapshotMeta, []core.Entry, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return core.HardState{}, core.SnapshotMeta{}, nil, err
	}
	st := w.loaded
	w.loaded = nil
	if st == nil {
		rp, err := w.replay(false)
		if err != nil {
			return core.HardState{}, core.SnapshotMeta{}, nil, err
		}
		st = rp.st
	}
	return st.hs, st.snap, st.ents, nil
}

// usable returns ErrClosed if the WAL is closed, the error it failed
// with if it failed, nil otherwise. w.mu must be held.
func (w *WAL) usable() error {
	if w.closed {
		return ErrClosed
	}
	return w.err
}

// Save durably records hs and replaces the saved log from ents[0].Index
// on with ents, if ents is not empty, before it returns. ents must be
// consecutive, start after the current snapshot, and start at most one
// past the last saved index (the snapshot's, if no entry follows it). An
// hs equal to the last saved one is not written again; a Save with
// nothing to write writes nothing.
//
// Save costs O(len(ents)) and one fsync (two more when it starts a
// segment). Once a write or fsync fails, it and every later Save return
// the same error, which wraps ErrFailed. A Save whose arguments are
// invalid returns an error and writes nothing, and the WAL goes on.
func (w *WAL) Save(hs core.HardState, ents []core.Entry) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	if err := w.check(hs, ents); err != nil {
		return err
	}
	writeHS := hs != w.hs
	if !writeHS && len(ents) == 0 {
		return nil
	}
	w.loaded = nil // stale now; Load reads the segments again
	for first := true; first || len(ents) > 0; first = false {
		r := record{hs: hs}
		if writeHS && first {
			r.typ = typeHardState
		}
		if len(ents) > 0 {
			size, n := recordOverhead, 0
			for n < len(ents) {
				es := entrySize(&ents[n])
				if n > 0 && size+es > w.opts.maxPayload {
					break
				}
				size += es
				n++
			}
			r.ents, ents = ents[:n], ents[n:]
			if r.typ == typeHardState {
				r.typ = typeHardStateEntries
			} else {
				r.typ = typeEntries
			}
		}
		if err := w.write(&r); err != nil {
			return err
		}
	}
	return nil
}

// recordOverhead bounds the payload bytes of a record besides its
// entries: a HardState, the first index, the count and the end byte.
const recordOverhead = 4*binary.MaxVarintLen64 + 1

// entryOverhead bounds the payload bytes of an entry besides its command:
// the type byte, the term and the command length.
const entryOverhead = 1 + 2*binary.MaxVarintLen64

// MaxCommandBytes returns the largest Command that one entry can carry in
// a Save: one entry with it fits in a record with a HardState. Save
// refuses an entry with a larger one.
func (w *WAL) MaxCommandBytes() int {
	return w.opts.maxPayload - recordOverhead - entryOverhead
}

// check validates the arguments of Save.
func (w *WAL) check(hs core.HardState, ents []core.Entry) error {
	if hs.Term < 0 {
		return fmt.Errorf("storage: save: negative term %d", hs.Term)
	}
	if len(ents) == 0 {
		return nil
	}
	first := ents[0].Index
	if first <= w.snap.Index {
		return fmt.Errorf("storage: save: entries from index %d are covered by the snapshot through index %d", first, w.snap.Index)
	}
	if first < 1 || first > w.last+1 {
		return fmt.Errorf("storage: save: entries from index %d do not follow the log, which ends at index %d", first, w.last)
	}
	room := w.MaxCommandBytes()
	for i := range ents {
		e := &ents[i]
		switch {
		case e.Index != first+i:
			return fmt.Errorf("storage: save: entry %d of the batch has index %d, want %d", i, e.Index, first+i)
		case e.Term < 0:
			return fmt.Errorf("storage: save: entry %d has negative term %d", e.Index, e.Term)
		case len(e.Command) > room:
			return fmt.Errorf("storage: save: entry %d has a command of %d bytes, over the maximum %d", e.Index, len(e.Command), room)
		}
	}
	return nil
}

// write appends r to the log and syncs it, starting a new segment first
// if r would take the current one past SegmentBytes. On failure the WAL
// is finished.
func (w *WAL) write(r *record) error {
	w.buf = appendRecord(w.buf[:0], r)
	if cap(w.buf) > 4<<20 {
		defer func() { w.buf = nil }() // don't keep a big batch's buffer
	}
	var err error
	if cur := &w.segs[len(w.segs)-1]; cur.body && w.segSize+int64(len(w.buf)) > w.opts.SegmentBytes {
		err = w.createSegment(w.segSeq+1, w.buf)
	} else {
		err = w.appendSynced(w.buf)
	}
	if err != nil {
		w.err = fmt.Errorf("%w: %w", ErrFailed, err)
		return w.err
	}
	cur := &w.segs[len(w.segs)-1]
	cur.body = true
	if r.typ.hasHardState() {
		w.hs = r.hs
	}
	if r.typ == typeSnapshot {
		if !r.keepLog || r.snap.Index > w.last {
			w.last = r.snap.Index
		}
		w.snap = r.snap
	}
	if r.typ.hasEntries() {
		w.last = r.ents[len(r.ents)-1].Index
		cur.maxIndex = max(cur.maxIndex, w.last)
	}
	return nil
}

// appendHeader appends a segment header record holding the current
// state to dst.
func (w *WAL) appendHeader(dst []byte) []byte {
	return appendRecord(dst, &record{typ: typeSegmentHeader, hs: w.hs, snap: w.snap, last: w.last})
}

// appendSynced appends bufs to the current segment and fsyncs it.
func (w *WAL) appendSynced(bufs ...[]byte) error {
	for _, b := range bufs {
		n, err := w.seg.Write(b)
		w.segSize += int64(n)
		if err != nil {
			return fmt.Errorf("write segment %s: %w", segmentName(w.segSeq), err)
		}
	}
	if err := w.opts.syncFn(w.seg); err != nil {
		return fmt.Errorf("sync segment %s: %w", segmentName(w.segSeq), err)
	}
	return nil
}

// createSegment closes the current segment, if any, and makes segment seq
// the current one, holding a segment header and then b: it writes the
// file, fsyncs it, then fsyncs the directory.
func (w *WAL) createSegment(seq uint64, b []byte) error {
	if w.seg != nil {
		err := w.seg.Close()
		w.seg = nil
		if err != nil {
			return fmt.Errorf("close segment %s: %w", segmentName(w.segSeq), err)
		}
	}
	name := segmentName(seq)
	f, err := os.OpenFile(filepath.Join(w.dir, name), os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create segment %s: %w", name, err)
	}
	w.seg, w.segSeq, w.segSize = f, seq, 0
	w.segs = append(w.segs, segInfo{seq: seq, header: true})
	if err := w.appendSynced(w.appendHeader(nil), b); err != nil {
		return err
	}
	return syncDir(w.dir, w.opts.syncFn)
}

// Close closes the WAL and releases its directory. Every Save has already
// been synced, so Close writes nothing. A snapshot being committed is
// committed first; the sinks still open can no longer be committed. Later
// calls of any method return ErrClosed.
func (w *WAL) Close() error {
	w.snapMu.Lock()
	defer w.snapMu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	w.closed = true
	w.loaded, w.buf = nil, nil
	var err error
	if w.seg != nil {
		if cerr := w.seg.Close(); cerr != nil {
			err = fmt.Errorf("storage: close segment %s: %w", segmentName(w.segSeq), cerr)
		}
	}
	if cerr := w.lock.Close(); cerr != nil && err == nil { // releases the flock
		err = fmt.Errorf("storage: close lock file in %s: %w", w.dir, cerr)
	}
	return err
}
