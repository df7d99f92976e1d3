package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/raftkit/raft/core"
)

// segment is one segment file of the log.
type segment struct {
	seq  uint64
	name string // file name within the directory
}

const segmentSuffix = ".wal"

// segmentName returns the file name of segment seq.
func segmentName(seq uint64) string {
	return fmt.Sprintf("%020d%s", seq, segmentSuffix)
}

// parseSegmentName returns the sequence number of a segment file name.
func parseSegmentName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segmentSuffix)
	if !ok || len(digits) != 20 {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	seq, err := strconv.ParseUint(digits, 10, 64)
	return seq, err == nil
}

// listSegments returns the segments in dir in order. They must be
// numbered consecutively: segments are deleted only from the front, each
// deletion durable before the next (see compact). Files that are not
// named like segments are ignored.
func listSegments(dir string) ([]segment, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("storage: read dir %s: %w", dir, err)
	}
	var segs []segment
	for _, de := range des {
		seq, ok := parseSegmentName(de.Name())
		if !ok {
			continue
		}
		if !de.Type().IsRegular() {
			return nil, fmt.Errorf("storage: segment %s in %s is not a regular file", de.Name(), dir)
		}
		segs = append(segs, segment{seq: seq, name: de.Name()})
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].seq < segs[j].seq })
	for i := 1; i < len(segs); i++ {
		if segs[i].seq != segs[i-1].seq+1 {
			return nil, fmt.Errorf("storage: %s: segment %s is missing (next is %s): %w",
				dir, segmentName(segs[i-1].seq+1), segs[i].name, ErrCorrupt)
		}
	}
	return segs, nil
}

// replayStart returns the index in segs of the segment to replay the
// log from, and the number of the segment missing before it, if any
// (else 0). The log is replayed from segment 1 if it is there, else from
// the first segment that starts with a segment header. Segments before
// that one have no header: an older version wrote them, and deleting
// them, once a snapshot covered them, was interrupted. Whether they held
// anything the log needs shows at the end of the replay: the entries from
// the header's snapshot to its last index must have been covered by a
// later snapshot or replaced.
func (w *WAL) replayStart(segs []segment) (int, uint64, error) {
	if len(segs) == 0 || segs[0].seq <= 1 {
		return 0, 0, nil
	}
	missing := segs[0].seq - 1
	for i := range segs {
		ok, err := w.startsWithHeader(segs[i], i == len(segs)-1)
		if err != nil {
			return 0, 0, err
		}
		if ok {
			return i, missing, nil
		}
	}
	return 0, 0, fmt.Errorf("storage: %s: segment %s is missing, and no segment after it starts with a segment header to replay the log from: %w",
		w.dir, segmentName(missing), ErrCorrupt)
}

// startsWithHeader reports whether seg's first record is a segment
// header. A first record that claims to be one and does not decode is
// damage, unless seg is the last segment and the record is cut short (a
// torn write). Only the header's bytes are read.
func (w *WAL) startsWithHeader(seg segment, last bool) (bool, error) {
	f, err := os.Open(filepath.Join(w.dir, seg.name))
	if err != nil {
		return false, fmt.Errorf("storage: read segment %s: %w", seg.name, err)
	}
	defer f.Close()
	b := make([]byte, headerSize)
	n, err := io.ReadFull(f, b)
	if err == nil {
		size := binary.LittleEndian.Uint32(b)
		if recordType(b[8]) != typeSegmentHeader || size > maxHeaderPayload {
			return false, nil
		}
		b = append(b, make([]byte, size)...)
		k, rerr := io.ReadFull(f, b[headerSize:])
		n, err = n+k, rerr
	}
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return false, fmt.Errorf("storage: read segment %s: %w", seg.name, err)
	}
	_, _, derr := decodeRecord(b[:n])
	switch {
	case derr == nil:
		return true, nil
	case last && err != nil:
		return false, nil // cut short at the end of the log: torn
	default:
		return false, segCorrupt(seg.name, 0, derr.Error())
	}
}

// maxHeaderPayload bounds the payload of a segment header: a HardState,
// a meta with its length, the last index, the end byte.
const maxHeaderPayload = 4*binary.MaxVarintLen64 + maxMetaBytes + 1

