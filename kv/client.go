package kv

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Conn sends one request to one server. It returns the server's answer,
// or an error: one of the package's errors from the server (ErrWrongLeader,
// ErrLeadershipLost, ErrStale, ...), possibly wrapped, or any other error
// when the request or its answer was lost.
// A Conn may also return a hint of the leader's position in the client's
// server list (or -1).
type Conn interface {
	Do(ctx context.Context, op Op) (res Result, leaderHint int, err error)
}

// ErrNotDone means the request certainly did not take effect.
var ErrNotDone = errors.New("kv: request not done")

// ErrUnknown means the request may or may not have taken effect (a server
// may have accepted it, then no answer came). Calling again makes a new
// request, which may take effect a second time; Clerk.Retry sends the same
// request again, which cannot.
var ErrUnknown = errors.New("kv: request outcome unknown")

// Clerk issues requests to the servers one at a time, finds the leader and
// remembers it, and retries across servers with backoff until the request
// is done or its context ends.
type Clerk struct {
	servers []Conn
	id      int64
	seq     int64
	known   bool // a request under id was answered: the servers know the client
	leader  int
	unknown *Op // the last request, if it ended with ErrUnknown

	// MaxBackoff bounds the pause between rounds of tries (default 100 ms).
	MaxBackoff time.Duration
}

// NewClerk returns a client of the servers, with a random client ID.
func NewClerk(servers []Conn) *Clerk {
	return &Clerk{servers: servers, id: randomClientID(), MaxBackoff: 100 * time.Millisecond}
}

// ID returns the client's ID, which tags its requests. It changes when
// the servers may not know the client (see Do).
func (c *Clerk) ID() int64 { return c.id }

// Get returns the value of key and whether it exists.
func (c *Clerk) Get(ctx context.Context, key string) (string, bool, error) {
	r, err := c.Do(ctx, Op{Kind: Get, Key: key})
	return r.Value, r.Found, err
}

// Put sets key to value.
func (c *Clerk) Put(ctx context.Context, key, value string) error {
	_, err := c.Do(ctx, Op{Kind: Put, Key: key, Value: value})
	return err
}

// Append appends value to key's value (an absent key counts as "").
func (c *Clerk) Append(ctx context.Context, key, value string) error {
	_, err := c.Do(ctx, Op{Kind: Append, Key: key, Value: value})
	return err
}

// Delete removes key.
func (c *Clerk) Delete(ctx context.Context, key string) error {
	_, err := c.Do(ctx, Op{Kind: Delete, Key: key})
	return err
}

// Do runs op (its ClientID and Seq are set here: a Get goes without, as a
// read needs no deduplication, which lets a server read with ReadIndex
// instead of the log) until a server answers it
// or ctx ends. The error is then ErrNotDone or ErrUnknown, wrapping ctx's,
// or, for a request the servers refuse for what it is (ErrStale,
// ErrConflict, ErrTooLarge, a bad request over HTTP), ErrNotDone or
// ErrUnknown wrapping that refusal.
//
// The servers learn a client from its first applied request, which must
// have Seq 1, and refuse an unknown client's higher Seq (ErrClientExpired).
// So until a request under its ID has been answered, the Clerk sends each
// new request under a new ID, with Seq 1; and if the servers have forgotten
// the client before the request can have taken effect, it takes a new ID
// and sends the request again as its first.
func (c *Clerk) Do(ctx context.Context, op Op) (Result, error) {
	if op.Kind == Get {
		// A read changes nothing: it needs no identity, and without one
		// a server can serve it with ReadIndex, without the log.
		op.ClientID, op.Seq = 0, 0
		c.unknown = nil
		return c.run(ctx, op, false)
	}
	if !c.known && c.seq > 0 {
		// The last request was not answered: it may never be applied.
		c.id, c.seq = randomClientID(), 0
	}
	c.seq++
	op.ClientID, op.Seq = c.id, c.seq
	c.unknown = nil
	return c.run(ctx, op, false)
}

// Retry runs again the last request that ended with ErrUnknown, as the
// same request: it takes effect at most once in all. It fails with
// ErrNotDone if there is no such request.
func (c *Clerk) Retry(ctx context.Context) (Result, error) {
	if c.unknown == nil {
		return Result{}, fmt.Errorf("%w: no request with an unknown outcome to retry", ErrNotDone)
	}
	return c.run(ctx, *c.unknown, true)
}

// run sends op until it is answered; maybe says whether an earlier try may
// have put it in a log.
func (c *Clerk) run(ctx context.Context, op Op, maybe bool) (res Result, err error) {
	defer func() {
		if errors.Is(err, ErrUnknown) {
			c.unknown = &op
		} else {
			c.unknown = nil
		}
	}()
	outcome := func(cause error) error {
		if maybe {
			return fmt.Errorf("%w: %w", ErrUnknown, cause)
		}
		return fmt.Errorf("%w: %w", ErrNotDone, cause)
	}
	backoff := time.Millisecond
	for {
		for range c.servers {
			res, hint, err := c.servers[c.leader].Do(ctx, op)
			switch {
			case err == nil:
				if op.ClientID == c.id {
					c.known = true
				}
				return res, nil
			case errors.Is(err, ErrClientExpired) && !maybe:
				// Not applied, and no earlier try can have been: start
				// over as a new client.
				c.id, c.seq, c.known = randomClientID(), 1, false
				op.ClientID, op.Seq = c.id, c.seq
				continue
			case Refused(err):
				return Result{}, outcome(err)
			case errors.Is(err, ErrWrongLeader) || errors.Is(err, ErrStopped) || errors.Is(err, ErrOverloaded):
				// Definitely not started there.
			default:
				maybe = true // lost, timed out or leadership lost: it may be in a log
			}
			if ctx.Err() != nil {
				break
			}
			if hint >= 0 && hint < len(c.servers) && hint != c.leader {
				c.leader = hint
			} else {
				c.leader = (c.leader + 1) % len(c.servers)
			}
		}
		if ctx.Err() != nil {
			return Result{}, outcome(ctx.Err())
		}
		// A full round without an answer: no leader right now.
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return Result{}, outcome(ctx.Err())
		}
		backoff = min(2*backoff, c.MaxBackoff)
	}
}

// Refused reports whether err is a refusal of a request for what it is
// (ErrStale, ErrConflict, ErrClientExpired, ErrTooLarge, ErrNotText, or an
// HTTP 4xx answer): the request did not take effect there, and sending it
// again cannot change that.
func Refused(err error) bool {
	var he *HTTPError
	for _, e := range []error{ErrStale, ErrConflict, ErrClientExpired, ErrTooLarge, ErrNotText} {
		if errors.Is(err, e) {
			return true
		}
	}
	return errors.As(err, &he) && he.StatusCode >= 400 && he.StatusCode < 500
}
