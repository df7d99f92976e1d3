package storage

import (
	"encoding/binary"
	"math"
	"os"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"

	"github.com/raftkit/raft/core"
)

// TestEntryTypes: the type of every entry survives a Save, a Load and a
// reopen, types the WAL knows nothing of included.
func TestEntryTypes(t *testing.T) {
	types := []core.EntryType{core.EntryNormal, core.EntryNoOp, 2, 255}
	dir := t.TempDir()
	w := openWAL(t, dir, Options{})
	m := newModel()
	var ents []core.Entry
	for i, typ := range types {
		e := core.Entry{Index: i + 1, Term: 1, Type: typ}
		if i%2 == 0 {
			e.Command = []byte("command")
		}
		ents = append(ents, e)
	}
	mustSave(t, w, &m, core.HardState{Term: 1, Vote: 0}, ents) // hardState+entries record
	checkLoad(t, w, m)
	w = reopen(t, w, Options{}, m)
	for i, typ := range types {
		mustSave(t, w, &m, m.hs, []core.Entry{{Index: len(m.ents) + 1, Term: 1, Type: typ}}) // entries records
		if i == 1 {
			mustSave(t, w, &m, core.HardState{Term: 2, Vote: 1}, nil) // a hardState record between
		}
	}
	w = reopen(t, w, Options{}, m)
	w.Close()
	if m.ents[1].Type != core.EntryNoOp || len(m.ents) != 2*len(types) {
		t.Fatalf("model: %+v", m.ents)
	}
}

// TestOldFormatRecords: records of types 1-3, which older versions wrote,
// still read, with entries of type EntryNormal; new records go after them
// in the current format.
func TestOldFormatRecords(t *testing.T) {
	m := newModel()
	var b []byte
	for _, r := range []record{
		{typ: typeHardStateV1, hs: core.HardState{Term: 1, Vote: 0}},
		{typ: typeEntriesV1, ents: mkEntries(1, 4, 1, 10)},
		{typ: typeHardStateEntriesV1, hs: core.HardState{Term: 2, Vote: 2}, ents: mkEntries(3, 3, 2, 0)},
	} {
		b = appendRecord(b, &r)
		m.save(r.hs, r.ents) // the last record has the HardState
	}
	old := len(b)
	dir := writeSegment(t, b)
	w := openWAL(t, dir, Options{})
	checkLoad(t, w, m)
	mustSave(t, w, &m, core.HardState{Term: 3, Vote: 0}, []core.Entry{{Index: 6, Term: 3, Type: core.EntryNoOp}})
	mustSave(t, w, &m, m.hs, mkEntries(7, 2, 3, 5))
	w = reopen(t, w, Options{}, m)
	w.Close()
	seg, err := os.ReadFile(segPath(dir, 1))
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range recordOffsets(t, seg) {
		if typ := recordType(seg[off+8]); typ.v2() != (off >= old) {
			t.Fatalf("record at %d has type %d", off, typ)
		}
	}
}

// TestDecodePayloadBounds: a count or a length that claims more than the
// payload holds is an error, before anything of that size is allocated.
func TestDecodePayloadBounds(t *testing.T) {
	uv := func(xs ...uint64) []byte {
		var p []byte
		for _, x := range xs {
			p = binary.AppendUvarint(p, x)
		}
		return p
	}
	cases := []struct {
		name string
		typ  recordType
		p    []byte
		want string
	}{
		{"count over the payload", typeEntries, append(uv(1, 1<<40), make([]byte, 30)...), "entries in"},
		{"count of MaxInt", typeEntries, append(uv(1, math.MaxInt), make([]byte, 30)...), "entries in"},
		{"count over MaxInt", typeEntries, append(uv(1, math.MaxUint64), make([]byte, 30)...), "bad entry count"},
		{"old format count", typeEntriesV1, append(uv(1, 16), make([]byte, 31)...), "entries in"},
		{"index overflow", typeEntries, append(uv(math.MaxInt, 2), make([]byte, 30)...), "overflow"},
		{"command length", typeEntries, append(uv(1, 1), 0, 1, 0x80, 0x80, 0x80, 0x80, 0x08, 'x', endByte), "command of"},
		{"command length over MaxInt", typeEntries, append(append(uv(1, 1), 0, 1), uv(math.MaxUint64)...), "bad command length"},
		{"unknown type", 9, []byte{1, 2, 3}, "unknown record type"},
		{"no end byte", typeHardState, uv(1, 2), "no end byte"},
		{"wrong end byte", typeHardState, uv(1, 2, 3), "end byte"},
	}
	for _, tc := range cases {
		_, err := decodeBounded(t, tc.typ, tc.p)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: decodePayload = %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
}

// decodeBounded decodes p as the payload of a record of type typ, and
// fails t if that allocates more than allocBound(len(p)). The runtime
// counts small objects when their span is refilled, so a count can take
// in earlier allocations: one over the bound is measured again after a
// GC has settled the counts.
func decodeBounded(t *testing.T, typ recordType, p []byte) (record, error) {
	t.Helper()
	for try := 0; ; try++ {
		before := heapAllocBytes()
		r := record{typ: typ}
		err := r.decodePayload(p)
		alloc := heapAllocBytes() - before
		if alloc <= allocBound(len(p)) {
			return r, err
		}
		if try > 0 {
			t.Fatalf("decoding %d bytes as type %d allocated %d bytes (%v)", len(p), typ, alloc, err)
		}
		runtime.GC()
	}
}

// allocBound is the most that decoding a payload of n bytes may allocate:
// the entries it can hold, and a little for an error.
func allocBound(n int) uint64 { return 64*uint64(n) + 64<<10 }

// heapAllocBytes returns the bytes this process has allocated so far.
func heapAllocBytes() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
