package transport

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkit/raft/core"
)

// served returns how many connections of peer from tr serves.
func served(tr *TCP, from int) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.limits.served[from])
}

// handshakes returns how many accepted connections of tr are in the
// handshake.
func handshakes(tr *TCP) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.limits.handshakes
}

// rawPeer is a connection made by hand, with a handshake claiming a peer's
// ID, which the test drives frame by frame.
type rawPeer struct {
	conn net.Conn
	rd   *frameReader
}

// dialAs connects to addr as server from reaching server to. The
// connection is closed at the end of the test.
func dialAs(t *testing.T, addr string, from, to int) *rawPeer {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	rd, err := clientHandshake(conn, from, to, DefaultMaxMessageBytes, time.Now().Add(waitBound))
	if err != nil {
		t.Fatalf("handshake as server %d: %v", from, err)
	}
	return &rawPeer{conn: conn, rd: rd}
}

// dialServed is dialAs, and waits for tr, the server at addr, to count the
// connection: its side of the handshake may end after ours.
func dialServed(t *testing.T, tr *TCP, from int) *rawPeer {
	t.Helper()
	r := dialAs(t, tr.Addr().String(), from, tr.ID())
	local := r.conn.LocalAddr().String()
	waitFor(t, "the server to count the connection", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		conns := tr.limits.served[from]
		return len(conns) > 0 && conns[len(conns)-1].conn.RemoteAddr().String() == local
	})
	return r
}

// vote calls RequestVote over the connection and checks the fake
// handler's answer.
func (r *rawPeer) vote(term int) error {
	frame, _, err := appendRequest(nil, uint64(term), &core.RequestVoteArgs{Term: term})
	if err != nil {
		return err
	}
	r.conn.SetDeadline(time.Now().Add(waitBound))
	defer r.conn.SetDeadline(time.Time{})
	if _, err := r.conn.Write(frame); err != nil {
		return err
	}
	in, err := r.rd.readReply()
	if err != nil {
		return err
	}
	if reply, ok := in.reply.(*core.RequestVoteReply); !ok || in.id != uint64(term) || reply.Term != term+1 {
		return fmt.Errorf("wrong reply %+v", in)
	}
	return nil
}

// closedByServer reports whether the server closes the connection within
// waitBound; the server sends nothing unasked, so any read ends it.
func closedByServer(conn net.Conn) bool {
	conn.SetReadDeadline(time.Now().Add(waitBound))
	_, err := conn.Read(make([]byte, 1))
	return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

func TestIdleConnectionClosed(t *testing.T) {
	const idle = 200 * time.Millisecond
	c := newCluster(t, 2, func(cfg *Config) { cfg.IdleTimeout = idle })
	p := c.peer(0, 1)
	start := time.Now()
	// (A call can fail if the machine pauses the caller for the idle
	// timeout between the handshake and the request: it retries.)
	waitFor(t, "a first call to succeed", func() bool { return c.vote(0, 1) == nil })
	before := dials(p)
	waitFor(t, "server 1 to close the idle connection", func() bool { return served(c.tr[1], 0) == 0 })
	if took := time.Since(start); took < idle {
		t.Errorf("idle connection closed after %v, before the idle timeout %v", took, idle)
	}
	waitFor(t, "the caller to see the connection close", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.cc == nil
	})
	if !c.logs[1].has("idle for IdleTimeout") {
		t.Errorf("no log line about the idle connection:\n%s", c.logs[1])
	}
	// The next call dials anew.
	c.mustCall(0, 1)
	if n := dials(p); n != before+1 {
		t.Errorf("%d dials, want %d", n, before+1)
	}
}

func TestBusyConnectionStaysOpen(t *testing.T) {
	const idle = 500 * time.Millisecond
	c := newCluster(t, 2, func(cfg *Config) { cfg.IdleTimeout = idle })
	p := c.peer(0, 1)
	c.mustCall(0, 1)
	// Calls every few milliseconds for three idle timeouts must use one
	// connection. A loaded machine may pause the test for long; a window
	// with a pause over a quarter of the idle timeout proves nothing (the
	// server may see two such gaps as one), and the test starts a new
	// one.
	var (
		windowStart = time.Now()
		windowDials = dials(p)
		last        = time.Now()
	)
	for end := time.Now().Add(2 * waitBound); ; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Skip("the machine paused the test too often to hold a window of three idle timeouts")
		}
		c.mustCall(0, 1)
		now := time.Now()
		if now.Sub(last) > idle/4 {
			windowStart, windowDials = now, dials(p)
		}
		last = now
		if now.Sub(windowStart) >= 3*idle {
			break
		}
	}
	if n := dials(p); n != windowDials {
		t.Errorf("%d dials over three idle timeouts of calls, want %d: the busy connection was closed", n, windowDials)
	}
	if served(c.tr[1], 0) != 1 {
		t.Errorf("server 1 serves %d connections of server 0, want 1", served(c.tr[1], 0))
	}
}

