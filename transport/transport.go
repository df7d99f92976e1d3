package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Defaults of Config's zero fields.
const (
	DefaultCallTimeout     = time.Second
	DefaultMaxMessageBytes = 16 << 20
	DefaultDialBackoffMin  = 50 * time.Millisecond
	DefaultDialBackoffMax  = 2 * time.Second
	DefaultIdleTimeout     = 30 * time.Second
	DefaultSendQueueBytes  = 64 << 20

	// MaxMessageBytesLimit is the largest MaxMessageBytes accepted.
	MaxMessageBytesLimit = 1 << 30
)

// Handler serves the requests of other servers; the raft package
// implements it.
type Handler interface {
	// Serve handles a request from server from (as the handshake
	// established it, never as the message claims): a
	// *core.RequestVoteArgs, *core.AppendEntriesArgs,
	// *core.InstallSnapshotArgs, *core.ProbeArgs, *core.TimeoutNowArgs or
	// *core.ReadIndexArgs, which Serve may keep
	// (the transport does not reuse it, nor the bytes its entries'
	// Commands or its Data hold). It must not block for long: it passes
	// the request on and returns. respond is called exactly once, from
	// any goroutine, with the reply (*core.RequestVoteReply,
	// *core.AppendEntriesReply, *core.InstallSnapshotReply,
	// *core.ProbeReply, *core.TimeoutNowReply or *core.ReadIndexReply,
	// which the Handler must not change afterwards) or
	// an error (then the caller sees a failed call). Serve is called for
	// the requests of one connection in the order they arrived, from one
	// goroutine.
	Serve(from int, req any, respond func(reply any, err error))
}

// Config configures a TCP. ID and Peers are required; the zero value of
// every other field means its default.
type Config struct {
	// ID is this server's ID.
	ID int
	// Peers maps every server's ID, this one's included, to its
	// "host:port". This server listens on its own entry, unless Listener
	// is set.
	Peers map[int]string
	// Listener, if set, is the listener the server accepts on instead of
	// listening on Peers[ID]. Once New succeeds the TCP owns it and Close
	// closes it; if New fails, it is still the caller's. See "Starting
	// servers on ephemeral ports" in the package doc.
	Listener net.Listener

	// CallTimeout is the deadline of every call, dialing included
	// (default 1 s): a Call fails when no reply came within it, and a
	// Send when none came within it of the request being written. It also
	// bounds a handshake, and each write to a connection of up to 1 MiB
	// of queued frames: a peer that takes none of them within it (it does
	// not read) loses its connection. A reply must come within it, so it
	// must leave time to send the largest message the servers send (a
	// snapshot chunk, say; see MaxChunkBytes) and to handle it.
	CallTimeout time.Duration
	// MaxMessageBytes bounds the payload of a frame: a request's or a
	// reply's encoded fields (default 16 MiB, at most
	// MaxMessageBytesLimit). Requests and replies over it are refused,
	// with a log line: the request fails and the connection serves on.
	MaxMessageBytes int
	// After a failed dial, a peer is not dialed again for DialBackoffMin
	// (default 50 ms), doubling with each further failure up to
	// DialBackoffMax (default 2 s); meanwhile calls to it fail at once.
	DialBackoffMin time.Duration
	DialBackoffMax time.Duration
	// IdleTimeout closes a served connection on which no request arrives
	// for that long (default 30 s), with a debug log line; it is far above
	// Raft's heartbeat interval (100 ms), so a leader's connection to a
	// follower never idles. A request must arrive whole within it, counted
	// from the end of the one before. A caller does not reuse a connection
	// it sent nothing on for half of it, but dials anew, so as not to race
	// the server's close: give every server the same IdleTimeout.
	IdleTimeout time.Duration

	// SendQueueBytes bounds the bytes of requests queued for one peer and
	// not yet written to its connection (default the larger of 64 MiB
	// and twice MaxMessageBytes; at least MaxMessageBytes plus 13). A
	// Send or Call beyond it fails at once. A server likewise stops
	// reading a connection's requests while more than this many bytes of
	// its replies wait to be written.
	SendQueueBytes int

	// TLS, if set, secures every connection, either way, with mutual TLS:
	// it serves with the config and dials with it. Each end presents a
	// certificate naming its server ID by the URI SAN raft://server/<id>
	// (ServerURI), and the transport verifies the other's, against
	// ClientCAs when serving and RootCAs when dialing; the peer's ID is the
	// one its certificate names, whatever its hello says, and must be in
	// Peers. Host names are not checked (ServerName and
	// InsecureSkipVerify are ignored), nor the system's roots used. If
	// GetConfigForClient is set, the config it returns applies, to the
	// dials too (it is then called with an empty ClientHelloInfo): so
	// certificates and CAs can change without a restart (CertReloader).
	// TLSConfig builds a config. One of TLS and Insecure must be set.
	TLS *tls.Config
	// Insecure, if set, runs the transport over plain TCP, without TLS:
	// anyone who reaches the port can then claim a peer's ID. It is for
	// trusted networks and tests. One of TLS and Insecure must be set.
	Insecure bool

	// Logger receives the transport's log lines (default slog.Default()).
	Logger *slog.Logger
	// Faults, if set, injects faults into this server's traffic.
	Faults *Faults
}

