package kv

// Tests of the table of clients: sequence numbers reused for another
// request, and expiry, which must be the same on every replica.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/raftkit/raft"
)

// fakeLog is a Raft server that leads forever and puts whatever it is
// given in its log; in auto mode it commits every entry at once, in order,
// applying it to its server, else the test applies them with command.
type fakeLog struct {
	more chan struct{} // a token when the log grew

	mu   sync.Mutex
	sm   raft.StateMachine // where auto mode applies the entries
	log  [][]byte
	sent int // entries applied (auto mode)
}

func newFakeLog(t *testing.T, auto bool) *fakeLog {
	f := &fakeLog{more: make(chan struct{}, 1)}
	if auto {
		stop := make(chan struct{})
		done := make(chan struct{})
		t.Cleanup(func() { close(stop); <-done })
		go func() {
			defer close(done)
			for {
				select {
				case <-f.more:
				case <-stop:
					return
				}
				for {
					f.mu.Lock()
					if f.sent == len(f.log) || f.sm == nil {
						f.mu.Unlock()
						break
					}
					f.sent++
					sm, c := f.sm, f.command(f.sent)
					f.mu.Unlock()
					sm.Apply(c)
				}
			}
		}()
	}
	return f
}

// newFakeServer returns a server with opts over f.
func newFakeServer(f *fakeLog, opts ServerOptions) *Server {
	s := NewServer(opts)
	s.Attach(f)
	f.mu.Lock()
	f.sm = s
	f.mu.Unlock()
	f.poke()
	return s
}

func (f *fakeLog) Propose(cmd []byte) (int, int, error) {
	return f.append(slices.Clone(cmd)), 1, nil
}

func (f *fakeLog) GetState() (int, bool) { return 1, true }

// append puts cmd in the log and returns its index.
func (f *fakeLog) append(cmd []byte) int {
	f.mu.Lock()
	f.log = append(f.log, cmd)
	n := len(f.log)
	f.mu.Unlock()
	f.poke()
	return n
}

func (f *fakeLog) poke() {
	select {
	case f.more <- struct{}{}:
	default:
	}
}

// appendOp puts op in the log and returns its index.
func (f *fakeLog) appendOp(op Op) int {
	b, err := op.MarshalBinary()
	if err != nil {
		panic(err) // the tests' ops are all valid
	}
	return f.append(b)
}

// command returns the entry at index i (from 1) as a committed command.
func (f *fakeLog) command(i int) raft.Command {
	return raft.Command{Index: i, Term: 1, Data: f.log[i-1]}
}

// entry returns the Op at index i (from 1).
func (f *fakeLog) entry(i int) Op {
	f.mu.Lock()
	defer f.mu.Unlock()
	var op Op
	if err := op.UnmarshalBinary(f.log[i-1]); err != nil {
		panic(err) // Server.Do proposes only what decodes
	}
	return op
}

// commit applies the entry at index i (from 1) to s.
func (f *fakeLog) commit(s *Server, i int) {
	f.mu.Lock()
	c := f.command(i)
	f.mu.Unlock()
	s.Apply(c)
}

func (f *fakeLog) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.log)
}

// opCommand returns op as the command at index i.
func opCommand(i int, op Op) raft.Command {
	b, err := op.MarshalBinary()
	if err != nil {
		panic(err) // the tests' ops are all valid
	}
	return raft.Command{Index: i, Term: 1, Data: b}
}

