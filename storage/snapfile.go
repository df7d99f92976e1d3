package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/raftkit/raft/core"
)

// A snapshot file (see the package doc, Snapshots) is a header, data
// blocks and an end block:
//
//	header: magic "RAFTSNAP", version byte (snapFileVersion), uint32
//	        meta length, the meta (see appendMeta), uint32 CRC32C of
//	        everything before it in the header
//	block:  uint32 length (1 to blockSize), uint32 CRC32C of the data,
//	        the data
//	end:    uint32 0, uint32 CRC32C of the next 8 bytes, uint64 the
//	        number of data bytes in the file
//
// all integers little-endian. Nothing follows the end block.
const (
	snapMagic       = "RAFTSNAP"
	snapFileVersion = 1
	// snapHeaderFixed is the size of the header without the meta.
	snapHeaderFixed = len(snapMagic) + 1 + 4 + 4
	// blockSize is the most data a block holds: what a sink buffers, and
	// a reader reads at once.
	blockSize = 64 << 10
	// blockHeaderSize is the size of a block's length and checksum.
	blockHeaderSize = 8
	snapSuffix      = ".snap"
	tmpSuffix       = ".tmp"
)

// snapshotName returns the file name of the snapshot m:
// 20-digit index, '-', 20-digit term, ".snap".
func snapshotName(m core.SnapshotMeta) string {
	return fmt.Sprintf("%020d-%020d%s", m.Index, m.Term, snapSuffix)
}

// parseSnapshotName returns the meta that a snapshot file name says.
func parseSnapshotName(name string) (core.SnapshotMeta, bool) {
	base, ok := strings.CutSuffix(name, snapSuffix)
	if !ok || len(base) != 41 || base[20] != '-' {
		return core.SnapshotMeta{}, false
	}
	index, ok1 := parseDigits(base[:20])
	term, ok2 := parseDigits(base[21:])
	if !ok1 || !ok2 || index < 1 || term < 1 {
		return core.SnapshotMeta{}, false
	}
	return core.SnapshotMeta{Index: index, Term: term}, true
}

// parseDigits parses a string of decimal digits that fits in an int.
func parseDigits(s string) (int, bool) {
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 0)
	return int(n), err == nil
}

// isSnapshotTemp reports whether name is that of a snapshot being
// written: a snapshot file name, '.', a random part, ".tmp".
func isSnapshotTemp(name string) bool {
	i := strings.Index(name, snapSuffix+".")
	if i < 0 || !strings.HasSuffix(name, tmpSuffix) {
		return false
	}
	_, ok := parseSnapshotName(name[:i+len(snapSuffix)])
	return ok
}

// appendSnapHeader appends the header of a snapshot file holding m.
func appendSnapHeader(dst []byte, m core.SnapshotMeta) []byte {
	start := len(dst)
	dst = append(dst, snapMagic...)
	dst = append(dst, snapFileVersion)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(metaSize(m)))
	dst = appendMeta(dst, m)
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], crcTable))
}

// blockWriter writes a snapshot file: the header, then the data in
// blocks as it comes, holding at most one block in memory.
type blockWriter struct {
	f    *os.File
	buf  []byte // the block being filled: room for its header, then data
	off  int64  // bytes written to f
	size int64  // data bytes taken
}

// newBlockWriter writes the header of a snapshot file holding m to f.
func newBlockWriter(f *os.File, m core.SnapshotMeta) (*blockWriter, error) {
	bw := &blockWriter{f: f, buf: make([]byte, blockHeaderSize, blockHeaderSize+blockSize)}
	if err := bw.writeRaw(appendSnapHeader(nil, m)); err != nil {
		return nil, err
	}
	return bw, nil
}

func (bw *blockWriter) writeRaw(b []byte) error {
	n, err := bw.f.Write(b)
	bw.off += int64(n)
	return err
}

