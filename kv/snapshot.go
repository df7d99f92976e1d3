package kv

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"maps"
	"math"
	"slices"
	"time"
)

// A snapshot of the store is a stream:
//
//	magic     "raftkv\x00" and a version byte, snapVersion
//	applied   uvarint: the index of the last command applied
//	now       varint: the log's clock (see sessions)
//	keys      uvarint count, then per key: key, value
//	clients   uvarint count, then per client, least recently active
//	          first: client ID (varint), seq (varint), the digest of its
//	          request (32 bytes), its result's value and found (a byte,
//	          0 or 1), its last activity (varint)
//	members   version 2 only: uvarint count, then per server, by
//	          increasing ID: its ID (uvarint), its HTTP address (string,
//	          at most MaxHTTPAddrBytes; see CheckHTTPAddr)
//	checksum  uint32 little endian: CRC-32C of everything before it
//
// where a string (key, value) is a uvarint length, then the bytes. It is
// written and read as a stream, never held whole in memory.
//
// A store whose directory of HTTP addresses is empty writes version 1,
// which is version 2 without the members: so that, in a rolling upgrade,
// the replicas not yet upgraded read the snapshots of those that are, as
// long as no HTTP address has been recorded. A server reads both.
const (
	snapMagic     = "raftkv\x00"
	snapVersion   = 2
	snapVersionV1 = 1 // no members
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// errBadSnapshot is wrapped by every error of readSnapshot about what it
// read.
var errBadSnapshot = errors.New("kv: malformed snapshot")

// writeSnapshot writes the store's state to w; s.mu is held.
func (s *Server) writeSnapshot(w io.Writer) error {
	sum := crc32.New(crcTable)
	bw := bufio.NewWriterSize(io.MultiWriter(w, sum), 64<<10)
	e := snapEncoder{w: bw}
	version := byte(snapVersion)
	if len(s.httpDir) == 0 {
		version = snapVersionV1
	}
	bw.WriteString(snapMagic)
	bw.WriteByte(version)
	e.uvarint(uint64(s.applied))
	e.varint(s.sessions.now)
	e.uvarint(uint64(len(s.data)))
	for k, v := range s.data {
		e.string(k)
		e.string(v)
	}
	e.uvarint(uint64(s.sessions.len()))
	for el := s.sessions.lru.Front(); el != nil; el = el.Next() {
		x := el.Value.(*session)
		e.varint(x.client)
		e.varint(x.seq)
		bw.Write(x.digest[:])
		e.string(x.res.Value)
		found := byte(0)
		if x.res.Found {
			found = 1
		}
		bw.WriteByte(found)
		e.varint(x.lastActive)
	}
	if version >= 2 {
		ids := slices.Sorted(maps.Keys(s.httpDir))
		e.uvarint(uint64(len(ids)))
		for _, id := range ids {
			e.uvarint(uint64(id))
			e.string(s.httpDir[id])
		}
	}
	if err := bw.Flush(); err != nil { // bufio keeps the first error
		return fmt.Errorf("kv: write snapshot: %w", err)
	}
	if _, err := w.Write(binary.LittleEndian.AppendUint32(nil, sum.Sum32())); err != nil {
		return fmt.Errorf("kv: write snapshot: %w", err)
	}
	return nil
}

type snapEncoder struct {
	w   *bufio.Writer
	buf [binary.MaxVarintLen64]byte
}

func (e *snapEncoder) uvarint(x uint64) { e.w.Write(e.buf[:binary.PutUvarint(e.buf[:], x)]) }
func (e *snapEncoder) varint(x int64)   { e.w.Write(e.buf[:binary.PutVarint(e.buf[:], x)]) }
func (e *snapEncoder) string(v string) {
	e.uvarint(uint64(len(v)))
	e.w.WriteString(v)
}

// storeState is what a snapshot holds.
type storeState struct {
	applied  int
	data     map[string]string
	httpDir  map[int]string
	sessions *sessions
}

// readSnapshot reads a snapshot that writeSnapshot wrote; the table of
// clients it returns has the bounds ttl and max.
func readSnapshot(r io.Reader, ttl time.Duration, max int) (*storeState, error) {
	d := &snapDecoder{r: bufio.NewReaderSize(r, 64<<10), sum: crc32.New(crcTable)}
	var magic [len(snapMagic) + 1]byte
	d.full(magic[:])
	if d.err != nil || string(magic[:len(snapMagic)]) != snapMagic {
		return nil, fmt.Errorf("%w: it does not start as a snapshot of the store does", errBadSnapshot)
	}
	version := magic[len(snapMagic)]
	if version != snapVersion && version != snapVersionV1 {
		return nil, fmt.Errorf("%w: version %d, which this server does not know (it reads versions %d and %d): is a newer replica in the cluster?", errBadSnapshot, version, snapVersionV1, snapVersion)
	}
	st := &storeState{data: map[string]string{}, httpDir: map[int]string{}, sessions: newSessions(ttl, max)}
	applied := d.uvarint("applied index")
	if applied > 1<<62 {
		return nil, d.fail(fmt.Sprintf("applied index %d out of range", applied))
	}
	st.applied = int(applied)
	st.sessions.now = d.varint("clock")
	nkeys := d.uvarint("key count")
	for i := uint64(0); i < nkeys && d.err == nil; i++ {
		k := d.string("key")
		v := d.string("value")
		if _, dup := st.data[k]; dup && d.err == nil {
			return nil, d.fail(fmt.Sprintf("key %q twice", k))
		}
		st.data[k] = v
	}
	nclients := d.uvarint("client count")
	for i := uint64(0); i < nclients && d.err == nil; i++ {
		x := &session{client: d.varint("client ID"), seq: d.varint("seq")}
		d.full(x.digest[:])
		x.res.Value = d.string("result")
		switch f := d.byte(); {
		case d.err != nil:
		case f > 1:
			return nil, d.fail(fmt.Sprintf("found flag %d", f))
		default:
			x.res.Found = f == 1
		}
		x.lastActive = d.varint("last activity")
		if _, dup := st.sessions.byID[x.client]; dup && d.err == nil {
			return nil, d.fail(fmt.Sprintf("client %d twice", x.client))
		}
		st.sessions.byID[x.client] = st.sessions.lru.PushBack(x)
	}
	if version >= 2 {
		if err := d.members(st.httpDir); err != nil {
			return nil, err
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	want := d.sum.Sum32()
	var trailer [4]byte
	if _, err := io.ReadFull(d.r, trailer[:]); err != nil {
		return nil, d.fail(fmt.Sprintf("checksum: %v", readErr(err)))
	}
	if got := binary.LittleEndian.Uint32(trailer[:]); got != want {
		return nil, fmt.Errorf("%w: checksum %08x, but the content sums to %08x: the snapshot is damaged", errBadSnapshot, got, want)
	}
	if _, err := d.r.ReadByte(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the checksum, at byte %d", errBadSnapshot, d.off+4)
	}
	return st, nil
}

// members reads the directory of HTTP addresses into dir.
func (d *snapDecoder) members(dir map[int]string) error {
	n := d.uvarint("member count")
	last := uint64(0)
	for i := uint64(0); i < n && d.err == nil; i++ {
		at := d.off
		id := d.uvarint("member ID")
		switch {
		case d.err != nil:
			return d.err
		case id == 0 || id > math.MaxInt:
			d.off = at
			return d.fail(fmt.Sprintf("member ID %d out of range", id))
		case id <= last:
			d.off = at
			return d.fail(fmt.Sprintf("member %d after member %d: not in increasing order", id, last))
		}
		last = id
		at = d.off
		addr := d.boundedString("HTTP address", MaxHTTPAddrBytes)
		if d.err != nil {
			return d.err
		}
		if err := CheckHTTPAddr(addr); err != nil {
			d.off = at
			return d.fail(fmt.Sprintf("member %d: %v", id, err))
		}
		dir[int(id)] = addr
	}
	return d.err
}

// snapDecoder reads a snapshot, summing what it reads and keeping the
// first error, and its offset.
type snapDecoder struct {
	r   *bufio.Reader
	sum hash.Hash32
	off int64
	err error
}

func (d *snapDecoder) fail(what string) error {
	return fmt.Errorf("%w: %s at byte %d", errBadSnapshot, what, d.off)
}

// readErr says that the stream ended early, or passes err on.
func readErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("the snapshot ends early")
	}
	return err
}

func (d *snapDecoder) ReadByte() (byte, error) {
	c, err := d.r.ReadByte()
	if err == nil {
		d.sum.Write([]byte{c})
		d.off++
	}
	return c, err
}

func (d *snapDecoder) byte() byte {
	if d.err != nil {
		return 0
	}
	c, err := d.ReadByte()
	if err != nil {
		d.err = d.fail(readErr(err).Error())
	}
	return c
}

func (d *snapDecoder) full(b []byte) {
	if d.err != nil {
		return
	}
	n, err := io.ReadFull(d.r, b)
	d.sum.Write(b[:n])
	d.off += int64(n)
	if err != nil {
		d.err = d.fail(readErr(err).Error())
	}
}

func (d *snapDecoder) uvarint(name string) uint64 {
	if d.err != nil {
		return 0
	}
	at := d.off
	x, err := binary.ReadUvarint(d)
	if err != nil {
		d.off = at
		d.err = d.fail(name + ": " + readErr(err).Error())
	}
	return x
}

func (d *snapDecoder) varint(name string) int64 {
	if d.err != nil {
		return 0
	}
	at := d.off
	x, err := binary.ReadVarint(d)
	if err != nil {
		d.off = at
		d.err = d.fail(name + ": " + readErr(err).Error())
	}
	return x
}

// string reads a length, then that many bytes, without trusting the
// length with an allocation before the bytes have arrived.
func (d *snapDecoder) string(name string) string {
	return d.boundedString(name, math.MaxUint64)
}

// boundedString is string, refusing a length over max.
func (d *snapDecoder) boundedString(name string, max uint64) string {
	at := d.off
	n := d.uvarint(name + " length")
	if d.err != nil {
		return ""
	}
	if n > max {
		d.off = at
		d.err = d.fail(fmt.Sprintf("%s of %d bytes, over the limit of %d", name, n, max))
		return ""
	}
	const chunk = 1 << 20
	b := make([]byte, 0, min(n, chunk))
	for uint64(len(b)) < n && d.err == nil {
		m := int(min(n-uint64(len(b)), chunk))
		b = slices.Grow(b, m)
		d.full(b[len(b) : len(b)+m])
		b = b[:len(b)+m]
	}
	if d.err != nil {
		return ""
	}
	return string(b)
}
