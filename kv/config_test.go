package kv_test

//
// The kv tester: a cluster of kv servers, each a lab.Make peer plus a
// kv.Server plus a kv.RPCService, on a simulated labrpc network, and clients
// (kv.Clerk over kv.LabConn ends) that can be cut off from servers like the
// servers from each other. Modeled on the MIT 6.5840 kvraft tester.
//
// Server i is the labrpc server named i, offering the services "Raft" and
// "RPCService". Its Raft ends are named per instance, so that a crashed
// instance can no longer send; clients' ends connect to the server name, so
// they reach whichever instance is running.
//
// Between Raft and the kv server sits the tester's forwarder, which checks
// that every instance applies indexes 1, 2, 3, ... in order and that no two
// servers (nor two instances of one server) ever apply different commands at
// the same index; it also records the log (what was applied at each index)
// and when each client request was first applied anywhere.
//

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/raftkit/raft/kv"
	"github.com/raftkit/raft/lab"
	"github.com/raftkit/raft/labrpc"
)

// opID names a client request.
type opID struct {
	client, seq int64
}

type config struct {
	t            testing.TB
	net          *labrpc.Network
	n            int
	maxRaftState int // the servers' kv.ServerOptions.MaxRaftState: 0, no snapshots

	mu       sync.Mutex
	rafts    []*lab.Raft // nil while crashed
	servers  []*kv.Server
	stops    []chan struct{}  // closed to stop an instance's forwarder
	saved    []*lab.Persister // each server's persisted state (the current instance's)
	endnames [][]string       // endnames[i][j]: server i's current Raft end to server j
	gen      int              // makes end names unique across restarts
	link     [][]bool         // link[i][j]: servers i and j can talk
	clients  []*client

	// what the forwarders saw
	log         map[int]kv.Op      // index -> the command applied there
	firstApply  map[opID]time.Time // when a request was first applied, at any index, by any server
	lastApplied []int              // per server: the last index its current instance applied
	installs    int                // snapshots handed to a kv server on its apply channel
	errs        []string           // safety violations found by the forwarders

	cleanupOnce sync.Once
}

// makeConfig starts n servers, all connected, on a reliable or unreliable
// network, without snapshots. Cleanup is registered with t.
func makeConfig(t testing.TB, n int, unreliable bool) *config {
	return makeConfigSnap(t, n, unreliable, 0)
}

// makeConfigSnap is makeConfig with servers that snapshot once their Raft
// state reaches maxRaftState bytes (0: never).
func makeConfigSnap(t testing.TB, n int, unreliable bool, maxRaftState int) *config {
	cfg := &config{
		t:            t,
		net:          labrpc.MakeNetwork(),
		n:            n,
		maxRaftState: maxRaftState,
		rafts:        make([]*lab.Raft, n),
		servers:      make([]*kv.Server, n),
		stops:        make([]chan struct{}, n),
		saved:        make([]*lab.Persister, n),
		endnames:     make([][]string, n),
		link:         make([][]bool, n),
		log:          map[int]kv.Op{},
		firstApply:   map[opID]time.Time{},
		lastApplied:  make([]int, n),
	}
	t.Cleanup(cfg.cleanup)
	cfg.net.Reliable(!unreliable)
	for i := range n {
		cfg.link[i] = make([]bool, n)
		for j := range n {
			cfg.link[i][j] = true
		}
	}
	for i := range n {
		cfg.start(i)
	}
	return cfg
}

// start starts a new instance of server i from its saved state.
func (cfg *config) start(i int) {
	cfg.mu.Lock()
	if cfg.rafts[i] != nil {
		cfg.mu.Unlock()
		panic(fmt.Sprintf("start(%d): server is running", i))
	}
	cfg.gen++
	names := make([]string, cfg.n)
	ends := make([]*labrpc.ClientEnd, cfg.n)
	for j := range cfg.n {
		names[j] = fmt.Sprintf("raft-%d-to-%d-gen%d", i, j, cfg.gen)
		ends[j] = cfg.net.MakeEnd(names[j])
		cfg.net.Connect(names[j], j)
		cfg.net.Enable(names[j], cfg.link[i][j])
	}
	cfg.endnames[i] = names
	if cfg.saved[i] == nil {
		cfg.saved[i] = lab.MakePersister()
	}
	ps := cfg.saved[i]
	cfg.mu.Unlock()

	raw := make(chan lab.ApplyMsg)
	toKV := make(chan lab.ApplyMsg)
	stop := make(chan struct{})
	rf := lab.Make(ends, i, ps, raw)
	srv := kv.NewLabServer(rf, toKV, ps, kv.ServerOptions{MaxRaftState: cfg.maxRaftState})
	// The server started from the persister's snapshot, if any: Raft
	// applies from the index after it.
	from := srv.Applied()
	cfg.mu.Lock()
	cfg.lastApplied[i] = from
	cfg.mu.Unlock()
	go cfg.forward(i, raw, toKV, stop, from)

	ls := labrpc.MakeServer()
	ls.AddService(labrpc.MakeService(rf))
	ls.AddService(labrpc.MakeService(&kv.RPCService{S: srv}))

	cfg.mu.Lock()
	cfg.rafts[i], cfg.servers[i], cfg.stops[i] = rf, srv, stop
	cfg.net.AddServer(i, ls)
	cfg.mu.Unlock()
}

