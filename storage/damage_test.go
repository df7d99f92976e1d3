package storage

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/raftkit/raft/core"
)

// lastRecordLogs returns logs of one segment whose last records differ in
// kind, with the offset where the last record starts and the state
// before it. Some end in bytes that are zero of their own (a vote for
// server 0, a no-op entry with no command), which a zero-filled torn
// tail must not be confused with.
func lastRecordLogs(t *testing.T) []lastRecordLog {
	t.Helper()
	var logs []lastRecordLog
	add := func(name string, hs core.HardState, ents []core.Entry) {
		dir := t.TempDir()
		w := openWAL(t, dir, Options{})
		m := newModel()
		mustSave(t, w, &m, core.HardState{Term: 1, Vote: 1}, mkEntries(1, 3, 1, 12))
		before := m
		before.ents = cloneEntries(m.ents)
		start := fileSize(t, segPath(dir, 1))
		mustSave(t, w, &m, hs, ents)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(segPath(dir, 1))
		if err != nil {
			t.Fatal(err)
		}
		logs = append(logs, lastRecordLog{name, b, start, before})
	}
	add("hardstate and entries", core.HardState{Term: 2, Vote: 2}, mkEntries(3, 4, 2, 9))
	add("vote for server 0", core.HardState{Term: 2, Vote: 0}, nil)
	add("no-op entry", core.HardState{Term: 1, Vote: 1}, []core.Entry{{Index: 4, Term: 1, Type: core.EntryNoOp}})
	add("hardstate and no-op entry", core.HardState{Term: 2, Vote: 0}, []core.Entry{{Index: 4, Term: 2, Type: core.EntryNoOp}})
	return logs
}

type lastRecordLog struct {
	name   string
	data   []byte // the segment
	start  int    // offset of the last record
	before model  // the state without the last record
}

// TestBitFlipInLastRecord: a whole last record was fsynced and may have
// been acknowledged, so any bit flip in it, header or payload, makes Open
// refuse rather than cut it as if torn.
func TestBitFlipInLastRecord(t *testing.T) {
	for _, lg := range lastRecordLogs(t) {
		t.Run(lg.name, func(t *testing.T) {
			dir := t.TempDir()
			for i := lg.start; i < len(lg.data); i++ {
				for bit := 0; bit < 8; bit++ {
					b := bytes.Clone(lg.data)
					b[i] ^= 1 << bit
					if err := os.WriteFile(segPath(dir, 1), b, 0o600); err != nil {
						t.Fatal(err)
					}
					w, err := Open(dir, Options{Logger: slog.New(slog.DiscardHandler)})
					if err == nil {
						w.Close()
						t.Fatalf("flip of bit %d in byte %d of the last record at %d: Open succeeded", bit, i-lg.start, lg.start)
					}
					want := fmt.Sprintf("storage: segment %s offset %d: ", segmentName(1), lg.start)
					if !errors.Is(err, ErrCorrupt) || !strings.HasPrefix(err.Error(), want) {
						t.Fatalf("flip of bit %d in byte %d of the last record: error %q, want ErrCorrupt starting %q", bit, i-lg.start, err, want)
					}
					if got, _ := os.ReadFile(segPath(dir, 1)); !bytes.Equal(got, b) {
						t.Fatalf("flip of bit %d in byte %d: Open changed the segment", bit, i-lg.start)
					}
				}
			}
		})
	}
}

// checkCut writes segment b into dir, opens it, and checks that Open cut
// the last record at start as torn: the state is want, the file ends at
// start, and one line names the file and offset.
func checkCut(t *testing.T, dir string, b []byte, start int, want model, what string) {
	t.Helper()
	if err := os.WriteFile(segPath(dir, 1), b, 0o600); err != nil {
		t.Fatal(err)
	}
	logger, logBuf := captureLogger()
	w, err := Open(dir, Options{Logger: logger})
	if err != nil {
		t.Fatalf("%s: Open: %v", what, err)
	}
	defer w.Close()
	hs, snap, ents, err := w.Load()
	if err != nil {
		t.Fatalf("%s: Load: %v", what, err)
	}
	checkState(t, hs, snap, ents, want)
	if n := fileSize(t, segPath(dir, 1)); n != start {
		t.Fatalf("%s: segment has %d bytes after Open, want %d", what, n, start)
	}
	logged := logBuf.String()
	if !strings.Contains(logged, segmentName(1)) || !strings.Contains(logged, fmt.Sprintf("offset=%d", start)) || strings.Count(logged, "\n") != 1 {
		t.Fatalf("%s: log %q does not name the file and offset %d in one line", what, logged, start)
	}
}

