package storage

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// notTorn tells a write that did not finish from damage to a record that
// was written whole. b holds the bytes from the start of a record that
// does not decode, at the end of the last segment, to the end of the
// file. notTorn returns "" if b looks like an unfinished write: a short
// header, a zero header, a length that runs past the end of the file, or
// a record zero-filled from some byte of it to the end of the file.
// Otherwise it returns why the damage is not a torn write.
func notTorn(b []byte) string {
	if len(b) < headerSize || allZero(b[:headerSize]) {
		return ""
	}
	size := uint64(binary.LittleEndian.Uint32(b))
	if crc32.Checksum(b[8:], crcTable) == binary.LittleEndian.Uint32(b[4:]) {
		// The checksum is right for everything up to the end of the
		// file: the record was written whole, and its length field
		// says otherwise because it was damaged since.
		return fmt.Sprintf("the checksum is right for the %d bytes up to the end of the file, so the record was written whole and its length %d is damaged", len(b)-headerSize, size)
	}
	end := headerSize + size
	if end > uint64(len(b)) {
		return ""
	}
	if uint64(len(bytes.TrimRight(b, "\x00"))) < end {
		return ""
	}
	return fmt.Sprintf("the record's %d bytes are all in the file and do not end in zeros, so it was written whole and damaged since", end)
}

// allZero reports whether b holds only zero bytes.
func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// scanBudget bounds the payload bytes checksummed while looking for a
// valid record after a damaged one, so that a pathological tail cannot
// make Open take minutes. Past it, Open refuses rather than guess.
const scanBudget = 1 << 30

// findRecord returns the offset of the first whole record with a good
// checksum that starts at or after from in b, or -1 if there is none.
func findRecord(b []byte, from int) (int, error) {
	budget := scanBudget
	for p := from; p+headerSize <= len(b); p++ {
		typ := recordType(b[p+8])
		if !typ.known() {
			continue
		}
		size := binary.LittleEndian.Uint32(b[p:])
		lo, hi := typ.payloadBounds()
		if int64(size) < int64(lo) || int64(size) > int64(hi) || int64(size) > int64(len(b)-p-headerSize) {
			continue
		}
		if budget -= int(size); budget < 0 {
			return -1, fmt.Errorf("gave up looking for valid records after offset %d", from)
		}
		end := p + headerSize + int(size)
		if crc32.Checksum(b[p+8:end], crcTable) == binary.LittleEndian.Uint32(b[p+4:]) {
			return p, nil
		}
	}
	return -1, nil
}