// crash stops server i's instance, keeping what it persisted: its ends are
// disabled and it is removed from the network first, so no reply of the
// dying instance gets out; then Raft is killed and the kv server stopped,
// and the persisted state is copied so that the old instance cannot change
// what the next one starts from.
func (cfg *config) crash(i int) {
	cfg.mu.Lock()
	rf, srv, stop := cfg.rafts[i], cfg.servers[i], cfg.stops[i]
	if rf == nil {
		cfg.mu.Unlock()
		return
	}
	for _, e := range cfg.endnames[i] {
		cfg.net.Enable(e, false)
	}
	cfg.endnames[i] = nil
	cfg.net.DeleteServer(i)
	cfg.rafts[i], cfg.servers[i], cfg.stops[i] = nil, nil, nil
	cfg.mu.Unlock()

	rf.Kill()
	srv.Stop()
	close(stop)

	cfg.mu.Lock()
	cfg.saved[i] = cfg.saved[i].Copy()
	cfg.mu.Unlock()
}

// restart crashes server i (if it runs) and starts it again.
func (cfg *config) restart(i int) {
	cfg.crash(i)
	cfg.start(i)
}

func (cfg *config) alive(i int) bool {
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	return cfg.rafts[i] != nil
}

// forward passes what one Raft instance applies on to its kv server,
// checking it on the way; the instance's kv server started with the log
// through index last applied.
func (cfg *config) forward(i int, raw <-chan lab.ApplyMsg, toKV chan<- lab.ApplyMsg, stop <-chan struct{}, last int) {
	for {
		var m lab.ApplyMsg
		select {
		case m = <-raw:
		case <-stop:
			return
		}
		if m.SnapshotValid {
			cfg.mu.Lock()
			if m.SnapshotIndex <= last {
				cfg.errorf("server %d was handed a snapshot through index %d after applying index %d", i, m.SnapshotIndex, last)
			}
			cfg.installs++
			if cfg.stops[i] == stop {
				cfg.lastApplied[i] = m.SnapshotIndex
			}
			cfg.mu.Unlock()
			last = m.SnapshotIndex
		}
		if m.CommandValid {
			var op kv.Op
			data, ok := m.Command.([]byte)
			var err error
			if ok {
				err = op.UnmarshalBinary(data)
			}
			cfg.mu.Lock()
			switch {
			case !ok:
				cfg.errorf("server %d applied a %T at index %d, not an encoded kv.Op", i, m.Command, m.CommandIndex)
			case err != nil:
				cfg.errorf("server %d applied an undecodable command at index %d: %v", i, m.CommandIndex, err)
			case m.CommandIndex != last+1:
				cfg.errorf("server %d applied index %d after %d", i, m.CommandIndex, last)
			}
			if prev, seen := cfg.log[m.CommandIndex]; !seen {
				cfg.log[m.CommandIndex] = op
			} else if prev != op {
				cfg.errorf("server %d applied %+v at index %d, where %+v was applied before", i, op, m.CommandIndex, prev)
			}
			id := opID{op.ClientID, op.Seq}
			if _, seen := cfg.firstApply[id]; !seen {
				cfg.firstApply[id] = time.Now()
			}
			if cfg.stops[i] == stop {
				cfg.lastApplied[i] = m.CommandIndex
			}
			cfg.mu.Unlock()
			last = m.CommandIndex
		}
		select {
		case toKV <- m:
		case <-stop:
			return
		}
	}
}

// errorf records a safety violation; cfg.mu is held.
func (cfg *config) errorf(format string, args ...any) {
	if len(cfg.errs) < 10 {
		cfg.errs = append(cfg.errs, fmt.Sprintf(format, args...))
	}
}

// checkErrs fails the test if a forwarder found a violation.
func (cfg *config) checkErrs() {
	cfg.t.Helper()
	cfg.mu.Lock()
	errs := slices.Clone(cfg.errs)
	cfg.errs = nil
	cfg.mu.Unlock()
	for _, e := range errs {
		cfg.t.Errorf("apply check: %s", e)
	}
	if len(errs) > 0 {
		cfg.t.FailNow()
	}
}

