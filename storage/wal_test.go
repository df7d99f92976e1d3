package storage

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/raftkit/raft/core"
)

// model is what a log should hold, kept independently of the WAL: the
// HardState, the snapshot, and the entries after it.
type model struct {
	hs   core.HardState
	snap core.SnapshotMeta
	ents []core.Entry
}

func newModel() model { return model{hs: core.HardState{Vote: core.None}} }

// save applies a Save to the model, copying the entries.
func (m *model) save(hs core.HardState, ents []core.Entry) {
	m.hs = hs
	if len(ents) > 0 {
		at := ents[0].Index - 1 - m.snap.Index
		m.ents = append(m.ents[:at:at], cloneEntries(ents)...)
	}
}

// snapshot applies the commit of a snapshot newer than the model's.
func (m *model) snapshot(meta core.SnapshotMeta, keepLog bool) {
	var kept []core.Entry
	if keepLog && meta.Index < m.last() {
		kept = cloneEntries(m.ents[meta.Index-m.snap.Index:])
	}
	m.snap, m.ents = meta, kept
}

// last returns the index of the model's last entry, or its snapshot's.
func (m *model) last() int { return m.snap.Index + len(m.ents) }

// clone returns a copy of m that shares nothing with it.
func (m model) clone() model {
	m.ents = cloneEntries(m.ents)
	return m
}

func cloneEntries(ents []core.Entry) []core.Entry {
	out := make([]core.Entry, len(ents))
	for i, e := range ents {
		out[i] = core.Entry{Index: e.Index, Term: e.Term, Type: e.Type, Command: bytes.Clone(e.Command)}
	}
	return out
}

// mkEntries returns n entries from index first, of term term, with
// commands of size bytes that tell them apart.
func mkEntries(first, n, term, size int) []core.Entry {
	ents := make([]core.Entry, n)
	for i := range ents {
		cmd := []byte(fmt.Sprintf("i%d-t%d-", first+i, term))
		for len(cmd) < size {
			cmd = append(cmd, byte('a'+(first+i+len(cmd))%26))
		}
		ents[i] = core.Entry{Index: first + i, Term: term, Command: cmd[:size]}
	}
	return ents
}

func openWAL(t testing.TB, dir string, opts Options) *WAL {
	t.Helper()
	w, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return w
}

func mustSave(t testing.TB, w *WAL, m *model, hs core.HardState, ents []core.Entry) {
	t.Helper()
	if err := w.Save(hs, ents); err != nil {
		t.Fatalf("Save(%+v, %d entries): %v", hs, len(ents), err)
	}
	if m != nil {
		m.save(hs, ents)
	}
}

// checkLoad checks that w.Load returns exactly what m holds.
func checkLoad(t testing.TB, w *WAL, m model) {
	t.Helper()
	hs, snap, ents, err := w.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	checkState(t, hs, snap, ents, m)
}

func checkState(t testing.TB, hs core.HardState, snap core.SnapshotMeta, ents []core.Entry, m model) {
	t.Helper()
	if hs != m.hs {
		t.Fatalf("HardState = %+v, want %+v", hs, m.hs)
	}
	if !snap.Equal(m.snap) {
		t.Fatalf("snapshot = %+v, want %+v", snap, m.snap)
	}
	if len(ents) != len(m.ents) {
		t.Fatalf("%d entries, want %d", len(ents), len(m.ents))
	}
	for i, e := range ents {
		want := m.ents[i]
		if e.Index != want.Index || e.Term != want.Term || e.Type != want.Type || !bytes.Equal(e.Command, want.Command) {
			t.Fatalf("entry %d = {%d %d %v %d bytes %.40q}, want {%d %d %v %d bytes %.40q}",
				i, e.Index, e.Term, e.Type, len(e.Command), e.Command, want.Index, want.Term, want.Type, len(want.Command), want.Command)
		}
	}
}

// reopen closes w and opens its directory again, checking the state.
func reopen(t testing.TB, w *WAL, opts Options, m model) *WAL {
	t.Helper()
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	w = openWAL(t, w.dir, opts)
	checkLoad(t, w, m)
	return w
}

func segPath(dir string, seq uint64) string { return filepath.Join(dir, segmentName(seq)) }

func fileSize(t testing.TB, path string) int {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return int(fi.Size())
}

// captureLogger returns a logger that writes to the returned buffer.
func captureLogger() (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewTextHandler(&buf, nil)), &buf
}

func TestLoadFreshDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b", "wal")
	w := openWAL(t, dir, Options{})
	defer w.Close()
	hs, snap, ents, err := w.Load()
	if err != nil {
		t.Fatal(err)
	}
	if hs != (core.HardState{Term: 0, Vote: core.None}) || !snap.Equal(core.SnapshotMeta{}) || ents != nil {
		t.Fatalf("Load of a fresh dir = %+v, %+v, %v; want {0 %d}, no snapshot, no entries", hs, snap, ents, core.None)
	}
	// The first segment holds a segment header and nothing else.
	b, err := os.ReadFile(segPath(dir, 1))
	if err != nil {
		t.Fatalf("first segment: %v", err)
	}
	if offs := recordOffsets(t, b); len(offs) != 1 || recordType(b[8]) != typeSegmentHeader {
		t.Fatalf("first segment of a fresh dir holds %d records, the first of type %d; want a segment header only", len(offs), b[8])
	}
	// Saving the initial HardState again writes nothing.
	if err := w.Save(hs, nil); err != nil {
		t.Fatal(err)
	}
	if n := fileSize(t, segPath(dir, 1)); n != len(b) {
		t.Fatalf("segment holds %d bytes after saving an unchanged HardState, want %d", n, len(b))
	}
	w = reopen(t, w, Options{}, newModel())
	w.Close()
}

func TestRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		hs   core.HardState
		ents []core.Entry
	}{
		{"hardstate", core.HardState{Term: 7, Vote: 2}, nil},
		{"hardstate no vote", core.HardState{Term: 1 << 40, Vote: core.None}, nil},
		{"entries", core.HardState{Vote: core.None}, mkEntries(1, 5, 0, 30)},
		{"both", core.HardState{Term: 3, Vote: 0}, mkEntries(1, 3, 3, 100)},
		{"empty commands", core.HardState{Term: 1, Vote: 1}, []core.Entry{{Index: 1, Term: 1}, {Index: 2, Term: 1, Command: []byte{}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			w := openWAL(t, dir, Options{})
			m := newModel()
			mustSave(t, w, &m, tc.hs, tc.ents)
			checkLoad(t, w, m) // read back from the open WAL
			w = reopen(t, w, Options{}, m)
			checkLoad(t, w, m) // a second Load gives the same
			w.Close()
		})
	}
}

func TestTruncation(t *testing.T) {
	dir := t.TempDir()
	w := openWAL(t, dir, Options{})
	m := newModel()
	hs := core.HardState{Term: 1, Vote: 0}
	mustSave(t, w, &m, hs, mkEntries(1, 5, 1, 20))
	// A new leader in term 2 replaces entries 3.. with its own.
	hs = core.HardState{Term: 2, Vote: 1}
	mustSave(t, w, &m, hs, mkEntries(3, 2, 2, 20))
	if len(m.ents) != 4 {
		t.Fatalf("model has %d entries, want 4", len(m.ents))
	}
	w = reopen(t, w, Options{}, m)
	// More appends after the truncation, then one at the very start.
	mustSave(t, w, &m, hs, mkEntries(5, 3, 2, 20))
	checkLoad(t, w, m)
	w = reopen(t, w, Options{}, m)
	mustSave(t, w, &m, core.HardState{Term: 3, Vote: core.None}, mkEntries(1, 1, 3, 20))
	w = reopen(t, w, Options{}, m)
	if len(m.ents) != 1 || m.ents[0].Term != 3 {
		t.Fatalf("model = %+v", m.ents)
	}
	w.Close()
}

// TestReopenAfterEachOperation runs a random mix of Saves and reopens
// after each one.
func TestReopenAfterEachOperation(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	dir := t.TempDir()
	opts := Options{SegmentBytes: 1 << 10}
	w := openWAL(t, dir, opts)
	m := newModel()
	hs := m.hs
	for op := 0; op < 60; op++ {
		var ents []core.Entry
		last := len(m.ents)
		switch rng.Intn(5) {
		case 0: // new term, no vote
			hs = core.HardState{Term: hs.Term + 1, Vote: core.None}
		case 1: // vote
			hs.Vote = rng.Intn(5)
		case 2: // append
			ents = mkEntries(last+1, 1+rng.Intn(8), hs.Term, rng.Intn(60))
		case 3: // replace a suffix
			first := 1 + rng.Intn(last+1)
			ents = mkEntries(first, 1+rng.Intn(4), hs.Term, rng.Intn(60))
		case 4: // both
			hs = core.HardState{Term: hs.Term + 1, Vote: rng.Intn(5)}
			ents = mkEntries(last+1, 1+rng.Intn(3), hs.Term, 10)
		}
		mustSave(t, w, &m, hs, ents)
		w = reopen(t, w, opts, m)
	}
	w.Close()
}

func TestSegmentRollover(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 300}
	w := openWAL(t, dir, opts)
	m := newModel()
	for i := 1; i <= 40; i++ {
		mustSave(t, w, &m, core.HardState{Term: i, Vote: i % 3}, mkEntries(i, 1, i, 50))
	}
	segs, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) < 5 {
		t.Fatalf("%d segments after 40 records of ~70 bytes with SegmentBytes 300", len(segs))
	}
	for _, s := range segs[:len(segs)-1] {
		if n := fileSize(t, filepath.Join(dir, s.name)); n > 300 || n == 0 {
			t.Errorf("segment %s holds %d bytes", s.name, n)
		}
	}
	w = reopen(t, w, opts, m)
	// Appends go on after a reopen, into the last segment and new ones.
	mustSave(t, w, &m, core.HardState{Term: 41, Vote: 1}, mkEntries(20, 30, 41, 50)) // replaces entries 20.. with a batch bigger than a segment
	mustSave(t, w, &m, core.HardState{Term: 41, Vote: 1}, mkEntries(50, 2, 41, 50))
	w = reopen(t, w, opts, m)
	segs2, _ := listSegments(dir)
	if len(segs2) <= len(segs) {
		t.Fatalf("no new segment: %d, then %d", len(segs), len(segs2))
	}
	w.Close()
	// A WAL with the default segment size reads it the same.
	w = openWAL(t, dir, Options{})
	checkLoad(t, w, m)
	w.Close()
}

