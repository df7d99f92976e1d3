package raft

import (
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkit/raft/core"
	"github.com/raftkit/raft/storage"
	"github.com/raftkit/raft/transport"
)

// tcpCluster runs servers of one cluster over TCP on 127.0.0.1, each on
// storage the test chooses, for tests of New.
type tcpCluster struct {
	t      *testing.T
	peers  map[int]string
	rafts  map[int]*Raft
	logs   map[int]*syncBuf
	sms    map[int]*listSM
	faults *transport.Faults // if set, injects faults into every server's traffic
	config func(*Config)     // if set, changes every server's Config
}

// syncBuf collects a server's log lines.
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func newTCPCluster(t *testing.T, ids ...int) *tcpCluster {
	lns, peers, err := transport.ListenLocal(ids...)
	if err != nil {
		t.Fatal(err)
	}
	for _, ln := range lns {
		ln.Close() // each start listens again on its address
	}
	c := &tcpCluster{t: t, peers: peers, rafts: map[int]*Raft{}, logs: map[int]*syncBuf{}, sms: map[int]*listSM{}}
	t.Cleanup(func() {
		for _, rf := range c.rafts {
			rf.Close()
		}
	})
	return c
}

// start starts server id on store with Bootstrap set, and drains its
// apply channel.
func (c *tcpCluster) start(id int, store Storage) *Raft {
	c.t.Helper()
	c.logs[id] = &syncBuf{}
	logger := slog.New(slog.NewTextHandler(c.logs[id], nil))
	tr, err := transport.New(transport.Config{Insecure: true, ID: id, Peers: c.peers, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), DialBackoffMax: 100 * time.Millisecond, Faults: c.faults})
	if err != nil {
		c.t.Fatal(err)
	}
	c.sms[id] = &listSM{}
	cfg := Config{
		ID: id, Peers: c.peers, Transport: TCP(tr), Storage: store, StateMachine: c.sms[id], Bootstrap: true,
		ElectionTimeout: 200 * time.Millisecond, HeartbeatInterval: 40 * time.Millisecond, Logger: logger,
	}
	if c.config != nil {
		c.config(&cfg)
	}
	rf, err := New(cfg)
	if err != nil {
		tr.Close()
		c.t.Fatal(err)
	}
	c.rafts[id] = rf
	return rf
}

func (c *tcpCluster) stop(id int) {
	c.rafts[id].Close()
	delete(c.rafts, id)
}

// waitFor polls cond until it holds, failing the test after a generous
// bound.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// leaderCommits waits for a leader among the running servers and has it
// commit a command, returning its index.
func (c *tcpCluster) leaderCommits(cmd string) int {
	c.t.Helper()
	index, term := -1, 0
	var by *Raft
	waitFor(c.t, "a leader to commit "+cmd, func() bool {
		// Propose again only if the server proposed to lost its term's
		// leadership: each poll proposing anew may never let the commit
		// index catch up.
		if tm, isLeader := stateOf(by); !isLeader || tm != term {
			index = -1
			for _, rf := range c.rafts {
				if i, tm, err := rf.Propose([]byte(cmd)); err == nil {
					index, term, by = i, tm, rf
					break
				}
			}
		}
		if index < 0 {
			return false
		}
		for _, rf := range c.rafts {
			if st, ok := rf.Status(); ok && st.Role == core.Leader && st.Commit >= index {
				return true
			}
		}
		return false
	})
	return index
}

// stateOf is rf.GetState, or term 0 and false for a nil rf.
func stateOf(rf *Raft) (int, bool) {
	if rf == nil {
		return 0, false
	}
	return rf.GetState()
}

func bootstrapping(rf *Raft) bool {
	st, ok := rf.Status()
	return ok && st.Bootstrapping
}

// Servers with no state under Bootstrap found a cluster once all of them
// are up; until the last one answers, the others wait and say so.
func TestBootstrapWaitsForEveryPeer(t *testing.T) {
	c := newTCPCluster(t, 1, 2, 3)
	c.start(1, newDiskStorage(t))
	c.start(2, newDiskStorage(t))
	for _, id := range []int{1, 2} {
		waitFor(t, "servers 1 and 2 to hear from each other", func() bool {
			st, ok := c.rafts[id].Status()
			return !ok || !st.Bootstrapping || len(st.WaitingFor) == 1
		})
	}
	for _, id := range []int{1, 2} {
		if !bootstrapping(c.rafts[id]) {
			t.Fatalf("server %d founded a cluster without hearing from server 3", id)
		}
	}
	c.start(3, newDiskStorage(t))
	c.leaderCommits("x")
	for id, rf := range c.rafts {
		if bootstrapping(rf) || rf.Err() != nil {
			t.Fatalf("server %d: bootstrapping %v, err %v", id, bootstrapping(rf), rf.Err())
		}
	}
}