// cleanup stops every server and the network, and reports violations not
// yet reported. It runs at the end of every test.
func (cfg *config) cleanup() {
	cfg.cleanupOnce.Do(func() {
		for i := range cfg.n {
			cfg.crash(i)
		}
		cfg.net.Cleanup()
		cfg.mu.Lock()
		errs := cfg.errs
		cfg.mu.Unlock()
		for _, e := range errs {
			cfg.t.Errorf("apply check: %s", e)
		}
	})
}

// setUnreliable makes the network delay and drop requests and replies.
func (cfg *config) setUnreliable(yes bool) {
	cfg.net.Reliable(!yes)
}

// partition cuts the servers into the given groups: servers talk only to
// the servers of their own group; a server in no group talks to nobody.
// Clients are not affected (see connectClient).
func (cfg *config) partition(groups ...[]int) {
	group := make([]int, cfg.n)
	for i := range group {
		group[i] = -1 - i // alone
	}
	for g, members := range groups {
		for _, i := range members {
			group[i] = g
		}
	}
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	for i := range cfg.n {
		for j := range cfg.n {
			cfg.link[i][j] = i == j || group[i] == group[j]
		}
	}
	cfg.applyLinks()
}

// applyLinks enables exactly the Raft ends of linked servers; cfg.mu is held.
func (cfg *config) applyLinks() {
	for i := range cfg.n {
		if cfg.endnames[i] == nil {
			continue // crashed
		}
		for j := range cfg.n {
			cfg.net.Enable(cfg.endnames[i][j], cfg.link[i][j])
		}
	}
}

// heal restarts crashed servers, reconnects all servers and all clients to
// all servers, and makes the network reliable.
func (cfg *config) heal() {
	for i := range cfg.n {
		if !cfg.alive(i) {
			cfg.start(i)
		}
	}
	cfg.partition(cfg.all())
	cfg.mu.Lock()
	clients := slices.Clone(cfg.clients)
	cfg.mu.Unlock()
	for _, c := range clients {
		cfg.connectClient(c, cfg.all()...)
	}
	cfg.setUnreliable(false)
}

// all returns every server's index.
func (cfg *config) all() []int {
	s := make([]int, cfg.n)
	for i := range s {
		s[i] = i
	}
	return s
}

// leader returns the server that claims leadership in the highest term
// among the running servers in among (all if nil), or -1.
func (cfg *config) leader(among ...int) int {
	if among == nil {
		among = cfg.all()
	}
	best, bestTerm := -1, -1
	for _, i := range among {
		cfg.mu.Lock()
		rf := cfg.rafts[i]
		cfg.mu.Unlock()
		if rf == nil {
			continue
		}
		if term, isLeader := rf.GetState(); isLeader && term > bestTerm {
			best, bestTerm = i, term
		}
	}
	return best
}