// TestLargeBatchSplit checks that a batch bigger than a record is split
// into records that replay to the same log.
func TestLargeBatchSplit(t *testing.T) {
	dir := t.TempDir()
	var syncs atomic.Int64
	opts := Options{maxPayload: 500, syncFn: func(f *os.File) error { syncs.Add(1); return f.Sync() }}
	w := openWAL(t, dir, opts)
	m := newModel()
	mustSave(t, w, &m, core.HardState{Term: 1, Vote: core.None}, mkEntries(1, 10, 1, 20))
	syncs.Store(0)
	mustSave(t, w, &m, core.HardState{Term: 2, Vote: 1}, mkEntries(5, 60, 2, 40))
	if n := syncs.Load(); n < 5 {
		t.Fatalf("a 60 × 40-byte batch with records of 500 bytes took %d fsyncs", n)
	}
	w = reopen(t, w, opts, m)
	// A command that can't fit in a record is refused, and the WAL goes on.
	if err := w.Save(m.hs, mkEntries(len(m.ents)+1, 1, 2, 480)); err == nil || errors.Is(err, ErrFailed) {
		t.Fatalf("Save of a command over the record size = %v, want an error that isn't ErrFailed", err)
	}
	mustSave(t, w, &m, m.hs, mkEntries(len(m.ents)+1, 1, 2, 400))
	w = reopen(t, w, opts, m)
	w.Close()
}

// countRecords returns the number of records in the segments in dir,
// segment headers not counted.
func countRecords(t *testing.T, dir string) int {
	t.Helper()
	segs, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range segs {
		b, err := os.ReadFile(filepath.Join(dir, s.name))
		if err != nil {
			t.Fatal(err)
		}
		for _, off := range recordOffsets(t, b) {
			if recordType(b[off+8]) != typeSegmentHeader {
				n++
			}
		}
	}
	return n
}

// TestMaxCommandBytes: an entry with a command of MaxCommandBytes bytes
// is saved and reads back, in a record that also holds the largest
// HardState; one byte more is refused, and the WAL goes on.
func TestMaxCommandBytes(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want int
	}{
		{"default", Options{}, 64<<20 - recordOverhead - entryOverhead},
		{"small records", Options{maxPayload: 600}, 600 - recordOverhead - entryOverhead},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			w := openWAL(t, dir, tc.opts)
			limit := w.MaxCommandBytes()
			if limit != tc.want {
				t.Fatalf("MaxCommandBytes = %d, want %d", limit, tc.want)
			}
			// Even with the longest varints, such an entry fits in a record.
			cmd := make([]byte, limit+1)
			cmd[0], cmd[limit-1], cmd[limit] = 1, 2, 3
			worst := record{typ: typeHardStateEntries, hs: core.HardState{Term: math.MaxInt, Vote: math.MinInt},
				ents: []core.Entry{{Index: math.MaxInt, Term: math.MaxInt, Type: 255, Command: cmd[:limit]}}}
			if n := len(appendRecord(nil, &worst)) - headerSize; n > w.opts.maxPayload {
				t.Fatalf("payload of %d bytes for a command of MaxCommandBytes, over the maximum %d", n, w.opts.maxPayload)
			}
			m := newModel()
			hs := core.HardState{Term: math.MaxInt, Vote: math.MinInt}
			mustSave(t, w, &m, hs, mkEntries(1, 1, math.MaxInt, 3))
			if err := w.Save(hs, []core.Entry{{Index: 2, Term: math.MaxInt, Type: core.EntryNoOp, Command: cmd}}); err == nil || errors.Is(err, ErrFailed) {
				t.Fatalf("Save of a command of MaxCommandBytes+1 bytes = %v, want an error that isn't ErrFailed", err)
			}
			hs.Vote = math.MaxInt
			mustSave(t, w, &m, hs, []core.Entry{{Index: 2, Term: math.MaxInt, Type: core.EntryNoOp, Command: cmd[:limit]}})
			if n := countRecords(t, dir); n != 2 {
				t.Fatalf("%d records in the log, want 2: the big entry and its HardState in one", n)
			}
			w = reopen(t, w, tc.opts, m)
			mustSave(t, w, &m, hs, mkEntries(3, 1, math.MaxInt, 3))
			w = reopen(t, w, tc.opts, m)
			w.Close()
		})
	}
}

