package transport

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/raftkit/raft/core"
)

// Serve starts serving requests with h, in goroutines of the TCP's own,
// and returns at once. It panics if h is nil or if Serve was called
// before. After Close it does nothing.
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

// serverConn is a connection a server serves: its goroutine
// (serveConn) reads the requests and hands each, in order, to the
// Handler; another writes the replies as the Handler gives them.
type serverConn struct {
	t    *TCP
	from int // the caller's server ID, from the handshake
	conn net.Conn
	q    *outQueue
}

// serveConn runs the handshake on an accepted connection, then serves its
// requests until it closes.
func (t *TCP) serveConn(raw net.Conn) {
	from, conn, rd, err := t.serverHandshake(raw)
	t.endHandshake()
	defer t.untrack(conn)
	defer conn.Close()
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
	sc := &serverConn{t: t, from: from, conn: conn, q: newOutQueue(0)}
	t.addServed(sc)
	defer sc.close()
	if !t.spawn(sc.write) {
		return
	}
	sc.serve(rd, h)
}

// write runs the writer of replies until the connection closes.
func (sc *serverConn) write() {
	if err := sc.q.run(sc.conn, sc.t.callTimeout, nil); err != nil {
		sc.fail("write reply", err)
	}
}

// serve reads requests and hands them to h, until the connection breaks.
// It reads no further while more than the send queue bound of replies
// waits to be written: a caller that does not read its replies is not
// served.
func (sc *serverConn) serve(rd *frameReader, h Handler) {
	t := sc.t
	for {
		if !sc.q.waitRoom(t.queueBytes, t.ctx.Done()) {
			return
		}
		sc.conn.SetReadDeadline(time.Now().Add(t.idleTimeout))
		in, err := rd.readRequest()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				sc.close()
				t.log.Debug("transport: closed a connection from peer idle for IdleTimeout",
					"peer", sc.from, "idle_timeout", t.idleTimeout)
				return
			}
			sc.fail("read request", err)
			return
		}
		switch {
		case in.over > 0:
			t.log.Warn("transport: refused a request over the size limit",
				"peer", sc.from, "request", typeName(in.typ), "bytes", in.over, "limit", t.maxMsg)
			sc.pushError(in.id, codeFailed, fmt.Sprintf("transport: request %s of %d bytes is over server %d's limit of %d bytes",
				typeName(in.typ), in.over, t.id, t.maxMsg))
		case t.faults.isCut(sc.from, t.id):
			// A cut is honoured by both ends: refuse a request over a
			// link this side's Faults says is cut, even if the caller's
			// did not know.
			sc.pushError(in.id, codeLost, fmt.Sprintf("link %d→%d is cut: request refused", sc.from, t.id))
		default:
			h.Serve(sc.from, in.req, sc.responder(in.id, in.typ))
		}
	}
}

// responder returns the respond function of request id, of frame type
// typ, which queues the reply once.
func (sc *serverConn) responder(id uint64, typ byte) func(reply any, err error) {
	var answered atomic.Bool
	return func(reply any, err error) {
		if answered.Swap(true) {
			sc.t.log.Error("transport: the Handler answered a request twice; the second answer is dropped",
				"peer", sc.from, "request", typeName(typ))
			return
		}
		sc.respond(id, typ, reply, err)
	}
}

// respond queues the answer to request id, of frame type typ, applying
// the injected faults to it.
func (sc *serverConn) respond(id uint64, typ byte, reply any, err error) {
	t := sc.t
	if err == nil && !isReplyTo(typ, reply) {
		err = fmt.Errorf("transport: the Handler answered a %s request with a %T", typeName(typ), reply)
		t.log.Error(err.Error(), "peer", sc.from)
	}
	if err != nil {
		t.log.Debug("transport: handler failed", "peer", sc.from, "err", err)
		sc.pushError(id, codeFailed, err.Error())
		return
	}
	// The reply's fate on the way out: a lost reply comes back as an
	// error, which the caller counts as lost.
	lost, delay := t.faults.fate(t.id, sc.from)
	switch {
	case lost:
		sc.pushError(id, codeLost, fmt.Sprintf("reply %d→%d lost", t.id, sc.from))
	case delay > 0:
		t.spawn(func() {
			if t.sleep(delay, nil) == nil {
				sc.pushReply(id, typ, reply)
			}
		})
	default:
		sc.pushReply(id, typ, reply)
	}
}

// isReplyTo reports whether reply is a non-nil reply to a request of
// frame type typ.
func isReplyTo(typ byte, reply any) bool {
	switch r := reply.(type) {
	case *core.RequestVoteReply:
		return r != nil && typ == typeRequestVote
	case *core.AppendEntriesReply:
		return r != nil && typ == typeAppendEntries
	case *core.InstallSnapshotReply:
		return r != nil && typ == typeInstallSnapshot
	case *core.ProbeReply:
		return r != nil && typ == typeProbe
	case *core.TimeoutNowReply:
		return r != nil && typ == typeTimeoutNow
	case *core.ReadIndexReply:
		return r != nil && typ == typeReadIndex
	}
	return false
}

// pushReply queues a reply; one over the size limit is replaced by an
// error, so the call fails and the connection lives on.
func (sc *serverConn) pushReply(id uint64, typ byte, reply any) {
	t := sc.t
	n, err := sc.q.push(id, t.maxMsg, func(b []byte) ([]byte, int, error) { return appendReply(b, id, reply) })
	if errors.Is(err, errTooLarge) {
		t.log.Warn("transport: refused to send a reply over the size limit",
			"peer", sc.from, "request", typeName(typ), "bytes", n, "limit", t.maxMsg)
		sc.pushError(id, codeFailed, fmt.Sprintf("transport: reply to %s of %d bytes is over server %d's limit of %d bytes",
			typeName(typ), n, t.id, t.maxMsg))
	}
}

// pushError queues an error frame answering request id.
func (sc *serverConn) pushError(id uint64, code byte, msg string) {
	sc.q.push(id, maxFramePayload, func(b []byte) ([]byte, int, error) {
		return appendError(b, id, code, msg), 0, nil
	})
}

// close closes the connection, which then no longer counts against the
// peer's limit; replies given afterwards are dropped.
func (sc *serverConn) close() {
	sc.q.close()
	sc.conn.Close()
	sc.t.removeServed(sc)
}

// fail closes the connection after a read or write error, logging the
// errors that are neither a plain hang-up nor the transport's own Close.
func (sc *serverConn) fail(what string, err error) {
	sc.close()
	logEnd(sc.t, "transport: closing connection from peer", sc.from, what, err)
}
