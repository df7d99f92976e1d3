package transport

import (
	"slices"
	"time"
)

// outcome is the end of a request: its reply, or why there is none.
type outcome struct {
	reply any
	err   error
}

// waiter is told the outcome of a request: Send's done, or the channel
// a Call waits on (buffered, so that telling never blocks).
type waiter struct {
	done func(reply any, ok bool)
	ch   chan<- outcome
}

// deliver tells w the outcome.
func (w waiter) deliver(reply any, err error) {
	if w.done != nil {
		w.done(reply, err == nil)
		return
	}
	w.ch <- outcome{reply, err}
}

// pendingCall is a request queued or written on a connection, waiting
// for its reply.
type pendingCall struct {
	id       uint64
	typ      byte      // the request's frame type
	deadline time.Time // when it times out; zero until it is written
	w        waiter
	live     bool // false once answered, expired or forgotten
}

// callQueue holds the pending calls of a connection in the order of their
// IDs, which is the order in which they are queued and written: so the
// calls written are a prefix, and their deadlines grow along the queue.
// Calls that end out of order stay behind, not live, until the calls
// before them end too.
type callQueue struct {
	calls   []pendingCall // calls[head:] are the queue
	head    int
	live    int    // live calls
	stamped uint64 // the calls up to this ID have their deadline; IDs start at 1
}

func (q *callQueue) add(pc pendingCall) {
	pc.live = true
	q.calls = append(q.calls, pc)
	q.live++
}

// index returns the position of the call with ID id, or -1.
func (q *callQueue) index(id uint64) int {
	// Most replies answer the oldest call.
	if q.head < len(q.calls) && q.calls[q.head].id == id {
		return q.head
	}
	i, ok := q.search(id)
	if !ok {
		return -1
	}
	return i
}

// search returns the position of the call with ID id, or where it would
// be, and whether it is there.
func (q *callQueue) search(id uint64) (int, bool) {
	i, ok := slices.BinarySearchFunc(q.calls[q.head:], id, func(pc pendingCall, id uint64) int {
		return cmpUint64(pc.id, id)
	})
	return q.head + i, ok
}

func cmpUint64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// take removes the live call with ID id and returns it; false if there is
// none (it ended already).
func (q *callQueue) take(id uint64) (pendingCall, bool) {
	i := q.index(id)
	if i < 0 || !q.calls[i].live {
		return pendingCall{}, false
	}
	pc := q.calls[i]
	q.end(i)
	q.trim()
	return pc, true
}

// end marks the call at position i as ended, and drops its waiter.
func (q *callQueue) end(i int) {
	q.calls[i].live = false
	q.calls[i].w = waiter{}
	q.live--
}

// trim drops the ended calls at the front, and reclaims the space before
// the head once it is most of the slice.
func (q *callQueue) trim() {
	for q.head < len(q.calls) && !q.calls[q.head].live {
		q.calls[q.head] = pendingCall{}
		q.head++
	}
	switch {
	case q.head == len(q.calls):
		q.calls, q.head = q.calls[:0], 0
	case q.head >= 1024 && q.head > len(q.calls)/2:
		n := copy(q.calls, q.calls[q.head:])
		clear(q.calls[n:])
		q.calls, q.head = q.calls[:n], 0
	}
}

// stamp sets the deadline of the calls up to ID last, just written.
func (q *callQueue) stamp(last uint64, deadline time.Time) {
	if last < q.stamped {
		return
	}
	// The first call after those stamped before.
	i, _ := q.search(q.stamped + 1)
	for ; i < len(q.calls) && q.calls[i].id <= last; i++ {
		q.calls[i].deadline = deadline
	}
	q.stamped = last
}

// nextDeadline returns the deadline of the oldest call, if it has one.
func (q *callQueue) nextDeadline() (time.Time, bool) {
	if q.head == len(q.calls) || q.calls[q.head].deadline.IsZero() {
		return time.Time{}, false
	}
	return q.calls[q.head].deadline, true
}

// expire removes and returns the calls whose deadline is not after now.
func (q *callQueue) expire(now time.Time) []pendingCall {
	var out []pendingCall
	for i := q.head; i < len(q.calls); i++ {
		pc := &q.calls[i]
		if pc.deadline.IsZero() || pc.deadline.After(now) {
			break
		}
		if pc.live {
			out = append(out, *pc)
			q.end(i)
		}
	}
	q.trim()
	return out
}

// drain removes and returns every live call.
func (q *callQueue) drain() []pendingCall {
	var out []pendingCall
	for i := q.head; i < len(q.calls); i++ {
		if q.calls[i].live {
			out = append(out, q.calls[i])
		}
	}
	clear(q.calls)
	q.calls, q.head, q.live = nil, 0, 0
	return out
}
