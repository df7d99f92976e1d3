package transport

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// writeChunk is the most one write to a connection carries: each write
// must finish within the call timeout, so a batch of queued frames goes
// out in pieces.
const writeChunk = 1 << 20

var errQueueFull = errors.New("send queue full")

// outQueue holds the frames waiting to be written to a connection, in the
// order they were queued, and runs the goroutine that writes them (run).
// Frames are laid out straight into the queue's buffer; the writer swaps
// it for an empty one and writes what it took in one go, so that frames
// queued while a write is under way leave together in the next.
type outQueue struct {
	bound int // bytes queued beyond which push refuses a frame; 0 for none

	mu      sync.Mutex
	buf     []byte // the frames queued
	spare   []byte // an empty buffer for the next swap, or nil
	writing int    // bytes the writer took and has not written yet
	tag     uint64 // the tag of the last frame queued
	closed  bool

	wake chan struct{} // full when there is something to write
	room chan struct{} // full after a write
	done chan struct{} // closed by close
}

func newOutQueue(bound int) *outQueue {
	return &outQueue{
		bound: bound,
		wake:  make(chan struct{}, 1),
		room:  make(chan struct{}, 1),
		done:  make(chan struct{}),
	}
}

// push queues the frame that enc appends to the buffer it is given,
// marked with tag (the writer reports the tag of the last frame of each
// write). It refuses the frame if enc fails, if its payload is over
// limit (errTooLarge, with the payload's size), if the queue is over its
// bound (errQueueFull), or if the queue is closed (errClosed). A caller
// that holds a lock of its own around push (to number its frames in
// order) must never take it while holding the queue's.
func (q *outQueue) push(tag uint64, limit int, enc func([]byte) ([]byte, int, error)) (int, error) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return 0, errClosed
	}
	start := len(q.buf)
	if q.bound > 0 && start+q.writing >= q.bound {
		q.mu.Unlock()
		return 0, fmt.Errorf("%w: %d bytes queued, bound %d", errQueueFull, start+q.writing, q.bound)
	}
	b, n, err := enc(q.buf)
	switch {
	case err != nil:
	case n > limit:
		err = fmt.Errorf("%w: payload of %d bytes, limit %d", errTooLarge, n, limit)
	case q.bound > 0 && start+q.writing > 0 && len(b)+q.writing > q.bound:
		err = fmt.Errorf("%w: %d bytes queued, bound %d", errQueueFull, start+q.writing, q.bound)
	}
	if err != nil {
		q.buf = b[:start]
		q.mu.Unlock()
		return n, err
	}
	q.buf, q.tag = b, tag
	q.mu.Unlock()
	signal(q.wake)
	return n, nil
}

// queued returns the bytes queued and not yet written.
func (q *outQueue) queued() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.buf) + q.writing
}

// waitRoom waits until at most limit bytes are queued; false if the queue
// closed or stop was closed first.
func (q *outQueue) waitRoom(limit int, stop <-chan struct{}) bool {
	for q.queued() > limit {
		select {
		case <-q.room:
		case <-q.done:
			return false
		case <-stop:
			return false
		}
	}
	return true
}

// close stops the writer, which drops what is queued, and makes push
// refuse frames. It is idempotent.
func (q *outQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		close(q.done)
	}
}

// run writes the queued frames to conn until close, or a write fails: it
// returns the error. Each write of up to writeChunk bytes must end within
// timeout. After each batch it calls written with the tag of the batch's
// last frame, if written is set.
func (q *outQueue) run(conn net.Conn, timeout time.Duration, written func(tag uint64)) error {
	for {
		select {
		case <-q.wake:
		case <-q.done:
			return nil
		}
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return nil
		}
		b, tag := q.buf, q.tag
		q.buf, q.spare, q.writing = q.spare, nil, len(b)
		q.mu.Unlock()
		if len(b) == 0 {
			continue
		}
		err := writeAll(conn, b, timeout)
		q.mu.Lock()
		q.writing = 0
		if cap(b) <= keepBuffer {
			q.spare = b[:0]
		}
		q.mu.Unlock()
		signal(q.room)
		if err != nil {
			return err
		}
		if written != nil {
			written(tag)
		}
	}
}

// writeAll writes b to conn in pieces of up to writeChunk bytes, each
// within timeout.
func writeAll(conn net.Conn, b []byte, timeout time.Duration) error {
	for len(b) > 0 {
		n := min(len(b), writeChunk)
		conn.SetWriteDeadline(time.Now().Add(timeout))
		if _, err := conn.Write(b[:n]); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		b = b[n:]
	}
	return nil
}

// signal fills a channel of capacity 1 unless it is full.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
