package transport

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"reflect"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/raftkit/raft/core"
)

// The fuzz targets feed what a peer (or anyone reaching the port) can send
// to the frame reader and to the server's handshake. They must neither
// panic nor allocate much more than the input's size: a length field may
// not make the reader allocate beyond the size limit. In CI:
//
//	go test -run '^$' -fuzz '^FuzzFrameReader$' -fuzztime 60s ./transport
//	go test -run '^$' -fuzz '^FuzzServerHandshake$' -fuzztime 60s ./transport

// fuzzLimit is the MaxMessageBytes of the fuzzed readers: small, so that
// an allocation driven by a length field over it shows.
const fuzzLimit = 4 << 10

// allocSlack is what decoding may allocate besides a few times the input:
// the reader's buffers (a payload may take fuzzLimit), and the allocation
// metric's granularity (spans).
const allocSlack = 1 << 20

// seedRequestArgs are the requests of seedRequests: of every type,
// heartbeats, snapshot chunks (the first, and a last one), negative
// numbers, and requests over fuzzLimit.
func seedRequestArgs() []any {
	return []any{
		&core.RequestVoteArgs{Term: 3, CandidateID: 1, LastLogIndex: 7, LastLogTerm: 2, PreVote: true},
		&core.RequestVoteArgs{Term: 4, CandidateID: 2, LastLogIndex: 7, LastLogTerm: 3, Transfer: true},
		&core.TimeoutNowArgs{Term: 3, LeaderID: 1},
		&core.ReadIndexArgs{Term: 3, ID: 1 << 40},
		&core.AppendEntriesArgs{Term: 3, LeaderID: 1, PrevLogIndex: 7, PrevLogTerm: 2, LeaderCommit: 5, Round: 300},
		&core.AppendEntriesArgs{Term: 3, LeaderID: 1, Entries: entries(3, 20)},
		&core.AppendEntriesArgs{Term: -3, LeaderID: -1, PrevLogIndex: -2, PrevLogTerm: -4, LeaderCommit: -5,
			Entries: []core.Entry{{Index: -1, Term: -9, Type: core.EntryNoOp}, {Index: 0, Term: 1, Command: []byte{}}}},
		&core.ProbeArgs{},
		&core.AppendEntriesArgs{Term: 4, Entries: entries(2, fuzzLimit)},
		&core.InstallSnapshotArgs{Term: 3, LeaderID: 1, LastIncludedIndex: 7, LastIncludedTerm: 2, Data: snapshotData(0, 300)},
		&core.InstallSnapshotArgs{Term: 3, LeaderID: 1, LastIncludedIndex: 7, LastIncludedTerm: 2, Offset: 300, Data: snapshotData(300, 20), Done: true},
		&core.InstallSnapshotArgs{Term: 4, LeaderID: 1, LastIncludedIndex: 9, LastIncludedTerm: 4, Data: snapshotData(0, fuzzLimit)},
	}
}

