package main

// The other side: hashicorp/raft with raft-boltdb/v2 for the log and the
// stable store, a file snapshot store and its TCP transport. This is the
// only file that knows hashicorp's API.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	hraft "github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

var theirs = side{name: "hashicorp", startCluster: func(dir string) (cluster, error) {
	c, err := startTheirs(dir)
	if err != nil {
		return nil, err
	}
	return c, nil
}}

// theirsLogCache is how many recent entries a LogCache keeps in front of
// the bolt log store, as Consul and Nomad do (512 there too); 0 means
// none. Set by -logcache.
var theirsLogCache = 512

type theirsServer struct {
	r     *hraft.Raft
	trans *hraft.NetworkTransport
	bolt  *raftboltdb.BoltStore
	logs  *countingLogStore
	fsm   *theirsFSM
}

type theirsCluster struct {
	servers []*theirsServer
	leader  atomic.Pointer[theirsServer]
}

func startTheirs(dir string) (*theirsCluster, error) {
	c := &theirsCluster{}
	var trans []*hraft.NetworkTransport
	var conf hraft.Configuration
	for i := range 3 {
		t, err := hraft.NewTCPTransport("127.0.0.1:0", nil, 3, callTimeout, io.Discard)
		if err != nil {
			for _, t := range trans {
				t.Close()
			}
			return nil, fmt.Errorf("hashicorp: transport of server %d: %w", i+1, err)
		}
		trans = append(trans, t)
		conf.Servers = append(conf.Servers, hraft.Server{
			Suffrage: hraft.Voter, ID: hraft.ServerID(strconv.Itoa(i + 1)), Address: t.LocalAddr(),
		})
	}
	for i, t := range trans {
		s, err := startTheirsServer(filepath.Join(dir, strconv.Itoa(i+1)), conf.Servers[i].ID, t, conf)
		if err != nil {
			for _, later := range trans[i+1:] {
				later.Close()
			}
			c.stop()
			return nil, fmt.Errorf("hashicorp: server %d: %w", i+1, err)
		}
		c.servers = append(c.servers, s)
	}
	if err := waitLeader(c.findLeader); err != nil {
		c.stop()
		return nil, fmt.Errorf("hashicorp: %w", err)
	}
	return c, nil
}

// startTheirsServer starts one server; on error, t is closed.
func startTheirsServer(dir string, id hraft.ServerID, t *hraft.NetworkTransport, conf hraft.Configuration) (*theirsServer, error) {
	fail := func(err error, closers ...io.Closer) (*theirsServer, error) {
		for _, c := range closers {
			c.Close()
		}
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(err, t)
	}
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		return fail(fmt.Errorf("open bolt store: %w", err), t)
	}
	counted := &countingLogStore{LogStore: bolt}
	var logs hraft.LogStore = counted
	if theirsLogCache > 0 {
		if logs, err = hraft.NewLogCache(theirsLogCache, counted); err != nil {
			return fail(err, t, bolt)
		}
	}
	snaps, err := hraft.NewFileSnapshotStore(dir, 1, io.Discard)
	if err != nil {
		return fail(fmt.Errorf("snapshot store: %w", err), t, bolt)
	}
	cfg := hraft.DefaultConfig()
	cfg.LocalID = id
	cfg.HeartbeatTimeout = electionTimeout
	cfg.ElectionTimeout = electionTimeout
	cfg.LeaderLeaseTimeout = electionTimeout // at most HeartbeatTimeout
	cfg.Logger = hclog.NewNullLogger()
	if err := hraft.BootstrapCluster(cfg, logs, bolt, snaps, t, conf); err != nil {
		return fail(fmt.Errorf("bootstrap: %w", err), t, bolt)
	}
	fsm := &theirsFSM{newLedger()}
	r, err := hraft.NewRaft(cfg, fsm, logs, bolt, snaps, t)
	if err != nil {
		return fail(err, t, bolt)
	}
	return &theirsServer{r: r, trans: t, bolt: bolt, logs: counted, fsm: fsm}, nil
}

// findLeader looks once for a server that believes it leads.
func (c *theirsCluster) findLeader() bool {
	for _, s := range c.servers {
		if s.r.State() == hraft.Leader {
			c.leader.Store(s)
			return true
		}
	}
	return false
}

func (c *theirsCluster) propose(cmd []byte) error {
	s := c.leader.Load()
	if s == nil {
		if waitLeader(c.findLeader) != nil {
			return retry()
		}
		s = c.leader.Load()
	}
	// The future is done once the leader's FSM has applied the command.
	err := s.r.Apply(cmd, applyWait).Error()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, hraft.ErrNotLeader), errors.Is(err, hraft.ErrLeadershipLost),
		errors.Is(err, hraft.ErrEnqueueTimeout), errors.Is(err, hraft.ErrLeadershipTransferInProgress):
		c.leader.CompareAndSwap(s, nil)
		return retry()
	default:
		return fmt.Errorf("hashicorp: apply: %w", err)
	}
}

func (c *theirsCluster) ledgers() []*ledger {
	var ls []*ledger
	for _, s := range c.servers {
		ls = append(ls, s.fsm.ledger)
	}
	return ls
}

func (c *theirsCluster) saves() (writes, entries int64) {
	for _, s := range c.servers {
		writes, entries = writes+s.logs.writes.Load(), entries+s.logs.entries.Load()
	}
	return writes, entries
}

func (c *theirsCluster) stop() error {
	var errs []error
	for _, s := range c.servers {
		errs = append(errs, s.r.Shutdown().Error(), s.trans.Close(), s.bolt.Close())
	}
	return errors.Join(errs...)
}

// countingLogStore counts the writes to the bolt log store, each one bolt
// transaction and so one fsync, and the entries they carry.
type countingLogStore struct {
	hraft.LogStore
	writes, entries atomic.Int64
}

func (s *countingLogStore) StoreLog(l *hraft.Log) error {
	s.writes.Add(1)
	s.entries.Add(1)
	return s.LogStore.StoreLog(l)
}

func (s *countingLogStore) StoreLogs(ls []*hraft.Log) error {
	s.writes.Add(1)
	s.entries.Add(int64(len(ls)))
	return s.LogStore.StoreLogs(ls)
}

// theirsFSM is the ledger as a hashicorp FSM. Hashicorp's apply future
// tells the proposer when the leader's FSM has applied its command.
type theirsFSM struct{ *ledger }

// Apply returns whether the command was a duplicate.
func (f *theirsFSM) Apply(l *hraft.Log) any { return f.apply(l.Data) }

func (f *theirsFSM) Snapshot() (hraft.FSMSnapshot, error) {
	return theirsSnapshot(f.marshal()), nil
}

func (f *theirsFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("hashicorp: read snapshot: %w", err)
	}
	return f.unmarshal(b)
}

type theirsSnapshot []byte

func (s theirsSnapshot) Persist(sink hraft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (theirsSnapshot) Release() {}
