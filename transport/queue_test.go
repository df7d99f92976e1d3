package transport

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/raftkit/raft/core"
)

// tcpPair returns the two ends of a TCP connection on 127.0.0.1.
func tcpPair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		c.Close()
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// pushBytes queues b as one frame tagged tag.
func pushBytes(t *testing.T, q *outQueue, tag uint64, b []byte) {
	t.Helper()
	if _, err := q.push(tag, len(b), func(buf []byte) ([]byte, int, error) { return append(buf, b...), len(b), nil }); err != nil {
		t.Fatal(err)
	}
}

// On a plain TCP connection with no write under way, flush writes the
// frames queued itself: they arrive with no writer goroutine running,
// and written learns their tag.
func TestFlushWritesInCaller(t *testing.T) {
	if !directWrites {
		t.Skip("flush leaves every write to the writer on this platform")
	}
	client, server := tcpPair(t)
	q := newOutQueue(0)
	var tags []uint64
	q.attach(client, time.Hour, func(tag uint64) { tags = append(tags, tag) })
	want := []byte("one frame, then another")
	pushBytes(t, q, 1, want[:10])
	pushBytes(t, q, 2, want[10:])
	q.flush(true)
	server.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(server, got); err != nil {
		t.Fatalf("read what flush wrote: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %q, want %q", got, want)
	}
	if len(tags) != 1 || tags[0] != 2 {
		t.Fatalf("written got tags %v, want [2]", tags)
	}
	if n := q.queued(); n != 0 {
		t.Fatalf("%d bytes still queued after flush", n)
	}
}

// flush never blocks: to a peer that reads nothing it writes what the
// socket takes and leaves the rest queued; the writer then writes it, and
// every byte arrives once, in order.
func TestFlushNeverBlocks(t *testing.T) {
	client, server := tcpPair(t)
	client.SetWriteBuffer(16 << 10)
	server.SetReadBuffer(16 << 10)
	q := newOutQueue(0)
	q.attach(client, time.Hour, nil) // a blocking write would hang the test
	const frames, size = 64, 32 << 10
	var sent []byte
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range frames {
			b := bytes.Repeat([]byte{byte(i)}, size)
			b[0], b[1] = byte(i>>8), byte(i)
			pushBytes(t, q, uint64(i+1), b)
			sent = append(sent, b...)
			q.flush(true)
		}
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("flush blocked on a peer that reads nothing")
	}
	if q.queued() == 0 {
		t.Fatalf("all %d bytes left at once, to a peer that reads nothing: the test proves nothing", len(sent))
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := q.run(client, time.Hour, nil); err != nil {
			t.Errorf("writer: %v", err)
		}
	})
	defer func() {
		q.close()
		wg.Wait()
	}()
	server.SetReadDeadline(time.Now().Add(20 * time.Second))
	got := make([]byte, len(sent))
	if _, err := io.ReadFull(server, got); err != nil {
		t.Fatalf("read the stream: %v", err)
	}
	if !bytes.Equal(got, sent) {
		for i := range got {
			if got[i] != sent[i] {
				t.Fatalf("the stream differs from what was queued at byte %d (frame %d)", i, i/size)
			}
		}
	}
}

// quietTCP is the part of a TCP that queues and answers requests use.
func quietTCP() *TCP {
	return &TCP{id: 1, maxMsg: DefaultMaxMessageBytes, queueBytes: DefaultSendQueueBytes,
		callTimeout: time.Hour, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// A request is alone on its connection, to be written at once, only when
// no other request there waits for its reply.
func TestEnqueueAlone(t *testing.T) {
	c := newClientConn(&Peer{t: quietTCP(), id: 2})
	enc := func(b []byte, id uint64) ([]byte, int, error) {
		return appendRequest(b, id, &core.AppendEntriesArgs{Term: 1})
	}
	var ids []uint64
	for i, want := range []bool{true, false, false} {
		tk, alone, err := c.enqueue(typeAppendEntries, waiter{done: func(any, bool) {}}, enc)
		if err != nil {
			t.Fatal(err)
		}
		if alone != want {
			t.Fatalf("request %d, with %d waiting for their replies: alone %v, want %v", i+1, i, alone, want)
		}
		ids = append(ids, tk.id)
	}
	for _, id := range ids {
		c.calls.take(id)
	}
	if _, alone, _ := c.enqueue(typeAppendEntries, waiter{done: func(any, bool) {}}, enc); !alone {
		t.Fatal("once every reply came, a request is not alone")
	}
}

// A server writes the answer to the last request under way on a
// connection at once, with those queued before it; an answer while
// others are still being served is left to the writer (none runs here).
func TestLastAnswerWrittenAtOnce(t *testing.T) {
	if !directWrites {
		t.Skip("flush leaves every write to the writer on this platform")
	}
	client, server := tcpPair(t)
	sc := &serverConn{t: quietTCP(), from: 2, conn: server, q: newOutQueue(0)}
	sc.q.attach(server, time.Hour, nil)
	sc.serving.Add(2)
	first, second := sc.responder(1, typeAppendEntries), sc.responder(2, typeAppendEntries)
	first(&core.AppendEntriesReply{Term: 1, Index: 1}, nil)
	if sc.q.queued() == 0 {
		t.Fatal("the answer to a request was written at once while another was being served")
	}
	second(&core.AppendEntriesReply{Term: 1, Index: 2}, nil)
	if n := sc.q.queued(); n != 0 {
		t.Fatalf("%d bytes left queued after the answer to the last request under way", n)
	}
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	rd := newFrameReader(bufio.NewReader(client), DefaultMaxMessageBytes)
	for want := uint64(1); want <= 2; want++ {
		in, err := rd.readReply()
		if err != nil {
			t.Fatalf("read answer %d: %v", want, err)
		}
		if r, ok := in.reply.(*core.AppendEntriesReply); in.id != want || !ok || r.Index != int(want) {
			t.Fatalf("answer %d: id %d, %+v", want, in.id, in.reply)
		}
	}
}