// seedRequests returns a caller's stream of seedRequestArgs as the real
// writer lays it out.
func seedRequests(t testing.TB) []byte {
	var out []byte
	for i, req := range seedRequestArgs() {
		var err error
		if out, _, err = appendRequest(out, uint64(i), req); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// seedReplies returns a server's stream as the real writer lays it out:
// replies of every type, and errors.
func seedReplies(t testing.TB) []byte {
	var out []byte
	for i, reply := range []any{
		&core.RequestVoteReply{Term: 3, VoteGranted: true, PreVote: true},
		&core.AppendEntriesReply{Term: 3, Success: true, Index: 9, ConflictTerm: -1, ConflictIndex: 4, Round: 300},
		&core.ProbeReply{Term: 3, LastIndex: 9, Empty: true, Founder: true},
		&core.InstallSnapshotReply{Term: 3, Index: 7},
		&core.TimeoutNowReply{Term: 4},
		&core.ReadIndexReply{Term: 4, ID: 1 << 40, Index: 99},
	} {
		var err error
		if out, _, err = appendReply(out, uint64(i), reply); err != nil {
			t.Fatal(err)
		}
	}
	out = appendError(out, 6, codeFailed, "not now")
	return appendError(out, 7, codeLost, "reply 1→0 lost")
}

// The frames in seedRequests and seedReplies.
const (
	seedRequestCount = 12
	seedReplyCount   = 8
)

// heapAllocs returns the bytes allocated on the heap so far.
func heapAllocs() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// checkAllocs fails the test if decoding input allocated more than a few
// times its size, beyond allocSlack.
func checkAllocs(t *testing.T, before uint64, input []byte) {
	if n := heapAllocs() - before; n > allocSlack+64*uint64(len(input)) {
		t.Fatalf("decoding %d bytes allocated %d bytes", len(input), n)
	}
}

// readRequests reads requests as the server does, until the stream ends or
// breaks, and returns how many frames it read, and why it stopped. Each
// request decoded must encode again into one that decodes the same.
func readRequests(t testing.TB, rd *frameReader) (int, error) {
	for n := 0; ; n++ {
		in, err := rd.readRequest()
		if err != nil {
			return n, err
		}
		checkBuffers(t, rd)
		if in.req == nil {
			continue
		}
		frame, _, err := appendRequest(nil, in.id, in.req)
		if err != nil {
			t.Fatalf("encode a decoded %T: %v", in.req, err)
		}
		again, err := decodeRequest(frame[4], frame[frameHeaderLen:])
		if err != nil || !reflect.DeepEqual(again, in.req) {
			t.Fatalf("%+v encoded and decoded again: %+v, %v", in.req, again, err)
		}
	}
}

// readReplies reads replies as a caller does, until the stream ends or
// breaks, and returns how many frames it read, and why it stopped.
func readReplies(t testing.TB, rd *frameReader) (int, error) {
	for n := 0; ; n++ {
		in, err := rd.readReply()
		if err != nil {
			return n, err
		}
		checkBuffers(t, rd)
		if in.reply == nil {
			continue
		}
		frame, _, err := appendReply(nil, in.id, in.reply)
		if err != nil {
			t.Fatalf("encode a decoded %T: %v", in.reply, err)
		}
		again, err := decodeReply(frame[4], frame[frameHeaderLen:])
		if err != nil || !reflect.DeepEqual(again, in.reply) {
			t.Fatalf("%+v encoded and decoded again: %+v, %v", in.reply, again, err)
		}
	}
}

// checkBuffers fails the test if the reader holds a buffer over its limit.
func checkBuffers(t testing.TB, rd *frameReader) {
	if cap(rd.scratch) > rd.max {
		t.Fatalf("reader buffer of %d bytes, limit %d", cap(rd.scratch), rd.max)
	}
}

// TestFuzzSeeds checks that the seed corpus is what the fuzz targets
// expect: streams that decode whole, with the frames over the limit
// skipped.
func TestFuzzSeeds(t *testing.T) {
	rd := newFrameReader(bufio.NewReader(bytes.NewReader(seedRequests(t))), fuzzLimit)
	if n, err := readRequests(t, rd); n != seedRequestCount || err != io.EOF {
		t.Errorf("read %d requests, then %v; want %d, then EOF", n, err, seedRequestCount)
	}
	rd = newFrameReader(bufio.NewReader(bytes.NewReader(seedReplies(t))), fuzzLimit)
	if n, err := readReplies(t, rd); n != seedReplyCount || err != io.EOF {
		t.Errorf("read %d replies, then %v; want %d, then EOF", n, err, seedReplyCount)
	}
	tr := &TCP{id: 0, peers: map[int]string{0: "a", 1: "b"}, callTimeout: time.Second, maxMsg: fuzzLimit}
	from, _, rd, err := tr.serverHandshake(fuzzConn{bytes.NewReader(append(appendHello(nil, 1, 0), seedRequests(t)...))})
	if err != nil || from != 1 {
		t.Fatalf("handshake of the seed: caller %d, %v", from, err)
	}
	if n, err := readRequests(t, rd); n != seedRequestCount || err != io.EOF {
		t.Errorf("read %d requests after the handshake, then %v; want %d, then EOF", n, err, seedRequestCount)
	}
}

// TestMalformedFrames checks that every frame of the seeds, cut short
// anywhere, or with a byte too many, or with a flag or type byte out of
// range, is refused with an error.
func TestMalformedFrames(t *testing.T) {
	type seed struct {
		frame  []byte
		decode func(typ byte, p []byte) error
	}
	var seeds []seed
	reqDecode := func(typ byte, p []byte) error { _, err := decodeRequest(typ, p); return err }
	repDecode := func(typ byte, p []byte) error {
		if typ == typeError {
			_, _, err := decodeError(p)
			return err
		}
		_, err := decodeReply(typ, p)
		return err
	}
	for _, s := range []struct {
		stream []byte
		decode func(typ byte, p []byte) error
	}{{seedRequests(t), reqDecode}, {seedReplies(t), repDecode}} {
		for b := s.stream; len(b) > 0; {
			n := frameHeaderLen + int(binary.BigEndian.Uint32(b))
			seeds = append(seeds, seed{b[:n], s.decode})
			b = b[n:]
		}
	}
	for i, s := range seeds {
		typ, p := s.frame[4], s.frame[frameHeaderLen:]
		if err := s.decode(typ, p); err != nil {
			t.Fatalf("seed frame %d (%s): %v", i, typeName(typ), err)
		}
		for cut := range len(p) {
			// (A Probe request's payload is empty: there is nothing to cut.)
			if err := s.decode(typ, p[:cut]); !errors.Is(err, errProtocol) {
				t.Errorf("seed frame %d (%s) cut to %d of %d bytes: %v, want %v", i, typeName(typ), cut, len(p), err, errProtocol)
			}
		}
		if err := s.decode(typ, append(bytes.Clone(p), 0)); !errors.Is(err, errProtocol) {
			t.Errorf("seed frame %d (%s) with a stray byte: %v, want %v", i, typeName(typ), err, errProtocol)
		}
		if err := s.decode(typ^0x40, p); !errors.Is(err, errProtocol) {
			t.Errorf("seed frame %d (%s) as type %#x: %v, want %v", i, typeName(typ), typ^0x40, err, errProtocol)
		}
	}
	// Flags out of range.
	for _, tc := range []struct {
		name   string
		typ    byte
		fields []byte
	}{
		{"RequestVote", typeRequestVote, []byte{0, 0, 0, 0, 4}},
		{"InstallSnapshot", typeInstallSnapshot, []byte{0, 0, 0, 0, 0, 2, 0}},
		{"RequestVote reply", typeRequestVote | typeReply, []byte{0, 4}},
		{"AppendEntries reply", typeAppendEntries | typeReply, []byte{0, 2, 0, 0, 0}},
		{"Probe reply", typeProbe | typeReply, []byte{0, 0, 4}},
	} {
		var err error
		if isRequest(tc.typ) {
			_, err = decodeRequest(tc.typ, tc.fields)
		} else {
			_, err = decodeReply(tc.typ, tc.fields)
		}
		if !errors.Is(err, errProtocol) {
			t.Errorf("%s with unknown flags: %v, want %v", tc.name, err, errProtocol)
		}
	}
	// An error frame of an unknown code.
	if _, _, err := decodeError([]byte{7, 0}); !errors.Is(err, errProtocol) {
		t.Errorf("error frame of code 7: %v, want %v", err, errProtocol)
	}
	// Entries whose implicit indexes overflow.
	b := appendInt(nil, 1)
	b = appendInt(b, 0)
	b = appendInt(b, math.MaxInt)
	b = appendInt(b, 1)
	b = appendInt(b, 0)
	b = append(b, 2, 0, 0, 0) // one entry: term 0, type 0, nil command
	if _, err := decodeRequest(typeAppendEntries, b); !errors.Is(err, errProtocol) {
		t.Errorf("an entry after PrevLogIndex MaxInt: %v, want %v", err, errProtocol)
	}
}

// TestLengthsChecked checks that a length in a frame is checked against
// what is left of the frame before anything is allocated for it: the
// frame's own length, an entry count, a command's or a chunk's length.
func TestLengthsChecked(t *testing.T) {
	head := func(typ byte, payloadLen uint32) []byte {
		b := binary.BigEndian.AppendUint32(nil, payloadLen)
		b = append(b, typ)
		return binary.BigEndian.AppendUint64(b, 1)
	}
	huge := binary.AppendUvarint(nil, 1<<62)
	ae := func(rest ...[]byte) []byte {
		b := []byte{2, 0, 2, 2, 2} // Term 1, LeaderID 0, PrevLogIndex 1, PrevLogTerm 1, LeaderCommit 1
		for _, r := range rest {
			b = append(b, r...)
		}
		return b
	}
	for _, tc := range []struct {
		name    string
		stream  []byte
		wantErr error
	}{
		// A frame of 4 GiB is skipped unread: the stream ends first.
		{"frame length", head(typeAppendEntries, math.MaxUint32), io.ErrUnexpectedEOF},
		// A frame of the limit, with a few bytes of it there.
		{"frame short", append(head(typeAppendEntries, fuzzLimit), 1, 2, 3), io.ErrUnexpectedEOF},
		{"entry count", func() []byte {
			p := ae(huge)
			return append(head(typeAppendEntries, uint32(len(p))), p...)
		}(), errProtocol},
		{"command length", func() []byte {
			p := ae([]byte{2, 2, 0}, huge)
			return append(head(typeAppendEntries, uint32(len(p))), p...)
		}(), errProtocol},
		{"chunk length", func() []byte {
			p := append([]byte{2, 0, 2, 2, 0, 0}, huge...)
			return append(head(typeInstallSnapshot, uint32(len(p))), p...)
		}(), errProtocol},
	} {
		before := heapAllocs()
		rd := newFrameReader(bufio.NewReader(bytes.NewReader(tc.stream)), fuzzLimit)
		_, err := rd.readRequest()
		if !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.wantErr)
		}
		if n := heapAllocs() - before; n > 256<<10 {
			t.Errorf("%s: reading %d bytes allocated %d bytes", tc.name, len(tc.stream), n)
		}
	}
	// The error message of an error frame.
	p := append([]byte{codeFailed}, huge...)
	if _, _, err := decodeError(p); !errors.Is(err, errProtocol) {
		t.Errorf("error message length: %v, want %v", err, errProtocol)
	}
}

