package transport

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
	"time"
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
	q.flush()
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
			q.flush()
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
