package transport

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/rpc"
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
// the reader's buffers (a header and a primer body may take maxHeaderBytes
// each), gob's decoders, and the allocation metric's granularity (spans).
const allocSlack = 8 << 20

// seedRequests returns a caller's stream as the real writer lays it out:
// the primer, then requests of every method, heartbeats, snapshot chunks
// (the first, and a last one), and requests over fuzzLimit.
func seedRequests(t testing.TB) []byte {
	var out bytes.Buffer
	w := newFrameWriter()
	primer, err := w.writePrimer(newPrimer(false))
	if err != nil {
		t.Fatal(err)
	}
	out.Write(primer)
	w.reset()
	for i, body := range []any{
		&core.RequestVoteArgs{Term: 3, CandidateID: 1, LastLogIndex: 7, LastLogTerm: 2},
		&core.AppendEntriesArgs{Term: 3, LeaderID: 1, PrevLogIndex: 7, PrevLogTerm: 2, LeaderCommit: 5},
		&core.AppendEntriesArgs{Term: 3, LeaderID: 1, Entries: entries(3, 20)},
		&core.ProbeArgs{},
		&core.AppendEntriesArgs{Term: 4, Entries: entries(2, fuzzLimit)},
		&core.InstallSnapshotArgs{Term: 3, LeaderID: 1, LastIncludedIndex: 7, LastIncludedTerm: 2, Data: snapshotData(0, 300)},
		&core.InstallSnapshotArgs{Term: 3, LeaderID: 1, LastIncludedIndex: 7, LastIncludedTerm: 2, Offset: 300, Data: snapshotData(300, 20), Done: true},
		&core.InstallSnapshotArgs{Term: 4, LeaderID: 1, LastIncludedIndex: 9, LastIncludedTerm: 4, Data: snapshotData(0, fuzzLimit)},
	} {
		method := methodRequestVote
		switch body.(type) {
		case *core.AppendEntriesArgs:
			method = methodAppendEntries
		case *core.ProbeArgs:
			method = methodProbe
		case *core.InstallSnapshotArgs:
			method = methodInstallSnapshot
		}
		if _, err := w.encode(&rpc.Request{ServiceMethod: method, Seq: uint64(i)}, body); err != nil {
			t.Fatal(err)
		}
		out.Write(w.frame())
		w.reset()
	}
	return out.Bytes()
}

// seedReplies returns a server's stream as the real writer lays it out.
func seedReplies(t testing.TB) []byte {
	var out bytes.Buffer
	w := newFrameWriter()
	primer, err := w.writePrimer(newPrimer(true))
	if err != nil {
		t.Fatal(err)
	}
	out.Write(primer)
	w.reset()
	frames := []struct {
		hdr  rpc.Response
		body any
	}{
		{rpc.Response{ServiceMethod: methodRequestVote, Seq: 0}, &core.RequestVoteReply{Term: 3, VoteGranted: true}},
		{rpc.Response{ServiceMethod: methodAppendEntries, Seq: 1}, &core.AppendEntriesReply{Term: 3, Success: true, Index: 9}},
		{rpc.Response{ServiceMethod: methodProbe, Seq: 2}, &core.ProbeReply{Term: 3, LastIndex: 9}},
		{rpc.Response{ServiceMethod: methodInstallSnapshot, Seq: 3}, &core.InstallSnapshotReply{Term: 3, Index: 7}},
		{rpc.Response{ServiceMethod: methodInstallSnapshot, Seq: 4, Error: "not now"}, nil},
	}
	for _, f := range frames {
		var err error
		if f.body == nil {
			_, err = w.encode(&f.hdr)
		} else {
			_, err = w.encode(&f.hdr, f.body)
		}
		if err != nil {
			t.Fatal(err)
		}
		out.Write(w.frame())
		w.reset()
	}
	return out.Bytes()
}

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
// breaks, and returns how many frames it read, and why it stopped.
func readRequests(t testing.TB, rd *frameReader) (int, error) {
	for n := 0; ; n++ {
		var hdr rpc.Request
		large, err := rd.next(&hdr)
		if err != nil {
			return n, err
		}
		checkBuffers(t, rd)
		if large > 0 {
			continue
		}
		var body any
		switch hdr.ServiceMethod {
		case methodRequestVote:
			body = new(core.RequestVoteArgs)
		case methodAppendEntries:
			body = new(core.AppendEntriesArgs)
		case methodProbe:
			body = new(core.ProbeArgs)
		case methodInstallSnapshot:
			body = new(core.InstallSnapshotArgs)
		}
		if body == nil {
			err = rd.decodeBody()
		} else {
			err = rd.decodeBody(body)
		}
		if err != nil {
			return n, err
		}
	}
}

// readReplies reads replies as a caller does, with the reply's type chosen
// by its sequence number, until the stream ends or breaks, and returns how
// many frames it read, and why it stopped.
func readReplies(t testing.TB, rd *frameReader) (int, error) {
	for n := 0; ; n++ {
		var hdr rpc.Response
		large, err := rd.next(&hdr)
		if err != nil {
			return n, err
		}
		checkBuffers(t, rd)
		if large > 0 {
			continue
		}
		bodies := []any{new(core.RequestVoteReply), new(core.AppendEntriesReply), new(core.ProbeReply), new(core.InstallSnapshotReply)}
		if hdr.Error != "" || hdr.Seq >= uint64(len(bodies)) {
			err = rd.decodeBody()
		} else {
			err = rd.decodeBody(bodies[hdr.Seq])
		}
		if err != nil {
			return n, err
		}
	}
}