// FuzzFrameReader feeds a stream to a frame reader: the first byte picks
// the direction (even: requests, read as a server does; odd: replies, read
// as a caller does), the rest is the stream.
func FuzzFrameReader(f *testing.F) {
	f.Add(append([]byte{0}, seedRequests(f)...))
	f.Add(append([]byte{1}, seedReplies(f)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		server := data[0]%2 == 0
		before := heapAllocs()
		rd := newFrameReader(bufio.NewReaderSize(bytes.NewReader(data[1:]), 512), fuzzLimit)
		if server {
			readRequests(t, rd)
		} else {
			readReplies(t, rd)
		}
		checkAllocs(t, before, data)
	})
}

// fuzzConn is a net.Conn that reads a given input and swallows writes.
type fuzzConn struct{ r io.Reader }

func (c fuzzConn) Read(b []byte) (int, error)         { return c.r.Read(b) }
func (c fuzzConn) Write(b []byte) (int, error)        { return len(b), nil }
func (c fuzzConn) Close() error                       { return nil }
func (c fuzzConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (c fuzzConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (c fuzzConn) SetDeadline(t time.Time) error      { return nil }
func (c fuzzConn) SetReadDeadline(t time.Time) error  { return nil }
func (c fuzzConn) SetWriteDeadline(t time.Time) error { return nil }

// FuzzServerHandshake feeds what a dialer sends, hello first, to the
// server's handshake, and the requests after it to the server's reader.
func FuzzServerHandshake(f *testing.F) {
	reqs := seedRequests(f)
	f.Add(append(appendHello(nil, 1, 0), reqs...))
	f.Add(append(appendHello(nil, 2, 0), reqs[:len(reqs)/2]...))
	f.Add(append(appendHello(nil, 7, 0), reqs...)) // not a peer
	f.Add(append(appendHello(nil, 1, 2), reqs...)) // meant for another server
	bad := appendHello(nil, 1, 0)
	bad[len(magic)] = version + 1
	f.Add(append(bad, reqs...))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	tr := &TCP{
		id:          0,
		peers:       map[int]string{0: "a", 1: "b", 2: "c"},
		callTimeout: time.Second,
		maxMsg:      fuzzLimit,
		log:         slog.New(slog.DiscardHandler),
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		before := heapAllocs()
		from, _, rd, err := tr.serverHandshake(fuzzConn{bytes.NewReader(data)})
		if err == nil {
			if _, ok := tr.peers[from]; !ok || from == tr.id {
				t.Fatalf("handshake accepted caller %d", from)
			}
			checkBuffers(t, rd)
			readRequests(t, rd)
		}
		checkAllocs(t, before, data)
	})
}
