package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"

	"github.com/raftkit/raft/core"
)

// headerSize is the size of a record header: payload length (4 bytes),
// CRC32C of type byte and payload (4 bytes), type (1 byte).
const headerSize = 9

// maxPayload is the largest payload a record may have. A header that
// claims more is damage, not a record.
const maxPayload = 64 << 20

// recordType says what a record's payload holds.
type recordType byte

// The record types. Type 0 is never used, so that zeros are never a
// record. Types 1-3 are the first format, which older versions wrote:
// they still decode, their entries have type core.EntryNormal. Types 4-6
// are what Save writes: the same payloads with a type byte before each
// entry, and the end byte after the payload. Types 7 and 8 are written by
// a snapshot's commit and at the start of a segment.
const (
	// typeHardStateV1: uvarint term, varint vote.
	typeHardStateV1 recordType = 1
	// typeEntriesV1: uvarint first index, uvarint count, then per entry
	// uvarint term, uvarint command length, command bytes. The entries
	// replace the log from the first index on.
	typeEntriesV1 recordType = 2
	// typeHardStateEntriesV1: a typeHardStateV1 payload followed by a
	// typeEntriesV1 payload, for a Save that writes both.
	typeHardStateEntriesV1 recordType = 3
	// typeHardState: uvarint term, varint vote, the end byte.
	typeHardState recordType = 4
	// typeEntries: uvarint first index, uvarint count, then per entry the
	// entry type byte, uvarint term, uvarint command length, command
	// bytes; then the end byte.
	typeEntries recordType = 5
	// typeHardStateEntries: uvarint term, varint vote, then a typeEntries
	// payload (with its end byte).
	typeHardStateEntries recordType = 6
	// typeSnapshot: the keepLog byte (0 or 1), uvarint meta length, the
	// snapshot meta (see appendMeta), the end byte. The snapshot it names
	// is current from this record on.
	typeSnapshot recordType = 7
	// typeSegmentHeader: uvarint term, varint vote, uvarint meta length,
	// the snapshot meta, uvarint last index, the end byte: the HardState,
	// the current snapshot (zero if none) and the log's last index when
	// the segment was started. It is the first record of every segment a
	// WAL starts, so that the segment can be replayed without the ones
	// before it.
	typeSegmentHeader recordType = 8
)

// endByte ends the payload of the record types 4-8, so that a whole
// record of those types never ends in a zero byte: zeros at the end of the
// log are then always a write that did not finish, never a record's own
// bytes (see the package doc, Damage).
const endByte = 0xFF

func (t recordType) known() bool { return t >= typeHardStateV1 && t <= typeSegmentHeader }

// v2 reports whether t is of the current format: a type byte per entry
// (if it has entries), and the end byte.
func (t recordType) v2() bool { return t >= typeHardState && t <= typeSegmentHeader }

// kind maps t to the first format's type with the same contents; types
// without one map to themselves.
func (t recordType) kind() recordType {
	if t >= typeHardState && t <= typeHardStateEntries {
		return t - typeHardState + typeHardStateV1
	}
	return t
}

func (t recordType) hasHardState() bool {
	k := t.kind()
	return k == typeHardStateV1 || k == typeHardStateEntriesV1 || k == typeSegmentHeader
}

func (t recordType) hasEntries() bool {
	return t.kind() == typeEntriesV1 || t.kind() == typeHardStateEntriesV1
}

// hasMeta reports whether records of type t carry a snapshot meta.
func (t recordType) hasMeta() bool { return t == typeSnapshot || t == typeSegmentHeader }

// minEntry is the fewest bytes an entry takes in a payload of type t.
func (t recordType) minEntry() int {
	if t.v2() {
		return 3 // type, term, command length
	}
	return 2 // term, command length
}

