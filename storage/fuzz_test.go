package storage

import (
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/raftkit/raft/core"
)

// seedRecords returns records of every type, as the encoder makes them,
// for the seed corpora of the fuzz targets: a HardState alone, entries,
// both; entries of each type; small and large commands; snapshots and
// segment headers; and the first format's types.
func seedRecords() []record {
	typed := []core.Entry{
		{Index: 1, Term: 1, Type: core.EntryNormal, Command: []byte("set x 1")},
		{Index: 2, Term: 1, Type: core.EntryNoOp},
		{Index: 3, Term: 2, Type: 2, Command: []byte{0, 1, 2}},
		{Index: 4, Term: 2, Type: 255, Command: []byte{0}},
	}
	noOp := []core.Entry{{Index: 7, Term: 3, Type: core.EntryNoOp}}
	hs := core.HardState{Term: 3, Vote: 0}
	return []record{
		{typ: typeHardState, hs: core.HardState{Term: 0, Vote: core.None}},
		{typ: typeHardState, hs: hs},
		{typ: typeHardState, hs: core.HardState{Term: math.MaxInt, Vote: math.MinInt}},
		{typ: typeEntries, ents: mkEntries(1, 1, 1, 0)},
		{typ: typeEntries, ents: mkEntries(4, 3, 2, 5)},
		{typ: typeEntries, ents: typed},
		{typ: typeEntries, ents: noOp},
		{typ: typeEntries, ents: mkEntries(1, 200, 9, 3)},
		{typ: typeEntries, ents: mkEntries(1<<40, 2, 1<<30, 4<<10)},
		{typ: typeHardStateEntries, hs: hs, ents: mkEntries(1, 2, 3, 0)},
		{typ: typeHardStateEntries, hs: hs, ents: typed},
		{typ: typeHardStateEntries, hs: hs, ents: noOp},
		{typ: typeHardStateEntries, hs: core.HardState{Term: 1 << 50, Vote: 1 << 20}, ents: mkEntries(5, 1, 1<<50, 8<<10)},
		{typ: typeSnapshot, snap: core.SnapshotMeta{Index: 1, Term: 1}},
		{typ: typeSnapshot, snap: core.SnapshotMeta{Index: 1 << 40, Term: 7}, keepLog: true},
		{typ: typeSegmentHeader, hs: core.HardState{Term: 0, Vote: core.None}},
		{typ: typeSegmentHeader, hs: hs, snap: core.SnapshotMeta{Index: 9, Term: 2}, last: 12},
		{typ: typeHardStateV1, hs: hs},
		{typ: typeEntriesV1, ents: mkEntries(4, 3, 2, 5)},
		{typ: typeHardStateEntriesV1, hs: hs, ents: mkEntries(1, 2, 3, 1<<10)},
	}
}

// checkReencode checks that r, decoded from something, encodes to a
// record that decodes to r again.
func checkReencode(t *testing.T, r record) {
	t.Helper()
	enc := appendRecord(nil, &r)
	r2, n, err := decodeRecord(enc)
	if err != nil || n != len(enc) {
		t.Fatalf("re-encoded record: %d of %d bytes, %v", n, len(enc), err)
	}
	if !reflect.DeepEqual(r, r2) {
		t.Fatalf("re-decoded %+v, want %+v", r2, r)
	}
}