// segInfo is what the WAL knows of a segment it has replayed or written.
type segInfo struct {
	seq    uint64
	header bool // it starts with a segment header record
	body   bool // it holds a record other than a segment header
	// maxIndex is the highest index of the entries written in it, 0 if
	// none: once the snapshot covers it, the segment holds nothing the
	// log needs but its HardState and snapshot records.
	maxIndex int
}

// state is what the log holds: the last HardState, the current snapshot,
// and the entries after it. While a log is replayed from a segment
// header, the entries from the snapshot's index up to base are in
// segments that were deleted: a later snapshot record must cover them,
// or entries records replace them, before the replay ends.
type state struct {
	hs   core.HardState
	snap core.SnapshotMeta
	base int          // entries (snap.Index, base] are missing; base == snap.Index once whole
	ents []core.Entry // the entries from index base+1
}

func newState() *state { return &state{hs: core.HardState{Vote: core.None}} }

// last returns the index of the last entry.
func (s *state) last() int { return s.base + len(s.ents) }

// apply applies record r, other than a segment header, to the state.
func (s *state) apply(r *record) error {
	if r.typ == typeSnapshot {
		if r.snap.Index <= s.snap.Index {
			return fmt.Errorf("snapshot through index %d does not follow the snapshot through index %d", r.snap.Index, s.snap.Index)
		}
		switch {
		case !r.keepLog || r.snap.Index >= s.last():
			s.base, s.ents = r.snap.Index, nil
		case r.snap.Index > s.base:
			s.ents = s.ents[r.snap.Index-s.base:]
			s.base = r.snap.Index
		}
		s.snap = r.snap
		return nil
	}
	if r.typ.hasHardState() {
		s.hs = r.hs
	}
	if r.typ.hasEntries() {
		first := r.ents[0].Index
		switch {
		case first <= s.snap.Index:
			return fmt.Errorf("entries from index %d are covered by the snapshot through index %d", first, s.snap.Index)
		case first > s.last()+1:
			return fmt.Errorf("entries from index %d do not follow the log, which ends at index %d", first, s.last())
		case first <= s.base:
			s.base, s.ents = first-1, append(s.ents[:0], r.ents...)
		default:
			s.ents = append(s.ents[:first-1-s.base], r.ents...)
		}
	}
	return nil
}

// header applies segment header r, which starts a segment: the first
// segment replayed starts the state; a later one must agree with it.
func (s *state) header(r *record, first bool) error {
	if first {
		*s = state{hs: r.hs, snap: r.snap, base: r.last}
		return nil
	}
	if r.hs != s.hs || !r.snap.Equal(s.snap) || r.last != s.last() {
		return fmt.Errorf("segment header (term %d, vote %d, snapshot through index %d term %d, last index %d) does not match the log before it (term %d, vote %d, snapshot through index %d term %d, last index %d)",
			r.hs.Term, r.hs.Vote, r.snap.Index, r.snap.Term, r.last, s.hs.Term, s.hs.Vote, s.snap.Index, s.snap.Term, s.last())
	}
	return nil
}

// corruptError is damage that is not a torn write at the end of the log,
// in a segment or a snapshot file.
type corruptError struct {
	what string // "segment" or "snapshot"
	name string // file name
	off  int64
	msg  string
}

func (e *corruptError) Error() string {
	return fmt.Sprintf("storage: %s %s offset %d: %s", e.what, e.name, e.off, e.msg)
}

func (e *corruptError) Is(target error) bool { return target == ErrCorrupt }

// segCorrupt returns a corruptError for segment name at offset off.
func segCorrupt(name string, off int, msg string) error {
	return &corruptError{what: "segment", name: name, off: int64(off), msg: msg}
}

// replayed is what replay finds.
type replayed struct {
	st        *state
	segs      []segInfo // the segments replayed
	size      int64     // the length of the last one, after any cut
	leftovers []segment // the segments before the first one replayed
}

