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

// maxHardStatePayload is the largest payload of a typeHardState record:
// two varints of at most 10 bytes each.
const maxHardStatePayload = 2 * binary.MaxVarintLen64

// recordType says what a record's payload holds.
type recordType byte

// The record types. Type 0 is never used, so that zeros are never a record.
const (
	// typeHardState: uvarint term, varint vote.
	typeHardState recordType = 1
	// typeEntries: uvarint first index, uvarint count, then per entry
	// uvarint term, uvarint command length, command bytes. The entries
	// replace the log from the first index on.
	typeEntries recordType = 2
	// typeHardStateEntries: a typeHardState payload followed by a
	// typeEntries payload, for a Save that writes both.
	typeHardStateEntries recordType = 3
)

func (t recordType) hasHardState() bool { return t == typeHardState || t == typeHardStateEntries }
func (t recordType) hasEntries() bool   { return t == typeEntries || t == typeHardStateEntries }
func (t recordType) known() bool        { return t >= typeHardState && t <= typeHardStateEntries }

// minPayload is the smallest payload a record of type t can have.
func (t recordType) minPayload() int {
	n := 0
	if t.hasHardState() {
		n += 2 // term, vote
	}
	if t.hasEntries() {
		n += 4 // first index, count, one entry's term and length
	}
	return n
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// record is one decoded record. ents, if the type has entries, are
// consecutive and not empty.
type record struct {
	typ  recordType
	hs   core.HardState
	ents []core.Entry
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

// entrySize returns the bytes e takes in an entries payload.
func entrySize(e *core.Entry) int {
	return uvarintSize(uint64(e.Term)) + uvarintSize(uint64(len(e.Command))) + len(e.Command)
}

// appendRecord appends the encoding of r (header and payload) to dst.
// r.hs.Term, and the indexes and terms of r.ents, must not be negative.
func appendRecord(dst []byte, r *record) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0, byte(r.typ))
	if r.typ.hasHardState() {
		dst = binary.AppendUvarint(dst, uint64(r.hs.Term))
		dst = binary.AppendVarint(dst, int64(r.hs.Vote))
	}
	if r.typ.hasEntries() {
		dst = binary.AppendUvarint(dst, uint64(r.ents[0].Index))
		dst = binary.AppendUvarint(dst, uint64(len(r.ents)))
		for i := range r.ents {
			e := &r.ents[i]
			dst = binary.AppendUvarint(dst, uint64(e.Term))
			dst = binary.AppendUvarint(dst, uint64(len(e.Command)))
			dst = append(dst, e.Command...)
		}
	}
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(dst)-start-headerSize))
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(dst[start+8:], crcTable))
	return dst
}

// decodeRecord decodes the record at the start of b and returns it with
// the number of bytes it takes. The commands of the entries alias b.
//
// An error wrapping errMalformed means the checksum matched but the
// payload is invalid; any other error is damage that a torn write can
// cause (short header, short payload, impossible header, bad checksum).
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
	if !r.typ.known() {
		return r, 0, fmt.Errorf("unknown record type %d", r.typ)
	}
	if int(size) > len(b)-headerSize {
		return r, 0, fmt.Errorf("record of %d bytes cut short: %d bytes left", headerSize+int(size), len(b))
	}
	n = headerSize + int(size)
	if crc32.Checksum(b[8:n], crcTable) != sum {
		return r, 0, errors.New("checksum mismatch")
	}
	if err := r.decodePayload(b[headerSize:n:n]); err != nil {
		return r, 0, fmt.Errorf("%w: %s", errMalformed, err)
	}
	return r, n, nil
}

// decodePayload decodes p as a payload of type r.typ into r.
func (r *record) decodePayload(p []byte) error {
	d := decoder{b: p}
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
		case count > len(d.b)/2: // every entry takes at least 2 bytes
			return fmt.Errorf("%d entries in %d bytes", count, len(d.b))
		case first > math.MaxInt-count+1:
			return fmt.Errorf("%d entries from index %d overflow", count, first)
		}
		r.ents = make([]core.Entry, count)
		for i := range r.ents {
			e := &r.ents[i]
			e.Index = first + i
			e.Term = d.uint("entry term")
			e.Command = d.bytes(d.uint("command length"))
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