// payloadBounds returns the smallest and the largest payload a record of
// known type t can have.
func (t recordType) payloadBounds() (lo, hi int) {
	end := 0
	if t.v2() {
		end = 1
	}
	lo = end
	if t.hasHardState() {
		lo += 2 // term, vote
	}
	if t.hasMeta() {
		// Meta length, then at least a version, an index and a term.
		// typeSnapshot has the keepLog byte, typeSegmentHeader the last
		// index.
		return lo + 1 + minMeta + 1, maxPayload
	}
	if !t.hasEntries() {
		return lo, 2*binary.MaxVarintLen64 + end
	}
	return lo + 2 + t.minEntry(), maxPayload // first index, count, one entry
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// record is one decoded record. ents, if the type has entries, are
// consecutive and not empty.
type record struct {
	typ     recordType
	hs      core.HardState
	ents    []core.Entry
	snap    core.SnapshotMeta // typeSnapshot, typeSegmentHeader
	keepLog bool              // typeSnapshot
	last    int               // typeSegmentHeader: the log's last index
}

// errMalformed marks a record whose checksum is right but whose payload
// does not decode: it was written that way, so it is never a torn write.
var errMalformed = errors.New("malformed record")

// uvarintSize returns the length of the uvarint encoding of x.
func uvarintSize(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// entrySize returns the bytes e takes in a payload of types 4-6.
func entrySize(e *core.Entry) int {
	return 1 + uvarintSize(uint64(e.Term)) + uvarintSize(uint64(len(e.Command))) + len(e.Command)
}

// appendRecord appends the encoding of r (header and payload) to dst.
// r.hs.Term, and the indexes and terms of r.ents, must not be negative.
// Only tests write records of types 1-3, which have no room for the
// entries' types.
func appendRecord(dst []byte, r *record) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0, byte(r.typ))
	if r.typ == typeSnapshot {
		dst = append(dst, boolByte(r.keepLog))
	}
	if r.typ.hasHardState() {
		dst = binary.AppendUvarint(dst, uint64(r.hs.Term))
		dst = binary.AppendVarint(dst, int64(r.hs.Vote))
	}
	if r.typ.hasEntries() {
		dst = binary.AppendUvarint(dst, uint64(r.ents[0].Index))
		dst = binary.AppendUvarint(dst, uint64(len(r.ents)))
		for i := range r.ents {
			e := &r.ents[i]
			if r.typ.v2() {
				dst = append(dst, byte(e.Type))
			}
			dst = binary.AppendUvarint(dst, uint64(e.Term))
			dst = binary.AppendUvarint(dst, uint64(len(e.Command)))
			dst = append(dst, e.Command...)
		}
	}
	if r.typ.hasMeta() {
		dst = binary.AppendUvarint(dst, uint64(metaSize(r.snap)))
		dst = appendMeta(dst, r.snap)
	}
	if r.typ == typeSegmentHeader {
		dst = binary.AppendUvarint(dst, uint64(r.last))
	}
	if r.typ.v2() {
		dst = append(dst, endByte)
	}
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(dst)-start-headerSize))
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(dst[start+8:], crcTable))
	return dst
}

// decodeRecord decodes the record at the start of b and returns it with
// the number of bytes it takes. The commands of the entries alias b.
//
// An error wrapping errMalformed means the checksum matched but the type
// is unknown or the payload is invalid: the record was written so. Any
// other error is damage that a torn write can cause (short header, short
// payload, a length over maxPayload, bad checksum).
func decodeRecord(b []byte) (r record, n int, err error) {
	if len(b) < headerSize {
		return r, 0, fmt.Errorf("record header cut short: %d of %d bytes", len(b), headerSize)
	}
	size := binary.LittleEndian.Uint32(b)
	sum := binary.LittleEndian.Uint32(b[4:])
	r.typ = recordType(b[8])
	if size > maxPayload {
		return r, 0, fmt.Errorf("record length %d over maximum %d", size, maxPayload)
	}
	if int(size) > len(b)-headerSize {
		return r, 0, fmt.Errorf("record of %d bytes cut short: %d bytes left", headerSize+int(size), len(b))
	}
	n = headerSize + int(size)
	if crc32.Checksum(b[8:n], crcTable) != sum {
		return r, 0, errors.New("checksum mismatch")
	}
	if !r.typ.known() {
		return r, 0, fmt.Errorf("%w: unknown record type %d (written by a newer version?)", errMalformed, r.typ)
	}
	if err := r.decodePayload(b[headerSize:n:n]); err != nil {
		return r, 0, fmt.Errorf("%w: %s", errMalformed, err)
	}
	return r, n, nil
}

