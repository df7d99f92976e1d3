package raft

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Apply returns once the command is applied on this server, with the
// StateMachine's result and where the command sits; elsewhere than on the
// leader it says who leads.
func TestApplyOutcomes(t *testing.T) {
	c := newTCPCluster(t, 1, 2, 3)
	sms := map[int]*listSM{}
	for _, id := range []int{1, 2, 3} {
		c.start(id, newDiskStorage(t))
		sms[id] = c.rafts[id].apply.sm.(*listSM)
	}
	c.leaderCommits("warm-up")
	var leader, follower *Raft
	for _, rf := range c.rafts {
		if _, isLeader := rf.GetState(); isLeader {
			leader = rf
		} else {
			follower = rf
		}
	}
	ctx := context.Background()
	res, err := leader.Apply(ctx, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	cmds := sms[leader.me].applied()
	if got := cmds[len(cmds)-1]; got.Index != res.Index || got.Term != res.Term || string(got.Data) != "x" || res.Value != len(cmds) {
		t.Fatalf("Apply = %+v; the state machine's last command is %+v of %d", res, got, len(cmds))
	}
	_, err = follower.Apply(ctx, []byte("y"))
	var nl *NotLeaderError
	if !errors.As(err, &nl) || !errors.Is(err, ErrNotLeader) || nl.Leader != leader.me || nl.Addr != c.peers[leader.me] {
		t.Fatalf("Apply on a follower: %v, want a NotLeaderError naming %d at %s", err, leader.me, c.peers[leader.me])
	}
	if _, err := leader.Apply(ctx, make([]byte, DefaultMaxCommandBytes+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Apply of a command over the bound: %v, want ErrTooLarge", err)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := leader.Apply(done, []byte("z")); !errors.Is(err, context.Canceled) || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("Apply with a context done before: %v, want context.Canceled alone (nothing proposed)", err)
	}

	// The followers go: the leader cannot commit. The context ends first...
	for _, rf := range []*Raft{c.rafts[1], c.rafts[2], c.rafts[3]} {
		if rf != leader {
			c.stop(rf.me)
		}
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := leader.Apply(short, []byte("lost?")); !errors.Is(err, ErrOutcomeUnknown) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Apply with no majority and a short context: %v, want ErrOutcomeUnknown and DeadlineExceeded", err)
	}
	// ...or the leader steps down, hearing from no majority.
	if _, err := leader.Apply(ctx, []byte("lost too?")); !errors.Is(err, ErrOutcomeUnknown) || !errors.Is(err, ErrLeadershipLost) {
		t.Fatalf("Apply when the leader steps down: %v, want ErrOutcomeUnknown and ErrLeadershipLost", err)
	}
	c.stop(leader.me)
	if _, err := leader.Apply(ctx, []byte("after")); !errors.Is(err, ErrStopped) {
		t.Fatalf("Apply on a stopped server: %v, want ErrStopped", err)
	}
}

// While its command waits for the event loop, Apply still ends with its
// context, or with the server: the command may yet be proposed (or was),
// so the outcome is unknown. (No loop runs here: the command stays queued.)
func TestApplyWhileQueued(t *testing.T) {
	for _, stop := range []string{"context", "server"} {
		rf := &Raft{events: make(chan event, 1), done: make(chan struct{}), apply: &applier{sm: &listSM{}}}
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, err := rf.Apply(ctx, []byte("x"))
			errc <- err
		}()
		waitFor(t, "the command queued", func() bool { return len(rf.events) > 0 })
		want := context.Canceled
		if stop == "context" {
			cancel()
		} else {
			rf.stop(nil)
			want = ErrStopped
		}
		select {
		case err := <-errc:
			if !errors.Is(err, ErrOutcomeUnknown) || !errors.Is(err, want) {
				t.Errorf("%s ended while the command was queued: %v, want ErrOutcomeUnknown and %v", stop, err, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Apply did not return within 10 s of its %s ending", stop)
		}
		cancel()
	}
}