// replay reads the segments in order, from the one replayStart picks,
// and rebuilds the state. A torn record at the end of the last segment is
// cut off if repair is set, and is an error otherwise.
func (w *WAL) replay(repair bool) (*replayed, error) {
	all, err := listSegments(w.dir)
	if err != nil {
		return nil, err
	}
	start, missing, err := w.replayStart(all)
	if err != nil {
		return nil, err
	}
	segs := all[start:]
	st := newState()
	infos := make([]segInfo, len(segs))
	var size int64
	for i, seg := range segs {
		info := &infos[i]
		info.seq = seg.seq
		path := filepath.Join(w.dir, seg.name)
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("storage: read segment %s: %w", seg.name, err)
		}
		last := i == len(segs)-1
		off := 0
		for off < len(b) {
			r, n, err := decodeRecord(b[off:])
			if err == nil {
				if err := replayRecord(st, info, &r, i == 0, off); err != nil {
					return nil, segCorrupt(seg.name, off, err.Error())
				}
				off += n
				continue
			}
			if errors.Is(err, errMalformed) || !last {
				return nil, segCorrupt(seg.name, off, err.Error())
			}
			// Damage in the last segment: a torn write if it looks like
			// a write that did not finish and no valid record follows,
			// since a record is written only once the one before it is
			// synced.
			if why := notTorn(b[off:]); why != "" {
				return nil, segCorrupt(seg.name, off, fmt.Sprintf("%v; %s", err, why))
			}
			next, scanErr := findRecord(b, off+1)
			if scanErr != nil {
				return nil, segCorrupt(seg.name, off, fmt.Sprintf("%v; %v", err, scanErr))
			}
			if next >= 0 {
				return nil, segCorrupt(seg.name, off, fmt.Sprintf("%v (a valid record follows at offset %d)", err, next))
			}
			if !repair {
				return nil, segCorrupt(seg.name, off, err.Error())
			}
			if err := w.cut(path, off); err != nil {
				return nil, err
			}
			w.opts.Logger.Warn("storage: cut torn record off the end of the log",
				"dir", w.dir, "file", seg.name, "offset", off, "bytes", len(b)-off, "damage", err.Error())
			break
		}
		size = int64(off)
	}
	if st.base > st.snap.Index {
		return nil, fmt.Errorf("storage: %s: entries %d through %d are missing: segment %s is missing, the log starts at segment %s, and the snapshot through index %d does not cover them: %w",
			w.dir, st.snap.Index+1, st.base, segmentName(missing), segs[0].name, st.snap.Index, ErrCorrupt)
	}
	st.detach()
	return &replayed{st: st, segs: infos, size: size, leftovers: all[:start]}, nil
}

// detach copies the commands of the entries out of the segments' bytes
// into one buffer of their own, so that the segments read at Open (64 MiB
// each by default) are not kept in memory for the entries after the
// snapshot, which are usually far fewer.
func (s *state) detach() {
	if len(s.ents) == 0 {
		return
	}
	total := 0
	for _, e := range s.ents {
		total += len(e.Command)
	}
	buf := make([]byte, 0, total)
	ents := make([]core.Entry, len(s.ents))
	for i, e := range s.ents {
		at := len(buf)
		buf = append(buf, e.Command...)
		e.Command = buf[at:len(buf):len(buf)]
		ents[i] = e
	}
	s.ents = ents
}

// replayRecord applies record r, at offset off of a segment, to st and
// notes what it holds in info. A segment header must be the segment's
// first record; the first segment replayed starts the state with it.
func replayRecord(st *state, info *segInfo, r *record, firstSeg bool, off int) error {
	if r.typ == typeSegmentHeader {
		if off != 0 {
			return errors.New("segment header in the middle of a segment")
		}
		info.header = true
		return st.header(r, firstSeg)
	}
	info.body = true
	if err := st.apply(r); err != nil {
		return err
	}
	if r.typ.hasEntries() {
		info.maxIndex = max(info.maxIndex, r.ents[len(r.ents)-1].Index)
	}
	return nil
}

// cut truncates the file at path to off bytes and syncs it.
func (w *WAL) cut(path string, off int) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("storage: cut torn tail of %s: %w", filepath.Base(path), err)
	}
	err = f.Truncate(int64(off))
	if err == nil {
		err = w.opts.syncFn(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("storage: cut torn tail of %s at offset %d: %w", filepath.Base(path), off, err)
	}
	return nil
}
