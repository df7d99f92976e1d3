package main

// Our side: raftkit/raft with storage.WAL and transport.TCP. This is the
// only file that knows the library's API.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftkit/raft"
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
	done    chan struct{} // closed by stop
	watcher sync.WaitGroup
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
	c := &oursCluster{done: make(chan struct{})}
	for _, id := range ids {
		s, err := startOursServer(filepath.Join(dir, strconv.Itoa(id)), id, peers, lns[id], faults, quiet)
		if err != nil {
			for _, later := range ids[len(c.servers)+1:] {
				lns[later].Close()
			}
			c.stop()
			return nil, fmt.Errorf("ours: server %d: %w", id, err)
		}
		c.servers = append(c.servers, s)
	}
	c.watcher.Go(c.watch)
	if err := waitLeader(c.findLeader); err != nil {
		c.stop()
		return nil, fmt.Errorf("ours: %w", err)
	}
	return c, nil
}

// watchInterval is how often watch looks at the servers' terms and roles.
const watchInterval = 20 * time.Millisecond

// watch tells the proposals waiting on a server that has stopped leading,
// or moved to another term, that their commands may not be applied:
// otherwise, when a new leader's log ends before their indexes, nothing
// would ever be applied there and they would wait for applyWait. (This is
// what hashicorp's ErrLeadershipLost does for its proposals.)
func (c *oursCluster) watch() {
	type state struct {
		term  int
		leads bool
	}
	last := make([]state, len(c.servers))
	tick := time.NewTicker(watchInterval)
	defer tick.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-tick.C:
		}
		for i, s := range c.servers {
			var now state
			now.term, now.leads = s.rf.GetState()
			if now != last[i] {
				s.sm.abandon(now.term, now.leads)
				last[i] = now
			}
		}
	}
}

// startOursServer starts server id; on error, ln is closed.
func startOursServer(dir string, id int, peers map[int]string, ln net.Listener, faults *transport.Faults, logger *slog.Logger) (*oursServer, error) {
	wal, err := storage.Open(dir, storage.Options{Logger: logger})
	if err != nil {
		ln.Close()
		return nil, err
	}
	tr, err := transport.New(transport.Config{ID: id, Peers: peers, Listener: ln, CallTimeout: callTimeout, Faults: faults, Logger: logger})
	if err != nil {
		ln.Close()
		wal.Close()
		return nil, err
	}
	sm := newOursSM()
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

func (c *oursCluster) propose(cmd []byte) error {
	s := c.leader.Load()
	if s == nil {
		if waitLeader(c.findLeader) != nil {
			return retry()
		}
		s = c.leader.Load()
	}
	index, term, err := s.rf.Propose(cmd)
	if errors.Is(err, raft.ErrNotLeader) {
		c.leader.CompareAndSwap(s, nil)
		return retry()
	}
	if err != nil {
		return fmt.Errorf("ours: propose: %w", err)
	}
	if !s.sm.wait(index, tagOf(cmd), term, s.rf.GetState) {
		// Another command is at index, or leadership moved under this
		// proposal.
		c.leader.CompareAndSwap(s, nil)
		return retry()
	}
	return nil
}

func (c *oursCluster) stop() error {
	close(c.done)
	c.watcher.Wait()
	var errs []error
	for _, s := range c.servers {
		errs = append(errs, s.rf.Close())
		s.sm.abandon(0, false) // nothing more will be applied
	}
	return errors.Join(errs...)
}

// oursSM counts the commands applied, and tells a proposer whether the
// command applied at its index is its own (by the tag the command starts
// with).
type oursSM struct {
	mu      sync.Mutex
	count   uint64
	applied int      // the last index applied
	tags    []uint64 // tags[i]: the tag of the command applied at index i; 0 for none or unknown
	waiters map[int]*oursWaiter
}

type oursWaiter struct {
	tag  uint64
	term int       // the term the command was proposed in
	done chan bool // true: the command at the index is the waiter's
}

func newOursSM() *oursSM { return &oursSM{waiters: map[int]*oursWaiter{}} }

// Apply implements raft.StateMachine.
func (m *oursSM) Apply(c raft.Command) {
	tag := tagOf(c.Data)
	m.mu.Lock()
	defer m.mu.Unlock()
	if c.Index > m.applied+1 {
		// Entries without a command (a new leader's no-op) were skipped:
		// a proposal waiting there lost its place.
		m.fail(c.Index - 1)
	}
	for len(m.tags) <= c.Index {
		m.tags = append(m.tags, 0)
	}
	m.tags[c.Index] = tag
	m.applied = c.Index
	m.count++
	if w := m.waiters[c.Index]; w != nil {
		w.done <- w.tag == tag
		delete(m.waiters, c.Index)
	}
}

// fail tells every proposal waiting at or before index that its command
// is not there.
func (m *oursSM) fail(index int) {
	for i, w := range m.waiters {
		if i <= index {
			w.done <- false
			delete(m.waiters, i)
		}
	}
}

// wait waits until the command at index is applied, at most applyWait,
// and reports whether it is the one with this tag. It was proposed in
// term; state is the server's current term and whether it leads. Once
// the server no longer leads in term, the command's fate is unknown, as
// with hashicorp's ErrLeadershipLost, and wait reports false (see
// abandon).
func (m *oursSM) wait(index int, tag uint64, term int, state func() (int, bool)) bool {
	m.mu.Lock()
	if index <= m.applied {
		ok := index < len(m.tags) && m.tags[index] == tag
		m.mu.Unlock()
		return ok
	}
	if old := m.waiters[index]; old != nil {
		// This server, leading again, gave index to a newer proposal:
		// the older one's entry was replaced.
		old.done <- false
	}
	w := &oursWaiter{tag: tag, term: term, done: make(chan bool, 1)}
	m.waiters[index] = w
	m.mu.Unlock()
	// Leadership may have moved before w was registered, unseen by the
	// watcher (oursCluster.watch).
	if t, leads := state(); !leads || t != term {
		m.abandon(t, leads)
	}
	timer := time.NewTimer(applyWait)
	defer timer.Stop()
	select {
	case ok := <-w.done:
		return ok
	case <-timer.C:
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.waiters[index] == w {
			delete(m.waiters, index)
			return false
		}
		return <-w.done // answered meanwhile
	}
}

// abandon tells the proposals waiting that were not made in term, or all
// of them if the server does not lead, that their command may not be
// applied. The server's term is term, and it leads if leads.
func (m *oursSM) abandon(term int, leads bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, w := range m.waiters {
		if !leads || w.term != term {
			w.done <- false
			delete(m.waiters, i)
		}
	}
}

// Snapshot implements raft.StateMachine: the count and the last index.
func (m *oursSM) Snapshot(w io.Writer) error {
	m.mu.Lock()
	b := binary.LittleEndian.AppendUint64(nil, m.count)
	b = binary.LittleEndian.AppendUint64(b, uint64(m.applied))
	m.mu.Unlock()
	_, err := w.Write(b)
	return err
}

// Restore implements raft.StateMachine. The tags of the commands the
// snapshot covers are unknown: a proposal waiting for one is retried.
func (m *oursSM) Restore(r io.Reader) error {
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return fmt.Errorf("ours: read snapshot: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.count = binary.LittleEndian.Uint64(b[:8])
	m.applied = int(binary.LittleEndian.Uint64(b[8:]))
	m.tags = make([]uint64, m.applied+1)
	m.fail(m.applied)
	return nil
}
