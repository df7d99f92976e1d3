package transport

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math"
	"net"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/raftkit/raft/core"
)

// fakeHandler answers in a way the tests can check: RequestVote echoes the
// term plus one, AppendEntries returns a checksum of the entries, Probe
// the caller's ID, InstallSnapshot a checksum of the chunk (fakeReply).
// It answers at once, from the connection's reader, unless block is set:
// then it answers from a goroutine of its own once block closes.
type fakeHandler struct {
	calls atomic.Int64

	mu       sync.Mutex
	block    chan struct{} // if set, answers wait for it to close
	err      error         // if set, requests fail with it
	bigReply bool          // if set, replies carry the largest ints
}

func (h *fakeHandler) set(f func(h *fakeHandler)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f(h)
}

func (h *fakeHandler) state() (chan struct{}, error, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.block, h.err, h.bigReply
}

func (h *fakeHandler) Serve(from int, req any, respond func(reply any, err error)) {
	h.calls.Add(1)
	block, err, big := h.state()
	answer := func() {
		if err != nil {
			respond(nil, err)
			return
		}
		respond(fakeReply(from, req, big), nil)
	}
	if block == nil {
		answer()
		return
	}
	go func() {
		<-block
		answer()
	}()
}

// fakeReply is fakeHandler's answer to req from server from, with every
// number at its largest if big.
func fakeReply(from int, req any, big bool) any {
	switch a := req.(type) {
	case *core.RequestVoteArgs:
		if big {
			return &core.RequestVoteReply{Term: math.MaxInt64, VoteGranted: true, PreVote: true}
		}
		return &core.RequestVoteReply{Term: a.Term + 1, VoteGranted: a.CandidateID == a.LastLogIndex}
	case *core.AppendEntriesArgs:
		if big {
			return &core.AppendEntriesReply{Term: math.MaxInt64, Success: true, Index: math.MaxInt64, ConflictTerm: math.MaxInt64, ConflictIndex: math.MaxInt64}
		}
		return &core.AppendEntriesReply{Term: a.Term, Success: true, Index: a.PrevLogIndex + len(a.Entries), ConflictTerm: int(checksum(a.Entries))}
	case *core.ProbeArgs:
		// The caller's ID, as the transport gave it.
		if big {
			return &core.ProbeReply{Term: math.MaxInt64, LastIndex: math.MaxInt64, Empty: true, Founder: true}
		}
		return &core.ProbeReply{Term: from, LastIndex: 1000 + from, Empty: from%2 == 0, Founder: true}
	case *core.InstallSnapshotArgs:
		if big {
			return &core.InstallSnapshotReply{Term: math.MaxInt64, Index: math.MaxInt64}
		}
		return &core.InstallSnapshotReply{Term: a.Term, Index: chunkSum(a)}
	}
	panic(fmt.Sprintf("fakeReply: a %T request", req))
}

// chunkSum is a checksum of every field of an InstallSnapshot request.
func chunkSum(a *core.InstallSnapshotArgs) int {
	h := crc32.NewIEEE()
	fmt.Fprintf(h, "%d/%d/%d/%d/%d/%t/", a.Term, a.LeaderID, a.LastIncludedIndex, a.LastIncludedTerm, a.Offset, a.Done)
	h.Write(a.Data)
	return int(h.Sum32())
}

func checksum(ents []core.Entry) uint32 {
	h := crc32.NewIEEE()
	for _, e := range ents {
		fmt.Fprintf(h, "%d/%d/", e.Index, e.Term)
		h.Write(e.Command)
	}
	return h.Sum32()
}

// entries returns n entries from index 1 on, with commands of size bytes.
func entries(n, size int) []core.Entry { return entriesFrom(1, n, size) }

// entriesFrom returns n entries from index first on, with commands of
// size bytes.
func entriesFrom(first, n, size int) []core.Entry {
	ents := make([]core.Entry, n)
	for i := range ents {
		cmd := make([]byte, size)
		for j := range cmd {
			cmd[j] = byte(i*7 + j)
		}
		ents[i] = core.Entry{Index: first + i, Term: 3, Command: cmd}
	}
	return ents
}

// logBuf collects log lines for the tests to search.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// has reports whether a log line with want shows up within waitBound: the
// servers log on their own goroutines, maybe after the caller is told.
func (b *logBuf) has(want string) bool {
	return eventually(func() bool { return strings.Contains(b.String(), want) })
}

// waitBound bounds the wait for a condition: generous, for a loaded
// machine.
const waitBound = 10 * time.Second

// eventually reports whether cond holds within waitBound.
func eventually(cond func() bool) bool {
	for end := time.Now().Add(waitBound); ; time.Sleep(5 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(end) {
			return false
		}
	}
}

// waitFor fails the test unless cond holds within waitBound.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if !eventually(cond) {
		t.Fatalf("gave up waiting %v for %s", waitBound, what)
	}
}

func (b *logBuf) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// cluster is n transports on ephemeral ports of 127.0.0.1, serving fake
// handlers, closed (and checked for leftover goroutines) at the end of the
// test.
type cluster struct {
	t     *testing.T
	peers map[int]string
	tr    map[int]*TCP
	h     map[int]*fakeHandler
	logs  map[int]*logBuf
}

func newCluster(t *testing.T, n int, tune func(cfg *Config)) *cluster {
	t.Helper()
	ids := make([]int, n)
	for i := range ids {
		ids[i] = i
	}
	return newClusterOf(t, ids, tune)
}

// newClusterOf is newCluster of servers ids.
func newClusterOf(t *testing.T, ids []int, tune func(cfg *Config)) *cluster {
	t.Helper()
	lns, peers, err := ListenLocal(ids...)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, peers: peers, tr: map[int]*TCP{}, h: map[int]*fakeHandler{}, logs: map[int]*logBuf{}}
	t.Cleanup(func() {
		for _, h := range c.h {
			h.set(func(h *fakeHandler) {
				if h.block != nil {
					close(h.block)
					h.block = nil
				}
			})
		}
		for _, tr := range c.tr {
			if err := tr.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}
		checkNoGoroutines(t)
	})
	for _, id := range ids {
		c.start(id, lns[id], tune)
	}
	return c
}

