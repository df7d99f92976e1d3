package transport

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/rpc"
	"time"

	"github.com/raftkit/raft/core"
)

// Serve starts serving RPCs with h, in goroutines of the TCP's own, and
// returns at once. It panics if h is nil or if Serve was called before.
// After Close it does nothing.
func (t *TCP) Serve(h Handler) {
	if h == nil {
		panic("transport: Serve with a nil Handler")
	}
	t.mu.Lock()
	if t.handler != nil {
		t.mu.Unlock()
		panic("transport: Serve called twice")
	}
	t.handler = h
	t.mu.Unlock()
	t.spawn(t.acceptLoop)
}

// acceptLoop accepts connections until the listener closes.
func (t *TCP) acceptLoop() {
	var delay time.Duration // after a failed Accept
	for {
		conn, err := t.ln.Accept()
		if err != nil {
			if t.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Like net/http: out of file descriptors and such pass.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.log.Error("transport: accept failed; retrying", "err", err, "retry_in", delay)
			if t.sleep(delay, nil) != nil {
				return
			}
			continue
		}
		delay = 0
		if !t.startHandshake() {
			conn.Close()
			continue
		}
		if !t.track(conn) {
			t.endHandshake()
			conn.Close()
			return
		}
		if !t.spawn(func() { t.serveConn(conn) }) {
			t.endHandshake()
			t.untrack(conn)
			conn.Close()
			return
		}
	}
}

// serveConn runs the handshake on an accepted connection, then serves its
// requests until it closes.
func (t *TCP) serveConn(conn net.Conn) {
	defer t.untrack(conn)
	defer conn.Close()
	from, rd, wr, err := t.serverHandshake(conn)
	t.endHandshake()
	if err != nil {
		if !t.isClosed() {
			lvl := t.log.Warn
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				lvl = t.log.Debug // a caller that hung up
			}
			lvl("transport: rejected connection", "remote", conn.RemoteAddr().String(), "err", err)
		}
		return
	}
	t.mu.Lock()
	h := t.handler
	t.mu.Unlock()
	// A server of its own for each connection, so that the service knows
	// its caller. ServeCodec returns once the connection is closed and the
	// handlers it started have answered.
	srv := rpc.NewServer()
	if err := srv.RegisterName("Raft", &service{t: t, h: h, from: from}); err != nil {
		t.log.Error("transport: register service", "err", err)
		return
	}
	sc := &serverCodec{t: t, from: from, conn: conn, rd: rd, wr: wr}
	t.addServed(sc)
	defer t.removeServed(sc)
	srv.ServeCodec(sc)
}

// service is the net/rpc service "Raft" of one connection: it forwards the
// calls of server from to the Handler, and applies the injected faults on
// the server's side.
type service struct {
	t    *TCP
	h    Handler
	from int
}

// RequestVote serves Raft.RequestVote.
func (s *service) RequestVote(args *core.RequestVoteArgs, reply *core.RequestVoteReply) error {
	return s.serve(func() error { return s.h.ServeRequestVote(s.from, args, reply) })
}

// AppendEntries serves Raft.AppendEntries.
func (s *service) AppendEntries(args *core.AppendEntriesArgs, reply *core.AppendEntriesReply) error {
	return s.serve(func() error { return s.h.ServeAppendEntries(s.from, args, reply) })
}

// Probe serves Raft.Probe.
func (s *service) Probe(args *core.ProbeArgs, reply *core.ProbeReply) error {
	return s.serve(func() error { return s.h.ServeProbe(s.from, args, reply) })
}

// InstallSnapshot serves Raft.InstallSnapshot.
func (s *service) InstallSnapshot(args *core.InstallSnapshotArgs, reply *core.InstallSnapshotReply) error {
	return s.serve(func() error { return s.h.ServeInstallSnapshot(s.from, args, reply) })
}

func (s *service) serve(handle func() error) error {
	t := s.t
	// A cut is honoured by both ends: refuse a request over a link this
	// side's Faults says is cut, even if the caller's did not know.
	if t.faults.isCut(s.from, t.id) {
		return fmt.Errorf("%slink %d→%d is cut: request refused", faultPrefix, s.from, t.id)
	}
	if err := handle(); err != nil {
		t.log.Debug("transport: handler failed", "peer", s.from, "err", err)
		return err
	}
	// The reply's fate on the way out: a lost reply comes back as an
	// error, which the caller counts as lost.
	if lost, delay := t.faults.fate(t.id, s.from); lost {
		return fmt.Errorf("%sreply %d→%d lost", faultPrefix, t.id, s.from)
	} else if err := t.sleep(delay, nil); err != nil {
		return err
	}
	return nil
}
