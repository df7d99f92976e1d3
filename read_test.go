package raft

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Thesis 6.4: ReadBarrier on the leader returns an index that covers the
// commands committed before the call, once this server's StateMachine has
// applied them; a follower refuses it naming the leader; a leader cut off
// from the others never confirms a read.
func TestReadBarrier(t *testing.T) {
	c := startFaultyCluster(t)
	c.leaderCommits("a")
	lead, _ := c.leader()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := lead.Apply(ctx, []byte("b"))
	if err != nil {
		t.Fatal(err)
	}
	idx, err := lead.ReadBarrier(ctx)
	if err != nil || idx < res.Index {
		t.Fatalf("ReadBarrier: %d, %v; want an index of at least %d", idx, err, res.Index)
	}
	if st, _ := lead.Status(); st.Applied < idx {
		t.Fatalf("ReadBarrier returned %d with the log applied through %d", idx, st.Applied)
	}
	if cmds := c.sms[lead.me].applied(); len(cmds) == 0 || cmds[len(cmds)-1].Index != res.Index {
		t.Fatalf("ReadBarrier returned with the StateMachine's commands %+v, want b at %d last", cmds, res.Index)
	}
	f := lead.me%3 + 1
	var nl *NotLeaderError
	if _, err := c.rafts[f].ReadBarrier(ctx); !errors.As(err, &nl) || nl.Leader != lead.me {
		t.Fatalf("ReadBarrier on follower %d: %v, want a NotLeaderError naming %d", f, err, lead.me)
	}
	for id := range c.rafts {
		if id != lead.me {
			c.faults.Cut(lead.me, id)
		}
	}
	short, cancel2 := context.WithTimeout(ctx, 2*time.Second)
	defer cancel2()
	if idx, err := lead.ReadBarrier(short); err == nil {
		t.Fatalf("ReadBarrier on a leader cut off from the others returned %d", idx)
	}
}