// decodePayload decodes p as a payload of type r.typ into r. It checks
// every count and length against the bytes left in p before it allocates
// or slices, so no payload can make it panic or allocate more than a
// small multiple of len(p). The commands of the entries alias p.
func (r *record) decodePayload(p []byte) error {
	if !r.typ.known() {
		return fmt.Errorf("unknown record type %d", r.typ)
	}
	d := decoder{b: p}
	if r.typ == typeSnapshot {
		switch c := d.byte("keepLog"); {
		case d.err != nil:
		case c > 1:
			return fmt.Errorf("keepLog byte %d", c)
		default:
			r.keepLog = c == 1
		}
	}
	if r.typ.hasHardState() {
		r.hs.Term = d.uint("term")
		r.hs.Vote = d.int("vote")
	}
	if r.typ.hasEntries() {
		first := d.uint("first index")
		count := d.uint("entry count")
		if d.err != nil {
			return d.err
		}
		switch {
		case first < 1:
			return fmt.Errorf("first index %d", first)
		case count < 1:
			return errors.New("no entries")
		case count > len(d.b)/r.typ.minEntry(): // before make: no allocation beyond what the payload can hold
			return fmt.Errorf("%d entries in %d bytes", count, len(d.b))
		case first > math.MaxInt-count+1:
			return fmt.Errorf("%d entries from index %d overflow", count, first)
		}
		r.ents = make([]core.Entry, count)
		for i := range r.ents {
			e := &r.ents[i]
			e.Index = first + i
			if r.typ.v2() {
				e.Type = core.EntryType(d.byte("entry type"))
			}
			e.Term = d.uint("entry term")
			e.Command = d.bytes(d.uint("command length"))
		}
	}
	if r.typ.hasMeta() {
		if err := r.decodeMeta(&d); err != nil {
			return err
		}
	}
	if r.typ == typeSegmentHeader {
		r.last = d.uint("last index")
		if d.err == nil && r.last < r.snap.Index {
			return fmt.Errorf("last index %d before the snapshot's index %d", r.last, r.snap.Index)
		}
	}
	if r.typ.v2() {
		if c := d.byte("end byte"); d.err == nil && c != endByte {
			return fmt.Errorf("end byte %#x, want %#x", c, endByte)
		}
	}
	if d.err != nil {
		return d.err
	}
	if len(d.b) != 0 {
		return fmt.Errorf("%d stray bytes after payload", len(d.b))
	}
	return nil
}

// decoder reads varints off b, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) byte(what string) byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.err = fmt.Errorf("no %s", what)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uint(what string) int {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 || v > math.MaxInt {
		d.err = fmt.Errorf("bad %s", what)
		return 0
	}
	d.b = d.b[n:]
	return int(v)
}

func (d *decoder) int(what string) int {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 || int64(int(v)) != v {
		d.err = fmt.Errorf("bad %s", what)
		return 0
	}
	d.b = d.b[n:]
	return int(v)
}

// bytes returns the next n bytes, capped so that appending to them cannot
// overwrite what follows; nil if n is 0.
func (d *decoder) bytes(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.b) {
		d.err = fmt.Errorf("command of %d bytes cut short: %d left", n, len(d.b))
		return nil
	}
	if n == 0 {
		return nil
	}
	b := d.b[:n:n]
	d.b = d.b[n:]
	return b
}

// decodeMeta decodes the length-prefixed snapshot meta of a typeSnapshot
// or typeSegmentHeader payload into r.snap. A snapshot record names a
// snapshot; a segment header's may be zero (none).
func (r *record) decodeMeta(d *decoder) error {
	n := d.uint("meta length")
	if d.err != nil {
		return d.err
	}
	if n > len(d.b) {
		return fmt.Errorf("snapshot meta of %d bytes cut short: %d left", n, len(d.b))
	}
	meta, err := decodeMeta(d.b[:n])
	if err != nil {
		return err
	}
	d.b = d.b[n:]
	if r.typ == typeSnapshot && meta.Index < 1 {
		return fmt.Errorf("snapshot record names no snapshot (index %d)", meta.Index)
	}
	r.snap = meta
	return nil
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}
