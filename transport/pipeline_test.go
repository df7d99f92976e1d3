package transport

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkit/raft/core"
)

// doneRecorder makes Send's done functions and records their calls: each
// must come exactly once, with ok false or the reply its test expects.
type doneRecorder struct {
	t    *testing.T
	mu   sync.Mutex
	got  map[int]int // calls by request number
	ok   map[int]bool
	when map[int]time.Time
	all  chan struct{} // closed when every request expected has its call
	want int
}

func newDoneRecorder(t *testing.T, want int) *doneRecorder {
	return &doneRecorder{t: t, got: map[int]int{}, ok: map[int]bool{}, when: map[int]time.Time{}, all: make(chan struct{}), want: want}
}

// done returns the done function of request i; check, if set, checks
// its reply.
func (r *doneRecorder) done(i int, check func(reply any) error) func(reply any, ok bool) {
	return func(reply any, ok bool) {
		if ok && check != nil {
			if err := check(reply); err != nil {
				r.t.Errorf("request %d: %v", i, err)
			}
		}
		if !ok && reply != nil {
			r.t.Errorf("request %d: done with a reply %+v and ok false", i, reply)
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.got[i]++
		if r.got[i] > 1 {
			r.t.Errorf("request %d: done called %d times", i, r.got[i])
			return
		}
		r.ok[i], r.when[i] = ok, time.Now()
		if len(r.got) == r.want {
			close(r.all)
		}
	}
}

// wait waits for every request's done.
func (r *doneRecorder) wait() {
	r.t.Helper()
	select {
	case <-r.all:
	case <-time.After(waitBound):
		r.mu.Lock()
		defer r.mu.Unlock()
		r.t.Fatalf("%d of %d requests got their done within %v", len(r.got), r.want, waitBound)
	}
}

// count returns how many dones came with ok true and with ok false.
func (r *doneRecorder) count() (ok, failed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range r.ok {
		if v {
			ok++
		} else {
			failed++
		}
	}
	return ok, failed
}

// orderHandler records the PrevLogIndex of every AppendEntries it gets,
// in order, and answers with it in Index; or, if hold is set, keeps the
// respond functions for its test to call.
type orderHandler struct {
	hold bool

	mu       sync.Mutex
	order    []int
	responds []func(reply any, err error)
	reqs     []*core.AppendEntriesArgs
}

func (h *orderHandler) Serve(from int, req any, respond func(reply any, err error)) {
	a := req.(*core.AppendEntriesArgs)
	h.mu.Lock()
	h.order = append(h.order, a.PrevLogIndex)
	h.reqs = append(h.reqs, a)
	if h.hold {
		h.responds = append(h.responds, respond)
		h.mu.Unlock()
		return
	}
	h.mu.Unlock()
	respond(&core.AppendEntriesReply{Term: a.Term, Success: true, Index: a.PrevLogIndex}, nil)
}

func (h *orderHandler) served() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.order)
}

// checkIndex checks that a reply answers the AppendEntries of
// PrevLogIndex prev.
func checkIndex(prev int) func(reply any) error {
	return func(reply any) error {
		r, ok := reply.(*core.AppendEntriesReply)
		if !ok || r.Index != prev {
			return fmt.Errorf("reply %+v, want Index %d", reply, prev)
		}
		return nil
	}
}

