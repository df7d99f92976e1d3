package kv

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/raftkit/raft/labrpc"
)

// RPCService serves a Server's requests over labrpc as "RPCService.Do".
type RPCService struct {
	S *Server
	// Wait bounds how long a request waits for its command (default 2 s).
	Wait time.Duration
}

// OpArgs is a request over labrpc.
type OpArgs struct{ Op Op }

// OpReply is the answer over labrpc; Err is "" on success.
type OpReply struct {
	Res Result
	Err string
}

// Do is the labrpc handler.
func (r *RPCService) Do(args *OpArgs, reply *OpReply) {
	wait := r.Wait
	if wait == 0 {
		wait = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	res, err := r.S.Do(ctx, args.Op)
	reply.Res = res
	if err != nil {
		reply.Err = err.Error()
	}
}

// LabConn is a Conn to one server over labrpc.
type LabConn struct{ End *labrpc.ClientEnd }

var errLost = errors.New("kv: request or reply lost")

// Do sends op and waits for the answer or ctx's end.
func (c LabConn) Do(ctx context.Context, op Op) (Result, int, error) {
	type answer struct {
		reply OpReply
		ok    bool
	}
	ch := make(chan answer, 1)
	go func() {
		var reply OpReply
		ok := c.End.Call("RPCService.Do", &OpArgs{Op: op}, &reply)
		ch <- answer{reply, ok}
	}()
	from := func(a answer) (Result, int, error) {
		if !a.ok {
			return Result{}, -1, errLost
		}
		return a.reply.Res, -1, errorFrom(a.reply.Err)
	}
	select {
	case a := <-ch:
		return from(a)
	case <-ctx.Done():
		select {
		case a := <-ch: // the answer came as well: take it
			return from(a)
		default:
			return Result{}, -1, ctx.Err()
		}
	}
}

// errorFrom turns a server's error text back into its error value (one
// that wraps it, if the text says more).
func errorFrom(s string) error {
	if s == "" {
		return nil
	}
	for _, e := range []error{ErrWrongLeader, ErrLeadershipLost, ErrStopped, ErrStale, ErrConflict, ErrClientExpired, ErrTooLarge, ErrOverloaded} {
		if s == e.Error() {
			return e
		}
		if rest, ok := strings.CutPrefix(s, e.Error()+": "); ok {
			return fmt.Errorf("%w: %s", e, rest)
		}
	}
	return errors.New(s)
}
