package raft

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/raftkit/raft/transport"
)

// startMember starts server id of c knowing only the addresses in peers,
// founding the cluster of peers, or joining an existing one. Snapshots
// come every 2 KiB of commands, so that a server that joins late gets
// one.
func (c *tcpCluster) startMember(id int, peers map[int]string, join bool) *Raft {
	c.t.Helper()
	c.logs[id] = &syncBuf{}
	tr, err := transport.New(transport.Config{Insecure: true, ID: id, Peers: peers, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), DialBackoffMax: 100 * time.Millisecond})
	if err != nil {
		c.t.Fatal(err)
	}
	c.sms[id] = &listSM{}
	rf, err := New(Config{
		ID: id, Peers: peers, Transport: TCP(tr), Storage: newDiskStorage(c.t), StateMachine: c.sms[id], Bootstrap: !join, Join: join,
		SnapshotBytes: 2 << 10, ElectionTimeout: 200 * time.Millisecond, HeartbeatInterval: 40 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(c.logs[id], nil)),
	})
	if err != nil {
		tr.Close()
		c.t.Fatal(err)
	}
	c.rafts[id] = rf
	return rf
}

// A cluster grows from 3 to 5 voters and shrinks back to 3, its leader
// among the servers removed, while a client applies commands: every
// acknowledged command is applied on every server of the final
// configuration, the servers learn new members' addresses from the
// configuration, and the removed servers stop.
func TestMembershipGrowAndShrink(t *testing.T) {
	c := newTCPCluster(t, 1, 2, 3, 4, 5)
	initial := map[int]string{1: c.peers[1], 2: c.peers[2], 3: c.peers[3]}
	for id := range initial {
		c.startMember(id, initial, false)
	}
	c.leaderCommits("first")

	// A client applies commands on whichever server leads, until told to
	// stop, and keeps those acknowledged.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var mu sync.Mutex // guards acked, and the client's view of c.rafts
	var acked []string
	servers := func() []*Raft {
		mu.Lock()
		defer mu.Unlock()
		return c.running()
	}
	stop := make(chan struct{})
	clientDone := make(chan struct{})
	go func() {
		defer close(clientDone)
		for k := 0; ; k++ {
			select {
			case <-stop:
				return
			default:
			}
			cmd := fmt.Sprintf("cmd-%04d-%s", k, "padding-to-make-snapshots-come-sooner-padding-padding")
			for _, rf := range servers() {
				if _, err := rf.Apply(ctx, []byte(cmd)); err == nil {
					mu.Lock()
					acked = append(acked, cmd)
					mu.Unlock()
					break
				}
			}
			time.Sleep(time.Millisecond) // pace: a few hundred commands a second
		}
	}()
	waitFor(t, "commands past a few snapshots", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) > 100
	})

	// Grow: 4 and 5 join knowing the first three servers' addresses, not
	// each other's; the first three learn theirs from the configuration.
	for _, id := range []int{4, 5} {
		peers := map[int]string{id: c.peers[id]}
		for k, a := range initial {
			peers[k] = a
		}
		mu.Lock()
		c.startMember(id, peers, true)
		mu.Unlock()
		c.change(ctx, func(lead *Raft) error { return lead.AddVoter(ctx, id, c.peers[id]) })
	}
	c.wantVoters(1, 2, 3, 4, 5)

	// Shrink: remove the leader, then another of the first three.
	lead, _ := c.leader()
	first := lead.me
	c.change(ctx, func(l *Raft) error { return l.RemoveServer(ctx, first) })
	second := first%3 + 1
	c.change(ctx, func(l *Raft) error { return l.RemoveServer(ctx, second) })
	for _, id := range []int{first, second} {
		waitFor(t, fmt.Sprintf("removed server %d to stop", id), func() bool { return errors.Is(c.rafts[id].Err(), ErrRemoved) })
	}
	close(stop)
	<-clientDone

	final := c.wantVoters(4, 5, 6-first-second)
	mu.Lock()
	defer mu.Unlock()
	for _, id := range final {
		waitFor(t, fmt.Sprintf("server %d to apply every acknowledged command", id), func() bool {
			got := map[string]bool{}
			for _, cm := range c.sms[id].applied() {
				got[string(cm.Data)] = true
			}
			for _, cmd := range acked {
				if !got[cmd] {
					return false
				}
			}
			return true
		})
	}
	t.Logf("%d commands acknowledged; final configuration %v", len(acked), final)
}