// start starts server id, on ln or else on its address in c.peers.
func (c *cluster) start(id int, ln net.Listener, tune func(cfg *Config)) {
	c.t.Helper()
	c.logs[id] = new(logBuf)
	// A call timeout that a loaded machine does not hit by mere slowness;
	// the tests of timeouts set their own.
	cfg := Config{Insecure: true, ID: id, Peers: c.peers, Listener: ln, Logger: c.logs[id].logger(), CallTimeout: waitBound}
	if tune != nil {
		tune(&cfg)
	}
	tr, err := New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.tr[id] = tr
	c.h[id] = new(fakeHandler)
	tr.Serve(c.h[id])
}

func (c *cluster) peer(from, to int) *Peer {
	c.t.Helper()
	p, err := c.tr[from].Peer(to)
	if err != nil {
		c.t.Fatal(err)
	}
	return p
}

// vote calls RequestVote from one server to another and checks the reply
// if the call succeeds.
func (c *cluster) vote(from, to int) error {
	c.t.Helper()
	args := &core.RequestVoteArgs{Term: 5 + from, CandidateID: from, LastLogIndex: from, LastLogTerm: 2}
	var reply core.RequestVoteReply
	err := c.peer(from, to).call("Raft.RequestVote", args, &reply)
	if err == nil && (reply.Term != 6+from || !reply.VoteGranted) {
		c.t.Errorf("RequestVote %d→%d: reply %+v", from, to, reply)
	}
	return err
}

// appendEntries calls AppendEntries with n entries of size bytes and checks
// the reply if the call succeeds.
func (c *cluster) appendEntries(from, to, n, size int) error {
	c.t.Helper()
	ents := entriesFrom(101, n, size)
	args := &core.AppendEntriesArgs{Term: 9, LeaderID: from, PrevLogIndex: 100, PrevLogTerm: 8, Entries: ents, LeaderCommit: 50}
	var reply core.AppendEntriesReply
	err := c.peer(from, to).call("Raft.AppendEntries", args, &reply)
	if err == nil {
		want := core.AppendEntriesReply{Term: 9, Success: true, Index: 100 + n, ConflictTerm: int(checksum(ents))}
		if reply != want {
			c.t.Errorf("AppendEntries %d→%d: reply %+v, want %+v", from, to, reply, want)
		}
	}
	return err
}

// installSnapshot sends the chunk of a snapshot at offset, of size bytes,
// from one server to another, and checks the reply if the call succeeds.
func (c *cluster) installSnapshot(from, to int, offset int64, size int) error {
	c.t.Helper()
	args := &core.InstallSnapshotArgs{Term: 9, LeaderID: from, LastIncludedIndex: 1000, LastIncludedTerm: 8,
		Offset: offset, Data: snapshotData(offset, size), Done: size%2 == 1}
	var reply core.InstallSnapshotReply
	err := c.peer(from, to).call(methodInstallSnapshot, args, &reply)
	if err == nil {
		if want := (core.InstallSnapshotReply{Term: 9, Index: chunkSum(args)}); reply != want {
			c.t.Errorf("InstallSnapshot %d→%d: reply %+v, want %+v", from, to, reply, want)
		}
	}
	return err
}

// snapshotData returns the bytes of a snapshot from offset on, size of
// them.
func snapshotData(offset int64, size int) []byte {
	b := make([]byte, size)
	for i := range b {
		x := offset + int64(i)
		b[i] = byte(x ^ x>>8 ^ x>>16)
	}
	return b
}

func (c *cluster) mustCall(from, to int) {
	c.t.Helper()
	if err := c.appendEntries(from, to, 2, 10); err != nil {
		c.t.Fatalf("call %d→%d: %v", from, to, err)
	}
}

// dials returns how many dials p started.
func dials(p *Peer) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dials
}

// checkNoGoroutines fails the test if a goroutine of the transport or of
// net/rpc is still alive after a short settling time.
func checkNoGoroutines(t *testing.T) {
	t.Helper()
	var left []string
	for end := time.Now().Add(waitBound); ; {
		left = left[:0]
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "testing.tRunner") {
				continue
			}
			if strings.Contains(g, "raftkit/raft/transport.") || strings.Contains(g, "net/rpc.") {
				left = append(left, g)
			}
		}
		if len(left) == 0 || time.Now().After(end) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(left) > 0 {
		t.Errorf("%d goroutines left behind, the first:\n%s", len(left), left[0])
	}
}

func TestRoundTrip(t *testing.T) {
	c := newCluster(t, 3, nil)
	for from := range 3 {
		for to := range 3 {
			if from == to {
				continue
			}
			if err := c.vote(from, to); err != nil {
				t.Errorf("RequestVote %d→%d: %v", from, to, err)
			}
			if err := c.appendEntries(from, to, 0, 0); err != nil {
				t.Errorf("heartbeat %d→%d: %v", from, to, err)
			}
			if err := c.appendEntries(from, to, 64, 100); err != nil {
				t.Errorf("AppendEntries %d→%d: %v", from, to, err)
			}
			var probe core.ProbeReply
			want := core.ProbeReply{Term: from, LastIndex: 1000 + from, Empty: from%2 == 0, Founder: true}
			if err := c.peer(from, to).call("Raft.Probe", &core.ProbeArgs{}, &probe); err != nil || probe != want {
				t.Errorf("Probe %d→%d: %+v, %v; want %+v", from, to, probe, err, want)
			}
			if err := c.installSnapshot(from, to, 0, 3000); err != nil {
				t.Errorf("InstallSnapshot %d→%d: %v", from, to, err)
			}
		}
	}
	// Call, as the raft package uses it.
	var reply core.RequestVoteReply
	if !c.peer(0, 1).Call("Raft.RequestVote", &core.RequestVoteArgs{Term: 1}, &reply) || reply.Term != 2 {
		t.Errorf("Call: reply %+v", reply)
	}
}

