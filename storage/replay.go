package storage

import (
	"errors"
	"fmt"
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
// numbered 1, 2, 3, ... with none missing, since none is ever deleted.
// Files that are not named like segments are ignored.
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
	for i, s := range segs {
		if s.seq != uint64(i)+1 {
			return nil, fmt.Errorf("storage: %s: segment %s is missing (next is %s): %w",
				dir, segmentName(uint64(i)+1), s.name, ErrCorrupt)
		}
	}
	return segs, nil
}

// state is what the log holds: the last HardState and the entries, which
// start at index 1.
type state struct {
	hs   core.HardState
	ents []core.Entry
}

func newState() *state { return &state{hs: core.HardState{Vote: core.None}} }

// apply applies record r to the state.
func (s *state) apply(r *record) error {
	if r.typ.hasHardState() {
		s.hs = r.hs
	}
	if r.typ.hasEntries() {
		first := r.ents[0].Index
		if first > len(s.ents)+1 {
			return fmt.Errorf("entries from index %d do not follow the log, which ends at index %d", first, len(s.ents))
		}
		s.ents = append(s.ents[:first-1], r.ents...)
	}
	return nil
}

// corruptError is damage that is not a torn write at the end of the log.
type corruptError struct {
	name string // segment file name
	off  int
	msg  string
}

func (e *corruptError) Error() string {
	return fmt.Sprintf("storage: segment %s offset %d: %s", e.name, e.off, e.msg)
}

func (e *corruptError) Is(target error) bool { return target == ErrCorrupt }

// replay reads the segments in order and rebuilds the state. A torn
// record at the end of the last segment is cut off if repair is set, and
// is an error otherwise. It returns the state, the segments, and the
// length of the last segment after any cut.
func (w *WAL) replay(repair bool) (*state, []segment, int64, error) {
	segs, err := listSegments(w.dir)
	if err != nil {
		return nil, nil, 0, err
	}
	st := newState()
	var size int64
	for i, seg := range segs {
		path := filepath.Join(w.dir, seg.name)
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, nil, 0, fmt.Errorf("storage: read segment %s: %w", seg.name, err)
		}
		last := i == len(segs)-1
		off := 0
		for off < len(b) {
			r, n, err := decodeRecord(b[off:])
			if err == nil {
				if err := st.apply(&r); err != nil {
					return nil, nil, 0, &corruptError{seg.name, off, err.Error()}
				}
				off += n
				continue
			}
			if errors.Is(err, errMalformed) || !last {
				return nil, nil, 0, &corruptError{seg.name, off, err.Error()}
			}
			// Damage in the last segment: a torn write if it looks like
			// a write that did not finish and no valid record follows,
			// since a record is written only once the one before it is
			// synced.
			if why := notTorn(b[off:]); why != "" {
				return nil, nil, 0, &corruptError{seg.name, off, fmt.Sprintf("%v; %s", err, why)}
			}
			next, scanErr := findRecord(b, off+1)
			if scanErr != nil {
				return nil, nil, 0, &corruptError{seg.name, off, fmt.Sprintf("%v; %v", err, scanErr)}
			}
			if next >= 0 {
				return nil, nil, 0, &corruptError{seg.name, off, fmt.Sprintf("%v (a valid record follows at offset %d)", err, next)}
			}
			if !repair {
				return nil, nil, 0, &corruptError{seg.name, off, err.Error()}
			}
			if err := w.cut(path, off); err != nil {
				return nil, nil, 0, err
			}
			w.opts.Logger.Warn("storage: cut torn record off the end of the log",
				"dir", w.dir, "file", seg.name, "offset", off, "bytes", len(b)-off, "damage", err.Error())
			break
		}
		size = int64(off)
	}
	return st, segs, size, nil
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