// A server whose state was lost (wiped storage, same ID) refuses to start
// when its peers hold state, rather than vote and acknowledge as if it
// had never promised anything.
func TestBootstrapRefusesServerThatLostItsState(t *testing.T) {
	c := newTCPCluster(t, 1, 2, 3)
	dirs := map[int]string{1: t.TempDir(), 2: t.TempDir(), 3: t.TempDir()}
	for id, dir := range dirs {
		c.start(id, openStorage(t, dir))
	}
	c.leaderCommits("x")
	c.stop(3)
	rf := c.start(3, newDiskStorage(t)) // wiped
	waitFor(t, "the wiped server to stop", func() bool { return rf.Err() != nil })
	if err := rf.Err(); !errors.Is(err, ErrClusterExists) || !strings.Contains(err.Error(), "Replacing a lost disk") {
		t.Fatalf("Err() = %v, want ErrClusterExists with advice", err)
	}
	if strings.Contains(strings.ToLower(rf.Err().Error()), "delete") {
		t.Errorf("the error advises deleting something: %v", rf.Err())
	}
	if !strings.Contains(c.logs[3].String(), "ERROR") {
		t.Errorf("the refusal is not logged as an error: %s", c.logs[3].String())
	}
	c.stop(3)
	// The others carry on, and the server restarts from its kept state.
	c.start(3, openStorage(t, dirs[3]))
	c.leaderCommits("y")
}

// startFaultyCluster starts servers 1, 2 and 3 over TCP with fault
// injection (c.faults), each on a storage of its own.
func startFaultyCluster(t *testing.T) *tcpCluster {
	t.Helper()
	return startFaultyClusterWith(t, nil)
}

// startFaultyClusterWith is startFaultyCluster with config applied to
// every server's Config.
func startFaultyClusterWith(t *testing.T, config func(*Config)) *tcpCluster {
	t.Helper()
	c := newTCPCluster(t, 1, 2, 3)
	c.faults, c.config = transport.NewFaults(1), config
	for _, id := range []int{1, 2, 3} {
		c.start(id, newDiskStorage(t))
	}
	return c
}

// newDiskStorage opens a storage in a fresh directory.
func newDiskStorage(t *testing.T) Storage { return openStorage(t, t.TempDir()) }

// openStorage opens the storage in dir; the server closes it.
func openStorage(t *testing.T, dir string) Storage {
	t.Helper()
	s, err := storage.Open(dir, storage.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// probePeer is a peer that answers probes with a fixed reply and loses
// every other call.
type probePeer struct{ reply core.ProbeReply }

func (p probePeer) Call(svcMeth string, args, reply any) bool {
	if r, ok := reply.(*core.ProbeReply); ok {
		*r = p.reply
		return true
	}
	return false
}

// startWithPeers starts server 1 under Bootstrap with no state and the
// given peers.
func startWithPeers(t *testing.T, peers map[int]Peer) *Raft {
	t.Helper()
	rf, err := start(setup{me: 1, peers: peers, store: newDiskStorage(t), sm: &listSM{}, snapBytes: DefaultSnapshotBytes, timing: defaultTiming,
		logger: slog.New(slog.NewTextHandler(io.Discard, nil)), preVote: true, noOp: true, boot: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rf.Close() })
	return rf
}

// A founder vouches for a peer that held nothing when it founded the
// cluster, and only until that peer sends it anything but a probe.
func TestBootstrapFounderVouchesUntilPeerSpeaks(t *testing.T) {
	rf := startWithPeers(t, map[int]Peer{2: probePeer{core.ProbeReply{Empty: true}}, 3: probePeer{core.ProbeReply{Empty: true}}})
	waitFor(t, "server 1 to found the cluster", func() bool { return !bootstrapping(rf) })
	founder := func(id int) bool {
		var r core.ProbeReply
		if err := serveWait(rf, id, &core.ProbeArgs{}, &r); err != nil {
			t.Fatal(err)
		}
		return r.Founder
	}
	if !founder(2) || !founder(3) {
		t.Fatal("server 1 does not vouch for its co-founders")
	}
	var reply AppendEntriesReply
	serveWait(rf, 2, &AppendEntriesArgs{Term: 1, LeaderID: 2}, &reply)
	if founder(2) {
		t.Error("server 1 still vouches for server 2 after it sent an AppendEntries")
	}
	if !founder(3) {
		t.Error("server 1 stopped vouching for server 3, which sent nothing")
	}
}

// A server that has no state stops when a peer answers with state it did
// not found with it, and waits (neither voting nor acknowledging) while a
// peer has not answered.
func TestBootstrapProbeOutcomes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply core.ProbeReply
		exist bool
	}{
		{"peer holds state", core.ProbeReply{Term: 3, LastIndex: 17}, true},
		{"peer founded the cluster with this server", core.ProbeReply{Term: 3, LastIndex: 17, Founder: true}, false},
		{"peer holds a vote only", core.ProbeReply{Term: 1}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rf := startWithPeers(t, map[int]Peer{2: probePeer{tc.reply}, 3: probePeer{core.ProbeReply{Empty: true}}})
			waitFor(t, "the probes to be answered", func() bool { return rf.Err() != nil || !bootstrapping(rf) })
			if got := errors.Is(rf.Err(), ErrClusterExists); got != tc.exist {
				t.Fatalf("ErrClusterExists: %v, want %v (Err %v)", got, tc.exist, rf.Err())
			}
			if tc.exist && !strings.Contains(rf.Err().Error(), fmt.Sprintf("term %d with %d log entries", tc.reply.Term, tc.reply.LastIndex)) {
				t.Errorf("the error does not say what the peer holds: %v", rf.Err())
			}
		})
	}
	t.Run("peer silent", func(t *testing.T) {
		rf := startWithPeers(t, map[int]Peer{2: probePeer{core.ProbeReply{Empty: true}}, 3: silentPeer{}})
		waitFor(t, "server 2 to answer", func() bool {
			st, ok := rf.Status()
			return ok && len(st.WaitingFor) == 1 && st.WaitingFor[0] == 3
		})
		var vote RequestVoteReply
		if err := serveWait(rf, 2, &RequestVoteArgs{Term: 5, CandidateID: 2}, &vote); err == nil || vote.VoteGranted {
			t.Errorf("a bootstrapping server answered a vote request: %+v, %v", vote, err)
		}
		var ae AppendEntriesReply
		if err := serveWait(rf, 2, &AppendEntriesArgs{Term: 5, LeaderID: 2}, &ae); err == nil || ae.Success {
			t.Errorf("a bootstrapping server acknowledged entries: %+v, %v", ae, err)
		}
		if st, _ := rf.Status(); st.Term != 0 || !st.Bootstrapping {
			t.Errorf("status %+v, want term 0 and still bootstrapping", st)
		}
	})
}

