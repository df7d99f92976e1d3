package kv

import (
	"bytes"
	"fmt"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/lab"
)

// LabRaft is what a server over the lab's API needs of its Raft peer; a
// *raft.Raft made by lab.Make is one.
type LabRaft interface {
	Start(command any) (index, term int, isLeader bool)
	GetState() (term int, isLeader bool)
	Snapshot(index int, snapshot []byte)
}

// labProposer proposes through the lab's Start: the encoded Op travels
// as a []byte command, and comes back as one on the apply channel.
type labProposer struct{ rf LabRaft }

func (p labProposer) Propose(cmd []byte) (int, int, error) {
	index, term, isLeader := p.rf.Start(cmd)
	if !isLeader {
		return -1, term, raft.ErrNotLeader
	}
	return index, term, nil
}

func (p labProposer) GetState() (int, bool) { return p.rf.GetState() }

// NewLabServer returns a server over rf, a Raft peer made by lab.Make
// with applyCh and persister ps: it starts from ps's snapshot, if any,
// then applies what arrives on applyCh, commands and snapshots alike,
// through the same Apply and Restore as a server over raft.New. With
// opts.MaxRaftState, it snapshots (rf.Snapshot) whenever ps's Raft state
// reaches that size. It stops when applyCh is closed or Stop is called.
func NewLabServer(rf LabRaft, applyCh <-chan lab.ApplyMsg, ps *lab.Persister, opts ServerOptions) *Server {
	s := NewServer(opts)
	s.Attach(labProposer{rf})
	if snap := ps.ReadSnapshot(); len(snap) > 0 {
		if err := s.Restore(bytes.NewReader(snap)); err != nil {
			s.fail(fmt.Errorf("kv: restore from the persister's snapshot: %w", err))
		}
	}
	go s.labLoop(rf, applyCh, ps)
	return s
}

// fail is failLocked, taking the lock.
func (s *Server) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failLocked(err)
}

// labLoop hands what arrives on applyCh to Apply and Restore, and
// snapshots as opts.MaxRaftState says.
func (s *Server) labLoop(rf LabRaft, applyCh <-chan lab.ApplyMsg, ps *lab.Persister) {
	defer s.Stop()
	for {
		var msg lab.ApplyMsg
		select {
		case m, ok := <-applyCh:
			if !ok {
				return
			}
			msg = m
		case <-s.done:
			return
		}
		switch {
		case msg.CommandValid:
			data, ok := msg.Command.([]byte)
			if !ok {
				s.fail(fmt.Errorf("kv: command at log index %d is a %T, not an encoded Op", msg.CommandIndex, msg.Command))
				return
			}
			s.Apply(raft.Command{Index: msg.CommandIndex, Term: msg.CommandTerm, Data: data})
			if max := s.opts.MaxRaftState; max > 0 && ps.RaftStateSize() >= max {
				var buf bytes.Buffer
				if err := s.Snapshot(&buf); err != nil {
					return // the server failed, and said why
				}
				rf.Snapshot(msg.CommandIndex, buf.Bytes())
			}
		case msg.SnapshotValid:
			if err := s.Restore(bytes.NewReader(msg.Snapshot)); err != nil {
				s.fail(fmt.Errorf("kv: restore from the snapshot through index %d: %w", msg.SnapshotIndex, err))
				return
			}
		}
	}
}