// TestSendOrder checks that the requests Send is given for one peer reach
// its Handler in the order of the calls, and that each gets its own reply.
func TestSendOrder(t *testing.T) {
	const n = 10000
	h := &orderHandler{}
	tr0, _ := newEchoPair(t, h, nil)
	p, _ := tr0.Peer(1)
	rec := newDoneRecorder(t, n)
	for i := range n {
		// Entries of a few sizes, so that frames of all sizes interleave.
		args := &core.AppendEntriesArgs{Term: 1, PrevLogIndex: i, Entries: entriesFrom(i+1, i%3, 10*(i%7))}
		p.Send(args, rec.done(i, checkIndex(i)))
	}
	rec.wait()
	if ok, failed := rec.count(); ok != n {
		t.Fatalf("%d Sends succeeded, %d failed; want %d, 0", ok, failed, n)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, prev := range h.order {
		if prev != i {
			t.Fatalf("request %d to reach the handler was Send's %d", i, prev)
		}
	}
}

// TestRepliesOutOfOrder checks that replies given in another order than
// the requests came are matched to their requests.
func TestRepliesOutOfOrder(t *testing.T) {
	const n = 200
	h := &orderHandler{hold: true}
	tr0, _ := newEchoPair(t, h, nil)
	p, _ := tr0.Peer(1)
	rec := newDoneRecorder(t, n)
	for i := range n {
		p.Send(&core.AppendEntriesArgs{Term: 1, PrevLogIndex: 1000 + i}, rec.done(i, checkIndex(1000+i)))
	}
	waitFor(t, "the handler to get every request", func() bool { return h.served() == n })
	h.mu.Lock()
	responds, order := h.responds, h.order
	h.mu.Unlock()
	// Odd ones last to first, from goroutines of their own; then even
	// ones last to first.
	var wg sync.WaitGroup
	for i := n - 1; i >= 0; i-- {
		if i%2 == 1 {
			wg.Go(func() { responds[i](&core.AppendEntriesReply{Term: 1, Success: true, Index: order[i]}, nil) })
		}
	}
	wg.Wait()
	for i := n - 1; i >= 0; i-- {
		if i%2 == 0 {
			responds[i](&core.AppendEntriesReply{Term: 1, Success: true, Index: order[i]}, nil)
		}
	}
	rec.wait()
	if ok, failed := rec.count(); ok != n {
		t.Fatalf("%d Sends succeeded, %d failed; want %d, 0", ok, failed, n)
	}
}

// silentServer accepts connections, answers the handshake as server 1,
// and then reads nothing (or everything, once drain is called).
type silentServer struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

func newSilentServer(t *testing.T) *silentServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &silentServer{ln: ln}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			var hello [helloLen]byte
			if _, err := io.ReadFull(c, hello[:]); err != nil {
				continue
			}
			c.Write(append([]byte(magic), version, statusOK))
		}
	})
	t.Cleanup(s.stop)
	return s
}

// stop closes the listener and the connections, and waits for the
// server's goroutines.
func (s *silentServer) stop() {
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// TestSendNeverBlocks checks that Send does not block on a peer that does
// not read: once the socket's buffers and the queue are full, Sends fail
// at once; when the connection goes, the rest fail, each exactly once;
// and no goroutine stays behind.
func TestSendNeverBlocks(t *testing.T) {
	const (
		maxMsg = 64 << 10
		bound  = 4 * maxMsg
		n      = 2000 // n*maxMsg is far beyond any socket buffer
	)
	silent := newSilentServer(t)
	lns, peers, err := ListenLocal(0)
	if err != nil {
		t.Fatal(err)
	}
	peers[1] = silent.ln.Addr().String()
	// With an hour's call timeout, no request fails for its deadline nor
	// for a write's.
	tr, err := New(Config{Insecure: true, ID: 0, Peers: peers, Listener: lns[0], Logger: new(logBuf).logger(),
		CallTimeout: time.Hour, MaxMessageBytes: maxMsg, SendQueueBytes: bound})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		tr.Close()
		silent.stop()
		checkNoGoroutines(t)
	})
	p, _ := tr.Peer(1)
	args := &core.AppendEntriesArgs{Term: 1, PrevLogIndex: 0, Entries: entries(1, maxMsg-100)}
	rec := newDoneRecorder(t, n)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := range n {
			p.Send(args, rec.done(i, nil))
		}
	}()
	select {
	case <-sent:
	case <-time.After(waitBound):
		t.Fatalf("%d Sends to a peer that does not read did not return within %v", n, waitBound)
	}
	waitFor(t, "Sends over the queue bound to fail", func() bool { _, failed := rec.count(); return failed > 0 })
	p.mu.Lock()
	c := p.cc
	p.mu.Unlock()
	if c == nil {
		t.Fatal("no connection to the peer")
	}
	if q := c.q.queued(); q > bound {
		t.Errorf("%d bytes queued, bound %d", q, bound)
	}
	ok, failed := rec.count()
	if ok != 0 || failed >= n {
		t.Errorf("%d Sends succeeded, %d failed: want none to succeed, and some to be queued", ok, failed)
	}
	// The peer hangs up: the requests queued and written fail.
	silent.stop()
	rec.wait()
	if ok, failed := rec.count(); ok != 0 || failed != n {
		t.Errorf("%d Sends succeeded, %d failed; want 0, %d", ok, failed, n)
	}
}