// FuzzDecodeRecord decodes arbitrary bytes as a record, and round-trips a
// record built from the inputs, checking what Open makes of it when it is
// cut short, zero-filled or has a bit flipped at the end of the log.
func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte{}, uint64(0), int64(-1), uint64(1), uint8(0))
	f.Add(make([]byte, 20), uint64(5), int64(3), uint64(7), uint8(1))
	for i, r := range seedRecords() {
		f.Add(appendRecord(nil, &r), uint64(i)<<40, int64(-i), uint64(i*977), uint8(i))
	}
	f.Fuzz(func(t *testing.T, data []byte, term uint64, vote int64, first uint64, typ uint8) {
		// Arbitrary bytes: no panic; what decodes re-encodes to a record
		// that decodes the same.
		r, n, err := decodeRecord(data)
		if err == nil {
			if n < headerSize || n > len(data) {
				t.Fatalf("decoded %d bytes of %d", n, len(data))
			}
			checkReencode(t, r)
		} else if !errors.Is(err, errMalformed) {
			notTorn(data)
			if _, err := findRecord(data, 1); err != nil {
				t.Fatalf("findRecord: %v", err)
			}
		}
		// A record built from the inputs round-trips, with anything after it.
		r = record{typ: recordType(1 + typ%8)}
		if r.typ.hasHardState() {
			r.hs = core.HardState{Term: int(term >> 1), Vote: int(vote)}
		}
		if r.typ.hasMeta() {
			r.snap = core.SnapshotMeta{Index: int(first>>2) + 1, Term: int(term>>2) + 1}
			if r.typ == typeSegmentHeader && vote%3 == 0 {
				r.snap = core.SnapshotMeta{} // no snapshot
			}
			r.keepLog = r.typ == typeSnapshot && vote&1 == 1
			if r.typ == typeSegmentHeader {
				r.last = r.snap.Index + int(first%7)
			}
		}
		if r.typ.hasEntries() {
			idx := int(first>>2) + 1
			rest := data
			for len(r.ents) == 0 || len(rest) > 0 {
				size := 0
				if len(rest) > 0 {
					size = min(int(rest[0]), len(rest)-1)
					rest = rest[1:]
				}
				var cmd []byte
				if size > 0 {
					cmd, rest = rest[:size:size], rest[size:]
				}
				e := core.Entry{Index: idx, Term: int(term >> 2), Command: cmd}
				if r.typ.v2() {
					e.Type = core.EntryType(size)
				}
				r.ents = append(r.ents, e)
				idx++
			}
		}
		enc := appendRecord(nil, &r)
		r2, n2, err := decodeRecord(append(enc, data...))
		if err != nil || n2 != len(enc) {
			t.Fatalf("round trip: %d of %d bytes, %v", n2, len(enc), err)
		}
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip: got %+v, want %+v", r2, r)
		}
		// Every strict prefix of it is damage, never a record, and at the
		// end of the log a torn write.
		for _, cut := range []int{0, len(enc) / 2, len(enc) - 1} {
			if _, _, err := decodeRecord(enc[:cut]); err == nil || errors.Is(err, errMalformed) {
				t.Fatalf("prefix of %d of %d bytes: %v", cut, len(enc), err)
			}
			if why := notTorn(enc[:cut]); why != "" {
				t.Fatalf("prefix of %d of %d bytes is not torn: %s", cut, len(enc), why)
			}
		}
		if !r.typ.v2() {
			return
		}
		// Zero-filled from some byte to the end: torn.
		z := len(enc) - 1 - int(uint64(vote)%uint64(len(enc)))
		zeroed := append(enc[:z:z], make([]byte, len(enc)-z+int(term%5))...)
		if _, _, err := decodeRecord(zeroed); err == nil {
			t.Fatalf("zeros from byte %d of %d decode", z, len(enc))
		}
		if why := notTorn(zeroed); why != "" {
			t.Fatalf("zeros from byte %d of %d are not torn: %s", z, len(enc), why)
		}
		// One bit flipped, header or payload: damage, and not torn.
		bit := int(first % uint64(8*len(enc)))
		enc[bit/8] ^= 1 << (bit % 8)
		if _, _, err := decodeRecord(enc); err == nil {
			t.Fatalf("record with bit %d flipped decodes", bit)
		}
		if notTorn(enc) == "" {
			t.Fatalf("record with bit %d flipped counts as torn", bit)
		}
	})
}

// FuzzDecodePayload decodes arbitrary bytes as the payload of a record of
// any type, bypassing the checksum that stops most inputs of
// FuzzDecodeRecord before the payload decoder. It never panics, never
// allocates much more than the payload's size, and what decodes
// re-encodes to a record that decodes the same.
func FuzzDecodePayload(f *testing.F) {
	for _, r := range seedRecords() {
		enc := appendRecord(nil, &r)
		f.Add(byte(r.typ), enc[headerSize:])
	}
	f.Add(byte(0), []byte{})
	f.Add(byte(typeEntries), []byte{1, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0, 1, 0, endByte})
	f.Fuzz(func(t *testing.T, typ byte, p []byte) {
		r, err := decodeBounded(t, recordType(typ), p)
		if err != nil {
			return
		}
		if !r.typ.known() || r.typ.hasEntries() != (len(r.ents) > 0) || len(r.ents)*r.typ.minEntry() > len(p) ||
			(r.typ == typeSnapshot && r.snap.Index < 1) || (r.typ == typeSegmentHeader && r.last < r.snap.Index) {
			t.Fatalf("type %d: %d entries from %d bytes", r.typ, len(r.ents), len(p))
		}
		checkReencode(t, r)
	})
}
