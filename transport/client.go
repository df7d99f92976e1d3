package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/rpc"
	"strings"
	"sync"
	"time"

	"github.com/raftkit/raft/core"
)

// The calling side is not net/rpc's Client, which cannot meet two of the
// requirements: it has no way to give up on a call, so every call that
// times out would stay pending, holding its arguments (log entries), for
// as long as the connection lives, which is forever with a peer whose
// handler hangs; and its Go blocks on the connection's write lock with no
// deadline, behind a write to a peer that has stopped reading. clientConn
// below is a small multiplexer of the same shape over the same framing
// (net/rpc's Request and Response headers), with a deadline on every step
// and a pending call that is forgotten when its caller stops waiting. The
// serving side is net/rpc's Server (server.go).

// The methods a Peer calls.
const (
	methodRequestVote     = "Raft.RequestVote"
	methodAppendEntries   = "Raft.AppendEntries"
	methodProbe           = "Raft.Probe"
	methodInstallSnapshot = "Raft.InstallSnapshot"
)

var (
	errClosed   = errors.New("transport closed")
	errTimeout  = errors.New("call timed out")
	errLost     = errors.New("message lost to an injected fault")
	errTooLarge = errors.New("message over the size limit")
	errBackoff  = errors.New("peer unreachable, waiting to dial again")
	errIdle     = errors.New("connection idle for half the IdleTimeout")
	errStalled  = errors.New("calls in a row timed out with nothing read")
)

// maxStalledCalls is how many calls in a row may time out on a connection
// from which nothing is read meanwhile before the connection is dropped
// and the peer dialed anew. A silent partition (or a peer that crashed
// without closing its sockets) leaves a connection that looks open, and
// TCP may take many minutes to give up on it; a new connection works as
// soon as the path does. A peer whose handlers all hang loses its
// connection too, which costs a dial.
const maxStalledCalls = 3

// faultPrefix starts the error of a call that a server refused, or whose
// reply it dropped, because of an injected fault; the caller counts such a
// call as lost.
const faultPrefix = "transport: fault: "

// Peer reaches one other server of the cluster. It satisfies the raft
// package's Peer interface, and its Call is safe for concurrent use:
// concurrent calls share one connection.
type Peer struct {
	t    *TCP
	id   int
	addr string

	mu       sync.Mutex
	cc       *clientConn   // the live connection, or nil
	dialing  chan struct{} // closed when the dial in progress ends
	retryAt  time.Time     // no dial before this
	backoff  time.Duration // the wait after the next failed dial
	lastErr  error         // why the last dial failed
	failures int           // dials failed in a row

	dials int // dials started, for tests
}

// ID returns the server ID of the peer.
func (p *Peer) ID() int { return p.id }

// Addr returns the peer's address, as Config.Peers gives it.
func (p *Peer) Addr() string { return p.addr }

// Call runs the handler named by svcMeth on the peer with args, and
// reports whether reply holds its answer. svcMeth, args and reply are one
// of:
//
//	"Raft.RequestVote"      *core.RequestVoteArgs      *core.RequestVoteReply
//	"Raft.AppendEntries"    *core.AppendEntriesArgs    *core.AppendEntriesReply
//	"Raft.Probe"            *core.ProbeArgs            *core.ProbeReply
//	"Raft.InstallSnapshot"  *core.InstallSnapshotArgs  *core.InstallSnapshotReply
//
// Call returns false, leaving reply as it was, when no answer came in
// Config.CallTimeout; at once when the peer could not be dialed lately
// (Call then waits out the redial backoff without dialing); after a short
// wait when an injected fault lost the request or the reply; when the
// message was over the size limit (or an InstallSnapshot's Data over
// TCP.MaxChunkBytes), the handler returned an error, the transport is
// closed, or the arguments are not as above. A false call may still have
// run the handler. Call reads args only until it returns.
func (p *Peer) Call(svcMeth string, args any, reply any) bool {
	return p.call(svcMeth, args, reply) == nil
}