// TestSendTimeout checks that a request the peer never answers gets
// done(nil, false) once the call timeout has passed since it was written,
// and that an answer given afterwards goes nowhere.
func TestSendTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	h := &orderHandler{hold: true}
	tr0, _ := newEchoPair(t, h, func(cfg *Config) { cfg.CallTimeout = timeout })
	p, _ := tr0.Peer(1)
	const n = 5
	rec := newDoneRecorder(t, n)
	start := time.Now()
	for i := range n {
		p.Send(&core.AppendEntriesArgs{Term: 1, PrevLogIndex: i}, rec.done(i, nil))
	}
	rec.wait()
	if ok, failed := rec.count(); ok != 0 || failed != n {
		t.Fatalf("%d Sends succeeded, %d failed; want 0, %d", ok, failed, n)
	}
	for i, at := range rec.when {
		if took := at.Sub(start); took < timeout {
			t.Errorf("request %d failed after %v, before the call timeout %v", i, took, timeout)
		}
	}
	// The late answers are dropped (the connection went as stalled, too).
	waitFor(t, "the handler to get every request", func() bool { return h.served() == n })
	h.mu.Lock()
	for _, respond := range h.responds {
		respond(&core.AppendEntriesReply{Term: 1}, nil)
	}
	h.mu.Unlock()
	if err := p.call(methodAppendEntries, &core.AppendEntriesArgs{}, new(core.AppendEntriesReply)); err == nil {
		t.Error("a call to the handler that never answers succeeded")
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for i, k := range rec.got {
		if k != 1 {
			t.Errorf("request %d: done called %d times", i, k)
		}
	}
}

// TestSendFailures checks the ways a Send fails, each with one
// done(nil, false), never from within Send.
func TestSendFailures(t *testing.T) {
	f := NewFaults(1)
	f.SetLostWait(0)
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.Faults = f
		cfg.DialBackoffMin = time.Hour
		cfg.MaxMessageBytes = 4 << 10
	})
	c.mustCall(0, 1)
	c.h[1].set(func(h *fakeHandler) { h.err = errors.New("not now") })
	c.tr[2].Close() // server 2 is down
	for _, tc := range []struct {
		name string
		to   int
		req  any
		prep func()
	}{
		{"bad request", 1, &core.RequestVoteReply{}, nil},
		{"nil request", 1, (*core.AppendEntriesArgs)(nil), nil},
		{"non-consecutive entries", 1, &core.AppendEntriesArgs{PrevLogIndex: 5, Entries: entries(2, 1)}, nil},
		{"over the size limit", 1, &core.AppendEntriesArgs{Entries: entries(1, 5<<10)}, nil},
		{"chunk over MaxChunkBytes", 1, &core.InstallSnapshotArgs{Data: make([]byte, 4<<10)}, nil},
		{"handler error", 1, &core.RequestVoteArgs{Term: 1}, nil},
		{"request dropped", 1, &core.RequestVoteArgs{Term: 1}, func() { f.SetDrop(0, 1, 1) }},
		{"link cut", 1, &core.RequestVoteArgs{Term: 1}, func() { f.Cut(0, 1) }},
		{"reply dropped", 1, &core.RequestVoteArgs{Term: 1}, func() { f.SetDrop(1, 0, 1) }},
		{"peer down", 2, &core.RequestVoteArgs{Term: 1}, nil},
		{"peer in backoff", 2, &core.RequestVoteArgs{Term: 1}, nil},
	} {
		f.Reset()
		f.SetLostWait(0)
		if tc.prep != nil {
			tc.prep()
		}
		returned := make(chan struct{})
		var calls atomic.Int64
		var inside atomic.Bool
		got := make(chan bool, 2)
		c.peer(0, tc.to).Send(tc.req, func(reply any, ok bool) {
			select {
			case <-returned:
			case <-time.After(waitBound):
				inside.Store(true) // Send has not returned: done runs within it
			}
			calls.Add(1)
			got <- ok
		})
		close(returned)
		select {
		case ok := <-got:
			if ok {
				t.Errorf("%s: Send succeeded", tc.name)
			}
		case <-time.After(2 * waitBound):
			t.Fatalf("%s: no done within %v", tc.name, 2*waitBound)
		}
		if inside.Load() {
			t.Errorf("%s: done called from within Send", tc.name)
		}
		if n := calls.Load(); n != 1 {
			t.Errorf("%s: done called %d times", tc.name, n)
		}
	}
	if n := dials(c.peer(0, 2)); n != 1 {
		t.Errorf("%d dials to the peer that is down, want 1", n)
	}
}