// TCP is one server's end of the network: a listener that serves the
// server's Handler, and a Peer for each other server.
type TCP struct {
	id          int
	peers       map[int]string
	ln          net.Listener
	callTimeout time.Duration
	maxMsg      int
	backoffMin  time.Duration
	backoffMax  time.Duration
	idleTimeout time.Duration
	queueBytes  int
	log         *slog.Logger
	faults      *Faults
	clients     map[int]*Peer // with peers, under pmu: AddPeers adds to them
	pmu         sync.RWMutex

	tls           *tls.Config // Config.TLS, or nil without TLS
	serverTLSConf *tls.Config // what the server side serves with (tls.go)

	ctx    context.Context // done once Close starts
	cancel context.CancelFunc

	mu      sync.Mutex
	closed  bool
	handler Handler               // set by Serve
	conns   map[net.Conn]struct{} // every open connection, either way
	wg      sync.WaitGroup        // every goroutine the TCP started
	limits  serveLimits           // of the served connections (limits.go)

	closeOnce sync.Once
	closeErr  error
}

// New checks cfg, starts listening (on cfg.Listener, or on the address of
// cfg.ID in cfg.Peers) and returns the server's TCP. It serves nothing
// before Serve; calls to other servers work at once.
func New(cfg Config) (*TCP, error) {
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("transport: server %d: bad config: %w", cfg.ID, err)
	}
	t := &TCP{
		id:          cfg.ID,
		peers:       make(map[int]string, len(cfg.Peers)),
		callTimeout: cmp(cfg.CallTimeout, DefaultCallTimeout),
		maxMsg:      cmp(cfg.MaxMessageBytes, DefaultMaxMessageBytes),
		backoffMin:  cmp(cfg.DialBackoffMin, DefaultDialBackoffMin),
		backoffMax:  cmp(cfg.DialBackoffMax, DefaultDialBackoffMax),
		idleTimeout: cmp(cfg.IdleTimeout, DefaultIdleTimeout),
		queueBytes:  cfg.SendQueueBytes,
		log:         cfg.Logger,
		faults:      cfg.Faults,
		clients:     make(map[int]*Peer, len(cfg.Peers)),
		conns:       make(map[net.Conn]struct{}),
		limits:      serveLimits{served: make(map[int][]*serverConn)},
	}
	if cfg.TLS != nil {
		t.tls = cfg.TLS.Clone()
		t.serverTLSConf = t.serverTLS()
	}
	if t.log == nil {
		t.log = slog.Default()
	}
	t.log = t.log.With("server", cfg.ID)
	if t.queueBytes == 0 {
		t.queueBytes = max(DefaultSendQueueBytes, 2*t.maxMsg)
	}
	if t.backoffMax < t.backoffMin {
		t.backoffMax = t.backoffMin
	}
	for id, addr := range cfg.Peers {
		t.peers[id] = addr
		if id != cfg.ID {
			t.clients[id] = &Peer{t: t, id: id, addr: addr, backoff: t.backoffMin}
		}
	}
	t.ln = cfg.Listener
	if t.ln == nil {
		addr := cfg.Peers[cfg.ID]
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("transport: server %d: listen on %s: %w", cfg.ID, addr, err)
		}
		t.ln = ln
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	return t, nil
}

