package raft

import (
	"io"
	"log/slog"
	"testing"
	"time"
)

// deadPeer is a Peer whose calls all fail.
type deadPeer struct{}

func (deadPeer) Call(string, any, any) bool { return false }

// deadTransport reaches no one.
type deadTransport struct{}

func (deadTransport) Peer(int) (Peer, error) { return deadPeer{}, nil }
func (deadTransport) Serve(Handler)          {}
func (deadTransport) Close() error           { return nil }

// A server that joins with no state has no configuration until the leader
// sends it one, so it neither votes nor campaigns (Config.Join): if its ID
// is that of a voter whose data was lost (ErrIDInUse), a vote now could be
// the second of that voter in a term, and elect a second leader in it.
// Config.Peers, which it needs to reach the cluster, must not become its
// configuration.
func TestJoinerHasNoConfigurationAndDoesNotVote(t *testing.T) {
	rf, err := New(Config{
		ID: 4, Peers: map[int]string{1: "a", 2: "b", 3: "c", 4: "d"}, Join: true,
		Transport: deadTransport{}, Storage: newDiskStorage(t), StateMachine: &listSM{},
		DisablePreVote: true, // no leader stickiness: a vote is answered at once
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	st, ok := rf.Status()
	if !ok {
		t.Fatal("stopped")
	}
	if !st.Membership.Empty() {
		t.Errorf("the joiner starts with the configuration %v, want none", st.Membership)
	}
	type answer struct {
		reply any
		err   error
	}
	ch := make(chan answer, 1)
	rf.Serve(2, &RequestVoteArgs{Term: 5, CandidateID: 2}, func(r any, err error) { ch <- answer{r, err} })
	select {
	case a := <-ch:
		if r, ok := a.reply.(*RequestVoteReply); ok && r.VoteGranted {
			t.Errorf("the joiner granted a vote in term %d before it heard of any configuration", r.Term)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no answer to the RequestVote")
	}
}