// call is Call, with the reason of a failure.
func (p *Peer) call(svcMeth string, args, reply any) error {
	t := p.t
	// The reply is decoded into a value of the call's own and copied to
	// reply on success only: a reply arriving after the caller gave up
	// must not write into reply.
	var tmp any
	var commit func()
	ok := false
	switch svcMeth {
	case methodRequestVote:
		tmp, commit, ok = bind[core.RequestVoteArgs, core.RequestVoteReply](args, reply)
	case methodAppendEntries:
		tmp, commit, ok = bind[core.AppendEntriesArgs, core.AppendEntriesReply](args, reply)
	case methodProbe:
		tmp, commit, ok = bind[core.ProbeArgs, core.ProbeReply](args, reply)
	case methodInstallSnapshot:
		tmp, commit, ok = bind[core.InstallSnapshotArgs, core.InstallSnapshotReply](args, reply)
		if ok {
			if err := p.checkChunk(args.(*core.InstallSnapshotArgs)); err != nil {
				return err
			}
		}
	}
	if !ok {
		return p.badCall(svcMeth, args, reply)
	}
	if t.isClosed() {
		return errClosed
	}
	deadline := time.Now().Add(t.callTimeout)
	timer := time.NewTimer(t.callTimeout)
	defer timer.Stop()

	// The request's fate on the way out.
	if lost, delay := t.faults.fate(t.id, p.id); lost {
		return t.lose(timer.C)
	} else if delay > 0 {
		if err := t.sleep(delay, timer.C); err != nil {
			return err
		}
	}
	c, err := p.conn(timer.C)
	if err != nil {
		return err
	}
	if err := c.call(svcMeth, args, tmp, deadline, timer.C); err != nil {
		var re remoteError
		if errors.As(err, &re) && strings.HasPrefix(string(re), faultPrefix) {
			t.lose(timer.C)
			return errLost
		}
		return err
	}
	// A cut is honoured by both ends: the reply came over a link that this
	// side's Faults says is cut.
	if t.faults.isCut(p.id, t.id) {
		return t.lose(timer.C)
	}
	commit()
	return nil
}

func (p *Peer) badCall(svcMeth string, args, reply any) error {
	err := fmt.Errorf("transport: bad call %q with %T, %T: want one of %q, %q, %q or %q with non-nil pointers to the core package's Args and Reply of that RPC",
		svcMeth, args, reply, methodRequestVote, methodAppendEntries, methodProbe, methodInstallSnapshot)
	p.t.log.Error(err.Error(), "peer", p.id)
	return err
}

// checkChunk refuses a snapshot chunk whose Data is over MaxChunkBytes,
// before it is encoded: the driver cuts chunks to that size, and one over
// it may not fit under the peer's MaxMessageBytes.
func (p *Peer) checkChunk(a *core.InstallSnapshotArgs) error {
	limit := p.t.MaxChunkBytes()
	if n := len(a.Data); n > limit {
		p.t.log.Warn("transport: refused to send a snapshot chunk over the size limit",
			"peer", p.id, "bytes", n, "limit", limit)
		return fmt.Errorf("%w: InstallSnapshot chunk of %d bytes of data, limit %d (MaxChunkBytes)", errTooLarge, n, limit)
	}
	return nil
}

// bind checks that args and reply are a non-nil *A and *R, and returns a
// new R for the reply to be decoded into, and a commit that copies it to
// reply.
func bind[A, R any](args, reply any) (tmp any, commit func(), ok bool) {
	a, ok1 := args.(*A)
	r, ok2 := reply.(*R)
	if !ok1 || !ok2 || a == nil || r == nil {
		return nil, nil, false
	}
	v := new(R)
	return v, func() { *r = *v }, true
}

// conn returns the live connection to the peer, dialing one if there is
// none and the backoff allows. It gives up when deadline fires.
func (p *Peer) conn(deadline <-chan time.Time) (*clientConn, error) {
	t := p.t
	for {
		p.mu.Lock()
		if c := p.cc; c != nil {
			select {
			case <-c.broken:
				p.cc = nil // (lost may have run before dial set p.cc)
			default:
				if !c.idle(t.idleTimeout / 2) {
					p.mu.Unlock()
					return c, nil
				}
				// The server closes it at IdleTimeout: rather than race
				// that, dial anew.
				p.cc = nil
				p.mu.Unlock()
				c.fail(errIdle)
				continue
			}
		}
		if p.dialing == nil {
			if wait := time.Until(p.retryAt); wait > 0 {
				err := p.lastErr
				p.mu.Unlock()
				return nil, fmt.Errorf("%w (for %v more): %w", errBackoff, wait.Round(time.Millisecond), err)
			}
			done := make(chan struct{})
			if !t.spawn(func() { p.dial(done) }) {
				p.mu.Unlock()
				return nil, errClosed
			}
			p.dialing = done
			p.dials++
		}
		dialing := p.dialing
		p.mu.Unlock()
		select {
		case <-dialing:
		case <-deadline:
			return nil, errTimeout
		case <-t.ctx.Done():
			return nil, errClosed
		}
	}
}