func TestSaveInvalid(t *testing.T) {
	w := openWAL(t, t.TempDir(), Options{})
	defer w.Close()
	m := newModel()
	hs := core.HardState{Term: 1, Vote: 0}
	mustSave(t, w, &m, hs, mkEntries(1, 3, 1, 10))
	bad := map[string][]core.Entry{
		"gap":             mkEntries(5, 1, 1, 10),
		"index 0":         {{Index: 0, Term: 1}},
		"not consecutive": {{Index: 4, Term: 1}, {Index: 6, Term: 1}},
		"negative term":   {{Index: 4, Term: -1}},
	}
	for name, ents := range bad {
		if err := w.Save(hs, ents); err == nil || errors.Is(err, ErrFailed) {
			t.Errorf("%s: Save = %v, want an error that isn't ErrFailed", name, err)
		}
	}
	if err := w.Save(core.HardState{Term: -1}, nil); err == nil {
		t.Error("Save with a negative term succeeded")
	}
	mustSave(t, w, &m, hs, mkEntries(4, 1, 1, 10))
	checkLoad(t, w, m)
}

// buildLog writes a log of a few Saves in dir and returns the state after
// each Save and the segment's size after each (index 0: before any).
func buildLog(t *testing.T, dir string) ([]model, []int) {
	t.Helper()
	w := openWAL(t, dir, Options{})
	m := newModel()
	states, sizes := []model{m}, []int{fileSize(t, segPath(dir, 1))} // a segment header
	step := func(hs core.HardState, ents []core.Entry) {
		mustSave(t, w, &m, hs, ents)
		mm := m
		mm.ents = cloneEntries(m.ents)
		states = append(states, mm)
		sizes = append(sizes, fileSize(t, segPath(dir, 1)))
	}
	step(core.HardState{Term: 1, Vote: 0}, nil)
	step(core.HardState{Term: 1, Vote: 0}, mkEntries(1, 3, 1, 12))
	step(core.HardState{Term: 2, Vote: core.None}, nil)
	step(core.HardState{Term: 2, Vote: 2}, mkEntries(3, 4, 2, 9)) // the final record: a HardState and several entries
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return states, sizes
}

