package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/raftkit/raft/core"
)

// The methods a Peer's Call names.
const (
	methodRequestVote     = "Raft.RequestVote"
	methodAppendEntries   = "Raft.AppendEntries"
	methodProbe           = "Raft.Probe"
	methodInstallSnapshot = "Raft.InstallSnapshot"
	methodTimeoutNow      = "Raft.TimeoutNow"
	methodReadIndex       = "Raft.ReadIndex"
)

var (
	errClosed      = errors.New("transport closed")
	errTimeout     = errors.New("call timed out")
	errLost        = errors.New("message lost to an injected fault")
	errTooLarge    = errors.New("message over the size limit")
	errBackoff     = errors.New("peer unreachable, waiting to dial again")
	errUnreachable = errors.New("cannot reach peer")
	errIdle        = errors.New("connection idle for half the IdleTimeout")
	errStalled     = errors.New("calls in a row timed out with nothing read")
)

// maxStalledCalls is how many calls in a row may time out on a connection
// from which nothing is read meanwhile before the connection is dropped
// and the peer dialed anew. A silent partition (or a peer that crashed
// without closing its sockets) leaves a connection that looks open, and
// TCP may take many minutes to give up on it; a new connection works as
// soon as the path does. A peer whose handlers all hang loses its
// connection too, which costs a dial.
const maxStalledCalls = 3