// dial connects to the peer, in a goroutine of its own so that every
// caller waits for it only as long as it likes, and closes done when over.
func (p *Peer) dial(done chan struct{}) {
	defer close(done)
	t := p.t
	c, err := p.connect()
	if err == nil && !t.spawn(c.readLoop) {
		t.untrack(c.conn)
		c.conn.Close()
		err = errClosed
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dialing = nil
	if err == nil {
		if p.failures > 0 {
			t.log.Info("transport: reached peer", "peer", p.id, "addr", p.addr, "after_failures", p.failures)
		}
		p.cc, p.failures, p.lastErr, p.backoff = c, 0, nil, t.backoffMin
		return
	}
	p.lastErr = err
	p.retryAt = time.Now().Add(p.backoff)
	p.failures++
	switch {
	case t.isClosed():
	case p.failures == 1:
		t.log.Warn("transport: cannot reach peer; will dial again after a backoff",
			"peer", p.id, "addr", p.addr, "backoff", p.backoff, "err", err)
	default:
		t.log.Debug("transport: cannot reach peer",
			"peer", p.id, "addr", p.addr, "backoff", p.backoff, "failures", p.failures, "err", err)
	}
	p.backoff = min(2*p.backoff, t.backoffMax)
}

// connect dials the peer and runs the handshake, within one call timeout.
func (p *Peer) connect() (*clientConn, error) {
	t := p.t
	ctx, cancel := context.WithTimeout(t.ctx, t.callTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, fmt.Errorf("dial server %d at %s: %w", p.id, p.addr, err)
	}
	if !t.track(conn) {
		conn.Close()
		return nil, errClosed
	}
	deadline, _ := ctx.Deadline()
	rd, wr, err := clientHandshake(conn, t.id, p.id, t.maxMsg, deadline)
	if err != nil {
		t.untrack(conn)
		conn.Close()
		return nil, fmt.Errorf("handshake with server %d at %s: %w", p.id, p.addr, err)
	}
	return &clientConn{
		p:        p,
		conn:     conn,
		rd:       rd,
		wr:       wr,
		wlock:    make(chan struct{}, 1),
		pending:  make(map[uint64]*pendingCall),
		broken:   make(chan struct{}),
		lastCall: time.Now(),
	}, nil
}

// lost forgets a broken connection, so that the next call dials again.
func (p *Peer) lost(c *clientConn, err error) {
	p.mu.Lock()
	if p.cc == c {
		p.cc = nil
	}
	p.mu.Unlock()
	logEnd(p.t, "transport: lost connection to peer", p.id, "call", err)
}

// remoteError is the error a server answered a call with.
type remoteError string

func (e remoteError) Error() string { return string(e) }

// clientConn is a connection to a peer, shared by all the calls to it. One
// goroutine (readLoop) reads the replies and hands each to its call.
type clientConn struct {
	p    *Peer
	conn net.Conn
	rd   *frameReader // readLoop's

	wlock chan struct{} // held (full) while a call writes its request
	wr    *frameWriter  // guarded by wlock
	hdr   rpc.Request   // guarded by wlock

	mu       sync.Mutex
	seq      uint64
	pending  map[uint64]*pendingCall // nil once broken
	err      error                   // why it broke
	broken   chan struct{}           // closed when it breaks
	lastCall time.Time               // when the last call started
	timeouts int                     // calls timed out since the last read
}

// pendingCall is a call waiting for its reply.
type pendingCall struct {
	reply any        // what the reply is decoded into
	done  chan error // receives the outcome; buffered
}

// call sends one request and waits for its reply until deadline (the time)
// or expired (its timer) comes.
func (c *clientConn) call(method string, args, reply any, deadline time.Time, expired <-chan time.Time) error {
	t := c.p.t
	pc := &pendingCall{reply: reply, done: make(chan error, 1)}
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return err
	}
	seq := c.seq
	c.seq++
	c.pending[seq] = pc
	c.lastCall = time.Now()
	c.mu.Unlock()

	select {
	case c.wlock <- struct{}{}:
	case <-expired:
		return c.timedOut(seq)
	case <-c.broken:
		return c.brokenErr()
	}
	err := c.send(seq, method, args, deadline)
	<-c.wlock
	if err != nil {
		c.forget(seq)
		return err
	}

	select {
	case err := <-pc.done:
		return err
	case <-expired:
		return c.timedOut(seq)
	case <-t.ctx.Done():
		return errClosed
	}
}

