package transport

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// blackhole is a TCP proxy that forwards connections to a server until it
// is told to swallow everything, as a silent partition does: no byte goes
// through, nothing is closed, nothing is answered. A connection that lived
// through the partition stays dead after it heals, as one does whose
// packets TCP retransmits with backoffs of minutes; new ones forward again.
type blackhole struct {
	ln     net.Listener
	target string
	holed  atomic.Bool
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns []net.Conn
}

// newBlackhole starts a proxy to target on a port of its own.
func newBlackhole(t *testing.T, target string) *blackhole {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{ln: ln, target: target}
	b.wg.Go(b.accept)
	return b
}

// stop closes the proxy and its connections, and waits for its goroutines.
func (b *blackhole) stop() {
	b.ln.Close()
	b.mu.Lock()
	for _, c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

func (b *blackhole) addr() string { return b.ln.Addr().String() }

func (b *blackhole) keep(c net.Conn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.conns = append(b.conns, c)
}

func (b *blackhole) accept() {
	for {
		in, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.keep(in)
		var dead atomic.Bool // the partition ate this connection
		if b.holed.Load() {
			dead.Store(true)
			b.wg.Go(func() { b.pump(in, nil, &dead) })
			continue
		}
		out, err := net.Dial("tcp", b.target)
		if err != nil {
			in.Close()
			continue
		}
		b.keep(out)
		b.wg.Go(func() { b.pump(in, out, &dead) })
		b.wg.Go(func() { b.pump(out, in, &dead) })
	}
}

// pump copies from src to dst until the connection is dead, then swallows
// what src sends.
func (b *blackhole) pump(src, dst net.Conn, dead *atomic.Bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if b.holed.Load() {
			dead.Store(true)
		}
		if n > 0 && !dead.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !dead.Load() && dst != nil {
				dst.Close()
			}
			return
		}
	}
}

// TestStalledConnectionRedialed checks that a caller drops a connection on
// which calls keep timing out with nothing read, and reaches the peer over
// a new one once the path works again.
func TestStalledConnectionRedialed(t *testing.T) {
	const timeout = 500 * time.Millisecond
	lns, peers, err := ListenLocal(0, 1)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newBlackhole(t, peers[1])
	t.Cleanup(proxy.stop)
	logs := new(logBuf)
	viaProxy := map[int]string{0: peers[0], 1: proxy.addr()}
	tr0, err := New(Config{Insecure: true, ID: 0, Peers: viaProxy, Listener: lns[0], CallTimeout: timeout,
		DialBackoffMin: 10 * time.Millisecond, DialBackoffMax: 100 * time.Millisecond, Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	tr1, err := New(Config{Insecure: true, ID: 1, Peers: peers, Listener: lns[1], Logger: new(logBuf).logger()})
	if err != nil {
		tr0.Close()
		t.Fatal(err)
	}
	h1 := new(fakeHandler)
	tr1.Serve(h1)
	t.Cleanup(func() {
		tr0.Close()
		tr1.Close()
		proxy.stop()
		checkNoGoroutines(t)
	})
	c := &cluster{t: t, tr: map[int]*TCP{0: tr0, 1: tr1}}
	p := c.peer(0, 1)
	// (The calls retry: a loaded machine can be slower than timeout.)
	waitFor(t, "a first call to succeed", func() bool { return c.vote(0, 1) == nil })
	d := dials(p)

	proxy.holed.Store(true)
	// Calls one after another: maxStalledCalls of them time out on the
	// old connection, then the next one dials.
	timeouts := 0
	for {
		err := c.vote(0, 1)
		if dials(p) != d {
			break
		}
		if !errors.Is(err, errTimeout) {
			t.Fatalf("call into the blackhole: %v, want %v", err, errTimeout)
		}
		timeouts++
		if timeouts > 10*maxStalledCalls {
			t.Fatalf("%d calls timed out, and the stalled connection is still in use", timeouts)
		}
	}
	if timeouts != maxStalledCalls {
		t.Errorf("the connection was dropped after %d timeouts, want %d", timeouts, maxStalledCalls)
	}
	if !logs.has("dropping a stalled connection") {
		t.Errorf("no log line about the stalled connection:\n%s", logs)
	}

	proxy.holed.Store(false)
	waitFor(t, "a call to succeed once the partition heals", func() bool { return c.vote(0, 1) == nil })
}

// TestReadResetsStall checks that only timeouts in a row, with nothing
// read between them, drop a connection.
func TestReadResetsStall(t *testing.T) {
	c := newCluster(t, 2, func(cfg *Config) { cfg.CallTimeout = 300 * time.Millisecond })
	p := c.peer(0, 1)
	waitFor(t, "a first call to succeed", func() bool { return c.vote(0, 1) == nil })
	d := dials(p)
	p.mu.Lock()
	cc := p.cc
	p.mu.Unlock()
	stalls := func() int {
		cc.mu.Lock()
		defer cc.mu.Unlock()
		return cc.timeouts
	}
	block := func() { c.h[1].set(func(h *fakeHandler) { h.block = make(chan struct{}) }) }
	unblock := func() { c.h[1].set(func(h *fakeHandler) { close(h.block); h.block = nil }) }

	block()
	for range maxStalledCalls - 1 {
		if err := c.vote(0, 1); !errors.Is(err, errTimeout) {
			t.Fatalf("call to a blocked handler: %v, want %v", err, errTimeout)
		}
	}
	// The late replies come; they reset the count.
	unblock()
	waitFor(t, "the late replies to reset the count", func() bool { return stalls() == 0 })
	block()
	for range maxStalledCalls - 1 {
		if err := c.vote(0, 1); !errors.Is(err, errTimeout) {
			t.Fatalf("call to a blocked handler: %v, want %v", err, errTimeout)
		}
	}
	select {
	case <-cc.broken:
		t.Errorf("the connection was dropped: %v", cc.brokenErr())
	default:
	}
	if dials(p) != d {
		t.Errorf("%d dials, want %d", dials(p), d)
	}
}