// Peer reaches one other server of the cluster. It satisfies the raft
// package's Peer interface (Call), and pipelines requests (Send). Its
// methods are safe for concurrent use; the requests to the peer share one
// connection.
type Peer struct {
	t    *TCP
	id   int
	addr string

	mu       sync.Mutex
	cc       *clientConn   // the live connection (maybe still dialing), or nil
	retryAt  time.Time     // no dial before this
	backoff  time.Duration // the wait after the next failed dial
	lastErr  error         // why the last dial failed
	failures int           // dials failed in a row
	delay    delayLine     // requests held back by an injected delay

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
//	"Raft.TimeoutNow"       *core.TimeoutNowArgs       *core.TimeoutNowReply
//	"Raft.ReadIndex"        *core.ReadIndexArgs        *core.ReadIndexReply
//
// Call returns false, leaving reply as it was, when no answer came in
// Config.CallTimeout; at once when the peer could not be dialed lately
// (Call then waits out the redial backoff without dialing), or when the
// requests queued for the peer are over Config.SendQueueBytes; after a
// short wait when an injected fault lost the request or the reply; when
// the message was over the size limit (or an InstallSnapshot's Data over
// TCP.MaxChunkBytes), the handler failed, the connection broke, the
// transport is closed, or the arguments are not as above. A false call
// may still have run the handler. Call reads args only until it returns.
// Call and Send are not ordered with each other.
func (p *Peer) Call(svcMeth string, args any, reply any) bool {
	return p.call(svcMeth, args, reply) == nil
}

// call is Call, with the reason of a failure.
func (p *Peer) call(svcMeth string, args, reply any) error {
	t := p.t
	if !validCall(svcMeth, args, reply) {
		return p.badCall(svcMeth, args, reply)
	}
	if t.isClosed() {
		return errClosed
	}
	timer := time.NewTimer(t.callTimeout)
	defer timer.Stop()
	ch := make(chan outcome, 1)
	tk, err := p.send(args, waiter{ch: ch})
	if errors.Is(err, errLost) {
		return t.lose(timer.C)
	}
	if err != nil {
		return err
	}
	select {
	case o := <-ch:
		if o.err != nil {
			return o.err
		}
		setReply(reply, o.reply)
		return nil
	case <-timer.C:
		tk.timedOut()
		return errTimeout
	case <-t.ctx.Done():
		return errClosed
	}
}

// validCall reports whether svcMeth, args and reply are one of the
// combinations Call takes.
func validCall(svcMeth string, args, reply any) bool {
	switch svcMeth {
	case methodRequestVote:
		return bound[core.RequestVoteArgs, core.RequestVoteReply](args, reply)
	case methodAppendEntries:
		return bound[core.AppendEntriesArgs, core.AppendEntriesReply](args, reply)
	case methodProbe:
		return bound[core.ProbeArgs, core.ProbeReply](args, reply)
	case methodInstallSnapshot:
		return bound[core.InstallSnapshotArgs, core.InstallSnapshotReply](args, reply)
	case methodTimeoutNow:
		return bound[core.TimeoutNowArgs, core.TimeoutNowReply](args, reply)
	case methodReadIndex:
		return bound[core.ReadIndexArgs, core.ReadIndexReply](args, reply)
	}
	return false
}

// bound reports whether args and reply are a non-nil *A and *R.
func bound[A, R any](args, reply any) bool {
	a, ok1 := args.(*A)
	r, ok2 := reply.(*R)
	return ok1 && ok2 && a != nil && r != nil
}

// setReply copies the reply decoded (of the type reply points to, as the
// reader checks) to reply.
func setReply(reply, decoded any) {
	switch r := reply.(type) {
	case *core.RequestVoteReply:
		*r = *decoded.(*core.RequestVoteReply)
	case *core.AppendEntriesReply:
		*r = *decoded.(*core.AppendEntriesReply)
	case *core.ProbeReply:
		*r = *decoded.(*core.ProbeReply)
	case *core.InstallSnapshotReply:
		*r = *decoded.(*core.InstallSnapshotReply)
	case *core.TimeoutNowReply:
		*r = *decoded.(*core.TimeoutNowReply)
	case *core.ReadIndexReply:
		*r = *decoded.(*core.ReadIndexReply)
	}
}

func (p *Peer) badCall(svcMeth string, args, reply any) error {
	err := fmt.Errorf("transport: bad call %q with %T, %T: want one of %q, %q, %q, %q, %q or %q with non-nil pointers to the core package's Args and Reply of that RPC",
		svcMeth, args, reply, methodRequestVote, methodAppendEntries, methodProbe, methodInstallSnapshot, methodTimeoutNow, methodReadIndex)
	p.t.log.Error(err.Error(), "peer", p.id)
	return err
}

// Send sends a request without waiting for its reply: the requests Send
// is given for one peer are written in the order of the calls. req is a
// *core.RequestVoteArgs, *core.AppendEntriesArgs, *core.InstallSnapshotArgs,
// *core.ProbeArgs, *core.TimeoutNowArgs or *core.ReadIndexArgs; Send reads
// it only until it returns.
//
// Send never blocks: beyond Config.SendQueueBytes of requests queued for
// the peer and not yet written, it fails at once, as it does when the
// peer could not be dialed lately (see Call). done is called exactly once,
// from a transport goroutine, with the reply (*core.RequestVoteReply,
// *core.AppendEntriesReply, *core.InstallSnapshotReply, *core.ProbeReply,
// *core.TimeoutNowReply or *core.ReadIndexReply, which done may keep) and
// ok true; or with nil and ok false: the request or its reply was lost (to an injected fault, after
// the lost wait), refused (queue full, over a size limit, the handler
// failed, a bad req), no reply came within Config.CallTimeout of the
// request being written, the connection broke, or the transport closed.
// A request whose done got ok false may still have been handled. done
// must not block for long: the replies of the connection wait for it.
func (p *Peer) Send(req any, done func(reply any, ok bool)) {
	t := p.t
	if done == nil {
		t.log.Error("transport: Send with a nil done; request dropped", "peer", p.id, "request", fmt.Sprintf("%T", req))
		return
	}
	if requestType(req) == 0 {
		t.log.Error(fmt.Sprintf("transport: bad Send with %T: want a non-nil pointer to the core package's Args of an RPC", req), "peer", p.id)
		t.after(0, func() { done(nil, false) })
		return
	}
	if _, err := p.send(req, waiter{done: done}); err != nil {
		var wait time.Duration
		if errors.Is(err, errLost) {
			wait = t.faults.lostDelay()
		}
		t.after(wait, func() { done(nil, false) })
	}
}

// ticket identifies a request on the connection it was queued on, for a
// Call that stops waiting.
type ticket struct {
	c  *clientConn
	id uint64
}

// send queues req, a valid request, for the peer: on a connection, or in
// the delay line if an injected fault delays it. If it returns an error,
// w is never told; else w is told the outcome exactly once, from a
// transport goroutine. errLost means an injected fault lost the request.
func (p *Peer) send(req any, w waiter) (ticket, error) {
	t := p.t
	if t.isClosed() {
		return ticket{}, errClosed
	}
	if a, ok := req.(*core.InstallSnapshotArgs); ok {
		if err := p.checkChunk(a); err != nil {
			return ticket{}, err
		}
	}
	// The request's fate on the way out.
	lost, delay := t.faults.fate(t.id, p.id)
	if lost {
		return ticket{}, errLost
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if delay > 0 {
		return ticket{}, p.delayLocked(req, w, delay)
	}
	c, err := p.connLocked()
	if err != nil {
		return ticket{}, err
	}
	return c.enqueue(requestType(req), w, func(b []byte, id uint64) ([]byte, int, error) {
		return appendRequest(b, id, req)
	})
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

// connLocked returns the connection to the peer, starting one (which
// dials in the background) if there is none and the backoff allows; p.mu
// is held.
func (p *Peer) connLocked() (*clientConn, error) {
	t := p.t
	if c := p.cc; c != nil {
		select {
		case <-c.broken:
			p.cc = nil // (its goroutine may not have told us yet)
		default:
			if !c.idle(t.idleTimeout / 2) {
				return c, nil
			}
			// The server closes it at IdleTimeout: rather than race
			// that, dial anew.
			p.cc = nil
			c.fail(errIdle)
		}
	}
	if wait := time.Until(p.retryAt); wait > 0 {
		return nil, fmt.Errorf("%w (for %v more): %w", errBackoff, wait.Round(time.Millisecond), p.lastErr)
	}
	c := newClientConn(p)
	if !t.spawn(c.run) {
		return nil, errClosed
	}
	p.cc = c
	p.dials++
	return c, nil
}

// dialed records the end of a dial on c: success, or a failure that puts
// the peer in backoff.
func (p *Peer) dialed(c *clientConn, err error) {
	t := p.t
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		if p.failures > 0 {
			t.log.Info("transport: reached peer", "peer", p.id, "addr", p.addr, "after_failures", p.failures)
		}
		p.failures, p.lastErr, p.backoff = 0, nil, t.backoffMin
		return
	}
	if p.cc == c {
		p.cc = nil
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
func (p *Peer) connect() (net.Conn, *frameReader, error) {
	t := p.t
	ctx, cancel := context.WithTimeout(t.ctx, t.callTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: dial server %d at %s: %w", errUnreachable, p.id, p.addr, err)
	}
	if !t.track(conn) {
		conn.Close()
		return nil, nil, errClosed
	}
	deadline, _ := ctx.Deadline()
	if t.tls != nil {
		conn.SetDeadline(deadline)
		tc, err := p.tlsHandshake(ctx, conn)
		if err != nil {
			t.untrack(conn)
			conn.Close()
			return nil, nil, fmt.Errorf("%w: handshake with server %d at %s: %w", errUnreachable, p.id, p.addr, err)
		}
		if !t.swapTracked(conn, tc) {
			conn.Close()
			return nil, nil, errClosed
		}
		conn = tc
	}
	rd, err := clientHandshake(conn, t.id, p.id, t.maxMsg, deadline)
	if err != nil {
		t.untrack(conn)
		conn.Close()
		return nil, nil, fmt.Errorf("%w: handshake with server %d at %s: %w", errUnreachable, p.id, p.addr, err)
	}
	return conn, rd, nil
}

// lost forgets a broken connection, so that the next request dials again.
func (p *Peer) lost(c *clientConn, err error) {
	p.mu.Lock()
	if p.cc == c {
		p.cc = nil
	}
	p.mu.Unlock()
	logEnd(p.t, "transport: lost connection to peer", p.id, "read", err)
}

// remoteError is the error a server answered a request with.
type remoteError string

func (e remoteError) Error() string { return string(e) }

// clientConn is a connection to a peer, shared by all the requests to it.
// Its goroutine (run) dials, then reads the replies and hands each to its
// request's waiter; another writes the requests queued (outQueue.run).
// Requests may be queued while it dials.
type clientConn struct {
	p *Peer
	q *outQueue

	mu       sync.Mutex
	conn     net.Conn // once dialed
	nextID   uint64
	calls    callQueue
	err      error         // why it broke
	cause    error         // the error it broke with, unwrapped
	broken   chan struct{} // closed when it breaks
	lastCall time.Time     // when the last request was queued
	timeouts int           // requests timed out since the last read
	timer    *time.Timer   // fires at the oldest written request's deadline
	armed    bool          // timer is set
}

func newClientConn(p *Peer) *clientConn {
	return &clientConn{
		p:        p,
		q:        newOutQueue(p.t.queueBytes),
		nextID:   1, // (callQueue.stamped starts at 0)
		broken:   make(chan struct{}),
		lastCall: time.Now(),
	}
}

// run dials the peer, then reads replies until the connection breaks;
// then it fails the requests still pending.
func (c *clientConn) run() {
	p, t := c.p, c.p.t
	conn, rd, err := p.connect()
	p.dialed(c, err)
	if err == nil {
		c.mu.Lock()
		if c.err == nil {
			c.conn = conn
		}
		err = c.err
		c.mu.Unlock()
		switch {
		case err != nil:
		case !t.spawn(c.write):
			err = errClosed
		default:
			err = c.read(rd)
		}
		t.untrack(conn)
		conn.Close()
	}
	c.fail(err)
	c.mu.Lock()
	pending, err := c.calls.drain(), c.err
	cause := c.cause
	c.mu.Unlock()
	for _, pc := range pending {
		pc.w.deliver(nil, err)
	}
	if conn != nil {
		p.lost(c, cause)
	}
}

// write runs the writer until the connection breaks.
func (c *clientConn) write() {
	t := c.p.t
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if err := c.q.run(conn, t.callTimeout, c.written); err != nil {
		c.fail(err)
	}
}

// written starts the deadlines of the requests up to ID last.
func (c *clientConn) written(last uint64) {
	c.mu.Lock()
	c.calls.stamp(last, time.Now().Add(c.p.t.callTimeout))
	c.armLocked()
	c.mu.Unlock()
}

// enqueue queues the request that enc lays out with the ID it is given;
// typ is its frame type.
func (c *clientConn) enqueue(typ byte, w waiter, enc func(b []byte, id uint64) ([]byte, int, error)) (ticket, error) {
	t := c.p.t
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return ticket{}, err
	}
	id := c.nextID
	n, err := c.q.push(id, t.maxMsg, func(b []byte) ([]byte, int, error) { return enc(b, id) })
	if err != nil {
		c.mu.Unlock()
		switch {
		case errors.Is(err, errTooLarge):
			t.log.Warn("transport: refused to send a request over the size limit",
				"peer", c.p.id, "request", typeName(typ), "bytes", n, "limit", t.maxMsg)
			return ticket{}, fmt.Errorf("%w: request %s of %d bytes, limit %d", errTooLarge, typeName(typ), n, t.maxMsg)
		case errors.Is(err, errQueueFull) || errors.Is(err, errClosed):
		default:
			t.log.Error("transport: bad request", "peer", c.p.id, "err", err)
		}
		return ticket{}, fmt.Errorf("request to server %d: %w", c.p.id, err)
	}
	c.nextID++
	c.calls.add(pendingCall{id: id, typ: typ, w: w})
	c.lastCall = time.Now()
	c.mu.Unlock()
	return ticket{c, id}, nil
}

// timedOut forgets a request whose Call stopped waiting, and drops the
// connection if it is the maxStalledCalls'th written request in a row to
// time out with nothing read meanwhile.
func (tk ticket) timedOut() {
	c := tk.c
	if c == nil {
		return // it never reached a connection
	}
	c.mu.Lock()
	pc, ok := c.calls.take(tk.id)
	written := ok && !pc.deadline.IsZero()
	if written {
		c.timeouts++
	}
	stalled := written && c.timeouts >= maxStalledCalls
	c.mu.Unlock()
	if stalled {
		c.stalled()
	}
}

// expire fails the requests that got no reply within the call timeout of
// being written, as its timer fires.
func (c *clientConn) expire() {
	t := c.p.t
	if !t.enter() {
		return // Close fails them
	}
	defer t.exit()
	c.mu.Lock()
	c.armed = false
	expired := c.calls.expire(time.Now())
	c.timeouts += len(expired)
	stalled := len(expired) > 0 && c.timeouts >= maxStalledCalls
	c.armLocked()
	c.mu.Unlock()
	if stalled {
		c.stalled()
	}
	for _, pc := range expired {
		pc.w.deliver(nil, errTimeout)
	}
}

// armLocked sets the timer for the oldest written request's deadline,
// unless it is set; c.mu is held.
func (c *clientConn) armLocked() {
	if c.armed || c.err != nil {
		return
	}
	d, ok := c.calls.nextDeadline()
	if !ok {
		return
	}
	if c.timer == nil {
		c.timer = time.AfterFunc(time.Until(d), c.expire)
	} else {
		c.timer.Reset(time.Until(d))
	}
	c.armed = true
}

// stalled drops the connection for requests that timed out in a row.
func (c *clientConn) stalled() {
	if c.fail(errStalled) {
		c.p.t.log.Warn("transport: dropping a stalled connection to peer; will dial again",
			"peer", c.p.id, "timeouts", maxStalledCalls)
	}
}

// idle reports whether no request is pending and none was queued for d.
func (c *clientConn) idle(d time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls.live == 0 && time.Since(c.lastCall) >= d
}

func (c *clientConn) brokenErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// read reads replies and hands each to its request's waiter, until the
// connection breaks.
func (c *clientConn) read(rd *frameReader) error {
	t := c.p.t
	for {
		in, err := rd.readReply()
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.timeouts = 0
		pc, ok := c.calls.take(in.id)
		c.mu.Unlock()
		if !ok {
			continue // it timed out, or its Call stopped waiting
		}
		if in.typ != typeError && in.typ != pc.typ|typeReply {
			err := fmt.Errorf("%w: %s frame in answer to a %s request", errProtocol, typeName(in.typ), typeName(pc.typ))
			pc.w.deliver(nil, err)
			return err
		}
		switch {
		case in.over > 0:
			t.log.Warn("transport: refused a reply over the size limit",
				"peer", c.p.id, "reply", typeName(in.typ), "bytes", in.over, "limit", t.maxMsg)
			pc.w.deliver(nil, fmt.Errorf("%w: %s of %d bytes, limit %d", errTooLarge, typeName(in.typ), in.over, t.maxMsg))
		case in.typ == typeError && in.code == codeLost:
			t.loseLater(pc.w)
		case in.typ == typeError:
			pc.w.deliver(nil, remoteError(in.msg))
		case t.faults.isCut(c.p.id, t.id):
			// A cut is honoured by both ends: the reply came over a link
			// that this side's Faults says is cut.
			t.loseLater(pc.w)
		default:
			pc.w.deliver(in.reply, nil)
		}
	}
}

// fail breaks the connection with err, unless it is broken already:
// queueing stops, the socket closes, and the connection's goroutine fails
// the requests pending. It reports whether it broke the connection.
func (c *clientConn) fail(err error) bool {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return false
	}
	c.err = fmt.Errorf("connection to server %d broke: %w", c.p.id, err)
	c.cause = err
	close(c.broken)
	if c.timer != nil {
		c.timer.Stop()
	}
	conn := c.conn
	c.mu.Unlock()
	c.q.close()
	if conn != nil {
		conn.Close()
	}
	return true
}