// TestTornLastRecord: what an unfinished write leaves of the last record
// is cut, for every kind of last record: the record cut short at every
// byte, zero-filled from every byte to its end (with or without more
// zeros after it, as when the file's size reached the disk and its data
// did not), and a zero header before a payload that did reach the disk.
func TestTornLastRecord(t *testing.T) {
	for _, lg := range lastRecordLogs(t) {
		t.Run(lg.name, func(t *testing.T) {
			dir := t.TempDir()
			for cut := lg.start + 1; cut < len(lg.data); cut++ {
				checkCut(t, dir, lg.data[:cut], lg.start, lg.before, fmt.Sprintf("cut at %d", cut))
			}
			for z := lg.start; z < len(lg.data); z++ {
				b := bytes.Clone(lg.data)
				clear(b[z:])
				checkCut(t, dir, b, lg.start, lg.before, fmt.Sprintf("zeros from byte %d", z-lg.start))
				b = append(b, make([]byte, 1+z%700)...)
				checkCut(t, dir, b, lg.start, lg.before, fmt.Sprintf("zeros from byte %d and %d more", z-lg.start, 1+z%700))
			}
			b := bytes.Clone(lg.data)
			clear(b[lg.start : lg.start+headerSize])
			checkCut(t, dir, b, lg.start, lg.before, "zero header")
		})
	}
}

// TestZerosAfterWholeRecordDamage: zeros after a whole record do not make
// the record's own damage look torn; only zeros inside it do.
func TestZerosAfterWholeRecordDamage(t *testing.T) {
	lg := lastRecordLogs(t)[1] // vote for server 0
	b := bytes.Clone(lg.data)
	b[lg.start+headerSize] ^= 1 // the term
	b = append(b, make([]byte, 100)...)
	_, err := Open(writeSegment(t, b), Options{})
	want := fmt.Sprintf("storage: segment %s offset %d: checksum mismatch; ", segmentName(1), lg.start)
	if !errors.Is(err, ErrCorrupt) || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("Open = %v, want ErrCorrupt starting %q", err, want)
	}
}

// TestOldFormatLastRecord: a damaged last record of types 1-3 is refused
// like any other if its bytes do not end in zeros; one that ends in zero
// bytes of its own has no end byte to tell those from a zero-filled tail,
// so it is cut as torn (the limit the package doc names).
func TestOldFormatLastRecord(t *testing.T) {
	var b []byte
	b = appendRecord(b, &record{typ: typeHardStateEntriesV1, hs: core.HardState{Term: 1, Vote: 1}, ents: mkEntries(1, 2, 1, 8)})
	start := len(b)
	before := model{hs: core.HardState{Term: 1, Vote: 1}, ents: mkEntries(1, 2, 1, 8)}

	nonZero := appendRecord(bytes.Clone(b), &record{typ: typeHardStateV1, hs: core.HardState{Term: 2, Vote: 1}})
	nonZero[start+headerSize] ^= 1
	if _, err := Open(writeSegment(t, nonZero), Options{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("flip in a whole old-format record: Open = %v, want ErrCorrupt", err)
	}

	endsInZero := appendRecord(bytes.Clone(b), &record{typ: typeHardStateV1, hs: core.HardState{Term: 2, Vote: 0}})
	endsInZero[start+headerSize] ^= 1
	checkCut(t, t.TempDir(), endsInZero, start, before, "flip in an old-format record ending in a zero byte")
}
