package raft

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/raftkit/raft/core"
	"github.com/raftkit/raft/labrpc"
)

// labTransport is a Transport over the simulated network, for tests of New.
type labTransport struct {
	net  *labrpc.Network
	me   int
	ends map[int]*labrpc.ClientEnd
}

func (lt *labTransport) Peer(id int) (Peer, error) {
	e, ok := lt.ends[id]
	if !ok {
		return nil, errors.New("unknown peer")
	}
	return e, nil
}

func (lt *labTransport) Serve(h Handler) {
	srv := labrpc.MakeServer()
	srv.AddService(labrpc.MakeService(h.(*Raft))) // its lab handlers
	lt.net.AddServer(lt.me, srv)
}

func (lt *labTransport) Close() error {
	lt.net.DeleteServer(lt.me)
	return nil
}

// tinyStorage is a Storage that carries commands of at most 1 KiB.
type tinyStorage struct{ Storage }

func (tinyStorage) MaxCommandBytes() int { return 1 << 10 }

// brokenStorage cannot load its state.
type brokenStorage struct{ Storage }

func (brokenStorage) Load() (HardState, SnapshotMeta, []Entry, error) {
	return HardState{}, SnapshotMeta{}, nil, errors.New("checksum mismatch")
}

// failingStorage saves until fail is closed, then fails every Save.
type failingStorage struct {
	Storage
	fail chan struct{}
}

func (s *failingStorage) Save(hs HardState, ents []Entry) error {
	select {
	case <-s.fail:
		return errors.New("disk on fire")
	default:
		return s.Storage.Save(hs, ents)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	good := func() Config {
		return Config{
			ID: 1, Peers: map[int]string{1: "a", 2: "b", 3: "c"},
			Transport:    &labTransport{ends: map[int]*labrpc.ClientEnd{2: nil, 3: nil}},
			Storage:      newDiskStorage(t),
			StateMachine: &listSM{},
			Bootstrap:    true,
		}
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"not a peer", func(c *Config) { c.ID = 4 }, "not among the peers"},
		{"no transport", func(c *Config) { c.Transport = nil }, "needs a Transport"},
		{"no storage", func(c *Config) { c.Storage = nil }, "needs a Transport"},
		{"no state machine", func(c *Config) { c.StateMachine = nil }, "a StateMachine"},
		{"negative snapshot size", func(c *Config) { c.SnapshotBytes = -1 }, "SnapshotBytes -1"},
		{"unknown peer", func(c *Config) { c.Peers[5] = "e" }, "peer 5"},
		{"heartbeat too slow", func(c *Config) { c.HeartbeatInterval = time.Second }, "HeartbeatInterval"},
		{"no state without Bootstrap", func(c *Config) { c.Bootstrap = false }, "storage holds no state"},
		{"command bound over the storage's", func(c *Config) { c.MaxCommandBytes = 1 << 40; c.Storage = tinyStorage{c.Storage} }, "over what the storage carries"},
		{"negative command bound", func(c *Config) { c.MaxCommandBytes = -1 }, "MaxCommandBytes -1"},
		{"corrupt state", func(c *Config) {
			c.Storage = brokenStorage{c.Storage}
		}, "load state"},
	} {
		cfg := good()
		tc.edit(&cfg)
		rf, err := New(cfg)
		if err == nil {
			rf.Close()
			t.Errorf("%s: New succeeded", tc.name)
		} else if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not mention %q", tc.name, err, tc.want)
		}
	}
}

// A server that cannot save stops: it answers nothing more, reports why,
// and Close returns the cause.
func TestSaveFailureStopsServer(t *testing.T) {
	net := labrpc.MakeNetwork()
	defer net.Cleanup()
	store := &failingStorage{newDiskStorage(t), make(chan struct{})}
	store.Save(HardState{Term: 1, Vote: core.None}, nil) // a server that ran before
	rf, err := New(Config{
		ID: 0, Peers: map[int]string{0: "a", 1: "b"},
		Transport:    &labTransport{net: net, me: 0, ends: map[int]*labrpc.ClientEnd{1: net.MakeEnd("0-1")}},
		Storage:      store,
		StateMachine: &listSM{},
		// Without leader stickiness, which would have the server refuse
		// votes for an election timeout after its start, unsaved.
		DisablePreVote: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	close(store.fail)
	// A vote request of a newer term must be saved before it is answered.
	var reply RequestVoteReply
	err = serveWait(rf, 1, &RequestVoteArgs{Term: 5, CandidateID: 1}, &reply)
	if !errors.Is(err, ErrStopped) || reply.VoteGranted {
		t.Fatalf("after a failed save: err %v, reply %+v; want ErrStopped and no vote", err, reply)
	}
	if rf.Err() == nil || !strings.Contains(rf.Err().Error(), "disk on fire") {
		t.Fatalf("Err() = %v, want the save error", rf.Err())
	}
	if err := rf.Close(); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Close() = %v, want the save error", err)
	}
	if _, _, err := rf.Propose([]byte{1}); !errors.Is(err, ErrStopped) {
		t.Fatal("a stopped server accepted a command")
	}
}
