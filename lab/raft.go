package lab

import (
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/core"
	"github.com/raftkit/raft/internal/labhook"
	"github.com/raftkit/raft/labrpc"
)

// ApplyMsg is sent on the apply channel for each committed command, in log
// order, starting at index 1 and without gaps.
type ApplyMsg struct {
	CommandValid bool
	Command      any
	CommandIndex int
	CommandTerm  int // the term of the entry that holds the command

	// A snapshot the service must restore its state from (installed from
	// the leader): it holds everything through SnapshotIndex, and the next
	// command has index SnapshotIndex+1.
	SnapshotValid bool
	Snapshot      []byte
	SnapshotTerm  int
	SnapshotIndex int
}

// The RPC messages, as package raft defines them.
type (
	RequestVoteArgs      = raft.RequestVoteArgs
	RequestVoteReply     = raft.RequestVoteReply
	AppendEntriesArgs    = raft.AppendEntriesArgs
	AppendEntriesReply   = raft.AppendEntriesReply
	InstallSnapshotArgs  = raft.InstallSnapshotArgs
	InstallSnapshotReply = raft.InstallSnapshotReply
)

// Raft is one server, made by Make.
type Raft struct {
	*raft.Raft // GetState, Status, Close, Err and the rest
	srv        labhook.Server
	sm         *chanSM
}

// observeState, if set (by tests, before any server starts), is called by
// a server's loop on every change of its term or role.
var observeState func(rf *Raft, term int, isLeader bool)

// Make creates a Raft server. peers holds an end for every server of the
// cluster, this one (peers[me]) included; the position in peers is a
// server's ID. The server restores its state from persister, saves it
// there from now on, and sends each committed command on applyCh. Make
// returns at once; the server runs in goroutines of its own until Kill.
// A server with no state starts empty, without asking its peers.
func Make(peers []*labrpc.ClientEnd, me int, persister *Persister, applyCh chan ApplyMsg) *Raft {
	rf, err := start(peers, me, &persisterStorage{ps: persister}, applyCh)
	if err != nil {
		panic(fmt.Sprintf("lab: Make: server %d: %v", me, err))
	}
	return rf
}

