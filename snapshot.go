package raft

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/raftkit/raft/core"
)

// defaultChunkBytes is the most snapshot bytes one InstallSnapshot call
// carries: small enough to cross a network well within a call's deadline.
const defaultChunkBytes = 1 << 20

// chunkSizer is implemented by a Transport whose calls carry at most
// MaxChunkBytes of snapshot data.
type chunkSizer interface {
	MaxChunkBytes() int
}

// snapshotReq is a snapshot the service took, for the loop to save.
type snapshotReq struct {
	index int
	data  []byte
	done  chan error
}

// takeSnapshot has the loop save the service's snapshot through index
// (see saveSnapshot) and waits: nil also when a snapshot through index or
// later was saved already. For the lab's service, which takes its
// snapshots itself.
func (rf *Raft) takeSnapshot(index int, snapshot []byte) error {
	req := &snapshotReq{index: index, data: snapshot, done: make(chan error, 1)}
	if !rf.post(event{snap: req}) {
		return ErrStopped
	}
	select {
	case err := <-req.done:
		return err
	case <-rf.done:
		return ErrStopped
	}
}

// saveSnapshot saves the service's snapshot through index, then compacts
// the core's log: the snapshot is durable before any entry it covers is
// forgotten.
func (rf *Raft) saveSnapshot(index int, data []byte) error {
	if index <= rf.node.Status().Snapshot.Index {
		return nil // covered already
	}
	term := rf.node.LogTerm(index)
	if term < 0 {
		return fmt.Errorf("raft: snapshot through index %d, which is past what was applied", index)
	}
	sink, err := rf.store.CreateSnapshot(core.SnapshotMeta{Index: index, Term: term})
	if err != nil {
		return fmt.Errorf("raft: create snapshot through %d: %w", index, err)
	}
	if _, err := sink.Write(data); err != nil {
		sink.Abort()
		return fmt.Errorf("raft: write snapshot through %d: %w", index, err)
	}
	if err := sink.Commit(true); err != nil {
		return fmt.Errorf("raft: save snapshot through %d: %w", index, err)
	}
	rf.metrics.snapshotsTaken.Add(1)
	rf.metrics.snapshotBytes.Store(int64(len(data)))
	return rf.node.Compact(index)
}

// snapshotReceiver assembles the chunks of a snapshot a leader sends
// (Figure 13, rules 2 to 5) in a sink of the storage, one transfer at a
// time: a first chunk (offset 0) starts a new one, dropping any other.
type snapshotReceiver struct {
	mu     sync.Mutex
	from   int
	term   int
	meta   core.SnapshotMeta
	sink   core.SnapshotSink
	offset int64
}

// chunk writes a chunk; once the last has arrived it returns the sink,
// which the caller then owns.
func (r *snapshotReceiver) chunk(store Storage, from int, a *InstallSnapshotArgs) (core.SnapshotSink, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	meta := core.SnapshotMeta{Index: a.LastIncludedIndex, Term: a.LastIncludedTerm, Membership: a.Membership}
	if a.Offset == 0 {
		// 2. Create a new snapshot file if first chunk (offset is 0).
		r.abortLocked()
		sink, err := store.CreateSnapshot(meta)
		if err != nil {
			return nil, fmt.Errorf("raft: receive snapshot through %d from %d: %w", meta.Index, from, err)
		}
		r.from, r.term, r.meta, r.sink, r.offset = from, a.Term, meta, sink, 0
	} else if r.sink == nil || r.from != from || r.term != a.Term || !r.meta.Equal(meta) || r.offset != a.Offset {
		return nil, fmt.Errorf("raft: snapshot chunk from %d at offset %d does not continue a transfer in progress", from, a.Offset)
	}
	// 3. Write data into the snapshot file at the given offset.
	if _, err := r.sink.Write(a.Data); err != nil {
		r.abortLocked()
		return nil, fmt.Errorf("raft: receive snapshot through %d from %d: %w", meta.Index, from, err)
	}
	r.offset += int64(len(a.Data))
	if !a.Done {
		return nil, nil // 4. Reply and wait for more data chunks if done is false.
	}
	sink := r.sink
	r.sink = nil
	return sink, nil
}

// abort drops a transfer in progress.
func (r *snapshotReceiver) abort() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.abortLocked()
}

func (r *snapshotReceiver) abortLocked() {
	if r.sink != nil {
		r.sink.Abort()
		r.sink = nil
	}
}

// serveChunk serves an InstallSnapshot request from server from: one
// chunk of a snapshot, written to the receiver's sink as it arrives (the
// chunks of one transfer come in order, on one connection). Once the last
// chunk has arrived, the protocol decides whether to install it.
func (rf *Raft) serveChunk(from int, args *InstallSnapshotArgs, respond func(any, error)) {
	if rf.killed() {
		respond(nil, ErrStopped)
		return
	}
	if term, _ := rf.GetState(); args.Term < term {
		respond(&InstallSnapshotReply{Term: term}, nil) // 1. Reply immediately if term < currentTerm.
		return
	}
	sink, err := rf.recv.chunk(rf.store, from, args)
	if err != nil {
		rf.logger.Warn(err.Error())
		respond(nil, err)
		return
	}
	if sink == nil {
		term, _ := rf.GetState()
		respond(&InstallSnapshotReply{Term: term}, nil)
		return
	}
	whole := *args
	whole.Offset, whole.Data = 0, nil
	rf.serveLoop(from, &whole, sink, respond)
}

// sendSnapshot starts a transfer of the storage's snapshot to the
// recipient of m, unless one to it is under way already (the core asks
// again at every heartbeat until the follower has it).
func (rf *Raft) sendSnapshot(m core.Message) {
	r := rf.remotes.get(m.To)
	if r == nil {
		return
	}
	busy := &r.snapBusy
	if !busy.CompareAndSwap(false, true) {
		return
	}
	rf.sending.Add(1) // called from the loop, which Close waits for before sending.Wait
	go func() {
		defer rf.sending.Done()
		defer busy.Store(false)
		if err := rf.transferSnapshot(r.peer, m.To, m.Body.(*core.InstallSnapshotArgs).Term); err != nil {
			rf.tracef("S%d snapshot to %d: %v", rf.me, m.To, err)
		}
	}()
}

// transferSnapshot sends the storage's current snapshot to server to in
// chunks, and hands the last answer to the loop.
func (rf *Raft) transferSnapshot(p Peer, to, term int) error {
	meta, rc, err := rf.store.OpenSnapshot()
	if err != nil {
		rf.logger.Error("raft: open the snapshot to send", "to", to, "err", err)
		return err
	}
	if rc == nil {
		return errors.New("no snapshot")
	}
	defer rc.Close()
	buf := make([]byte, rf.chunkBytes)
	var off int64
	for !rf.killed() {
		n, err := io.ReadFull(rc, buf)
		done := err == io.EOF || err == io.ErrUnexpectedEOF
		if err != nil && !done {
			rf.logger.Error("raft: read the snapshot to send", "to", to, "err", err)
			return err
		}
		args := &core.InstallSnapshotArgs{Term: term, LeaderID: rf.me, LastIncludedIndex: meta.Index, LastIncludedTerm: meta.Term,
			Membership: meta.Membership, Offset: off, Data: buf[:n], Done: done}
		reply := new(core.InstallSnapshotReply)
		if !p.Call("Raft.InstallSnapshot", args, reply) {
			return errors.New("call failed") // the core sends it again later
		}
		if done || reply.Term > term {
			rf.post(event{msg: core.Message{From: to, To: rf.me, Body: reply}})
			return nil
		}
		off += int64(n)
	}
	return ErrStopped
}