// silentPeer never answers.
type silentPeer struct{}

func (silentPeer) Call(string, any, any) bool { return false }

// The sender of a request is who the transport says it is: a message whose
// LeaderID or CandidateID names another server is refused and changes
// nothing (a peer cannot act in another's name).
func TestHandlersRefuseForgedSender(t *testing.T) {
	rf := startWithPeers(t, map[int]Peer{2: probePeer{core.ProbeReply{Empty: true}}, 3: probePeer{core.ProbeReply{Empty: true}}})
	waitFor(t, "server 1 to found the cluster", func() bool { return !bootstrapping(rf) })
	var ae AppendEntriesReply
	serveWait(rf, 3, &AppendEntriesArgs{Term: 7, LeaderID: 2, Entries: []Entry{{Index: 1, Term: 7, Command: []byte{1}}}}, &ae)
	if ae.Success {
		t.Errorf("AppendEntries from 3 in 2's name succeeded: %+v", ae)
	}
	var rv RequestVoteReply
	serveWait(rf, 3, &RequestVoteArgs{Term: 7, CandidateID: 2, LastLogIndex: 9, LastLogTerm: 7}, &rv)
	if rv.VoteGranted {
		t.Errorf("vote granted to 2 on a request from 3: %+v", rv)
	}
	if st, _ := rf.Status(); st.LastLog != 0 || st.Leader == 2 || st.Term >= 7 {
		t.Errorf("after forged messages: %+v, want no entries, no leader 2, and no adoption of term 7", st.Status)
	}
}

// A command over the configured bound is refused with ErrTooLarge before
// it reaches the log, and the server goes on.
func TestProposeRefusesTooLarge(t *testing.T) {
	rf, err := start(setup{me: 1, peers: map[int]Peer{}, store: newDiskStorage(t), sm: &listSM{}, snapBytes: DefaultSnapshotBytes, timing: defaultTiming,
		logger: slog.New(slog.NewTextHandler(io.Discard, nil)), preVote: true, noOp: true, maxCmd: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	waitFor(t, "a single server to lead", func() bool { _, l := rf.GetState(); return l })
	if _, _, err := rf.Propose([]byte(strings.Repeat("x", 1001))); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "over the maximum of 1000") {
		t.Fatalf("Propose of 1001 bytes: %v, want ErrTooLarge naming the bound", err)
	}
	if _, _, err := rf.Propose([]byte(strings.Repeat("x", 1000))); err != nil {
		t.Fatalf("Propose of 1000 bytes: %v", err)
	}
	if rf.Err() != nil {
		t.Fatalf("the server stopped: %v", rf.Err())
	}
}

// listSM is a StateMachine that keeps every command it applied.
type listSM struct {
	mu   sync.Mutex
	cmds []Command
}

func (m *listSM) Apply(c Command) any {
	m.mu.Lock()
	defer m.mu.Unlock()
	c.Data = slices.Clone(c.Data)
	m.cmds = append(m.cmds, c)
	return len(m.cmds) // the result: how many commands it applied
}

func (m *listSM) Snapshot(w io.Writer) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return gob.NewEncoder(w).Encode(m.cmds)
}

func (m *listSM) Restore(r io.Reader) error {
	var cmds []Command
	if err := gob.NewDecoder(r).Decode(&cmds); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cmds = cmds
	return nil
}

// applied returns the commands applied.
func (m *listSM) applied() []Command {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.cmds)
}
