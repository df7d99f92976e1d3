// Package storage is a durable write-ahead log (WAL) for what a Raft
// server must not forget across a crash: its HardState (term and vote),
// its latest snapshot, and its log after the snapshot. A *WAL implements
// the raft package's Storage interface.
//
// # Files
//
// A WAL lives in a directory of its own, which holds
//
//   - LOCK, flocked while a WAL has the directory open;
//   - the segment files 00000000000000000001.wal, 00000000000000000002.wal,
//     ...: a 20-digit zero-padded sequence number, consecutive. Records
//     are appended to the last segment; when a record would take it past
//     Options.SegmentBytes, the WAL starts the next one. The segments at
//     the front go once a snapshot covers them (see Snapshots), so the
//     first one is not always 1;
//   - the current snapshot, INDEX-TERM.snap (each a 20-digit zero-padded
//     number), and while one is being written its temporary file
//     INDEX-TERM.snap.RANDOM.tmp.
//
// Other files in the directory are ignored.
//
// # Records
//
// A segment is a sequence of records, with no header of its own. A record
// is
//
//	length  uint32, little-endian: the payload length, at most 64 MiB
//	crc     uint32, little-endian: CRC32C (Castagnoli) of type and payload
//	type    byte
//	payload length bytes
//
// and the payload, of varints (encoding/binary's uvarint and varint) and
// single bytes, is by type:
//
//	4 hardState:         uvarint term, varint vote, end byte
//	5 entries:           uvarint first index, uvarint count, then per
//	                     entry the type byte (its core.EntryType), uvarint
//	                     term, uvarint len, len command bytes; end byte
//	6 hardState+entries: uvarint term, varint vote, then an entries
//	                     payload (with its end byte)
//	7 snapshot:          keepLog byte (0 or 1), uvarint len, len bytes of
//	                     snapshot meta, end byte
//	8 segment header:    uvarint term, varint vote, uvarint len, len
//	                     bytes of snapshot meta (zero if none), uvarint
//	                     last index, end byte
//
// A snapshot meta is a version byte (1), uvarint index, uvarint term; a
// later version may add fields (a membership configuration, say), which
// this one refuses rather than misreads.
//
// The end byte is 0xFF, so that a whole record never ends in a zero byte
// (see Damage). Types 1-3, which older versions wrote, still decode: they
// are types 4-6 without the type bytes and without the end byte, and their
// entries are core.EntryNormal. Any value of core.EntryType is kept as it
// is; the WAL does not interpret it. Type 0 is never used, so zeros are
// never a record.
//
// Replaying the records in order gives the state. There is no truncate
// record: an entries record replaces the log from its first index on,
// which must be after the current snapshot and at most one past the log's
// last index at that point. A snapshot record makes its snapshot the
// current one: with keepLog the entries after its index stay, without
// the log after it is empty. Every segment the WAL starts begins with a
// segment header: the HardState, the current snapshot and the log's last
// index at that point, so that the log can be replayed from that segment
// without the ones before it. Replayed in the middle of the log, a header
// must match the state so far. Segments that older versions wrote have no
// header.
//
// # Snapshots
//
// A snapshot file is a header (magic "RAFTSNAP", version byte 1, uint32
// meta length, the snapshot meta, uint32 CRC32C of the header so far),
// the data in blocks (uint32 length of 1 to 64 KiB, uint32 CRC32C of the
// data, the data), and an end block (uint32 0, uint32 CRC32C of the next
// 8 bytes, uint64 the number of data bytes); integers little-endian.
// A sink (CreateSnapshot) writes the blocks to a temporary file as they
// fill, and a reader (OpenSnapshot) streams them back, checking each one
// before it hands out its bytes: neither holds more than a block.
//
// The log is the truth: a snapshot is current once its snapshot record
// is durable. Commit
//
//  1. writes the end block and fsyncs the temporary file;
//  2. renames it to INDEX-TERM.snap and fsyncs the directory;
//  3. appends the snapshot record and fsyncs the segment;
//  4. deletes the older snapshot files, and the segments at the front up
//     to the last one that starts with a segment header and is preceded
//     only by segments with no entry after the snapshot's index.
//
// A snapshot not newer (by index) than the current one is discarded
// before step 2. Until step 3 the previous snapshot is current and its
// file stays. So what the directory holds, whatever the history, is the
// snapshot and the segments from about the one that holds the first
// entry after it; and Open replays only those.
//
// # Crash safety
//
// A crash at any step leaves the state of the last durable record, and
// Open tidies up: it removes temporary snapshot files, and snapshot files
// other than the current one (newer ones were renamed but never recorded),
// each with a log line. Step 4 deletes segments in order, each deletion
// fsynced before the next, so the segments left are always consecutive;
// Open refuses a gap. It replays the log from segment 1 if it is there,
// else from the first segment with a header; segments before that one
// (without a header: an older version wrote them) are removed with a log
// line. The entries from the header's snapshot to its last index are in
// the segments before it, so they must be covered by a later snapshot
// record or replaced by later entries: otherwise Open fails with
// ErrCorrupt naming the missing entries and segment. So deleting a
// segment never loses the latest vote or snapshot, and a log with a gap
// after the snapshot never opens.
//
// # Writing
//
// A Save writes one record (hardState, entries, or both in one record,
// the HardState first), then fsyncs the segment before it returns. Only a
// batch whose payload would pass 64 MiB is split into several records,
// each synced before the next is written, with the HardState in the first.
// So every record is on disk before the next one is written: a crash can
// damage only the last record of the log. A new segment (its header and
// the record that starts it) is written, fsynced, and then its directory
// is fsynced.
//
// After a write or an fsync of the log fails the WAL is finished: that
// Save and every later one return the same error, which wraps ErrFailed.
// (On Linux a failed fsync may drop the dirty pages and a retried one
// then succeeds without having written them.) Reopening the directory is
// the way on. A failure in steps 1-2 of a commit only fails that commit;
// one in step 3 finishes the WAL; one in step 4 is logged, and retried
// by the next commit or Open.
//
// # Damage
//
// The current snapshot's file is read whole at Open, and by every reader:
// damage (a bad checksum, a cut, a header that does not match its name,
// bytes after the end) is an error wrapping ErrCorrupt that names the file
// and the offset of the bad block. Open never falls back to an older
// snapshot: the log after it may need the newer one.
//
// Open replays the segments. A record is damaged if it does not decode: a
// short header, a length over 64 MiB or past the end of the file, or a
// bad checksum. Damage to the last record of the last
// segment is a write torn by a crash, and is cut, only if no valid record
// follows it and it looks like a write that did not finish:
//
//   - fewer than 9 bytes (a short header) are left in the file;
//   - its header is 9 zero bytes;
//   - its length runs past the end of the file, unless the checksum is
//     right for the bytes up to the end of the file (then the record was
//     written whole and its length field has been damaged since); or
//   - all of its length is in the file, and the file is zero-filled from
//     some byte of the record to its end.
//
// Cutting means the file is truncated at the start of the damaged record,
// fsynced, and one line is logged naming the file and offset. A segment
// left empty gets its header again.
//
// A whole record (all of its length in the file) with a bad checksum that
// does not end in such zeros was damaged after it was written, not torn:
// it was fsynced, may have been acknowledged, and may hold a vote, so Open
// refuses it even at the very end. Only the end byte of types 4-8 makes
// this sound: a record of types 1-3 can end in zero bytes of its own (a
// vote for server 0, an empty command), so a damaged such record at the
// very end is cut as torn.
//
// Any damage other than a torn write, which could drop entries that were
// acknowledged, makes Open fail with an error wrapping ErrCorrupt that
// names the segment and byte offset: a bad record anywhere in a segment
// that is not the last, a bad record in the last one that does not look
// unfinished (as above) or is followed by a valid record, a record whose
// checksum is right but whose type is unknown (written by a newer
// version, perhaps) or whose payload does not decode, entries that do
// not follow the log (a gap in the indexes) or that a snapshot covers, a
// snapshot record not newer than the current snapshot, a segment header
// that does not match the log before it, or missing segments. "A
// valid record follows" means a whole record with a good checksum
// starting at any byte after the damaged one's start, since a damaged
// length says nothing of where the next record starts; so a torn record
// whose commands happen to hold a whole record makes Open refuse rather
// than cut, which errs on the safe side.
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
