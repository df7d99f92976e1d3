package transport

import (
	"fmt"
	"slices"
	"time"
)

// delayLine holds the requests to a peer that an injected delay holds
// back, in the order of the times they are due, and of their sending among
// those due at once: so requests delayed alike keep Send's order, and a
// request delayed less than one before it overtakes it. Peer.mu guards
// it.
type delayLine struct {
	items   []delayed
	bytes   int
	running bool // a goroutine releases the items
}

// delayed is a request in the delay line, encoded with a zero ID.
type delayed struct {
	at    time.Time
	typ   byte
	frame []byte
	w     waiter
}

// delayLocked puts req in the delay line, to leave after d; p.mu is held.
func (p *Peer) delayLocked(req any, w waiter, d time.Duration) error {
	t := p.t
	frame, _, err := appendRequest(nil, 0, req)
	if err != nil {
		t.log.Error("transport: bad request", "peer", p.id, "err", err)
		return fmt.Errorf("request to server %d: %w", p.id, err)
	}
	l := &p.delay
	if l.bytes > 0 && l.bytes+len(frame) > t.queueBytes {
		return fmt.Errorf("request to server %d: %w: %d bytes delayed, bound %d", p.id, errQueueFull, l.bytes, t.queueBytes)
	}
	if !l.running {
		if !t.spawn(p.releaseDelayed) {
			return errClosed
		}
		l.running = true
	}
	at := time.Now().Add(d)
	i := len(l.items)
	for i > 0 && l.items[i-1].at.After(at) {
		i--
	}
	l.items = slices.Insert(l.items, i, delayed{at: at, typ: requestType(req), frame: frame, w: w})
	l.bytes += len(frame)
	return nil
}

// releaseDelayed moves the requests of the delay line to the connection
// as their delays end, until the line is empty; on Close it fails them.
func (p *Peer) releaseDelayed() {
	t := p.t
	l := &p.delay
	for {
		p.mu.Lock()
		if len(l.items) == 0 {
			l.running = false
			p.mu.Unlock()
			return
		}
		d := l.items[0]
		if wait := time.Until(d.at); wait > 0 {
			p.mu.Unlock()
			if t.sleep(wait, nil) != nil {
				p.failDelayed()
				return
			}
			continue
		}
		l.items[0] = delayed{}
		l.items = l.items[1:]
		l.bytes -= len(d.frame)
		c, err := p.connLocked()
		if err == nil {
			_, err = c.enqueue(d.typ, d.w, func(b []byte, id uint64) ([]byte, int, error) {
				setFrameID(d.frame, id)
				return append(b, d.frame...), len(d.frame) - frameHeaderLen, nil
			})
		}
		p.mu.Unlock()
		if err != nil {
			d.w.deliver(nil, err)
		}
	}
}

// failDelayed fails the requests in the delay line, as the transport
// closes.
func (p *Peer) failDelayed() {
	p.mu.Lock()
	items := p.delay.items
	p.delay = delayLine{}
	p.mu.Unlock()
	for _, d := range items {
		d.w.deliver(nil, errClosed)
	}
}
