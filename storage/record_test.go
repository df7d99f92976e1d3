package storage

import (
	"os"
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