// writeSegment writes a log of one segment holding b into a new dir.
func writeSegment(t *testing.T, b []byte) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(segPath(dir, 1), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestTornAtEveryOffset cuts the log at every length and checks that Open
// cuts the torn record and yields the state of the records that are whole.
func TestTornAtEveryOffset(t *testing.T) {
	src := t.TempDir()
	states, sizes := buildLog(t, src)
	full, err := os.ReadFile(segPath(src, 1))
	if err != nil {
		t.Fatal(err)
	}
	if len(full) != sizes[len(sizes)-1] {
		t.Fatalf("segment has %d bytes, want %d", len(full), sizes[len(sizes)-1])
	}
	for cut := 0; cut <= len(full); cut++ {
		// The state is that of the last Save whose record is whole.
		k := 0
		for k+1 < len(sizes) && sizes[k+1] <= cut {
			k++
		}
		dir := writeSegment(t, full[:cut])
		logger, logBuf := captureLogger()
		w, err := Open(dir, Options{Logger: logger})
		if err != nil {
			t.Fatalf("cut at %d of %d: Open: %v", cut, len(full), err)
		}
		hs, snap, ents, err := w.Load()
		if err != nil {
			t.Fatalf("cut at %d: Load: %v", cut, err)
		}
		checkState(t, hs, snap, ents, states[k])
		if n := fileSize(t, segPath(dir, 1)); n != sizes[k] {
			t.Fatalf("cut at %d: segment has %d bytes after Open, want %d", cut, n, sizes[k])
		}
		// A cut in the segment header leaves an empty file, to which
		// Open writes the header again; an empty file is no torn record.
		torn, at := cut != sizes[k] && cut > 0, sizes[k]
		if cut < sizes[0] {
			at = 0
		}
		logged := logBuf.String()
		if torn != (logged != "") {
			t.Fatalf("cut at %d: torn %v, logged %q", cut, torn, logged)
		}
		if torn && (!strings.Contains(logged, segmentName(1)) || !strings.Contains(logged, fmt.Sprintf("offset=%d", at)) || strings.Count(logged, "\n") != 1) {
			t.Fatalf("cut at %d: log %q does not name the file and offset %d in one line", cut, logged, at)
		}
		w.Close()
	}
	// After a cut the log takes new records and replays them.
	dir := writeSegment(t, full[:len(full)-3])
	w := openWAL(t, dir, Options{Logger: slog.New(slog.DiscardHandler)})
	m := states[len(states)-2]
	mustSave(t, w, &m, core.HardState{Term: 3, Vote: 1}, mkEntries(len(m.ents)+1, 2, 3, 5))
	w = reopen(t, w, Options{}, m)
	w.Close()
}

// recordOffsets returns the offsets of the records in a segment.
func recordOffsets(t *testing.T, b []byte) []int {
	t.Helper()
	var offs []int
	for off := 0; off < len(b); {
		_, n, err := decodeRecord(b[off:])
		if err != nil {
			t.Fatalf("record at %d: %v", off, err)
		}
		offs = append(offs, off)
		off += n
	}
	return offs
}

func TestBitFlipInMiddleRecord(t *testing.T) {
	src := t.TempDir()
	buildLog(t, src)
	full, _ := os.ReadFile(segPath(src, 1))
	offs := recordOffsets(t, full)
	if len(offs) != 5 {
		t.Fatalf("%d records, want 5 (a segment header and 4)", len(offs))
	}
	// Every byte of the second record after the segment header, header
	// and payload.
	start, end := offs[2], offs[3]
	for i := start; i < end; i++ {
		b := bytes.Clone(full)
		b[i] ^= 1 << (i % 8)
		dir := writeSegment(t, b)
		w, err := Open(dir, Options{})
		if err == nil {
			w.Close()
			t.Fatalf("flip in byte %d of the middle record at %d: Open succeeded", i-start, start)
		}
		want := fmt.Sprintf("storage: segment %s offset %d: ", segmentName(1), start)
		if !errors.Is(err, ErrCorrupt) || !strings.HasPrefix(err.Error(), want) {
			t.Fatalf("flip in byte %d of the middle record: error %q, want ErrCorrupt starting %q", i-start, err, want)
		}
		if i >= start+headerSize && !strings.Contains(err.Error(), "checksum mismatch") {
			t.Fatalf("flip in payload byte %d: error %q does not say checksum mismatch", i-start-headerSize, err)
		}
		// Open refused: it must not have changed the file.
		if got, _ := os.ReadFile(segPath(dir, 1)); !bytes.Equal(got, b) {
			t.Fatalf("flip in byte %d: Open changed the segment", i-start)
		}
	}
}

func TestZeroedTail(t *testing.T) {
	src := t.TempDir()
	states, sizes := buildLog(t, src)
	full, _ := os.ReadFile(segPath(src, 1))
	zeros := make([]byte, 4096)
	cases := map[string]struct {
		data []byte
		want int // state index
	}{
		"after the last record":       {append(bytes.Clone(full), zeros...), len(states) - 1},
		"after a torn record":         {append(bytes.Clone(full[:len(full)-5]), zeros...), len(states) - 2},
		"in place of the last record": {append(bytes.Clone(full[:sizes[len(sizes)-2]]), make([]byte, len(full)-sizes[len(sizes)-2])...), len(states) - 2},
		"a few bytes":                 {append(bytes.Clone(full), 0, 0, 0), len(states) - 1},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dir := writeSegment(t, tc.data)
			logger, logBuf := captureLogger()
			w := openWAL(t, dir, Options{Logger: logger})
			checkLoad(t, w, states[tc.want])
			if n := fileSize(t, segPath(dir, 1)); n != sizes[tc.want] {
				t.Fatalf("segment has %d bytes, want %d", n, sizes[tc.want])
			}
			if !strings.Contains(logBuf.String(), fmt.Sprintf("offset=%d", sizes[tc.want])) {
				t.Fatalf("log %q does not name offset %d", logBuf.String(), sizes[tc.want])
			}
			w.Close()
		})
	}
	// Zeros in the middle, with valid records after them, are not a torn write.
	b := append(bytes.Clone(full[:sizes[1]]), zeros...)
	b = append(b, full[sizes[1]:]...)
	dir := writeSegment(t, b)
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), fmt.Sprintf("offset %d", sizes[1])) {
		t.Fatalf("zeros in the middle: Open = %v, want ErrCorrupt at offset %d", err, sizes[1])
	}
}

// rolledLog writes a log over several segments and returns its model.
func rolledLog(t *testing.T, dir string) model {
	t.Helper()
	w := openWAL(t, dir, Options{SegmentBytes: 200})
	m := newModel()
	for i := 1; i <= 12; i++ {
		mustSave(t, w, &m, core.HardState{Term: i, Vote: 1}, mkEntries(i, 1, i, 40))
	}
	w.Close()
	segs, _ := listSegments(dir)
	if len(segs) < 3 {
		t.Fatalf("%d segments, want 3 or more", len(segs))
	}
	return m
}