// waitFor waits until cond holds, up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSeqReusedConcurrently: two different requests under one client ID
// and seq wait at once; the first in the log takes effect, and the other
// is answered ErrConflict, both when its waiter is woken by the first and
// when it comes again later. Nothing of it is applied.
func TestSeqReusedConcurrently(t *testing.T) {
	f := newFakeLog(t, false)
	s := newFakeServer(f, ServerOptions{})
	defer s.Stop()
	ops := []Op{
		{Kind: Put, Key: "a", Value: "1", ClientID: 5, Seq: 1},
		{Kind: Put, Key: "b", Value: "2", ClientID: 5, Seq: 1},
	}
	type answer struct {
		res Result
		err error
	}
	answers := make([]chan answer, len(ops))
	for i, op := range ops {
		answers[i] = make(chan answer, 1)
		go func() {
			res, err := s.Do(context.Background(), op)
			answers[i] <- answer{res, err}
		}()
	}
	waitFor(t, "both requests proposed", func() bool { return f.len() == 2 })
	f.commit(s, 1)
	first := f.entry(1)
	winner := slices.IndexFunc(ops, func(op Op) bool { return op.Key == first.Key })
	loser := 1 - winner
	if a := <-answers[winner]; a.err != nil || a.res != (Result{}) {
		t.Fatalf("%+v, first in the log: %+v, %v; want applied to an empty store", ops[winner], a.res, a.err)
	}
	if a := <-answers[loser]; !errors.Is(a.err, ErrConflict) {
		t.Fatalf("%+v, second under the same seq: %+v, %v; want ErrConflict", ops[loser], a.res, a.err)
	}
	f.commit(s, 2)
	s.mu.Lock()
	data := fmt.Sprint(s.data)
	s.mu.Unlock()
	if want := fmt.Sprintf("map[%s:%s]", ops[winner].Key, ops[winner].Value); data != want {
		t.Fatalf("store %s; want %s: only the first request under the seq takes effect", data, want)
	}
	// Again, from the table: the retry gets its answer, the other one
	// ErrConflict.
	if res, err := s.Do(context.Background(), ops[winner]); err != nil || res != (Result{}) {
		t.Fatalf("retry of %+v: %+v, %v; want its first answer", ops[winner], res, err)
	}
	if _, err := s.Do(context.Background(), ops[loser]); !errors.Is(err, ErrConflict) {
		t.Fatalf("%+v again: %v; want ErrConflict", ops[loser], err)
	}
}

// dump returns the table of clients, least recently active first, and
// the store.
func (s *Server) dump() (string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b []byte
	for e := s.sessions.lru.Front(); e != nil; e = e.Next() {
		x := e.Value.(*session)
		b = fmt.Appendf(b, "%d:%d@%d ", x.client, x.seq, x.lastActive)
	}
	b = fmt.Appendf(b, "| now %d | %v", s.sessions.now, s.data)
	return string(b), s.sessions.len()
}

