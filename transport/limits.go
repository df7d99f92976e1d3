package transport

import (
	"slices"
	"time"
)

// Limits on the connections a server serves. Each holds a goroutine and a
// read buffer of 64 KiB, so neither a client that never finishes the
// handshake nor one that claims a peer's ID may open them without bound. A
// served connection on which no request comes for Config.IdleTimeout goes
// too (serverConn.serve).
const (
	// maxHandshakes bounds the accepted connections whose handshake is not
	// over; each has CallTimeout to finish it (serverHandshake). Beyond
	// it, an accepted connection is closed at once. Real peers handshake
	// once per connection, so a few at a time.
	maxHandshakes = 32
	// maxConnsPerPeer bounds the served connections of one peer ID. A real
	// peer uses one; the second is room for the connection it dials after
	// losing the first, while this server has not yet seen the first close.
	maxConnsPerPeer = 2
	// limitLogEvery spaces the warnings of a limit that keeps being hit.
	limitLogEvery = 10 * time.Second
)

// serveLimits is the state of the limits; TCP.mu guards it.
type serveLimits struct {
	handshakes int                   // connections in the handshake
	served     map[int][]*serverConn // by peer ID, oldest first
	refusedLog rateLog               // of connections refused a handshake
	evictedLog rateLog               // of connections closed for a newer one
}

// rateLog counts the events of a limit and says when one is due a log line.
type rateLog struct {
	last time.Time
	n    int // events since the last line
}

// due counts an event and, at most once per limitLogEvery, returns true
// with the number of events the line is to report.
func (r *rateLog) due(now time.Time) (int, bool) {
	r.n++
	if !r.last.IsZero() && now.Sub(r.last) < limitLogEvery {
		return 0, false
	}
	n := r.n
	r.last, r.n = now, 0
	return n, true
}

// startHandshake reports whether an accepted connection may run the
// handshake; if so, endHandshake must follow.
func (t *TCP) startHandshake() bool {
	t.mu.Lock()
	l := &t.limits
	if l.handshakes < maxHandshakes {
		l.handshakes++
		t.mu.Unlock()
		return true
	}
	n, due := l.refusedLog.due(time.Now())
	t.mu.Unlock()
	if due {
		t.log.Warn("transport: too many connections in the handshake; closing new ones at once",
			"limit", maxHandshakes, "closed", n)
	}
	return false
}

func (t *TCP) endHandshake() {
	t.mu.Lock()
	t.limits.handshakes--
	t.mu.Unlock()
}

// addServed records a served connection of peer sc.from, and closes that
// peer's oldest beyond maxConnsPerPeer.
//
// The oldest goes, not the newest: a peer dials a new connection only
// after losing its last one (a restart, a stalled or broken connection),
// and the one it lost may still look open here (half-open after a crash or
// a silent partition) until IdleTimeout. Refusing the newest would lock
// the real peer out for that long. The cost is that a client claiming a
// peer's ID can close that peer's connection; but as long as the handshake
// is unauthenticated such a client can speak for the peer anyway.
func (t *TCP) addServed(sc *serverConn) {
	t.mu.Lock()
	l := &t.limits
	conns := append(l.served[sc.from], sc)
	var oldest *serverConn
	if len(conns) > maxConnsPerPeer {
		oldest = conns[0]
		conns = slices.Delete(conns, 0, 1)
	}
	l.served[sc.from] = conns
	var n int
	var due bool
	if oldest != nil {
		n, due = l.evictedLog.due(time.Now())
	}
	t.mu.Unlock()
	if oldest == nil {
		return
	}
	oldest.conn.Close()
	if due {
		t.log.Warn("transport: too many connections from peer; closed the oldest",
			"peer", sc.from, "limit", maxConnsPerPeer, "closed", n)
	}
}

// removeServed forgets a served connection; it may have gone already.
func (t *TCP) removeServed(sc *serverConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	conns := t.limits.served[sc.from]
	if i := slices.Index(conns, sc); i >= 0 {
		conns = slices.Delete(conns, i, i+1)
	}
	if len(conns) == 0 {
		delete(t.limits.served, sc.from)
	} else {
		t.limits.served[sc.from] = conns
	}
}