// start is Make, with the state kept in store.
func start(peers []*labrpc.ClientEnd, me int, store raft.Storage, applyCh chan ApplyMsg) (*Raft, error) {
	ps := make(map[int]any, len(peers))
	for i, p := range peers {
		if i != me {
			ps[i] = p
		}
	}
	_, snap, _, err := store.Load()
	if err != nil {
		return nil, fmt.Errorf("load state: %w", err)
	}
	rf := &Raft{sm: &chanSM{ch: applyCh, done: make(chan struct{}), skip: snap}}
	srv, err := labhook.Start(labhook.Setup{
		Me: me, Peers: ps, Storage: store, StateMachine: rf.sm,
		OnState: func(term int, isLeader bool) {
			if observeState != nil {
				observeState(rf, term, isLeader)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	rf.Raft, rf.srv = srv.Raft.(*raft.Raft), srv
	rf.sm.fail = srv.Fail
	return rf, nil
}

// Start proposes command for the log. If this server is the leader it
// returns at once with the index the command will have if it is ever
// committed, the current term, and true; otherwise isLeader is false.
// The command must be gob-encodable (register its type with labgob): one
// that is not is logged as an error and not proposed (isLeader false).
func (rf *Raft) Start(command any) (index int, term int, isLeader bool) {
	if term, isLeader = rf.GetState(); !isLeader {
		return -1, term, false
	}
	cmd, err := encodeCommand(command)
	if err != nil {
		slog.Error("lab: Start: the command cannot be encoded; register its type with labgob", "type", fmt.Sprintf("%T", command), "err", err)
		return -1, term, false
	}
	index, term, err = rf.Propose(cmd)
	return index, term, err == nil
}

// Kill stops the server. It returns at once; the server's goroutines end
// promptly, and it sends, saves and applies nothing more.
func (rf *Raft) Kill() {
	rf.sm.stop()
	rf.srv.Kill()
}

// Close stops the server and waits for its goroutines (see raft.Raft.Close).
func (rf *Raft) Close() error {
	rf.sm.stop()
	return rf.Raft.Close()
}

// Snapshot tells Raft that the service has a snapshot holding everything
// through log index index: Raft saves it with its state and discards its
// log through index (section 7). The service may call it from the
// goroutine that reads the apply channel.
func (rf *Raft) Snapshot(index int, snapshot []byte) {
	if err := rf.SaveSnapshot(index, snapshot); err != nil && err != raft.ErrStopped {
		slog.Error("lab: snapshot not saved", "index", index, "err", err)
	}
}

// SaveSnapshot is Snapshot, returning whether the snapshot was saved:
// nil also when a snapshot through index or later was saved already.
func (rf *Raft) SaveSnapshot(index int, snapshot []byte) error {
	return rf.srv.SaveSnapshot(index, snapshot)
}

// RequestVote is the RequestVote RPC handler of the lab's network, which
// does not tell who calls: the sender is taken from the message.
func (rf *Raft) RequestVote(args *RequestVoteArgs, reply *RequestVoteReply) {
	serve(rf, args.CandidateID, args, reply)
}

// AppendEntries is the AppendEntries RPC handler of the lab's network.
func (rf *Raft) AppendEntries(args *AppendEntriesArgs, reply *AppendEntriesReply) {
	serve(rf, args.LeaderID, args, reply)
}

// InstallSnapshot is the InstallSnapshot RPC handler of the lab's network.
func (rf *Raft) InstallSnapshot(args *InstallSnapshotArgs, reply *InstallSnapshotReply) {
	serve(rf, args.LeaderID, args, reply)
}

// serve has the server answer args from server from; reply stays as it
// was if there is no answer.
func serve[T any](rf *Raft, from int, args any, reply *T) {
	if r, err := rf.srv.Serve(from, args); err == nil {
		*reply = *r.(*T)
	}
}

// chanSM is the StateMachine that sends what the server applies to the
// lab's service on its apply channel.
type chanSM struct {
	ch       chan ApplyMsg
	done     chan struct{} // closed when the server is stopped
	stopOnce sync.Once
	skip     raft.SnapshotMeta // the snapshot the server starts from: the service reads it itself
	fail     func(error)       // stops the server
}

func (s *chanSM) stop() { s.stopOnce.Do(func() { close(s.done) }) }

// send hands m to the service unless the server is stopped. What a stopped
// server sent is a prefix of what it applied: once a message is dropped for
// the stop, every later one is too. (A select with both cases ready picks
// at random, so without the first check a stopped server could drop one
// message and send the next.)
func (s *chanSM) send(m ApplyMsg) {
	select {
	case <-s.done:
		return
	default:
	}
	select {
	case s.ch <- m:
	case <-s.done:
	}
}

func (s *chanSM) Apply(c raft.Command) any {
	cmd, err := decodeCommand(c.Data)
	if err != nil {
		// The service cannot skip a command, nor apply a later one
		// without it.
		s.fail(fmt.Errorf("lab: decode command at index %d: %w", c.Index, err))
		return nil // the applier stops
	}
	s.send(ApplyMsg{CommandValid: true, Command: cmd, CommandIndex: c.Index, CommandTerm: c.Term})
	return nil
}

// Snapshot is never called: the lab's service takes its snapshots itself.
func (s *chanSM) Snapshot(io.Writer) error {
	return fmt.Errorf("lab: the service takes its snapshots itself (Raft.Snapshot)")
}

// Restore is never called: RestoreAt is.
func (s *chanSM) Restore(io.Reader) error {
	return fmt.Errorf("lab: restore without the snapshot's index")
}

// RestoreAt hands a snapshot installed from the leader to the service.
func (s *chanSM) RestoreAt(meta core.SnapshotMeta, r io.Reader) error {
	if meta.Equal(s.skip) {
		s.skip = core.SnapshotMeta{}
		return nil
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("lab: read the snapshot through %d: %w", meta.Index, err)
	}
	s.send(ApplyMsg{SnapshotValid: true, Snapshot: data, SnapshotIndex: meta.Index, SnapshotTerm: meta.Term})
	return nil
}