func TestDamageInEarlierSegment(t *testing.T) {
	t.Run("torn tail", func(t *testing.T) {
		dir := t.TempDir()
		rolledLog(t, dir)
		p := segPath(dir, 1)
		n := fileSize(t, p)
		if err := os.Truncate(p, int64(n-1)); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(p)
		offs := recordOffsetsLoose(b)
		_, err := Open(dir, Options{})
		want := fmt.Sprintf("storage: segment %s offset %d: ", segmentName(1), offs[len(offs)-1])
		if !errors.Is(err, ErrCorrupt) || !strings.HasPrefix(err.Error(), want) {
			t.Fatalf("Open = %v, want ErrCorrupt starting %q", err, want)
		}
	})
	t.Run("bit flip", func(t *testing.T) {
		dir := t.TempDir()
		rolledLog(t, dir)
		p := segPath(dir, 2)
		b, _ := os.ReadFile(p)
		offs := recordOffsets(t, b)
		last := offs[len(offs)-1]
		b[len(b)-1] ^= 0x10
		os.WriteFile(p, b, 0o600)
		_, err := Open(dir, Options{})
		want := fmt.Sprintf("storage: segment %s offset %d: checksum mismatch", segmentName(2), last)
		if !errors.Is(err, ErrCorrupt) || !strings.HasPrefix(err.Error(), want) {
			t.Fatalf("Open = %v, want ErrCorrupt starting %q", err, want)
		}
	})
	t.Run("zeroed tail", func(t *testing.T) {
		dir := t.TempDir()
		rolledLog(t, dir)
		p := segPath(dir, 1)
		n := fileSize(t, p)
		f, _ := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		f.Write(make([]byte, 100))
		f.Close()
		_, err := Open(dir, Options{})
		want := fmt.Sprintf("storage: segment %s offset %d: ", segmentName(1), n)
		if !errors.Is(err, ErrCorrupt) || !strings.HasPrefix(err.Error(), want) {
			t.Fatalf("Open = %v, want ErrCorrupt starting %q", err, want)
		}
	})
	t.Run("missing segment", func(t *testing.T) {
		dir := t.TempDir()
		rolledLog(t, dir)
		os.Remove(segPath(dir, 2))
		_, err := Open(dir, Options{})
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), segmentName(2)) {
			t.Fatalf("Open = %v, want ErrCorrupt naming %s", err, segmentName(2))
		}
	})
	t.Run("torn last segment", func(t *testing.T) {
		// The last segment's tail is cut as usual.
		dir := t.TempDir()
		m := rolledLog(t, dir)
		segs, _ := listSegments(dir)
		p := filepath.Join(dir, segs[len(segs)-1].name)
		b, _ := os.ReadFile(p)
		offs := recordOffsets(t, b)
		os.Truncate(p, int64(offs[len(offs)-1]+3))
		w := openWAL(t, dir, Options{Logger: slog.New(slog.DiscardHandler)})
		m.ents = m.ents[:len(m.ents)-1]
		m.hs = core.HardState{Term: 11, Vote: 1}
		checkLoad(t, w, m)
		w.Close()
	})
}

// recordOffsetsLoose returns the offsets of the whole records at the
// start of b.
func recordOffsetsLoose(b []byte) []int {
	var offs []int
	for off := 0; off < len(b); {
		offs = append(offs, off)
		_, n, err := decodeRecord(b[off:])
		if err != nil {
			break
		}
		off += n
	}
	return offs
}

func TestEntriesGap(t *testing.T) {
	var b []byte
	b = appendRecord(b, &record{typ: typeHardStateEntries, hs: core.HardState{Term: 1, Vote: 0}, ents: mkEntries(1, 2, 1, 8)})
	off := len(b)
	b = appendRecord(b, &record{typ: typeEntries, ents: mkEntries(4, 2, 1, 8)})
	_, err := Open(writeSegment(t, b), Options{})
	want := fmt.Sprintf("storage: segment %s offset %d: entries from index 4 do not follow the log, which ends at index 2", segmentName(1), off)
	if !errors.Is(err, ErrCorrupt) || err.Error() != want {
		t.Fatalf("Open = %v, want %q", err, want)
	}
}

func TestMalformedPayloadIsNotTorn(t *testing.T) {
	var b []byte
	b = appendRecord(b, &record{typ: typeEntries, ents: mkEntries(1, 2, 1, 8)})
	off := len(b)
	// A hardState record with a good checksum and a stray byte: written
	// so, not torn, even at the end.
	rec := appendRecord(nil, &record{typ: typeHardState, hs: core.HardState{Term: 1, Vote: 0}})
	rec = append(rec, 0)
	rec[0]++
	crc := crcOf(rec[8:])
	copy(rec[4:8], crc)
	b = append(b, rec...)
	_, err := Open(writeSegment(t, b), Options{})
	if !errors.Is(err, ErrCorrupt) || !strings.HasPrefix(err.Error(), fmt.Sprintf("storage: segment %s offset %d: malformed record", segmentName(1), off)) {
		t.Fatalf("Open = %v, want ErrCorrupt for a malformed record at %d", err, off)
	}
	// A record of a type this version does not know, with a good
	// checksum, ending in a zero byte, and zeros after it: written so (by
	// a newer version, perhaps), not a zero-filled torn tail.
	rec = []byte{2, 0, 0, 0, 0, 0, 0, 0, 9, 1, 0}
	copy(rec[4:8], crcOf(rec[8:]))
	b = append(append(b[:off:off], rec...), make([]byte, 20)...)
	_, err = Open(writeSegment(t, b), Options{})
	if !errors.Is(err, ErrCorrupt) || !strings.HasPrefix(err.Error(), fmt.Sprintf("storage: segment %s offset %d: malformed record: unknown record type 9", segmentName(1), off)) {
		t.Fatalf("Open = %v, want ErrCorrupt for a record of unknown type at %d", err, off)
	}
}

// crcOf returns the little-endian CRC32C of b.
func crcOf(b []byte) []byte {
	return binary.LittleEndian.AppendUint32(nil, crc32.Checksum(b, crcTable))
}