// send writes one request; c.wlock is held. A request over the size limit
// is not sent and fails alone; a failed write breaks the connection.
func (c *clientConn) send(seq uint64, method string, args any, deadline time.Time) error {
	t := c.p.t
	c.hdr = rpc.Request{ServiceMethod: method, Seq: seq}
	n, err := c.wr.encode(&c.hdr, args)
	if err != nil {
		c.fail(err)
		return err
	}
	if n > t.maxMsg {
		c.wr.reset()
		t.log.Warn("transport: refused to send a request over the size limit",
			"peer", c.p.id, "method", method, "bytes", n, "limit", t.maxMsg)
		return fmt.Errorf("%w: request %s of %d bytes, limit %d", errTooLarge, method, n, t.maxMsg)
	}
	// A write that cannot finish by the deadline means that the peer is not
	// reading; the connection goes, with whatever part of the frame it
	// took.
	c.conn.SetWriteDeadline(deadline)
	_, err = c.conn.Write(c.wr.frame())
	c.wr.reset()
	if err != nil {
		err = fmt.Errorf("write request: %w", err)
		c.fail(err)
	}
	return err
}

// forget drops a call whose caller stopped waiting; a reply that comes
// later is read and discarded.
func (c *clientConn) forget(seq uint64) {
	c.mu.Lock()
	delete(c.pending, seq)
	c.mu.Unlock()
}

// timedOut forgets a call that timed out, and drops the connection if it
// is the maxStalledCalls'th in a row with nothing read meanwhile. It
// returns errTimeout.
func (c *clientConn) timedOut(seq uint64) error {
	c.mu.Lock()
	delete(c.pending, seq)
	c.timeouts++
	stalled := c.timeouts == maxStalledCalls
	c.mu.Unlock()
	if stalled {
		c.p.t.log.Warn("transport: dropping a stalled connection to peer; will dial again",
			"peer", c.p.id, "timeouts", maxStalledCalls)
		c.fail(errStalled)
	}
	return errTimeout
}

// idle reports whether no call is in progress and none started for d.
func (c *clientConn) idle(d time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending) == 0 && time.Since(c.lastCall) >= d
}

func (c *clientConn) brokenErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// readLoop reads replies and hands each to its call, until the connection
// breaks.
func (c *clientConn) readLoop() {
	t := c.p.t
	defer t.untrack(c.conn)
	for {
		var hdr rpc.Response
		large, err := c.rd.next(&hdr)
		if err != nil {
			c.fail(err)
			return
		}
		c.mu.Lock()
		pc := c.pending[hdr.Seq]
		delete(c.pending, hdr.Seq)
		c.timeouts = 0
		c.mu.Unlock()
		var res error
		switch {
		case large > 0:
			t.log.Warn("transport: refused a reply over the size limit",
				"peer", c.p.id, "method", hdr.ServiceMethod, "bytes", large, "limit", t.maxMsg)
			res = fmt.Errorf("%w: reply to %s of %d bytes, limit %d", errTooLarge, hdr.ServiceMethod, large, t.maxMsg)
		case hdr.Error != "":
			if err := c.rd.decodeBody(); err != nil {
				c.fail(err)
				return
			}
			res = remoteError(hdr.Error)
		case pc == nil: // its caller gave up
			if err := c.rd.decodeBody(); err != nil {
				c.fail(err)
				return
			}
		default:
			if err := c.rd.decodeBody(pc.reply); err != nil {
				pc.done <- err
				c.fail(err)
				return
			}
		}
		if pc != nil {
			pc.done <- res
		}
	}
}

// fail breaks the connection: it fails every pending call with err, closes
// the socket, and tells the Peer to dial anew.
func (c *clientConn) fail(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = fmt.Errorf("connection to server %d broke: %w", c.p.id, err)
	pending := c.pending
	c.pending = nil
	close(c.broken)
	c.mu.Unlock()
	c.conn.Close()
	for _, pc := range pending {
		pc.done <- c.err
	}
	c.p.lost(c, err)
}