func (cfg *Config) check() error {
	if len(cfg.Peers) == 0 {
		return errors.New("no Peers")
	}
	if _, ok := cfg.Peers[cfg.ID]; !ok {
		return fmt.Errorf("ID %d is not in Peers", cfg.ID)
	}
	switch {
	case cfg.TLS == nil && !cfg.Insecure:
		return errors.New("neither TLS nor Insecure is set: set TLS (see transport.TLSConfig), or Insecure for plain TCP on a trusted network or in tests")
	case cfg.TLS != nil && cfg.Insecure:
		return errors.New("both TLS and Insecure are set: set one")
	case cfg.TLS != nil:
		if err := checkTLS(cfg.TLS); err != nil {
			return err
		}
	}
	for id, addr := range cfg.Peers {
		if addr == "" {
			return fmt.Errorf("server %d has an empty address in Peers", id)
		}
	}
	switch {
	case cfg.CallTimeout < 0:
		return fmt.Errorf("negative CallTimeout %v", cfg.CallTimeout)
	case cfg.MaxMessageBytes < 0 || cfg.MaxMessageBytes > MaxMessageBytesLimit:
		return fmt.Errorf("MaxMessageBytes %d out of [0, %d]", cfg.MaxMessageBytes, MaxMessageBytesLimit)
	case cfg.DialBackoffMin < 0 || cfg.DialBackoffMax < 0:
		return fmt.Errorf("negative DialBackoff %v, %v", cfg.DialBackoffMin, cfg.DialBackoffMax)
	case cfg.DialBackoffMax > 0 && cfg.DialBackoffMin > cfg.DialBackoffMax:
		return fmt.Errorf("DialBackoffMin %v over DialBackoffMax %v", cfg.DialBackoffMin, cfg.DialBackoffMax)
	case cfg.IdleTimeout < 0:
		return fmt.Errorf("negative IdleTimeout %v", cfg.IdleTimeout)
	}
	if q, m := cfg.SendQueueBytes, cmp(cfg.MaxMessageBytes, DefaultMaxMessageBytes); q != 0 && q < m+frameHeaderLen {
		return fmt.Errorf("SendQueueBytes %d under MaxMessageBytes %d plus a frame header (%d): a message of the largest size could never be sent; raise SendQueueBytes or leave it 0", q, m, frameHeaderLen)
	}
	return nil
}

// cmp returns v, or def if v is zero.
func cmp[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Addr returns the address the server listens on.
func (t *TCP) Addr() net.Addr { return t.ln.Addr() }

// ID returns the server's ID.
func (t *TCP) ID() int { return t.id }

// commandOverhead is what MaxCommandBytes leaves, out of MaxMessageBytes,
// for the rest of an AppendEntries request that carries one entry: its
// other fields, the entry's term and type, and the lengths. These take
// under 80 bytes with every number at its largest (TestMaxCommandBytes
// measures them); the rest is room for fields added later.
const commandOverhead = 1 << 10

// MaxCommandBytes returns the largest command that one log entry can carry
// in an AppendEntries request under Config.MaxMessageBytes: that limit less
// 1 KiB, or 0 if the limit is under 1 KiB. The raft package checks its own
// Config.MaxCommandBytes against it.
func (t *TCP) MaxCommandBytes() int { return max(t.maxMsg-commandOverhead, 0) }

// chunkOverhead is what MaxChunkBytes leaves, out of MaxMessageBytes, for
// the rest of an InstallSnapshot request: its other fields and the data's
// length. These take under 70 bytes with every number at its largest
// (TestMaxChunkBytes measures them); the rest is room for fields added
// later.
const chunkOverhead = 1 << 10

// MaxChunkBytes returns the largest Data that one InstallSnapshot call can
// carry under Config.MaxMessageBytes: that limit less 1 KiB, or 0 if the
// limit is under 1 KiB. A call with more Data fails with no request sent.
//
// A chunk must also cross the network, and be handled, within
// Config.CallTimeout. Under the defaults (16 MiB, 1 s) a chunk of
// MaxChunkBytes needs a link of over 134 Mbit/s, besides the handler's
// time, so chunks of 1 MiB are the safer choice: one takes a few
// milliseconds over loopback (BenchmarkInstallSnapshot), and the
// sending end keeps its buffers from one such chunk to the next.
func (t *TCP) MaxChunkBytes() int { return max(t.maxMsg-chunkOverhead, 0) }

// Peer returns the Peer that reaches server id, the same one on every call.
// id must be in Config.Peers and not the server's own.
func (t *TCP) Peer(id int) (*Peer, error) {
	t.pmu.RLock()
	p, ok := t.clients[id]
	t.pmu.RUnlock()
	if !ok {
		if id == t.id {
			return nil, fmt.Errorf("transport: server %d: no Peer for the server itself", id)
		}
		return nil, fmt.Errorf("transport: server %d: unknown peer ID %d", t.id, id)
	}
	return p, nil
}

// AddPeers makes the servers of peers (ID to address) known, as a
// cluster's configuration grows: their calls are accepted, and Peer
// reaches them. A server known already keeps its address.
func (t *TCP) AddPeers(peers map[int]string) {
	t.pmu.Lock()
	defer t.pmu.Unlock()
	for id, addr := range peers {
		if _, ok := t.peers[id]; ok || addr == "" {
			continue
		}
		t.peers[id] = addr
		if id != t.id {
			t.clients[id] = &Peer{t: t, id: id, addr: addr, backoff: t.backoffMin}
		}
	}
}

// known reports whether server id is a peer the transport knows.
func (t *TCP) known(id int) bool {
	t.pmu.RLock()
	defer t.pmu.RUnlock()
	_, ok := t.peers[id]
	return ok
}

// Close stops the server: it closes the listener and every connection,
// fails the calls and Sends in progress, and waits for every goroutine the
// TCP started, among them those calling Handler.Serve: Close returns when
// the Serve calls in progress have returned. Replies a Handler gives
// afterwards are dropped. Afterwards calls fail at
// once and the listening port is free. Close is idempotent; later calls
// return the first one's result.
func (t *TCP) Close() error {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.closed = true
		conns := make([]net.Conn, 0, len(t.conns))
		for c := range t.conns {
			conns = append(conns, c)
		}
		t.mu.Unlock()
		t.cancel()
		err := t.ln.Close()
		for _, c := range conns {
			c.Close()
		}
		t.wg.Wait()
		if err != nil && !errors.Is(err, net.ErrClosed) {
			t.closeErr = fmt.Errorf("transport: server %d: close listener: %w", t.id, err)
		}
	})
	return t.closeErr
}

