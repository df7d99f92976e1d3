package main

// Our side: raftkit/raft with storage.WAL and transport.TCP. This is the
// only file that knows the library's API.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/internal/certs"
	"github.com/raftkit/raft/storage"
	"github.com/raftkit/raft/transport"
)

var ours = side{name: "ours", startCluster: func(dir string) (cluster, error) {
	c, err := startOurs(dir, nil)
	if err != nil {
		return nil, err
	}
	return c, nil
}}

type oursServer struct {
	id int
	rf *raft.Raft
	sm *oursSM
}

type oursCluster struct {
	servers []*oursServer
	leader  atomic.Pointer[oursServer]
}

// startOurs starts a cluster; faults, if not nil, is every server's
// transport.Config.Faults (for tests).
func startOurs(dir string, faults *transport.Faults) (*oursCluster, error) {
	ids := []int{1, 2, 3}
	lns, peers, err := transport.ListenLocal(ids...)
	if err != nil {
		return nil, err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var tlsConfigs map[int]*tls.Config
	if oursTLS {
		if tlsConfigs, err = benchTLS(ids); err != nil {
			closeListeners(lns)
			return nil, fmt.Errorf("ours: %w", err)
		}
	}
	c := &oursCluster{}
	for _, id := range ids {
		s, err := startOursServer(filepath.Join(dir, strconv.Itoa(id)), id, peers, lns[id], faults, tlsConfigs[id], quiet)
		if err != nil {
			for _, later := range ids[len(c.servers)+1:] {
				lns[later].Close()
			}
			c.stop()
			return nil, fmt.Errorf("ours: server %d: %w", id, err)
		}
		c.servers = append(c.servers, s)
	}
	if err := waitLeader(c.findLeader); err != nil {
		c.stop()
		return nil, fmt.Errorf("ours: %w", err)
	}
	return c, nil
}

// startOursServer starts server id; on error, ln is closed.
// With tlsConfig nil, its transport runs over plain TCP.
func startOursServer(dir string, id int, peers map[int]string, ln net.Listener, faults *transport.Faults, tlsConfig *tls.Config, logger *slog.Logger) (*oursServer, error) {
	wal, err := storage.Open(dir, storage.Options{Logger: logger})
	if err != nil {
		ln.Close()
		return nil, err
	}
	tr, err := transport.New(transport.Config{Insecure: tlsConfig == nil, TLS: tlsConfig, ID: id, Peers: peers, Listener: ln, CallTimeout: callTimeout, Faults: faults, Logger: logger})
	if err != nil {
		ln.Close()
		wal.Close()
		return nil, err
	}
	sm := &oursSM{newLedger()}
	rf, err := raft.New(raft.Config{
		ID: id, Peers: peers, Transport: raft.TCP(tr), Storage: wal, StateMachine: sm, Bootstrap: true,
		ElectionTimeout: electionTimeout, HeartbeatInterval: heartbeatInterval, Logger: logger,
	})
	if err != nil {
		tr.Close()
		wal.Close()
		return nil, err
	}
	return &oursServer{id: id, rf: rf, sm: sm}, nil
}

// findLeader looks once for a server that believes it leads.
func (c *oursCluster) findLeader() bool {
	for _, s := range c.servers {
		if _, isLeader := s.rf.GetState(); isLeader {
			c.leader.Store(s)
			return true
		}
	}
	return false
}

// propose calls Apply on the leader: it returns once the leader's state
// machine has applied the command, or with an error saying what became of
// it.
func (c *oursCluster) propose(cmd []byte) error {
	s := c.leader.Load()
	if s == nil {
		if waitLeader(c.findLeader) != nil {
			return retry()
		}
		s = c.leader.Load()
	}
	ctx, cancel := context.WithTimeout(context.Background(), applyWait)
	_, err := s.rf.Apply(ctx, cmd)
	cancel()
	var notLeader *raft.NotLeaderError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &notLeader):
		if notLeader.Leader >= 1 && notLeader.Leader <= len(c.servers) {
			c.leader.CompareAndSwap(s, c.servers[notLeader.Leader-1])
		} else {
			c.leader.CompareAndSwap(s, nil)
		}
		return retry()
	case errors.Is(err, raft.ErrNotCommitted), errors.Is(err, raft.ErrOutcomeUnknown):
		c.leader.CompareAndSwap(s, nil)
		return retry()
	default:
		return fmt.Errorf("ours: apply: %w", err)
	}
}

func (c *oursCluster) ledgers() []*ledger {
	var ls []*ledger
	for _, s := range c.servers {
		ls = append(ls, s.sm.ledger)
	}
	return ls
}

func (c *oursCluster) saves() (writes, entries int64) {
	for _, s := range c.servers {
		m := s.rf.Metrics()
		writes, entries = writes+m.Saves, entries+m.EntriesSaved
	}
	return writes, entries
}

func (c *oursCluster) stop() error {
	var errs []error
	for _, s := range c.servers {
		errs = append(errs, s.rf.Close())
	}
	return errors.Join(errs...)
}

// oursSM is the ledger as a raft.StateMachine.
type oursSM struct{ *ledger }

// Apply implements raft.StateMachine: it returns whether the command was
// a duplicate.
func (m *oursSM) Apply(c raft.Command) any { return m.apply(c.Data) }

// Snapshot implements raft.StateMachine.
func (m *oursSM) Snapshot(w io.Writer) error {
	_, err := w.Write(m.marshal())
	return err
}

// Restore implements raft.StateMachine.
func (m *oursSM) Restore(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("ours: read snapshot: %w", err)
	}
	return m.unmarshal(b)
}

// oursTLS runs our transport over mutual TLS (the -tls flag).
var oursTLS bool

// benchTLS returns the mutual TLS configs of servers ids, with
// certificates of a new CA.
func benchTLS(ids []int) (map[int]*tls.Config, error) {
	ca, err := certs.NewCA("bench CA", 24*time.Hour)
	if err != nil {
		return nil, err
	}
	cfgs := make(map[int]*tls.Config, len(ids))
	for _, id := range ids {
		certPEM, keyPEM, err := ca.Issue(certs.Leaf{ServerID: id, ValidFor: 24 * time.Hour})
		if err != nil {
			return nil, err
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("server %d's certificate: %w", id, err)
		}
		if cfgs[id], err = transport.TLSConfig(ca.CertPEM(), func() (*tls.Certificate, error) { return &cert, nil }); err != nil {
			return nil, err
		}
	}
	return cfgs, nil
}

func closeListeners(lns map[int]net.Listener) {
	for _, ln := range lns {
		ln.Close()
	}
}