// checkBuffers fails the test if the reader holds a buffer over the limits.
func checkBuffers(t testing.TB, rd *frameReader) {
	if cap(rd.hdr) > maxHeaderBytes || cap(rd.body) > max(rd.max, maxHeaderBytes) {
		t.Fatalf("reader buffers of %d and %d bytes", cap(rd.hdr), cap(rd.body))
	}
}

// The frames after the primer in seedRequests and seedReplies.
const (
	seedRequestCount = 8
	seedReplyCount   = 5
)

// TestFuzzSeeds checks that the seed corpus is what the fuzz targets
// expect: streams that decode whole.
func TestFuzzSeeds(t *testing.T) {
	rd := newFrameReader(bufio.NewReader(bytes.NewReader(seedRequests(t))), fuzzLimit)
	if err := rd.readPrimer(newPrimer(false)); err != nil {
		t.Fatal(err)
	}
	if n, err := readRequests(t, rd); n != seedRequestCount || err != io.EOF {
		t.Errorf("read %d requests, then %v; want %d, then EOF", n, err, seedRequestCount)
	}
	rd = newFrameReader(bufio.NewReader(bytes.NewReader(seedReplies(t))), fuzzLimit)
	if err := rd.readPrimer(newPrimer(true)); err != nil {
		t.Fatal(err)
	}
	if n, err := readReplies(t, rd); n != seedReplyCount || err != io.EOF {
		t.Errorf("read %d replies, then %v; want %d, then EOF", n, err, seedReplyCount)
	}
	tr := &TCP{id: 0, peers: map[int]string{0: "a", 1: "b"}, callTimeout: time.Second, maxMsg: fuzzLimit}
	from, rd, _, err := tr.serverHandshake(fuzzConn{bytes.NewReader(append(appendHello(nil, 1, 0), seedRequests(t)...))})
	if err != nil || from != 1 {
		t.Fatalf("handshake of the seed: caller %d, %v", from, err)
	}
	if n, err := readRequests(t, rd); n != seedRequestCount || err != io.EOF {
		t.Errorf("read %d requests after the handshake, then %v; want %d, then EOF", n, err, seedRequestCount)
	}
}

// TestGobLengthChecked checks that the length of a gob message in a frame
// is checked against the frame before gob, which would allocate for it,
// reads it: in a header, in a body, in the primer.
func TestGobLengthChecked(t *testing.T) {
	// A gob message claiming 16 MiB: three bytes of length follow.
	liar := []byte{0xfd, 0xff, 0xff, 0xff, 1, 2, 3}
	frame := func(hdr, body []byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(len(hdr)))
		b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
		return append(append(b, hdr...), body...)
	}
	// A primer, and a header that a primed reader accepts.
	w := newFrameWriter()
	primer, err := w.writePrimer(newPrimer(false))
	if err != nil {
		t.Fatal(err)
	}
	primer = bytes.Clone(primer)
	w.reset()
	if _, err := w.encode(&rpc.Request{ServiceMethod: methodProbe}); err != nil {
		t.Fatal(err)
	}
	hdr := bytes.Clone(w.frame()[frameHeaderLen:])
	// The header of a primer: with the type's description.
	w = newFrameWriter()
	if _, err := w.encode(&rpc.Request{}); err != nil {
		t.Fatal(err)
	}
	primerHdr := bytes.Clone(w.frame()[frameHeaderLen:])
	for _, tc := range []struct {
		name   string
		stream []byte
		primed bool
	}{
		{"primer header", frame(liar, nil), false},
		{"primer body", frame(primerHdr, liar), false},
		{"header", append(bytes.Clone(primer), frame(liar, nil)...), true},
		{"body", append(bytes.Clone(primer), frame(hdr, liar)...), true},
	} {
		before := heapAllocs()
		rd := newFrameReader(bufio.NewReader(bytes.NewReader(tc.stream)), fuzzLimit)
		err := rd.readPrimer(newPrimer(false))
		if tc.primed {
			if err != nil {
				t.Fatalf("%s: primer: %v", tc.name, err)
			}
			if _, err = rd.next(new(rpc.Request)); err == nil {
				err = rd.decodeBody(new(core.ProbeArgs))
			}
		}
		if !errors.Is(err, errProtocol) {
			t.Errorf("%s: %v, want %v", tc.name, err, errProtocol)
		}
		if n := heapAllocs() - before; n > 2<<20 {
			t.Errorf("%s: reading %d bytes allocated %d bytes", tc.name, len(tc.stream), n)
		}
	}
}

// FuzzFrameReader feeds a stream to a frame reader: the first byte picks
// the direction (even: requests, read as a server does; odd: replies, read
// as a caller does), the rest is the stream, primer first.
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
		if err := rd.readPrimer(newPrimer(!server)); err == nil {
			checkBuffers(t, rd)
			if server {
				readRequests(t, rd)
			} else {
				readReplies(t, rd)
			}
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
		from, rd, _, err := tr.serverHandshake(fuzzConn{bytes.NewReader(data)})
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