// TestSendAcrossClose checks that Close ends the Sends in progress, each
// with one done(nil, false), and that a Send after Close fails the same
// way.
func TestSendAcrossClose(t *testing.T) {
	f := NewFaults(1)
	c := newCluster(t, 3, func(cfg *Config) { cfg.Faults = f; cfg.CallTimeout = time.Hour })
	c.mustCall(0, 1)
	c.h[1].set(func(h *fakeHandler) { h.block = make(chan struct{}) })
	f.SetDelay(0, 2, time.Hour) // in the delay line at Close
	const n = 50
	rec := newDoneRecorder(t, n+1)
	for i := range n {
		to := 1 + i%2
		p := c.peer(0, to)
		p.Send(&core.RequestVoteArgs{Term: i}, rec.done(i, nil))
	}
	waitFor(t, "the requests to reach the blocked handler", func() bool { return c.h[1].calls.Load() == 1+n/2 })
	if err := c.tr[0].Close(); err != nil {
		t.Fatal(err)
	}
	c.peer(0, 1).Send(&core.RequestVoteArgs{}, rec.done(n, nil))
	rec.wait()
	if ok, failed := rec.count(); ok != 0 || failed != n+1 {
		t.Errorf("%d Sends succeeded, %d failed; want 0, %d", ok, failed, n+1)
	}
}

// TestDelayKeepsOrder checks that requests delayed alike by an injected
// fault reach the handler in the order they were sent, later than the
// delay, and that a request delayed less may overtake them.
func TestDelayKeepsOrder(t *testing.T) {
	const d = 100 * time.Millisecond
	f := NewFaults(1)
	h := &orderHandler{}
	tr0, _ := newEchoPair(t, h, func(cfg *Config) { cfg.Faults = f })
	p, _ := tr0.Peer(1)
	f.SetDelay(0, 1, time.Hour)
	slow := newDoneRecorder(t, 1)
	p.Send(&core.AppendEntriesArgs{PrevLogIndex: -1}, slow.done(0, nil))
	f.SetDelay(0, 1, d)
	const n = 100
	rec := newDoneRecorder(t, n)
	start := time.Now()
	for i := range n {
		p.Send(&core.AppendEntriesArgs{PrevLogIndex: i}, rec.done(i, checkIndex(i)))
	}
	rec.wait()
	if took := time.Since(start); took < d {
		t.Errorf("delayed requests answered after %v, before the delay %v", took, d)
	}
	h.mu.Lock()
	for i, prev := range h.order {
		if prev != i {
			t.Errorf("request %d to reach the handler was Send's %d", i, prev)
			break
		}
	}
	h.mu.Unlock()
	// Close fails the one delayed for an hour.
	tr0.Close()
	slow.wait()
}