func TestConcurrentCallsShareOneConnection(t *testing.T) {
	c := newCluster(t, 2, nil)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for g := range 100 {
		wg.Go(func() {
			for range 5 {
				var err error
				if g%2 == 0 {
					err = c.vote(0, 1)
				} else {
					err = c.appendEntries(0, 1, g%8, 50)
				}
				if err != nil {
					failed.Add(1)
					t.Errorf("call: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if n := c.h[1].calls.Load(); n != 500 || failed.Load() != 0 {
		t.Errorf("handler ran %d times, %d calls failed; want 500, 0", n, failed.Load())
	}
	if n := dials(c.peer(0, 1)); n != 1 {
		t.Errorf("%d dials, want 1", n)
	}
	c.tr[1].mu.Lock()
	conns := len(c.tr[1].conns)
	c.tr[1].mu.Unlock()
	if conns != 1 {
		t.Errorf("server 1 has %d connections, want 1", conns)
	}
}

func TestBadCalls(t *testing.T) {
	c := newCluster(t, 2, nil)
	p := c.peer(0, 1)
	for _, tc := range []struct {
		method      string
		args, reply any
	}{
		{"Raft.Nope", &core.RequestVoteArgs{}, &core.RequestVoteReply{}},
		{"Raft.RequestVote", &core.AppendEntriesArgs{}, &core.RequestVoteReply{}},
		{"Raft.AppendEntries", &core.AppendEntriesArgs{}, &core.RequestVoteReply{}},
		{"Raft.AppendEntries", (*core.AppendEntriesArgs)(nil), &core.AppendEntriesReply{}},
		{"Raft.RequestVote", core.RequestVoteArgs{}, &core.RequestVoteReply{}},
		{"Raft.Probe", &core.ProbeArgs{}, &core.RequestVoteReply{}},
		{"Raft.Probe", (*core.ProbeArgs)(nil), &core.ProbeReply{}},
		{"Raft.InstallSnapshot", &core.InstallSnapshotArgs{}, &core.AppendEntriesReply{}},
		{"Raft.InstallSnapshot", (*core.InstallSnapshotArgs)(nil), &core.InstallSnapshotReply{}},
		{"Raft.InstallSnapshot", &core.InstallSnapshotArgs{}, (*core.InstallSnapshotReply)(nil)},
		{"Raft.AppendEntries", &core.InstallSnapshotArgs{}, &core.InstallSnapshotReply{}},
	} {
		if p.Call(tc.method, tc.args, tc.reply) {
			t.Errorf("Call(%q, %T, %T) succeeded", tc.method, tc.args, tc.reply)
		}
	}
	if !c.logs[0].has("bad call") {
		t.Errorf("no log line about the bad calls")
	}
	if n := c.h[1].calls.Load(); n != 0 {
		t.Errorf("handler ran %d times", n)
	}
	c.mustCall(0, 1)
}

func TestHandlerError(t *testing.T) {
	c := newCluster(t, 2, nil)
	c.h[1].set(func(h *fakeHandler) { h.err = errors.New("not now") })
	var reply core.AppendEntriesReply
	reply.Term = 42
	if c.peer(0, 1).Call("Raft.AppendEntries", &core.AppendEntriesArgs{Term: 1}, &reply) {
		t.Fatal("call succeeded though the handler failed")
	}
	if reply.Term != 42 {
		t.Errorf("failed call changed the reply: %+v", reply)
	}
	err := c.vote(0, 1)
	var re remoteError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "not now") {
		t.Errorf("call error %v, want the handler's", err)
	}
	c.h[1].set(func(h *fakeHandler) { h.err = nil })
	c.mustCall(0, 1)
	if n := dials(c.peer(0, 1)); n != 1 {
		t.Errorf("%d dials, want 1", n)
	}
}

// TestHungPeerDelaysNoOther checks that calls to a peer whose handler
// hangs do not hold up calls to another: those complete while the hung
// ones are still waiting (with a call timeout no test can reach).
func TestHungPeerDelaysNoOther(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) { cfg.CallTimeout = time.Hour })
	c.mustCall(0, 1)
	c.h[1].set(func(h *fakeHandler) { h.block = make(chan struct{}) })

	const hung = 10
	var wg sync.WaitGroup
	var hungReturned, hungOK atomic.Int64
	for range hung {
		wg.Go(func() {
			if c.vote(0, 1) == nil {
				hungOK.Add(1)
			}
			hungReturned.Add(1)
		})
	}
	waitFor(t, "the calls to hang in server 1's handler", func() bool { return c.h[1].calls.Load() == 1+hung })
	// Meanwhile server 2 answers.
	for range 20 {
		c.mustCall(0, 2)
	}
	if n := hungReturned.Load(); n != 0 {
		t.Fatalf("%d calls to the hung peer returned while its handler hung", n)
	}
	// Once the handler is free again, the hung calls get their answers
	// on the same connection.
	c.h[1].set(func(h *fakeHandler) { close(h.block); h.block = nil })
	wg.Wait()
	if n := hungOK.Load(); n != hung {
		t.Errorf("%d of %d calls to the once hung peer succeeded", n, hung)
	}
	c.mustCall(0, 1)
	if n := dials(c.peer(0, 1)); n != 1 {
		t.Errorf("%d dials, want 1", n)
	}
}

func TestDeadPeers(t *testing.T) {
	t.Cleanup(func() { checkNoGoroutines(t) })
	// Server 1's port has nothing listening (unless another process took
	// it since: the dial fails all the same); server 2's accepts
	// connections but never answers.
	refused, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedAddr := refused.Addr().String()
	refused.Close()
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var silentWG sync.WaitGroup
	var silentConns atomic.Int64
	silentWG.Go(func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			silentConns.Add(1)
		}
	})
	defer silentWG.Wait()
	defer silent.Close()

	lns, peers, err := ListenLocal(0, 3, 4)
	if err != nil {
		t.Fatal(err)
	}
	peers[1], peers[2] = refusedAddr, silent.Addr().String()
	logs := new(logBuf)
	// Server 0 waits for ever; server 4 times out.
	tr0, err := New(Config{Insecure: true, ID: 0, Peers: peers, Listener: lns[0], CallTimeout: time.Hour, DialBackoffMin: time.Hour, Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer tr0.Close()
	tr3, err := New(Config{Insecure: true, ID: 3, Peers: peers, Listener: lns[3], Logger: new(logBuf).logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer tr3.Close()
	const timeout = 300 * time.Millisecond
	tr4, err := New(Config{Insecure: true, ID: 4, Peers: peers, Listener: lns[4], CallTimeout: timeout, Logger: new(logBuf).logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer tr4.Close()
	tr3.Serve(new(fakeHandler))
	p1, _ := tr0.Peer(1)
	p2, _ := tr0.Peer(2)
	p3, _ := tr0.Peer(3)

	args := &core.RequestVoteArgs{Term: 1}
	silentDone := make(chan error, 1)
	go func() { silentDone <- p2.call("Raft.RequestVote", args, new(core.RequestVoteReply)) }()
	waitFor(t, "the silent peer to accept the connection", func() bool { return silentConns.Load() == 1 })

	if err := p1.call("Raft.RequestVote", args, new(core.RequestVoteReply)); err == nil {
		t.Error("call to a refusing address succeeded")
	}
	// Within the backoff, calls fail at once without dialing.
	for range 5 {
		if err := p1.call("Raft.RequestVote", args, new(core.RequestVoteReply)); !errors.Is(err, errBackoff) {
			t.Errorf("call in backoff: %v, want %v", err, errBackoff)
		}
	}
	if n := dials(p1); n != 1 {
		t.Errorf("%d dials to the refusing peer, want 1", n)
	}
	// Neither the silent peer nor the refusing one delays the live one.
	for range 10 {
		if !p3.Call("Raft.RequestVote", args, new(core.RequestVoteReply)) {
			t.Error("call to the live peer failed")
		}
	}
	select {
	case err := <-silentDone:
		t.Fatalf("the call to the silent peer returned %v with no timeout", err)
	default:
	}
	if !logs.has("cannot reach peer") {
		t.Errorf("no log line about the unreachable peer:\n%s", logs)
	}

	// With a timeout, the call to the silent peer fails at its deadline:
	// its own, or the dial's, which starts a little later and may end the
	// call first.
	p42, _ := tr4.Peer(2)
	start := time.Now()
	err = p42.call("Raft.RequestVote", args, new(core.RequestVoteReply))
	if took := time.Since(start); !(errors.Is(err, errTimeout) || errors.Is(err, errUnreachable) || errors.Is(err, errBackoff)) || took < timeout || took > waitBound {
		t.Errorf("call to a silent peer: %v after %v, want a timeout after %v", err, took, timeout)
	}
	// Close ends the call that has no timeout.
	tr0.Close()
	if err := <-silentDone; !errors.Is(err, errClosed) {
		t.Errorf("call to the silent peer across Close: %v, want %v", err, errClosed)
	}
}

// portKeeper holds a listening socket across the restarts of a server, so
// that no other process can take the port in between: each incarnation of
// the server gets a listener of its own (listener), which gets the
// connections until it is closed. While none is open, the keeper closes
// the connections it accepts.
type portKeeper struct {
	ln  net.Listener
	wg  sync.WaitGroup
	mu  sync.Mutex
	cur *keptListener
}

type keptListener struct {
	k     *portKeeper
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPortKeeper(ln net.Listener) *portKeeper {
	k := &portKeeper{ln: ln}
	k.wg.Go(k.run)
	return k
}

func (k *portKeeper) run() {
	for {
		c, err := k.ln.Accept()
		if err != nil {
			return
		}
		k.mu.Lock()
		cur := k.cur
		k.mu.Unlock()
		if cur == nil {
			c.Close()
			continue
		}
		select {
		case cur.conns <- c:
		case <-cur.done:
			c.Close()
		}
	}
}

// listener returns a listener on the kept port for a new incarnation.
func (k *portKeeper) listener() net.Listener {
	l := &keptListener{k: k, conns: make(chan net.Conn), done: make(chan struct{})}
	k.mu.Lock()
	k.cur = l
	k.mu.Unlock()
	return l
}

// close closes the port and waits for the keeper's goroutine.
func (k *portKeeper) close() {
	k.ln.Close()
	k.wg.Wait()
}

func (l *keptListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *keptListener) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.k.mu.Lock()
		if l.k.cur == l {
			l.k.cur = nil
		}
		l.k.mu.Unlock()
	})
	return nil
}

func (l *keptListener) Addr() net.Addr { return l.k.ln.Addr() }

func TestReconnect(t *testing.T) {
	const backoffMin, backoffMax = 10 * time.Millisecond, 80 * time.Millisecond
	var keeper *portKeeper
	c := newCluster(t, 2, func(cfg *Config) {
		cfg.DialBackoffMin, cfg.DialBackoffMax = backoffMin, backoffMax
		if cfg.ID == 1 {
			keeper = newPortKeeper(cfg.Listener)
			cfg.Listener = keeper.listener()
		}
	})
	t.Cleanup(keeper.close) // before the cluster's check for goroutines
	c.mustCall(0, 1)
	if err := c.tr[1].Close(); err != nil {
		t.Fatal(err)
	}
	p := c.peer(0, 1)
	state := func() (failures int, backoff time.Duration) {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.failures, p.backoff
	}
	// Each failed dial doubles the wait before the next, up to the
	// maximum. (TestDeadPeers checks that calls within the wait do not
	// dial.)
	var got []time.Duration
	const fails = 5
	waitFor(t, fmt.Sprintf("%d failed dials", fails), func() bool {
		if c.vote(0, 1) == nil {
			t.Fatal("call to a closed server succeeded")
		}
		if n, b := state(); n > len(got) {
			got = append(got, b)
		}
		return len(got) == fails
	})
	for i, b := range got {
		if want := min(backoffMin<<(i+1), backoffMax); b != want {
			t.Errorf("backoff after %d failed dials: %v, want %v (all: %v)", i+1, b, want, got)
		}
	}
	if !c.logs[0].has("cannot reach peer") {
		t.Error("no log line about the unreachable peer")
	}

	c.start(1, keeper.listener(), nil) // on the same port
	waitFor(t, "a call to succeed after the restart", func() bool { return c.appendEntries(0, 1, 3, 10) == nil })
	if c.h[1].calls.Load() == 0 {
		t.Error("the restarted server's handler never ran")
	}
	c.mustCall(1, 0)
}

func TestHandshakeRejects(t *testing.T) {
	c := newCluster(t, 3, nil)

	// A server that is not among server 0's peers.
	lns, peers, err := ListenLocal(7)
	if err != nil {
		t.Fatal(err)
	}
	peers[0] = c.peers[0]
	intruder, err := New(Config{Insecure: true, ID: 7, Peers: peers, Listener: lns[7], Logger: new(logBuf).logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer intruder.Close()
	p, _ := intruder.Peer(0)
	if err := p.call("Raft.RequestVote", &core.RequestVoteArgs{}, new(core.RequestVoteReply)); err == nil || !strings.Contains(err.Error(), "not among its peers") {
		t.Errorf("call from an unknown ID: %v, want a refusal", err)
	}

	// A server that thinks server 0 listens where server 2 does.
	lns, peers, err = ListenLocal(1)
	if err != nil {
		t.Fatal(err)
	}
	peers[0] = c.peers[2]
	lost, err := New(Config{Insecure: true, ID: 1, Peers: peers, Listener: lns[1], Logger: new(logBuf).logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer lost.Close()
	p, _ = lost.Peer(0)
	if err := p.call("Raft.RequestVote", &core.RequestVoteArgs{}, new(core.RequestVoteReply)); err == nil || !strings.Contains(err.Error(), "not the server we meant") {
		t.Errorf("call to the wrong server: %v, want a refusal", err)
	}

	// Something that does not speak the protocol at all.
	conn, err := net.Dial("tcp", c.peers[0])
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	conn.SetReadDeadline(time.Now().Add(waitBound))
	if n, err := conn.Read(make([]byte, 100)); n != 0 || err == nil {
		t.Errorf("server answered an HTTP request with %d bytes, %v; want it to hang up", n, err)
	}
	conn.Close()

	if n := c.h[0].calls.Load() + c.h[2].calls.Load(); n != 0 {
		t.Errorf("handlers ran %d times for rejected callers", n)
	}
	for _, want := range []struct {
		server int
		line   string
	}{{0, "not among the peers"}, {2, "meant to reach server 0"}, {0, "hello starts with"}} {
		if logs := c.logs[want.server]; !logs.has(want.line) || !logs.has("rejected connection") {
			t.Errorf("no log line with %q on server %d:\n%s", want.line, want.server, logs)
		}
	}
	// The servers serve their peers on.
	c.mustCall(1, 0)
	c.mustCall(2, 0)
	c.mustCall(0, 2)
}

func TestOversizeRequest(t *testing.T) {
	// Server 0 takes at most 4 KiB, server 1 up to 1 MiB; 64 entries of
	// 100 bytes are over 6 KiB.
	c := newCluster(t, 2, func(cfg *Config) {
		if cfg.ID == 0 {
			cfg.MaxMessageBytes = 4 << 10
		} else {
			cfg.MaxMessageBytes = 1 << 20
		}
	})
	c.mustCall(0, 1)
	c.mustCall(1, 0)

	// 1→0: server 0 refuses to read it.
	err := c.appendEntries(1, 0, 64, 100)
	if err == nil || !strings.Contains(err.Error(), "over server 0's limit") {
		t.Errorf("oversize request to server 0: %v, want a refusal", err)
	}
	if !c.logs[0].has("refused a request over the size limit") {
		t.Errorf("no log line on server 0:\n%s", c.logs[0])
	}
	// 0→1: server 0 refuses to send it.
	err = c.appendEntries(0, 1, 64, 100)
	if !errors.Is(err, errTooLarge) {
		t.Errorf("oversize request from server 0: %v, want %v", err, errTooLarge)
	}
	if !c.logs[0].has("refused to send a request over the size limit") {
		t.Errorf("no log line on server 0:\n%s", c.logs[0])
	}
	if n := c.h[0].calls.Load() + c.h[1].calls.Load(); n != 2 {
		t.Errorf("handlers ran %d times, want 2 (the oversize requests must not reach them)", n)
	}
	// Both connections serve on.
	for range 3 {
		c.mustCall(0, 1)
		c.mustCall(1, 0)
	}
	if d0, d1 := dials(c.peer(0, 1)), dials(c.peer(1, 0)); d0 != 1 || d1 != 1 {
		t.Errorf("dials %d, %d; want one connection each way", d0, d1)
	}
}

// bodySize is the size of v's payload in a frame: a request's, or a
// reply's.
func bodySize(t *testing.T, v any) int {
	t.Helper()
	_, n, err := appendRequest(nil, 0, v)
	if err != nil {
		_, n, err = appendReply(nil, 0, v)
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestOversizeReply(t *testing.T) {
	// A limit that lets heartbeats through but not replies full of large
	// numbers.
	req := bodySize(t, &core.AppendEntriesArgs{})
	big := min(bodySize(t, &core.AppendEntriesReply{Term: math.MaxInt64, Success: true, Index: math.MaxInt64, ConflictTerm: math.MaxInt64, ConflictIndex: math.MaxInt64}),
		bodySize(t, &core.ProbeReply{Term: math.MaxInt64, LastIndex: math.MaxInt64, Empty: true, Founder: true}))
	limit := (req + big) / 2
	if req >= limit || limit >= big {
		t.Fatalf("request of %d bytes, big reply of %d: no limit between", req, big)
	}
	c := newCluster(t, 2, func(cfg *Config) {
		if cfg.ID == 0 {
			cfg.MaxMessageBytes = limit
		}
	})
	heartbeat := func(from, to int) error {
		return c.peer(from, to).call("Raft.AppendEntries", &core.AppendEntriesArgs{}, new(core.AppendEntriesReply))
	}
	probe := func(from, to int) error {
		return c.peer(from, to).call("Raft.Probe", &core.ProbeArgs{}, new(core.ProbeReply))
	}
	if small := bodySize(t, &core.ProbeReply{Term: 1, LastIndex: 1001, Founder: true}); small > limit {
		t.Fatalf("probe reply of %d bytes, limit %d: want it under", small, limit)
	}
	for id := range 2 {
		c.h[id].set(func(h *fakeHandler) { h.bigReply = true })
	}
	// 0→1: server 0 refuses to read the reply.
	if err := heartbeat(0, 1); !errors.Is(err, errTooLarge) {
		t.Errorf("call with an oversize reply from server 1: %v, want %v", err, errTooLarge)
	}
	if !c.logs[0].has("refused a reply over the size limit") {
		t.Errorf("no log line on server 0:\n%s", c.logs[0])
	}
	// 1→0: server 0 refuses to send it.
	if err := heartbeat(1, 0); err == nil || !strings.Contains(err.Error(), "over server 0's limit") {
		t.Errorf("call with an oversize reply from server 0: %v, want a refusal", err)
	}
	if !c.logs[0].has("refused to send a reply over the size limit") {
		t.Errorf("no log line on server 0:\n%s", c.logs[0])
	}
	// The same for another type of reply.
	if err := probe(1, 0); err == nil || !strings.Contains(err.Error(), "over server 0's limit") {
		t.Errorf("probe with an oversize reply from server 0: %v, want a refusal", err)
	}
	// Both connections serve on.
	for id := range 2 {
		c.h[id].set(func(h *fakeHandler) { h.bigReply = false })
	}
	for range 3 {
		for _, call := range []func(from, to int) error{heartbeat, probe} {
			if err := call(0, 1); err != nil {
				t.Fatal(err)
			}
			if err := call(1, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	if d0, d1 := dials(c.peer(0, 1)), dials(c.peer(1, 0)); d0 != 1 || d1 != 1 {
		t.Errorf("dials %d, %d; want one connection each way", d0, d1)
	}
}

func TestFaults(t *testing.T) {
	f := NewFaults(1)
	f.SetLostWait(4 * time.Millisecond)
	// Calls over sound links must succeed within it on a loaded machine;
	// one call waits it out.
	const timeout = 2 * time.Second
	c := newCluster(t, 3, func(cfg *Config) { cfg.Faults = f; cfg.CallTimeout = timeout })
	all := func() (ok [3][3]bool) {
		for from := range 3 {
			for to := range 3 {
				ok[from][to] = from == to || c.vote(from, to) == nil
			}
		}
		return ok
	}
	up := [3][3]bool{{true, true, true}, {true, true, true}, {true, true, true}}
	if got := all(); got != up {
		t.Fatalf("links before any fault: %v", got)
	}

	f.Cut(0, 1)
	if got, want := all(), ([3][3]bool{{true, false, true}, {false, true, true}, {true, true, true}}); got != want {
		t.Errorf("after Cut(0, 1): %v, want %v", got, want)
	}
	if f.Connected(1, 0) {
		t.Error("Connected(1, 0) after Cut(0, 1)")
	}
	f.Heal(1, 0)
	if got := all(); got != up {
		t.Errorf("after Heal: %v", got)
	}

	f.Isolate(2)
	if got, want := all(), ([3][3]bool{{true, true, false}, {true, true, false}, {false, false, true}}); got != want {
		t.Errorf("after Isolate(2): %v, want %v", got, want)
	}
	f.Rejoin(2)
	if got := all(); got != up {
		t.Errorf("after Rejoin: %v", got)
	}

	// Dropping 0→1 loses server 0's requests to 1, and its replies to 1.
	f.SetDrop(0, 1, 1)
	if got, want := all(), ([3][3]bool{{true, false, true}, {false, true, true}, {true, true, true}}); got != want {
		t.Errorf("after SetDrop(0, 1, 1): %v, want %v", got, want)
	}
	// Dropping 1→0 loses server 1's replies to 0: the handler runs, the
	// call fails.
	f.SetDrop(0, 1, 0)
	f.SetDrop(1, 0, 1)
	before := c.h[1].calls.Load()
	if err := c.vote(0, 1); !errors.Is(err, errLost) {
		t.Errorf("call whose reply is dropped: %v, want %v", err, errLost)
	}
	if c.h[1].calls.Load() != before+1 {
		t.Error("the handler did not run for a call whose reply was dropped")
	}
	f.Cut(0, 2)
	f.HealAll()
	f.SetDrop(1, 0, 0)
	if got := all(); got != up {
		t.Errorf("after HealAll and SetDrop 0: %v", got)
	}

	// Delays, of the request and of the reply.
	const d = 150 * time.Millisecond
	for _, l := range []link{{0, 1}, {1, 0}} {
		f.SetDelay(l.from, l.to, d)
		start := time.Now()
		if err := c.vote(0, 1); err != nil {
			t.Errorf("call with link %d→%d delayed: %v", l.from, l.to, err)
		}
		if took := time.Since(start); took < d {
			t.Errorf("call with link %d→%d delayed by %v took %v", l.from, l.to, d, took)
		}
		f.SetDelay(l.from, l.to, 0)
	}
	// A delay past the deadline fails the call at the deadline.
	f.SetDelay(0, 2, time.Hour)
	start := time.Now()
	if err := c.vote(0, 2); !errors.Is(err, errTimeout) {
		t.Errorf("call delayed past its deadline: %v, want %v", err, errTimeout)
	}
	if took := time.Since(start); took < timeout || took > timeout+waitBound {
		t.Errorf("call delayed past its deadline took %v", took)
	}
	f.Reset()

	// A lost call waits a while before it fails.
	f.SetLostWait(200 * time.Millisecond)
	f.Cut(0, 1)
	start = time.Now()
	if err := c.vote(0, 1); !errors.Is(err, errLost) {
		t.Errorf("call over a cut link: %v, want %v", err, errLost)
	}
	if took := time.Since(start); took < 100*time.Millisecond {
		t.Errorf("call over a cut link failed after %v, want at least half the lost wait", took)
	}
	f.Reset()
	if got := all(); got != up {
		t.Errorf("after Reset: %v", got)
	}
}

// TestFaultsOneSided checks that a cut known to one process only holds both
// ways, as when each process of a real cluster has a Faults of its own.
func TestFaultsOneSided(t *testing.T) {
	fs := map[int]*Faults{0: NewFaults(1), 1: NewFaults(2)}
	for _, f := range fs {
		f.SetLostWait(0)
	}
	c := newCluster(t, 2, func(cfg *Config) { cfg.Faults = fs[cfg.ID] })
	c.mustCall(0, 1)
	c.mustCall(1, 0)
	fs[1].Cut(0, 1) // only server 1 knows
	before0, before1 := c.h[0].calls.Load(), c.h[1].calls.Load()
	if err := c.vote(0, 1); !errors.Is(err, errLost) {
		t.Errorf("call 0→1, refused by server 1: %v, want %v", err, errLost)
	}
	if err := c.vote(1, 0); !errors.Is(err, errLost) {
		t.Errorf("call 1→0, not sent by server 1: %v, want %v", err, errLost)
	}
	if c.h[0].calls.Load() != before0 || c.h[1].calls.Load() != before1 {
		t.Error("a handler ran for a request over a cut link")
	}
	fs[1].Heal(0, 1)
	c.mustCall(0, 1)
	c.mustCall(1, 0)
}

func TestDropProbability(t *testing.T) {
	f := NewFaults(7)
	f.SetLostWait(0)
	c := newCluster(t, 2, func(cfg *Config) { cfg.Faults = f })
	f.SetDrop(0, 1, 0.5)
	ok := 0
	for range 200 {
		if c.vote(0, 1) == nil {
			ok++
		}
	}
	// Binomial(200, 0.5): outside [60, 140] with a chance under 1e-8.
	if ok < 60 || ok > 140 {
		t.Errorf("%d of 200 calls went through with drop probability 0.5", ok)
	}
}

func TestCloseFailsCallsInProgress(t *testing.T) {
	c := newCluster(t, 2, func(cfg *Config) { cfg.CallTimeout = time.Minute })
	c.mustCall(0, 1)
	c.h[1].set(func(h *fakeHandler) { h.block = make(chan struct{}) })
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for range 5 {
		wg.Go(func() { errs <- c.vote(0, 1) })
	}
	waitFor(t, "all five calls to be in the handler", func() bool { return c.h[1].calls.Load() == 6 })
	if err := c.tr[0].Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait() // the calls' timeout is a minute: Close ended them
	close(errs)
	for err := range errs {
		if err == nil {
			t.Error("a call in progress succeeded across Close")
		}
	}
	if err := c.vote(0, 1); !errors.Is(err, errClosed) {
		t.Errorf("call after Close: %v, want %v", err, errClosed)
	}
}

func TestNoLeaks(t *testing.T) {
	baseline := runtime.NumGoroutine()
	lns, peers, err := ListenLocal(0, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	var trs []*TCP
	for id := range 3 {
		tr, err := New(Config{Insecure: true, ID: id, Peers: peers, Listener: lns[id], Logger: new(logBuf).logger()})
		if err != nil {
			t.Fatal(err)
		}
		tr.Serve(new(fakeHandler))
		trs = append(trs, tr)
	}
	var wg sync.WaitGroup
	for from := range 3 {
		for to := range 3 {
			if from != to {
				wg.Go(func() {
					p, _ := trs[from].Peer(to)
					for range 10 {
						if !p.Call("Raft.AppendEntries", &core.AppendEntriesArgs{Entries: entries(4, 10)}, new(core.AppendEntriesReply)) {
							t.Errorf("call %d→%d failed", from, to)
						}
					}
				})
			}
		}
	}
	wg.Wait()
	if n := runtime.NumGoroutine(); n <= baseline {
		t.Fatalf("%d goroutines while running, %d before: the count cannot show a leak", n, baseline)
	}
	for _, tr := range trs {
		if err := tr.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := tr.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	}
	if !eventually(func() bool { return runtime.NumGoroutine() <= baseline }) {
		t.Errorf("%d goroutines after Close, %d before", runtime.NumGoroutine(), baseline)
	}
	checkNoGoroutines(t)
	// The listeners are closed, so the ports are free. (Listening on them
	// again to check would race any process that picks a port.)
	for id, ln := range lns {
		if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("server %d's listener after Close: Accept returned %v, want %v", id, err, net.ErrClosed)
		}
	}
	// A closed transport fails calls at once.
	p, _ := trs[0].Peer(1)
	if p.Call("Raft.RequestVote", &core.RequestVoteArgs{}, new(core.RequestVoteReply)) {
		t.Error("call after Close succeeded")
	}
}

func TestNewErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := ln.Addr().String()
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no peers", Config{Insecure: true, ID: 0}, "no Peers"},
		{"ID not in peers", Config{Insecure: true, ID: 3, Peers: map[int]string{0: "127.0.0.1:0", 1: "127.0.0.1:0"}}, "ID 3 is not in Peers"},
		{"empty address", Config{Insecure: true, ID: 0, Peers: map[int]string{0: "127.0.0.1:0", 1: ""}}, "server 1 has an empty address"},
		{"negative timeout", Config{Insecure: true, ID: 0, Peers: map[int]string{0: "127.0.0.1:0"}, CallTimeout: -1}, "CallTimeout"},
		{"huge limit", Config{Insecure: true, ID: 0, Peers: map[int]string{0: "127.0.0.1:0"}, MaxMessageBytes: 1 << 40}, "MaxMessageBytes"},
		{"backoff", Config{Insecure: true, ID: 0, Peers: map[int]string{0: "127.0.0.1:0"}, DialBackoffMin: time.Second, DialBackoffMax: time.Millisecond}, "DialBackoffMin"},
		{"address in use", Config{Insecure: true, ID: 0, Peers: map[int]string{0: busy}}, busy},
		{"bad address", Config{Insecure: true, ID: 0, Peers: map[int]string{0: "no-port"}}, "no-port"},
		{"neither TLS nor Insecure", Config{ID: 0, Peers: map[int]string{0: "127.0.0.1:0"}}, "set TLS"},
		{"both TLS and Insecure", Config{Insecure: true, TLS: &tls.Config{}, ID: 0, Peers: map[int]string{0: "127.0.0.1:0"}}, "both TLS and Insecure"},
		{"TLS without CAs", Config{TLS: &tls.Config{}, ID: 0, Peers: map[int]string{0: "127.0.0.1:0"}}, "no RootCAs"},
	} {
		tr, err := New(tc.cfg)
		if err == nil {
			tr.Close()
			t.Errorf("%s: New succeeded", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not mention %q", tc.name, err, tc.want)
		}
		if tc.name == "address in use" && !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("%s: error %q is not EADDRINUSE", tc.name, err)
		}
	}

	tr, err := New(Config{Insecure: true, ID: 0, Peers: map[int]string{0: "127.0.0.1:0", 1: "127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if _, err := tr.Peer(0); err == nil {
		t.Error("Peer of the server itself")
	}
	if _, err := tr.Peer(5); err == nil || !strings.Contains(err.Error(), "unknown peer ID 5") {
		t.Errorf("Peer(5): %v", err)
	}
	if p, err := tr.Peer(1); err != nil || p.ID() != 1 || p.Addr() != "127.0.0.1:1" {
		t.Errorf("Peer(1): %v, %v", p, err)
	}
}

// TestSkippedFramesKeepStreams checks what the size limits rely on: a
// frame over the reader's limit is skipped unread, and the frames after it
// read as they were written.
func TestSkippedFramesKeepStreams(t *testing.T) {
	var wire []byte
	big := &core.AppendEntriesArgs{Term: 1, PrevLogIndex: 0, Entries: entries(64, 100)}
	wire, n, err := appendRequest(wire, 2, big)
	if err != nil {
		t.Fatal(err)
	}
	small := &core.AppendEntriesArgs{Term: 2, Entries: entries(2, 5)}
	if wire, _, err = appendRequest(wire, 3, small); err != nil {
		t.Fatal(err)
	}
	if wire, _, err = appendRequest(wire, 4, &core.RequestVoteArgs{Term: 7}); err != nil {
		t.Fatal(err)
	}
	r := newFrameReader(bufio.NewReader(bytes.NewReader(wire)), n-1)
	in, err := r.readRequest()
	if err != nil || in.over != n || in.id != 2 || in.req != nil {
		t.Fatalf("frame 2: %+v, %v; want %d bytes skipped", in, err, n)
	}
	in, err = r.readRequest()
	if got, ok := in.req.(*core.AppendEntriesArgs); err != nil || in.id != 3 || !ok || !reflect.DeepEqual(got, small) {
		t.Fatalf("frame 3: %+v, %v; want %+v", in, err, small)
	}
	in, err = r.readRequest()
	if got, ok := in.req.(*core.RequestVoteArgs); err != nil || in.id != 4 || !ok || got.Term != 7 {
		t.Fatalf("frame 4: %+v, %v", in, err)
	}
	if _, err := r.readRequest(); err != io.EOF {
		t.Errorf("after the last frame: %v, want EOF", err)
	}
}

// nopHandler answers every request with success, at once, at no cost.
type nopHandler struct{}

func (nopHandler) Serve(from int, req any, respond func(reply any, err error)) {
	switch a := req.(type) {
	case *core.RequestVoteArgs:
		respond(&core.RequestVoteReply{Term: a.Term, VoteGranted: true}, nil)
	case *core.AppendEntriesArgs:
		respond(&core.AppendEntriesReply{Term: a.Term, Success: true, Index: a.PrevLogIndex + len(a.Entries)}, nil)
	case *core.InstallSnapshotArgs:
		respond(&core.InstallSnapshotReply{Term: a.Term}, nil)
	case *core.ProbeArgs:
		respond(&core.ProbeReply{Empty: true}, nil)
	}
}

// benchPair returns two transports on ephemeral ports, server 1 serving
// nopHandler, and server 0's Peer for server 1, after a first call.
func benchPair(b *testing.B) *Peer {
	lns, peers, err := ListenLocal(0, 1)
	if err != nil {
		b.Fatal(err)
	}
	var trs []*TCP
	for id := range 2 {
		tr, err := New(Config{Insecure: true, ID: id, Peers: peers, Listener: lns[id]})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { tr.Close() })
		tr.Serve(nopHandler{})
		trs = append(trs, tr)
	}
	p, _ := trs[0].Peer(1)
	if !p.Call("Raft.AppendEntries", &core.AppendEntriesArgs{}, new(core.AppendEntriesReply)) {
		b.Fatal("first call failed")
	}
	return p
}

// BenchmarkAppendEntries measures synchronous calls (Call) carrying n
// entries of 100 bytes: one at a time, and from parallel callers.
func BenchmarkAppendEntries(b *testing.B) {
	for _, n := range []int{1, 64} {
		for _, parallel := range []bool{false, true} {
			name := fmt.Sprintf("entries=%d", n)
			if parallel {
				name += "/parallel"
			}
			b.Run(name, func(b *testing.B) {
				p := benchPair(b)
				args := &core.AppendEntriesArgs{Term: 1, LeaderID: 0, PrevLogIndex: 10, Entries: entriesFrom(11, n, 100)}
				call := func() {
					if !p.Call("Raft.AppendEntries", args, new(core.AppendEntriesReply)) {
						b.Error("call failed")
					}
				}
				b.ReportAllocs()
				b.SetBytes(int64(n * 100))
				b.ResetTimer()
				if parallel {
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							call()
						}
					})
					return
				}
				for range b.N {
					call()
				}
			})
		}
	}
}

// BenchmarkSendPipelined measures requests carrying n entries of 100
// bytes sent with Send, up to 64 in flight, as a leader streams to a
// follower.
func BenchmarkSendPipelined(b *testing.B) {
	const window = 64
	for _, n := range []int{1, 64} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			p := benchPair(b)
			args := &core.AppendEntriesArgs{Term: 1, LeaderID: 0, PrevLogIndex: 10, Entries: entriesFrom(11, n, 100)}
			slots := make(chan struct{}, window)
			var failed atomic.Int64
			done := func(reply any, ok bool) {
				if !ok {
					failed.Add(1)
				}
				<-slots
			}
			b.ReportAllocs()
			b.SetBytes(int64(n * 100))
			b.ResetTimer()
			for range b.N {
				slots <- struct{}{}
				p.Send(args, done)
			}
			for range window {
				slots <- struct{}{}
			}
			b.StopTimer()
			if k := failed.Load(); k > 0 {
				b.Errorf("%d of %d Sends failed", k, b.N)
			}
		})
	}
}