// TestIdleCallerDialsAnew checks that a caller does not reuse a connection
// that the server may be closing for idleness.
func TestIdleCallerDialsAnew(t *testing.T) {
	const idle = time.Minute
	c := newCluster(t, 2, func(cfg *Config) { cfg.IdleTimeout = idle })
	p := c.peer(0, 1)
	c.mustCall(0, 1)
	p.mu.Lock()
	old := p.cc
	p.mu.Unlock()
	old.mu.Lock()
	old.lastCall = time.Now().Add(-idle / 2) // as if idle for half the timeout
	old.mu.Unlock()
	c.mustCall(0, 1)
	if n := dials(p); n != 2 {
		t.Errorf("%d dials, want 2: the idle connection was reused", n)
	}
	select {
	case <-old.broken:
	default:
		t.Error("the idle connection is still open")
	}
	waitFor(t, "server 1 to see the idle connection close", func() bool { return served(c.tr[1], 0) == 1 })
}

func TestConnectionsPerPeerBounded(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.mustCall(1, 0)
	const n = 5
	var raw []*rawPeer
	for i := range n {
		raw = append(raw, dialServed(t, c.tr[0], 2))
		if got := served(c.tr[0], 2); got != min(i+1, maxConnsPerPeer) {
			t.Fatalf("server 0 serves %d connections of server 2 after %d dials", got, i+1)
		}
	}
	// The oldest are closed, the newest served.
	for i, r := range raw {
		if i < n-maxConnsPerPeer {
			if !closedByServer(r.conn) {
				t.Errorf("connection %d of %d is open, want the oldest closed", i, n)
			}
			continue
		}
		if err := r.vote(10 + i); err != nil {
			t.Errorf("connection %d of %d: %v", i, n, err)
		}
	}
	if !c.logs[0].has("too many connections from peer") {
		t.Errorf("no warning about the connections over the bound:\n%s", c.logs[0])
	}
	// Other peers are not bound by server 2's connections.
	c.mustCall(1, 0)
	if d := dials(c.peer(1, 0)); d != 1 || served(c.tr[0], 1) != 1 {
		t.Errorf("server 1 dialed %d times and has %d connections, want 1 and 1", d, served(c.tr[0], 1))
	}
}

// TestIdleConnectionFlood floods a server with connections that finish the
// handshake and then idle, claiming a peer's ID, and with connections that
// never start it: the server holds a bounded number of them, and serves
// its real peer throughout.
func TestIdleConnectionFlood(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) {
		// So that no connection in the handshake is closed for its
		// deadline during the test: those closed were refused.
		cfg.CallTimeout = time.Minute
	})
	c.mustCall(1, 0)
	addr := c.peers[0]

	var stop atomic.Bool
	var wg sync.WaitGroup
	var realCalls, realFailed atomic.Int64
	var conns []net.Conn
	end := func() {
		stop.Store(true)
		for _, conn := range conns {
			conn.Close()
		}
		wg.Wait()
	}
	t.Cleanup(end) // before the cluster's, if the test fails
	wg.Go(func() {
		for !stop.Load() {
			realCalls.Add(1)
			if err := c.appendEntries(1, 0, 2, 10); err != nil {
				realFailed.Add(1)
				t.Errorf("call from the real peer during the flood: %v", err)
			}
		}
	})

	// Idle connections that claim to be server 2.
	const authenticated = 50
	var raw []*rawPeer
	for range authenticated {
		raw = append(raw, dialServed(t, c.tr[0], 2))
		if got := served(c.tr[0], 2); got > maxConnsPerPeer {
			t.Fatalf("server 0 serves %d connections of server 2", got)
		}
	}
	for _, r := range raw[:authenticated-maxConnsPerPeer] {
		if !closedByServer(r.conn) {
			t.Fatal("an idle connection over the per-peer bound is open")
		}
	}

	// Connections that never say hello.
	waitFor(t, "the handshakes to end", func() bool { return handshakes(c.tr[0]) == 0 })
	const silent = 200
	var closed atomic.Int64
	for range silent {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
		wg.Go(func() {
			conn.Read(make([]byte, 1)) // until the server closes it, or the test does
			if !stop.Load() {
				closed.Add(1)
			}
		})
	}
	waitFor(t, "server 0 to close the connections over the handshake bound", func() bool {
		return closed.Load() == silent-maxHandshakes
	})
	if n := handshakes(c.tr[0]); n != maxHandshakes {
		t.Errorf("%d connections in the handshake, want %d", n, maxHandshakes)
	}
	if !c.logs[0].has("too many connections in the handshake") {
		t.Errorf("no warning about the connections in the handshake:\n%s", c.logs[0])
	}
	before := realCalls.Load()
	waitFor(t, "more calls of the real peer", func() bool { return realCalls.Load() > before+10 })

	end()
	if realFailed.Load() != 0 || dials(c.peer(1, 0)) != 1 {
		t.Errorf("%d of %d calls of the real peer failed, over %d connections; want 0 and 1",
			realFailed.Load(), realCalls.Load(), dials(c.peer(1, 0)))
	}
	// Once the flood is over, the real server 2 gets in, and pushes out
	// an impostor.
	waitFor(t, "the handshakes to end", func() bool { return handshakes(c.tr[0]) == 0 })
	c.mustCall(2, 0)
	if served(c.tr[0], 2) != maxConnsPerPeer {
		t.Errorf("server 0 serves %d connections of server 2, want %d", served(c.tr[0], 2), maxConnsPerPeer)
	}
}