// TestTornRecordHoldingARecord: a torn record whose commands hold
// valid-looking records is still cut if they are incomplete, but one with
// a whole valid record inside refuses rather than guess.
func TestTornRecordHoldingARecord(t *testing.T) {
	inner := appendRecord(nil, &record{typ: typeHardState, hs: core.HardState{Term: 9, Vote: 9}})
	var b []byte
	b = appendRecord(b, &record{typ: typeHardState, hs: core.HardState{Term: 1, Vote: 0}})
	off := len(b)
	b = appendRecord(b, &record{typ: typeEntries, ents: []core.Entry{{Index: 1, Term: 1, Command: append(bytes.Clone(inner), "tail of the command"...)}}})
	// Cut inside the inner record: torn, cut.
	w, err := Open(writeSegment(t, b[:off+headerSize+4+len(inner)-1]), Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	checkLoad(t, w, model{hs: core.HardState{Term: 1, Vote: 0}})
	w.Close()
	// Cut after it: a valid record follows the damage, so Open refuses.
	if _, err := Open(writeSegment(t, b[:len(b)-1]), Options{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open = %v, want ErrCorrupt", err)
	}
}

func TestSyncFailure(t *testing.T) {
	dir := t.TempDir()
	var fail atomic.Bool
	errIO := errors.New("injected EIO")
	opts := Options{syncFn: func(f *os.File) error {
		if fail.Load() {
			return errIO
		}
		return f.Sync()
	}}
	w := openWAL(t, dir, opts)
	m := newModel()
	mustSave(t, w, &m, core.HardState{Term: 1, Vote: 0}, mkEntries(1, 3, 1, 10))
	acked := m
	fail.Store(true)
	attempt := core.HardState{Term: 2, Vote: 1}
	err := w.Save(attempt, mkEntries(4, 2, 2, 10))
	if !errors.Is(err, ErrFailed) || !errors.Is(err, errIO) {
		t.Fatalf("Save with a failing fsync = %v, want ErrFailed wrapping the fsync error", err)
	}
	if !strings.Contains(err.Error(), segmentName(1)) {
		t.Fatalf("error %q does not name the segment", err)
	}
	fail.Store(false) // a retried fsync would now succeed: the WAL must not retry
	for i, try := range []struct {
		hs   core.HardState
		ents []core.Entry
	}{
		{attempt, mkEntries(4, 2, 2, 10)},
		{attempt, nil},
		{acked.hs, nil}, // nothing to write
		{core.HardState{Term: 3, Vote: 2}, mkEntries(4, 1, 3, 10)},
	} {
		if err2 := w.Save(try.hs, try.ents); err2 != err {
			t.Fatalf("Save %d after the failure = %v, want the same error %v", i, err2, err)
		}
	}
	if _, _, _, err2 := w.Load(); err2 != err {
		t.Fatalf("Load after the failure = %v, want %v", err2, err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close after the failure: %v", err)
	}
	// The failed Save's record may or may not be on disk; what was
	// acknowledged is.
	w = openWAL(t, dir, Options{})
	hs, snap, ents, err := w.Load()
	if err != nil {
		t.Fatal(err)
	}
	failed := acked
	failed.save(attempt, mkEntries(4, 2, 2, 10))
	if hs == acked.hs {
		checkState(t, hs, snap, ents, acked)
	} else {
		checkState(t, hs, snap, ents, failed)
	}
	w.Close()
}

func TestWriteFailure(t *testing.T) {
	w := openWAL(t, t.TempDir(), Options{})
	defer w.Close()
	w.seg.Close() // the next write fails
	err := w.Save(core.HardState{Term: 1, Vote: 0}, mkEntries(1, 1, 1, 10))
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("Save = %v, want ErrFailed", err)
	}
	if err2 := w.Save(core.HardState{Term: 1, Vote: 0}, nil); err2 != err {
		t.Fatalf("later Save = %v, want %v", err2, err)
	}
}

func TestRolloverSyncFailure(t *testing.T) {
	dir := t.TempDir()
	var syncs atomic.Int64
	failAt := int64(-1)
	opts := Options{SegmentBytes: 100, syncFn: func(f *os.File) error {
		if syncs.Add(1) == failAt {
			return errors.New("injected dir fsync failure")
		}
		return f.Sync()
	}}
	w := openWAL(t, dir, opts)
	defer w.Close()
	mustSave(t, w, nil, core.HardState{Term: 1, Vote: 0}, mkEntries(1, 1, 1, 80))
	// The next Save starts segment 2: file fsync, then dir fsync, which fails.
	failAt = syncs.Load() + 2
	err := w.Save(core.HardState{Term: 1, Vote: 0}, mkEntries(2, 1, 1, 80))
	if !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "sync dir") {
		t.Fatalf("Save = %v, want ErrFailed from the dir fsync", err)
	}
	if err2 := w.Save(core.HardState{Term: 1, Vote: 0}, mkEntries(3, 1, 1, 80)); err2 != err {
		t.Fatalf("later Save = %v, want %v", err2, err)
	}
}

func TestLock(t *testing.T) {
	dir := t.TempDir()
	w := openWAL(t, dir, Options{})
	w2, err := Open(dir, Options{})
	if err == nil {
		w2.Close()
		t.Fatal("second Open of a dir in use succeeded")
	}
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second Open = %v, want ErrLocked naming %s", err, dir)
	}
	// The failed Open must not have broken the first WAL.
	m := newModel()
	mustSave(t, w, &m, core.HardState{Term: 1, Vote: 1}, mkEntries(1, 2, 1, 10))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close = %v, want ErrClosed", err)
	}
	if err := w.Save(m.hs, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Save after Close = %v, want ErrClosed", err)
	}
	if _, _, _, err := w.Load(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Load after Close = %v, want ErrClosed", err)
	}
	w = openWAL(t, dir, Options{})
	checkLoad(t, w, m)
	w.Close()
}

