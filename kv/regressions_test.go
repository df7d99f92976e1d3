package kv_test

// Regression tests for bugs found in package kv (each failed before its fix).

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/kv"
)

// TestRegressionClerkNotDone: every server answers ErrWrongLeader (none can be
// elected) until the context ends, so no server accepted the request and
// Clerk.Do should return ErrNotDone.
//
// Bug: when the context ends during the pause between rounds (which is
// nearly always, since a round takes microseconds and the pause up to
// MaxBackoff), Do does not look at the context after the pause: it starts
// another round with the dead context, LabConn.Do returns ctx.Err() for it
// (after sending the request anyway), and the Clerk counts that error as
// "maybe in a log". So the answer is ErrUnknown, and a request goes out
// after the context ended. Checking ctx.Err() right after the pause (before
// the next round) fixes both.
func TestRegressionClerkNotDone(t *testing.T) {
	cfg := makeConfig(t, 3, false)
	c := cfg.makeClient()
	c.put(t, "k", "old")
	l := cfg.waitLeader(electionWait)
	cfg.partition() // every server alone: no leader can be elected
	cfg.waitNotLeader(electionWait, l)

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	deadline, _ := ctx.Deadline()
	err := c.ck.Put(ctx, "k", "new")
	late := 0
	for _, a := range c.attemptsFor(lastAttempt(c).seq) {
		if !a.start.Before(deadline) {
			late++
		}
	}
	if late > 0 {
		t.Errorf("the Clerk sent %d attempts after its context had ended", late)
	}
	// The deadline may come while an attempt is in flight (the machine is
	// loaded): its answer is then never seen, and ErrUnknown is the honest
	// outcome. Otherwise every attempt was refused: ErrNotDone.
	as := c.attemptsFor(lastAttempt(c).seq)
	last := as[len(as)-1]
	inFlight := errors.Is(last.err, context.DeadlineExceeded) && last.start.Before(deadline)
	for _, a := range as[:len(as)-1] {
		if !errors.Is(a.err, kv.ErrWrongLeader) {
			t.Errorf("an attempt at server %d: %v; want ErrWrongLeader", a.server, a.err)
		}
	}
	switch {
	case !errors.Is(err, context.DeadlineExceeded):
		t.Errorf("put while every server answers ErrWrongLeader: %v; want an error wrapping the context's", err)
	case inFlight && !errors.Is(err, kv.ErrUnknown) && !errors.Is(err, kv.ErrNotDone):
		t.Errorf("put whose last attempt was cut by the deadline: %v; want ErrUnknown or ErrNotDone", err)
	case !inFlight && !errors.Is(err, kv.ErrNotDone):
		t.Errorf("put while every server answers ErrWrongLeader: %v; want ErrNotDone wrapping the context's error", err)
	}
	cfg.heal()
	if got, _ := c.get(t, "k"); got != "old" {
		t.Fatalf("k = %q after a put that no server accepted, want %q", got, "old")
	}
}

// fakeRaft is a Raft peer that is the leader and appends whatever it is
// given, and never commits anything by itself.
type fakeRaft struct {
	mu      sync.Mutex
	base    int // entries before the log
	log     [][]byte
	started chan struct{} // closed at the first Propose
}

func (f *fakeRaft) Propose(cmd []byte) (int, int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, slices.Clone(cmd))
	if len(f.log) == 1 {
		close(f.started)
	}
	return f.base + len(f.log), 1, nil
}

func (f *fakeRaft) GetState() (int, bool) { return 1, true }

// directConn calls a Server in the same process.
type directConn struct{ s *kv.Server }

func (d directConn) Do(ctx context.Context, op kv.Op) (kv.Result, int, error) {
	res, err := d.s.Do(ctx, op)
	return res, -1, err
}

// TestRegressionStoppedAfterStart: Server.Do answers ErrStopped to a request that
// it has already put in the Raft log when the server is stopped while the
// request waits; the Clerk takes ErrStopped as "definitely not started
// there" and, if nothing else happens before its context ends, answers
// ErrNotDone, though the entry can still be committed by the rest of the
// cluster and applied. (Over labrpc the tester hides this: a crashed
// server is removed from the network before it is stopped, so its answer
// is lost. Any transport that delivers the answer of a server shutting
// down shows it.) Do should answer ErrStopped only before Start, and an
// error the Clerk counts as "maybe" (ErrLeadershipLost, say) after it.
func TestRegressionStoppedAfterStart(t *testing.T) {
	f := &fakeRaft{started: make(chan struct{})}
	s := kv.NewServer(kv.ServerOptions{})
	s.Attach(f)
	ck := kv.NewClerk([]kv.Conn{directConn{s}})
	go func() {
		<-f.started
		s.Stop() // e.g. the server shuts down
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := ck.Put(ctx, "k", "v")

	// The entry is in the leader's log; say the cluster commits it: a
	// replica applies it.
	f.mu.Lock()
	put := f.log[0]
	f.mu.Unlock()
	rf := &fakeRaft{base: 1, started: make(chan struct{})}
	replica := kv.NewServer(kv.ServerOptions{})
	replica.Attach(rf)
	defer replica.Stop()
	replica.Apply(raft.Command{Index: 1, Term: 1, Data: put})
	type answer struct {
		res kv.Result
		err error
	}
	got := make(chan answer, 1)
	go func() {
		res, err := replica.Do(context.Background(), kv.Op{Kind: kv.Get, Key: "k", ClientID: 1, Seq: 1})
		got <- answer{res, err}
	}()
	<-rf.started
	rf.mu.Lock()
	replica.Apply(raft.Command{Index: 2, Term: 1, Data: rf.log[0]})
	rf.mu.Unlock()
	a := <-got
	if want := (kv.Result{Value: "v", Found: true}); a.err != nil || a.res != want {
		t.Fatalf("get at the replica that applied the put: %+v, %v; want %+v", a.res, a.err, want)
	}
	if errors.Is(err, kv.ErrNotDone) {
		t.Fatalf("put: %v, though its entry was in the log and, once committed, gives k = %q", err, a.res.Value)
	}
}

// TestRegressionRetryAfterUnknown: kv.ErrUnknown once promised that a retry
// with the same Clerk would not apply twice, but every Clerk.Do takes a new
// sequence number. Clerk.Retry now resends the request itself. Here the
// leader L of five servers puts an Append in its log and on F1 only, and
// the Clerk gives up (ErrUnknown). Then F1, F2 and F3 are connected: only
// F1 can win, and it commits the first copy along with the retry; the
// token must be in the value once.
func TestRegressionRetryAfterUnknown(t *testing.T) {
	cfg, c, l, f1, f2, f3, f4 := leaderWithOneFollower(t)
	cfg.connectClient(c, l)

	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if err := c.ck.Append(ctx, "k", "tok;"); !errors.Is(err, kv.ErrUnknown) {
		t.Fatalf("append at a leader without a majority: %v; want ErrUnknown", err)
	}

	cfg.partition([]int{f1, f2, f3}, []int{l}, []int{f4})
	cfg.connectClient(c, cfg.all()...)
	if _, err := c.ck.Retry(context.Background()); err != nil { // the same request again
		t.Fatalf("retry: %v", err)
	}
	cfg.heal()
	got, _ := c.get(t, "k")
	if n := strings.Count(got, "tok;"); n != 1 {
		t.Fatalf("after an append with an unknown outcome and its retry, k = %q: the token is there %d times", got, n)
	}
}