// running returns the servers that have not stopped.
func (c *tcpCluster) running() []*Raft {
	var rs []*Raft
	for _, rf := range c.rafts {
		if rf.Err() == nil {
			rs = append(rs, rf)
		}
	}
	return rs
}

// change runs do on the leader until it succeeds, going to the new
// leader when leadership moves.
func (c *tcpCluster) change(ctx context.Context, do func(lead *Raft) error) {
	c.t.Helper()
	var last error
	waitFor(c.t, "a configuration change", func() bool {
		for _, rf := range c.running() {
			if _, isLeader := rf.GetState(); isLeader {
				last = do(rf)
				return last == nil
			}
		}
		return false
	})
	if last != nil {
		c.t.Fatalf("configuration change: %v", last)
	}
}

// wantVoters waits until every running server's committed configuration
// has exactly the voters ids, and returns them.
func (c *tcpCluster) wantVoters(ids ...int) []int {
	c.t.Helper()
	ids = slices.Sorted(slices.Values(ids))
	want := fmt.Sprint(ids)
	waitFor(c.t, "voters "+want, func() bool {
		for _, id := range ids {
			rf := c.rafts[id]
			st, ok := rf.Status()
			if !ok || !st.MembershipCommitted || fmt.Sprint(st.Membership.Voters()) != want {
				return false
			}
		}
		return true
	})
	return ids
}

// A server that joins with no state under the ID of a member (its data
// was lost, and the operator reused the ID) stops with ErrIDInUse before
// it votes or acknowledges anything; under a new ID it joins.
func TestJoinRefusesIDInUse(t *testing.T) {
	c := newTCPCluster(t, 1, 2, 3, 4)
	initial := map[int]string{1: c.peers[1], 2: c.peers[2], 3: c.peers[3]}
	for id := range initial {
		c.startMember(id, initial, false)
	}
	c.leaderCommits("a")
	c.stop(3)
	rf := c.startMember(3, initial, true)
	waitFor(t, "the joiner under ID 3 to stop", func() bool { return errors.Is(rf.Err(), ErrIDInUse) })
	if st, ok := rf.Status(); ok && (st.Term != 0 || st.LastLog != 0) {
		t.Fatalf("the refused joiner took part: %+v", st)
	}
	delete(c.rafts, 3)
	rf.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c.change(ctx, func(l *Raft) error { return l.RemoveServer(ctx, 3) })
	c.startMember(4, map[int]string{1: c.peers[1], 2: c.peers[2], 4: c.peers[4]}, true)
	c.change(ctx, func(l *Raft) error { return l.AddVoter(ctx, 4, c.peers[4]) })
	c.wantVoters(1, 2, 4)
	c.leaderCommits("b")
}

// A server that was down while the cluster removed it stops with
// ErrRemoved when it comes back: the leader sends it the log through its
// removal, which it never heard of.
func TestRemovedWhileDownStopsOnReturn(t *testing.T) {
	c := newTCPCluster(t, 1, 2, 3, 4)
	dirs := map[int]string{}
	for id := 1; id <= 4; id++ {
		dirs[id] = t.TempDir()
		c.start(id, openStorage(t, dirs[id]))
	}
	c.leaderCommits("a")
	c.stop(4)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c.change(ctx, func(l *Raft) error { return l.RemoveServer(ctx, 4) })
	c.wantVoters(1, 2, 3)

	rf := c.start(4, openStorage(t, dirs[4]))
	waitFor(t, "the removed server to learn of its removal and stop", func() bool { return errors.Is(rf.Err(), ErrRemoved) })
	c.leaderCommits("b")
}
