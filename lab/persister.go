package lab

import "sync"

// Persister holds Raft's state and a service snapshot in memory, standing in
// for a disk in the lab tester. It is safe for concurrent use.
type Persister struct {
	mu        sync.Mutex
	raftstate []byte
	snapshot  []byte
}

// MakePersister returns an empty Persister.
func MakePersister() *Persister {
	return &Persister{}
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}

// Copy returns an independent Persister holding the same state and snapshot.
func (ps *Persister) Copy() *Persister {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return &Persister{raftstate: clone(ps.raftstate), snapshot: clone(ps.snapshot)}
}

// Save replaces both the Raft state and the snapshot with copies of
// raftstate and snapshot, atomically.
func (ps *Persister) Save(raftstate []byte, snapshot []byte) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.raftstate = clone(raftstate)
	ps.snapshot = clone(snapshot)
}

// SaveRaftState replaces the saved Raft state with a copy of state, and
// keeps the snapshot.
func (ps *Persister) SaveRaftState(state []byte) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.raftstate = clone(state)
}

// edit replaces the saved Raft state and snapshot with what edit returns
// for them, holding the lock. edit may change the state in place and
// return it, and the Persister keeps what it returns without copying: the
// Persister never hands out its own buffers (every read and Copy clones
// them), so only the owner of the Raft state, which calls this, ever
// writes them.
func (ps *Persister) edit(edit func(state, snapshot []byte) ([]byte, []byte)) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.raftstate, ps.snapshot = edit(ps.raftstate, ps.snapshot)
}

// ReadRaftState returns a copy of the saved Raft state.
func (ps *Persister) ReadRaftState() []byte {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return clone(ps.raftstate)
}

// RaftStateSize returns the size in bytes of the saved Raft state.
func (ps *Persister) RaftStateSize() int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return len(ps.raftstate)
}

// SaveStateAndSnapshot replaces both the Raft state and the snapshot,
// atomically: the older name of Save.
func (ps *Persister) SaveStateAndSnapshot(state []byte, snapshot []byte) {
	ps.Save(state, snapshot)
}

// ReadSnapshot returns a copy of the saved snapshot.
func (ps *Persister) ReadSnapshot() []byte {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return clone(ps.snapshot)
}

// SnapshotSize returns the size in bytes of the saved snapshot.
func (ps *Persister) SnapshotSize() int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return len(ps.snapshot)
}
