package kv

import (
	"container/list"
	"crypto/sha256"
	"time"
)

// Defaults of ServerOptions.
const (
	DefaultClientTTL  = time.Hour
	DefaultMaxClients = 10000
)

// sessions is the table of deduplicated clients: per client, its latest
// applied request and that request's result. Everything in it is decided
// by the applied entries alone (their order, their Op.Time stamps and the
// two bounds), so that every replica holds the same table at the same log
// position.
//
// Entries from before requests were stamped (Time 0) are applied by the
// rules of then, so that a log written then replays to the same store: an
// unknown client's Seq above 1 is executed, and no client is evicted for
// them (the next stamped entry brings the table back within its bound).
type sessions struct {
	ttl int64 // nanoseconds of inactivity after which a client is forgotten
	max int   // the most clients kept

	now  int64 // the log's clock: the largest Op.Time applied so far
	byID map[int64]*list.Element
	lru  *list.List // of *session, least recently active first
}

// session is what the table keeps of one client.
type session struct {
	client     int64
	seq        int64             // its latest applied request
	digest     [sha256.Size]byte // what that request asked for
	res        Result            // and its result
	lastActive int64             // the log's clock at its latest request
}

func newSessions(ttl time.Duration, max int) *sessions {
	return &sessions{ttl: int64(ttl), max: max, byID: map[int64]*list.Element{}, lru: list.New()}
}

// len returns the number of clients in the table.
func (t *sessions) len() int { return len(t.byID) }

// check answers op from the table without changing it: known is false if
// op is a new request to execute (or is not deduplicated: Seq 0); else out
// is the answer: the result of the request op retries, ErrStale,
// ErrConflict, or ErrClientExpired for a client the table does not know
// sending Seq above 1.
func (t *sessions) check(op Op) (out outcome, known bool) {
	if op.Seq == 0 {
		return outcome{}, false
	}
	e, ok := t.byID[op.ClientID]
	if !ok {
		if op.Seq > 1 && op.Time != 0 {
			return outcome{err: ErrClientExpired}, true
		}
		return outcome{}, false
	}
	s := e.Value.(*session)
	switch {
	case op.Seq < s.seq:
		return outcome{err: ErrStale}, true
	case op.Seq > s.seq:
		return outcome{}, false
	case op.digest() != s.digest:
		return outcome{err: ErrConflict}, true
	}
	return outcome{res: s.res}, true
}

// advance moves the log's clock to stamp if that is later, and forgets
// the clients idle for longer than the TTL since.
func (t *sessions) advance(stamp int64) {
	if stamp <= t.now {
		return
	}
	t.now = stamp
	for e := t.lru.Front(); e != nil && t.now-e.Value.(*session).lastActive > t.ttl; e = t.lru.Front() {
		t.remove(e)
	}
}

// touch marks op's client, if known, as active now.
func (t *sessions) touch(client int64) {
	if e, ok := t.byID[client]; ok {
		e.Value.(*session).lastActive = t.now
		t.lru.MoveToBack(e)
	}
}

// record stores op, just executed with result res, as its client's latest
// request, and evicts the least recently active clients over the bound.
func (t *sessions) record(op Op, res Result) {
	s := &session{client: op.ClientID, seq: op.Seq, digest: op.digest(), res: res, lastActive: t.now}
	if e, ok := t.byID[op.ClientID]; ok {
		e.Value = s
		t.lru.MoveToBack(e)
		return
	}
	t.byID[op.ClientID] = t.lru.PushBack(s)
	for len(t.byID) > t.max && op.Time != 0 {
		t.remove(t.lru.Front())
	}
}

func (t *sessions) remove(e *list.Element) {
	delete(t.byID, e.Value.(*session).client)
	t.lru.Remove(e)
}