// TestSessionsExpireSameClients: two replicas apply the same log, with
// time stamps that mostly advance but sometimes go back, and clients that
// come and go; each forgets idle clients and those beyond the bound, and
// at every point both hold the same table and store, whatever their own
// clocks say.
func TestSessionsExpireSameClients(t *testing.T) {
	const ttl, maxClients = time.Second, 40
	var servers []*Server
	for i := range 2 {
		skew := time.Duration(i) * time.Hour // the replicas' clocks disagree
		s := newFakeServer(&fakeLog{}, ServerOptions{ClientTTL: ttl, MaxClients: maxClients,
			Now: func() time.Time { return time.Now().Add(skew) }})
		defer s.Stop()
		servers = append(servers, s)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	seqs := map[int64]int64{}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	stamp := base
	maxSeen := 0
	for i := 1; i <= 5000; i++ {
		// Clients 1-100 mostly, now and then a burst of new ones.
		client := 1 + rng.Int64N(100)
		if rng.IntN(50) == 0 {
			client = 1000 + int64(i)
		}
		seqs[client]++
		stamp += int64(rng.IntN(30)-5) * int64(time.Millisecond) // 25 ms on average, sometimes back
		if rng.IntN(500) == 0 {
			stamp += int64(3 * ttl) // a lull: everyone idle
		}
		op := Op{Kind: Append, Key: fmt.Sprintf("k%d", client%7), Value: fmt.Sprintf("%d.%d;", client, seqs[client]),
			ClientID: client, Seq: seqs[client], Time: stamp}
		for _, s := range servers {
			s.Apply(opCommand(i, op))
		}
		if i%50 == 0 {
			a, n := servers[0].dump()
			b, _ := servers[1].dump()
			if a != b {
				t.Fatalf("after entry %d, the replicas differ:\n%s\n%s", i, a, b)
			}
			if n > maxClients {
				t.Fatalf("after entry %d, %d clients in the table; the bound is %d", i, n, maxClients)
			}
			maxSeen = max(maxSeen, n)
			// No client idle longer than the TTL stays.
			s := servers[0]
			s.mu.Lock()
			for e := s.sessions.lru.Front(); e != nil; e = e.Next() {
				if x := e.Value.(*session); s.sessions.now-x.lastActive > int64(ttl) {
					t.Errorf("after entry %d, client %d idle for %v is still in the table", i, x.client, time.Duration(s.sessions.now-x.lastActive))
				}
			}
			s.mu.Unlock()
		}
	}
	if maxSeen != maxClients {
		t.Fatalf("the table never filled up (at most %d clients): the bound was not exercised", maxSeen)
	}
}

// TestSessionsBounded: 100,000 clients, one request each, in no time: the
// table keeps the DefaultMaxClients most recent. A client evicted meanwhile
// that sends its next request is told ErrClientExpired, and that request
// does not take effect; its first request, retried late, takes effect again
// (as documented).
func TestSessionsBounded(t *testing.T) {
	f := newFakeLog(t, true)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := newFakeServer(f, ServerOptions{Now: func() time.Time { return now }})
	defer s.Stop()
	first := Op{Kind: Append, Key: "k", Value: "x", ClientID: 1, Seq: 1}
	if _, err := s.Do(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	const clients = 100000
	for c := int64(2); c <= clients; c++ {
		f.appendOp(Op{Kind: Put, Key: "p", Value: "v", ClientID: c, Seq: 1, Time: now.UnixNano()})
	}
	waitFor(t, "every request applied", func() bool { return s.Applied() == clients })
	s.mu.Lock()
	n := s.sessions.len()
	_, oldest := s.sessions.byID[clients-DefaultMaxClients+1]
	_, evicted := s.sessions.byID[clients-DefaultMaxClients]
	s.mu.Unlock()
	if n != DefaultMaxClients || !oldest || evicted {
		t.Fatalf("%d clients in the table, kept the %d-th: %v, the one before: %v; want the last %d", n, clients-DefaultMaxClients+1, oldest, !evicted, DefaultMaxClients)
	}
	next := Op{Kind: Append, Key: "k", Value: "y", ClientID: 1, Seq: 2}
	if _, err := s.Do(context.Background(), next); !errors.Is(err, ErrClientExpired) {
		t.Fatalf("next request of an evicted client: %v; want ErrClientExpired", err)
	}
	if res, err := s.Do(context.Background(), first); err != nil || res != (Result{Value: "x", Found: true}) {
		t.Fatalf("late retry of an evicted client's first request: %+v, %v; want it applied again, after the first time", res, err)
	}
}

// TestExpiredClientLateRequest: a client idle for longer than the TTL (in
// the log's time: another client's request carries the clock forward) is
// forgotten; its next request is refused with ErrClientExpired, and a
// Clerk starts over as a new client by itself.
func TestExpiredClientLateRequest(t *testing.T) {
	f := newFakeLog(t, true)
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s := newFakeServer(f, ServerOptions{ClientTTL: time.Minute, Now: clock})
	defer s.Stop()
	ctx := context.Background()
	ck := NewClerk([]Conn{directConn{s}})
	if err := ck.Put(ctx, "c", "1"); err != nil {
		t.Fatal(err)
	}
	id := ck.ID()
	if _, err := s.Do(ctx, Op{Kind: Put, Key: "k", Value: "a", ClientID: 7, Seq: 1}); err != nil {
		t.Fatal(err)
	}
	// An hour later, another client's request.
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	if _, err := s.Do(ctx, Op{Kind: Put, Key: "x", Value: "x", ClientID: 8, Seq: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Do(ctx, Op{Kind: Put, Key: "k", Value: "b", ClientID: 7, Seq: 2}); !errors.Is(err, ErrClientExpired) {
		t.Fatalf("request of an expired client: %v; want ErrClientExpired", err)
	}
	if err := ck.Put(ctx, "c", "2"); err != nil {
		t.Fatalf("the Clerk's next request after its client expired: %v", err)
	}
	if ck.ID() == id {
		t.Fatalf("the Clerk kept client ID %d, which the store forgot", id)
	}
	if v, _, err := ck.Get(ctx, "c"); err != nil || v != "2" {
		t.Fatalf("c = %q, %v; want 2", v, err)
	}
	if v, _, err := ck.Get(ctx, "k"); err != nil || v != "a" {
		t.Fatalf("k = %q, %v; want a: the refused request took effect", v, err)
	}
}

// directConn calls a Server in the same process.
type directConn struct{ s *Server }

func (d directConn) Do(ctx context.Context, op Op) (Result, int, error) {
	res, err := d.s.Do(ctx, op)
	return res, -1, err
}

// lossyConn passes requests to a Conn, but loses every try of the first
// request before it is sent, and the answer to the first try of the
// second after it took effect.
type lossyConn struct {
	inner Conn
	seen  []Op // the requests, in order
	tries int  // of the latest
}

func (l *lossyConn) Do(ctx context.Context, op Op) (Result, int, error) {
	if len(l.seen) == 0 || l.seen[len(l.seen)-1] != op {
		l.seen, l.tries = append(l.seen, op), 0
	}
	l.tries++
	switch {
	case len(l.seen) == 1:
		return Result{}, -1, errLost
	case len(l.seen) == 2 && l.tries == 1:
		l.inner.Do(ctx, op)
		return Result{}, -1, errLost
	}
	return l.inner.Do(ctx, op)
}

// TestClerkNewIDUntilAnswered: a Clerk whose first request was never
// answered (nor applied) does not send its next one as Seq 2 of a client
// the servers never learnt, which they would refuse (ErrClientExpired);
// it starts over under a new ID, so that request gets its answer even
// when an earlier try of it was lost.
func TestClerkNewIDUntilAnswered(t *testing.T) {
	f := newFakeLog(t, true)
	s := newFakeServer(f, ServerOptions{})
	defer s.Stop()
	ck := NewClerk([]Conn{&lossyConn{inner: directConn{s}}})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	err := ck.Put(ctx, "a", "1")
	cancel()
	if !errors.Is(err, ErrUnknown) {
		t.Fatalf("first put, lost: %v; want ErrUnknown", err)
	}
	first := ck.ID()
	if err := ck.Put(context.Background(), "b", "2"); err != nil {
		t.Fatalf("second put, its first answer lost: %v", err)
	}
	if ck.ID() == first {
		t.Fatalf("the Clerk kept client ID %d, under which nothing was answered", first)
	}
	if err := ck.Put(context.Background(), "c", "3"); err != nil {
		t.Fatalf("third put: %v", err)
	}
	if id := ck.ID(); f.entry(f.len()).ClientID != id || f.entry(f.len()).Seq != 2 {
		t.Fatalf("third put went as %+v; want seq 2 of client %d, known by then", f.entry(f.len()), id)
	}
}

// TestSessionsLegacyEntries: entries from before requests were stamped
// (Time 0) replay as they were applied then: a client's first applied
// request may have any Seq, and no client is evicted, so a late duplicate
// is still recognised; the first stamped entry brings the table back
// within its bound.
func TestSessionsLegacyEntries(t *testing.T) {
	s := newFakeServer(&fakeLog{}, ServerOptions{MaxClients: 10})
	defer s.Stop()
	ops := []Op{{Kind: Append, Key: "k", Value: "a", ClientID: 3, Seq: 2}}
	for c := int64(100); c < 120; c++ {
		ops = append(ops, Op{Kind: Put, Key: "p", Value: "v", ClientID: c, Seq: 1})
	}
	ops = append(ops, ops[0]) // a retry, in the log twice
	for i, op := range ops {
		s.Apply(opCommand(i+1, op))
	}
	if _, n := s.dump(); n != 21 {
		t.Fatalf("%d clients after legacy entries; want all 21", n)
	}
	s.mu.Lock()
	k := s.data["k"]
	s.mu.Unlock()
	if k != "a" {
		t.Fatalf("k = %q; want %q: the first legacy request applied once", k, "a")
	}
	s.Apply(opCommand(len(ops)+1, Op{Kind: Put, Key: "q", Value: "v", ClientID: 200, Seq: 1, Time: 1}))
	if _, n := s.dump(); n != 10 {
		t.Fatalf("%d clients after a stamped entry; want the bound, 10", n)
	}
}