// Write takes p into blocks, writing each block as it fills.
func (bw *blockWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := copy(bw.buf[len(bw.buf):cap(bw.buf)], p)
		bw.buf = bw.buf[:len(bw.buf)+k]
		p = p[k:]
		n += k
		bw.size += int64(k)
		if len(bw.buf) == cap(bw.buf) {
			if err := bw.flush(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// flush writes the block being filled, if it holds any data.
func (bw *blockWriter) flush() error {
	data := bw.buf[blockHeaderSize:]
	if len(data) == 0 {
		return nil
	}
	binary.LittleEndian.PutUint32(bw.buf, uint32(len(data)))
	binary.LittleEndian.PutUint32(bw.buf[4:], crc32.Checksum(data, crcTable))
	err := bw.writeRaw(bw.buf)
	bw.buf = bw.buf[:blockHeaderSize]
	return err
}

// finish writes the last block and the end block.
func (bw *blockWriter) finish() error {
	if err := bw.flush(); err != nil {
		return err
	}
	return bw.writeRaw(appendEndBlock(nil, bw.size))
}

// appendEndBlock appends the end block of a file of size data bytes.
func appendEndBlock(dst []byte, size int64) []byte {
	total := binary.LittleEndian.AppendUint64(nil, uint64(size))
	dst = binary.LittleEndian.AppendUint32(dst, 0)
	dst = binary.LittleEndian.AppendUint32(dst, crc32.Checksum(total, crcTable))
	return append(dst, total...)
}

// snapshotReader reads the data of a snapshot file, a block at a time,
// checking each block before it hands out any of its bytes. Damage is an
// error wrapping ErrCorrupt that names the file and the offset of the
// damaged block; any error is returned again by every later Read.
type snapshotReader struct {
	f    *os.File
	name string // file name, for errors
	off  int64  // offset in f of the next byte to read
	buf  []byte // the current block's data
	data []byte // what is left of it to hand out
	size int64  // data bytes read so far
	err  error
}

// newSnapshotReader reads and checks the header of the snapshot file f,
// which must hold the snapshot want. It takes f, and closes it on error.
func newSnapshotReader(f *os.File, name string, want core.SnapshotMeta) (*snapshotReader, error) {
	r := &snapshotReader{f: f, name: name}
	m, err := r.readHeader()
	if err == nil && (m.Index != want.Index || m.Term != want.Term) {
		err = r.corrupt(0, fmt.Sprintf("holds the snapshot through index %d term %d, not index %d term %d", m.Index, m.Term, want.Index, want.Term))
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return r, nil
}

func (r *snapshotReader) corrupt(off int64, msg string) error {
	return &corruptError{what: "snapshot", name: r.name, off: off, msg: msg}
}

// readFull reads len(p) bytes of what at offset start: a file that ends
// first is damaged.
func (r *snapshotReader) readFull(p []byte, start int64, what string) error {
	n, err := io.ReadFull(r.f, p)
	r.off += int64(n)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return r.corrupt(start, fmt.Sprintf("file cut short in the %s: %d of %d bytes", what, n, len(p)))
	default:
		return fmt.Errorf("storage: read snapshot %s at offset %d: %w", r.name, r.off, err)
	}
}

// readHeader reads the file's header and returns the meta in it.
func (r *snapshotReader) readHeader() (core.SnapshotMeta, error) {
	hdr := make([]byte, len(snapMagic)+1+4)
	if err := r.readFull(hdr, 0, "header"); err != nil {
		return core.SnapshotMeta{}, err
	}
	if string(hdr[:len(snapMagic)]) != snapMagic {
		return core.SnapshotMeta{}, r.corrupt(0, fmt.Sprintf("no snapshot file header (magic %q)", hdr[:len(snapMagic)]))
	}
	if v := hdr[len(snapMagic)]; v != snapFileVersion {
		return core.SnapshotMeta{}, r.corrupt(0, fmt.Sprintf("snapshot file of version %d (written by a newer version?)", v))
	}
	n := binary.LittleEndian.Uint32(hdr[len(snapMagic)+1:])
	if n > maxMetaBytes {
		return core.SnapshotMeta{}, r.corrupt(0, fmt.Sprintf("meta length %d over the maximum %d", n, maxMetaBytes))
	}
	rest := make([]byte, n+4)
	if err := r.readFull(rest, 0, "header"); err != nil {
		return core.SnapshotMeta{}, err
	}
	sum := crc32.Update(crc32.Checksum(hdr, crcTable), crcTable, rest[:n])
	if binary.LittleEndian.Uint32(rest[n:]) != sum {
		return core.SnapshotMeta{}, r.corrupt(0, "header checksum mismatch")
	}
	m, err := decodeMeta(rest[:n])
	if err != nil {
		return core.SnapshotMeta{}, r.corrupt(0, err.Error())
	}
	return m, nil
}

// Read reads the snapshot's data.
func (r *snapshotReader) Read(p []byte) (int, error) {
	for len(r.data) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		r.err = r.next()
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// next reads the next block into r.data; at the end block it checks the
// size and that nothing follows, and returns io.EOF.
func (r *snapshotReader) next() error {
	start := r.off
	var hdr [blockHeaderSize]byte
	if err := r.readFull(hdr[:], start, "block header"); err != nil {
		return err
	}
	n := binary.LittleEndian.Uint32(hdr[:])
	sum := binary.LittleEndian.Uint32(hdr[4:])
	if n == 0 {
		return r.end(start, sum)
	}
	if n > blockSize {
		return r.corrupt(start, fmt.Sprintf("block length %d over the maximum %d", n, blockSize))
	}
	if r.buf == nil {
		r.buf = make([]byte, blockSize)
	}
	data := r.buf[:n]
	if err := r.readFull(data, start, "block"); err != nil {
		return err
	}
	if crc32.Checksum(data, crcTable) != sum {
		return r.corrupt(start, fmt.Sprintf("checksum mismatch in a block of %d bytes", n))
	}
	r.data = data
	r.size += int64(n)
	return nil
}

// end checks the end block at offset start, whose checksum is sum.
func (r *snapshotReader) end(start int64, sum uint32) error {
	var total [8]byte
	if err := r.readFull(total[:], start, "end block"); err != nil {
		return err
	}
	if crc32.Checksum(total[:], crcTable) != sum {
		return r.corrupt(start, "checksum mismatch in the end block")
	}
	if size := int64(binary.LittleEndian.Uint64(total[:])); size != r.size {
		return r.corrupt(start, fmt.Sprintf("end block says %d bytes of data, the blocks before it hold %d", size, r.size))
	}
	var one [1]byte
	switch n, err := r.f.Read(one[:]); {
	case n > 0:
		return r.corrupt(r.off, "bytes after the end block")
	case err != nil && !errors.Is(err, io.EOF):
		return fmt.Errorf("storage: read snapshot %s at offset %d: %w", r.name, r.off, err)
	}
	return io.EOF
}

// Close closes the file.
func (r *snapshotReader) Close() error {
	r.buf, r.data = nil, nil
	if r.err == nil {
		r.err = errors.New("storage: read of a closed snapshot")
	}
	return r.f.Close()
}