// waitLeader waits up to timeout for a leader among the given servers.
func (cfg *config) waitLeader(timeout time.Duration, among ...int) int {
	cfg.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if l := cfg.leader(among...); l >= 0 {
			return l
		}
		if time.Now().After(deadline) {
			cfg.t.Fatalf("no leader among %v after %v", among, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitNotLeader waits up to timeout until server i no longer claims to lead.
func (cfg *config) waitNotLeader(timeout time.Duration, i int) {
	cfg.t.Helper()
	deadline := time.Now().Add(timeout)
	for cfg.leader(i) == i {
		if time.Now().After(deadline) {
			cfg.t.Fatalf("server %d still leads after %v", i, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logCount returns how many log entries (applied so far by any server)
// carry the request id.
func (cfg *config) logCount(id opID) int {
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	n := 0
	for _, op := range cfg.log {
		if op.ClientID == id.client && op.Seq == id.seq {
			n++
		}
	}
	return n
}

// appliedAt returns when the request was first applied, if it was.
func (cfg *config) appliedAt(id opID) (time.Time, bool) {
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	at, ok := cfg.firstApply[id]
	return at, ok
}

// A client is a kv.Clerk whose ends the tester controls. Every attempt the
// Clerk makes at a server is recorded.
type client struct {
	id    int // 0, 1, 2, ... in order of creation
	ck    *kv.Clerk
	ends  []*labrpc.ClientEnd
	names []string

	mu       sync.Mutex
	attempts []attempt
}

// An attempt is one request of the Clerk to one server.
type attempt struct {
	server     int
	seq        int64
	start, end time.Time
	err        error
}

// recConn is a kv.LabConn that records the Clerk's attempts.
type recConn struct {
	c      *client
	server int
	inner  kv.Conn
}

func (r *recConn) Do(ctx context.Context, op kv.Op) (kv.Result, int, error) {
	start := time.Now()
	res, hint, err := r.inner.Do(ctx, op)
	r.c.mu.Lock()
	if len(r.c.attempts) < 100000 {
		r.c.attempts = append(r.c.attempts, attempt{r.server, op.Seq, start, time.Now(), err})
	}
	r.c.mu.Unlock()
	return res, hint, err
}

// makeClient returns a new client connected to the servers in to (all of
// them if none is given).
func (cfg *config) makeClient(to ...int) *client {
	cfg.mu.Lock()
	c := &client{id: len(cfg.clients)}
	cfg.clients = append(cfg.clients, c)
	cfg.mu.Unlock()
	conns := make([]kv.Conn, cfg.n)
	for j := range cfg.n {
		name := fmt.Sprintf("client-%d-to-%d", c.id, j)
		end := cfg.net.MakeEnd(name)
		cfg.net.Connect(name, j)
		c.ends = append(c.ends, end)
		c.names = append(c.names, name)
		conns[j] = &recConn{c: c, server: j, inner: kv.LabConn{End: end}}
	}
	c.ck = kv.NewClerk(conns)
	if len(to) == 0 {
		to = cfg.all()
	}
	cfg.connectClient(c, to...)
	return c
}

// connectClient lets c reach exactly the servers in to.
func (cfg *config) connectClient(c *client, to ...int) {
	for j, name := range c.names {
		cfg.net.Enable(name, slices.Contains(to, j))
	}
}

// attemptsFor returns the client's recorded attempts for request seq.
func (c *client) attemptsFor(seq int64) []attempt {
	c.mu.Lock()
	defer c.mu.Unlock()
	var as []attempt
	for _, a := range c.attempts {
		if a.seq == seq {
			as = append(as, a)
		}
	}
	return as
}

// opTimeout bounds the helpers' operations, which must succeed.
const opTimeout = 10 * time.Second

// do runs op through the client's Clerk and fails the test on an error.
func (c *client) do(t testing.TB, op kv.Op) kv.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	res, err := c.ck.Do(ctx, op)
	if err != nil {
		t.Fatalf("client %d: %s %q: %v", c.id, op.Kind, op.Key, err)
	}
	return res
}

// get, put and append go through the Clerk's own methods.
func (c *client) get(t testing.TB, key string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	v, ok, err := c.ck.Get(ctx, key)
	if err != nil {
		t.Fatalf("client %d: get %q: %v", c.id, key, err)
	}
	return v, ok
}

func (c *client) put(t testing.TB, key, value string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := c.ck.Put(ctx, key, value); err != nil {
		t.Fatalf("client %d: put %q: %v", c.id, key, err)
	}
}

func (c *client) append(t testing.TB, key, value string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := c.ck.Append(ctx, key, value); err != nil {
		t.Fatalf("client %d: append %q: %v", c.id, key, err)
	}
}

func (c *client) delete(t testing.TB, key string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := c.ck.Delete(ctx, key); err != nil {
		t.Fatalf("client %d: delete %q: %v", c.id, key, err)
	}
}

// rpc sends one request straight to server i's RPCService over the
// client's end, bypassing the Clerk; ok is false if it or its reply was
// lost.
func (c *client) rpc(i int, op kv.Op) (kv.OpReply, bool) {
	var reply kv.OpReply
	ok := c.ends[i].Call("RPCService.Do", &kv.OpArgs{Op: op}, &reply)
	return reply, ok
}

// isAny reports whether err is any of targets.
func isAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// checkReplicasAgree waits until every running server has applied as far
// as the furthest one, then checks that they hold the same store and
// table of clients, whether they got there by applying the log or from
// snapshots.
func (cfg *config) checkReplicasAgree() {
	cfg.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		cfg.mu.Lock()
		servers := slices.Clone(cfg.servers)
		cfg.mu.Unlock()
		lo, hi := -1, -1
		for _, s := range servers {
			if s == nil {
				continue
			}
			a := s.Applied()
			if lo < 0 || a < lo {
				lo = a
			}
			hi = max(hi, a)
		}
		if lo == hi {
			var first string
			for i, s := range servers {
				if s == nil {
					continue
				}
				st := s.State()
				if first == "" {
					first = st
				} else if st != first {
					cfg.t.Fatalf("server %d, having applied through %d, holds\n%.2000s\nwhile another holds\n%.2000s", i, hi, st, first)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			cfg.t.Fatalf("the servers applied through indexes from %d to %d, still 20 s after the last request", lo, hi)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// snapshotStats returns the number of servers whose persister holds a
// snapshot, the largest Raft state a persister holds, and the number of
// snapshots handed to kv servers by Raft.
func (cfg *config) snapshotStats() (withSnapshot, maxState, installs int) {
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	for _, ps := range cfg.saved {
		if ps == nil {
			continue
		}
		if ps.SnapshotSize() > 0 {
			withSnapshot++
		}
		maxState = max(maxState, ps.RaftStateSize())
	}
	return withSnapshot, maxState, cfg.installs
}