func (t *TCP) isClosed() bool {
	select {
	case <-t.ctx.Done():
		return true
	default:
		return false
	}
}

// spawn runs f in a goroutine that Close waits for, unless the TCP is
// closed.
func (t *TCP) spawn(f func()) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		f()
	}()
	return true
}

// track records an open connection for Close to close, unless the TCP is
// closed.
func (t *TCP) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

// swapTracked tracks c instead of old (its TLS connection), unless the TCP
// is closed.
func (t *TCP) swapTracked(old, c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	delete(t.conns, old)
	t.conns[c] = struct{}{}
	return true
}

func (t *TCP) untrack(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

// enter counts a goroutine the TCP did not start (a timer's) as one of
// its own for Close to wait for, unless the TCP is closed; exit must
// follow.
func (t *TCP) enter() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.wg.Add(1)
	return true
}

func (t *TCP) exit() { t.wg.Done() }

// after runs f in a goroutine of the TCP's after d, or at Close if that
// comes first; in a goroutine of its own if the TCP is closed.
func (t *TCP) after(d time.Duration, f func()) {
	if !t.spawn(func() {
		t.sleep(d, nil)
		f()
	}) {
		go f()
	}
}

// loseLater tells w that its request was lost, after the wait a lost
// message costs.
func (t *TCP) loseLater(w waiter) {
	t.after(t.faults.lostDelay(), func() { w.deliver(nil, errLost) })
}

// sleep waits d, unless the call's deadline (expired) or Close comes first.
func (t *TCP) sleep(d time.Duration, expired <-chan time.Time) error {
	if d <= 0 {
		return nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-expired:
		return errTimeout
	case <-t.ctx.Done():
		return errClosed
	}
}

// lose waits as a call whose message was lost does, and returns errLost.
func (t *TCP) lose(expired <-chan time.Time) error {
	if err := t.sleep(t.faults.lostDelay(), expired); err != nil {
		return err
	}
	return errLost
}

// ListenLocal listens on an ephemeral port of 127.0.0.1 for each of ids and
// returns the listeners, to pass as Config.Listener, and the Peers map of
// their addresses. On error it closes the listeners it opened.
func ListenLocal(ids ...int) (map[int]net.Listener, map[int]string, error) {
	lns := make(map[int]net.Listener, len(ids))
	peers := make(map[int]string, len(ids))
	for _, id := range ids {
		if _, dup := lns[id]; dup {
			closeAll(lns)
			return nil, nil, fmt.Errorf("transport: ListenLocal: server ID %d given twice", id)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			closeAll(lns)
			return nil, nil, fmt.Errorf("transport: ListenLocal: listen for server %d: %w", id, err)
		}
		lns[id], peers[id] = ln, ln.Addr().String()
	}
	return lns, peers, nil
}

func closeAll(lns map[int]net.Listener) {
	for _, ln := range lns {
		ln.Close()
	}
}