// TestHelperHoldLock is not a test: TestLockOtherProcess runs the test
// binary with it to hold a WAL open in another process.
func TestHelperHoldLock(t *testing.T) {
	dir := os.Getenv("STORAGE_TEST_LOCK_DIR")
	if dir == "" {
		t.Skip("helper process only")
	}
	w, err := Open(dir, Options{})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("locked")
	io.Copy(io.Discard, os.Stdin)
	w.Close()
	os.Exit(0)
}

func TestLockOtherProcess(t *testing.T) {
	dir := t.TempDir()
	hold := func() (*exec.Cmd, io.WriteCloser) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHoldLock$")
		cmd.Env = append(os.Environ(), "STORAGE_TEST_LOCK_DIR="+dir)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		if line != "locked\n" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("helper: %q", line)
		}
		return cmd, stdin
	}
	check := func(what string) {
		t.Helper()
		_, err := Open(dir, Options{})
		if !errors.Is(err, ErrLocked) {
			t.Fatalf("%s: Open = %v, want ErrLocked", what, err)
		}
	}
	// A holder that closes its WAL releases the dir.
	cmd, stdin := hold()
	check("held by a live process")
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	w := openWAL(t, dir, Options{})
	w.Close()
	// So does one that dies without closing it.
	cmd, stdin = hold()
	check("held by a live process")
	cmd.Process.Kill()
	cmd.Wait()
	stdin.Close()
	w = openWAL(t, dir, Options{})
	w.Close()
}

func TestOpenErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(file, Options{}); err == nil || !strings.Contains(err.Error(), file) {
		t.Fatalf("Open of a regular file = %v, want an error naming it", err)
	}
	if _, err := Open(filepath.Join(file, "sub"), Options{}); err == nil {
		t.Fatal("Open below a regular file succeeded")
	}
	// A segment name that is a directory.
	dir := t.TempDir()
	os.Mkdir(segPath(dir, 1), 0o700)
	if _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), segmentName(1)) {
		t.Fatalf("Open with a directory as segment = %v, want an error naming it", err)
	}
	// Files that aren't segments are left alone.
	dir = t.TempDir()
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("hello"), 0o600)
	os.WriteFile(filepath.Join(dir, "1.wal"), []byte("hello"), 0o600)
	w := openWAL(t, dir, Options{})
	checkLoad(t, w, newModel())
	w.Close()
}

func TestSegmentNames(t *testing.T) {
	if got := segmentName(1); got != "00000000000000000001.wal" {
		t.Fatalf("segmentName(1) = %q", got)
	}
	for _, name := range []string{"00000000000000000001.wal", "18446744073709551615.wal"} {
		seq, ok := parseSegmentName(name)
		if !ok || segmentName(seq) != name {
			t.Errorf("parseSegmentName(%q) = %d, %v", name, seq, ok)
		}
	}
	for _, name := range []string{"1.wal", "0000000000000000000a.wal", "00000000000000000001.wa", "99999999999999999999.wal", "+0000000000000000001.wal"} {
		if _, ok := parseSegmentName(name); ok {
			t.Errorf("parseSegmentName(%q) ok", name)
		}
	}
}

func BenchmarkAppend(b *testing.B) {
	for _, batch := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			var syncs atomic.Int64
			w := openWAL(b, b.TempDir(), Options{syncFn: func(f *os.File) error { syncs.Add(1); return f.Sync() }})
			defer w.Close()
			hs := core.HardState{Term: 1, Vote: 0}
			next := 1
			ents := mkEntries(1, batch, 1, 100)
			syncs.Store(0)
			b.SetBytes(int64(batch * 100))
			b.ResetTimer()
			ops := 0
			for b.Loop() {
				for i := range ents {
					ents[i].Index = next + i
				}
				if err := w.Save(hs, ents); err != nil {
					b.Fatal(err)
				}
				next += batch
				ops++
			}
			secs := b.Elapsed().Seconds()
			b.ReportMetric(float64(ops*batch)/secs, "entries/s")
			b.ReportMetric(float64(syncs.Load())/secs, "fsyncs/s")
		})
	}
}