// TestHandlerMisuse checks that a Handler answering twice, or with the
// wrong type, gets an error logged, and that its caller sees the first
// answer, or a failed call.
func TestHandlerMisuse(t *testing.T) {
	var mode atomic.Int64
	logs := new(logBuf)
	h := handlerFunc(func(from int, req any, respond func(reply any, err error)) {
		switch mode.Load() {
		case 0:
			respond(&core.RequestVoteReply{Term: 1}, nil)
			respond(&core.RequestVoteReply{Term: 2}, nil)
		case 1:
			respond(&core.AppendEntriesReply{Term: 3}, nil)
		case 2:
			respond(nil, nil)
		}
	})
	tr0, _ := newEchoPair(t, h, func(cfg *Config) {
		if cfg.ID == 1 {
			cfg.Logger = logs.logger()
		}
	})
	p, _ := tr0.Peer(1)
	var reply core.RequestVoteReply
	if err := p.call(methodRequestVote, &core.RequestVoteArgs{}, &reply); err != nil || reply.Term != 1 {
		t.Errorf("answered twice: %+v, %v; want the first answer", reply, err)
	}
	if !logs.has("answered a request twice") {
		t.Errorf("no log line about the second answer:\n%s", logs)
	}
	mode.Store(1)
	if err := p.call(methodRequestVote, &core.RequestVoteArgs{}, &reply); err == nil || !strings.Contains(err.Error(), "AppendEntriesReply") {
		t.Errorf("answered with the wrong type: %v, want a failed call naming the type", err)
	}
	mode.Store(2)
	if err := p.call(methodRequestVote, &core.RequestVoteArgs{}, &reply); err == nil {
		t.Error("answered with nil: the call succeeded")
	}
	if !logs.has("answered a RequestVote request with a <nil>") {
		t.Errorf("no log line about the nil answer:\n%s", logs)
	}
}

// handlerFunc is a Handler of a function.
type handlerFunc func(from int, req any, respond func(reply any, err error))

func (f handlerFunc) Serve(from int, req any, respond func(reply any, err error)) {
	f(from, req, respond)
}

// TestHandlerKeepsRequests checks that the requests a Handler keeps stay
// as they arrived while the connection reads on: the commands of their
// entries and the data of their chunks alias buffers that the transport
// never reuses. (Under -race, a reused buffer also shows as a race between
// the reader filling it and the checker below reading it.)
func TestHandlerKeepsRequests(t *testing.T) {
	var mu sync.Mutex
	var kept []any
	h := handlerFunc(func(from int, req any, respond func(reply any, err error)) {
		mu.Lock()
		kept = append(kept, req)
		mu.Unlock()
		switch req.(type) {
		case *core.AppendEntriesArgs:
			respond(&core.AppendEntriesReply{}, nil)
		case *core.InstallSnapshotArgs:
			respond(&core.InstallSnapshotReply{}, nil)
		default:
			respond(&core.RequestVoteReply{}, nil)
		}
	})
	tr0, _ := newEchoPair(t, h, nil)
	p, _ := tr0.Peer(1)
	const n = 300
	want := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 50+i%200) }
	// A checker reads what the handler kept, all along.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			mu.Lock()
			reqs := append([]any(nil), kept...)
			mu.Unlock()
			for _, req := range reqs {
				sumKept(req)
			}
		}
	})
	rec := newDoneRecorder(t, n)
	for i := range n {
		var req any
		switch i % 3 {
		case 0:
			req = &core.AppendEntriesArgs{PrevLogIndex: i, Entries: []core.Entry{{Index: i + 1, Command: want(i)}, {Index: i + 2, Command: want(i)}}}
		case 1:
			req = &core.InstallSnapshotArgs{Offset: int64(i), Data: want(i)}
		default:
			req = &core.RequestVoteArgs{Term: i} // read into the reader's own buffer
		}
		p.Send(req, rec.done(i, nil))
	}
	rec.wait()
	close(stop)
	wg.Wait()
	if ok, _ := rec.count(); ok != n {
		t.Fatalf("%d of %d Sends succeeded", ok, n)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, req := range kept {
		switch r := req.(type) {
		case *core.AppendEntriesArgs:
			for _, e := range r.Entries {
				if !bytes.Equal(e.Command, want(r.PrevLogIndex)) {
					t.Fatalf("request %d: a command kept changed", i)
				}
			}
		case *core.InstallSnapshotArgs:
			if !bytes.Equal(r.Data, want(int(r.Offset))) {
				t.Fatalf("request %d: the data kept changed", i)
			}
		}
	}
}

// sumKept reads every byte a request holds.
func sumKept(req any) (sum byte) {
	switch r := req.(type) {
	case *core.AppendEntriesArgs:
		for _, e := range r.Entries {
			for _, b := range e.Command {
				sum += b
			}
		}
	case *core.InstallSnapshotArgs:
		for _, b := range r.Data {
			sum += b
		}
	}
	return sum
}
