package raft

import (
	"io"
	"testing"
	"time"

	"github.com/raftkit/raft/core"
)

// gateSM is a StateMachine whose Apply signals that it started, then
// waits to be let go.
type gateSM struct{ started, release chan struct{} }

func (g *gateSM) Apply(Command) any {
	close(g.started)
	<-g.release
	return nil
}
func (g *gateSM) Snapshot(io.Writer) error { return nil }
func (g *gateSM) Restore(io.Reader) error  { return nil }

// A read barrier at index i is answered only once the StateMachine has
// applied entry i, not while it is still applying it: a read made then
// would miss the entry (a stale read; seen by porcupine in
// TestLinearizableUnderFaultsFollowerReads, a read served while a
// follower was catching up).
func TestReadBarrierWaitsForApplyToFinish(t *testing.T) {
	g := &gateSM{started: make(chan struct{}), release: make(chan struct{})}
	a := &applier{sm: g, metrics: newMetrics()}
	applied := make(chan error, 1)
	go func() {
		applied <- a.apply(core.Entry{Index: 1, Term: 1, Type: core.EntryNormal, Command: []byte("x")})
	}()
	<-g.started
	req := &readReq{done: make(chan readResult, 1)}
	a.waitApplied(1, req)
	select {
	case r := <-req.done:
		t.Fatalf("the read barrier at 1 was answered (%+v) while the StateMachine was applying entry 1", r)
	default:
	}
	close(g.release)
	if err := <-applied; err != nil {
		t.Fatal(err)
	}
	a.releaseReaders()
	select {
	case r := <-req.done:
		if r.index != 1 || r.err != nil {
			t.Fatalf("read barrier: %+v, want index 1", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the read barrier was not answered once entry 1 was applied")
	}
}
