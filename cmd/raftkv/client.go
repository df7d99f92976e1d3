package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/raftkit/raft/kv"
)

// defaultAddrs are the replicas the client commands try when -addr is not
// given: the local cluster's defaults (https if the client has a CA or a
// token, http otherwise).
var defaultAddrs = []string{"127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003"}

// runClient runs put, get, append, del or status.
func runClient(cmd string, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet(cmd, stderr)
	cf := addClientFlags(fs)
	timeout := fs.Duration("timeout", 10*time.Second, "")
	pos, code, ok := parseFlags(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if msg := checkClientArgs(cmd, pos); msg != "" {
		fmt.Fprintf(stderr, "raftkv %s: %s\nUsage: %s\n", cmd, msg, clientSynopsis(cmd))
		return exitUsage
	}
	if len(pos) > 0 && pos[0] == "" {
		fmt.Fprintf(stderr, "raftkv %s: the key is empty\n", cmd)
		return exitUsage
	}
	cc, ctx, cancel, code := cf.connect(cmd, *timeout, stderr)
	if code != exitOK {
		return code
	}
	defer cancel()
	if cmd == "status" {
		return runStatus(ctx, cc, stdout, stderr)
	}

	op := kv.Op{Key: pos[0], ClientID: randomID(), Seq: 1}
	switch cmd {
	case "put":
		op.Kind, op.Value = kv.Put, pos[1]
	case "append":
		op.Kind, op.Value = kv.Append, pos[1]
	case "get":
		// A read needs no identity; without one the leader serves it
		// with ReadIndex, not through the log.
		op.Kind, op.ClientID, op.Seq = kv.Get, 0, 0
	default:
		op.Kind = kv.Delete
	}
	res, err := doOp(ctx, cc, op)
	if err != nil {
		fmt.Fprintf(stderr, "raftkv %s: %v\n", cmd, err)
		return exitFailed
	}
	switch op.Kind {
	case kv.Put:
		fmt.Fprintln(stdout, "OK")
	case kv.Append:
		fmt.Fprintln(stdout, res.Value+op.Value)
	case kv.Get:
		if !res.Found {
			fmt.Fprintf(stderr, "raftkv get: key %q not found\n", op.Key)
			return exitError
		}
		fmt.Fprintln(stdout, res.Value)
	case kv.Delete:
		if res.Found {
			fmt.Fprintf(stdout, "deleted %q\n", op.Key)
		} else {
			fmt.Fprintf(stdout, "%q was not there; nothing deleted\n", op.Key)
		}
	}
	return exitOK
}

// checkClientArgs says what is wrong with the arguments pos of client
// command cmd, or returns "".
func checkClientArgs(cmd string, pos []string) string {
	want := clientArgs[cmd]
	switch {
	case len(pos) == len(want):
		return ""
	case len(want) == 0:
		return noArgs(pos)
	case len(pos) < len(want):
		missing := want[len(pos):]
		return fmt.Sprintf("missing %s (want %s: %s)", strings.Join(missing, " and "), plural(len(want), "argument"), strings.Join(want, " "))
	default:
		return fmt.Sprintf("want %s (%s), got %d: %q", plural(len(want), "argument"), strings.Join(want, " "), len(pos), pos)
	}
}

// randomID returns a random positive client ID.
func randomID() int64 {
	var b [8]byte
	rand.Read(b[:])
	return int64(binary.LittleEndian.Uint64(b[:])>>1) | 1
}

// doOp sends op to the replicas in turn until one answers it or ctx ends.
// Every try carries op's client ID and seq, so the operation takes effect
// at most once however often it is retried.
func doOp(ctx context.Context, cc *clientConn, op kv.Op) (kv.Result, error) {
	addrs := cc.addrs
	conns := cc.conns(nil)
	cur := 0
	maybe := false
	var lastErr error
	for {
		unreachable := 0
		pause := 100 * time.Millisecond
		for range conns {
			res, hint, err := conns[cur].Do(ctx, op)
			if err == nil {
				return res, nil
			}
			var he *kv.HTTPError
			errors.As(err, &he)
			switch {
			case kv.Refused(err): // a bad request: no retry helps
				if he != nil {
					return kv.Result{}, fmt.Errorf("%s refused the request: %s", conns[cur].Addr, he.Message)
				}
				return kv.Result{}, err
			case errors.Is(err, kv.ErrStopped):
				if he == nil {
					unreachable++ // not even connected
				}
			case errors.Is(err, kv.ErrWrongLeader) || errors.Is(err, kv.ErrOverloaded):
			default:
				maybe = true
			}
			if he != nil && he.RetryAfter > 0 {
				pause = min(max(pause, he.RetryAfter), time.Second)
			}
			lastErr = err
			if ctx.Err() != nil {
				break
			}
			if hint >= 0 {
				cur = hint
			} else {
				cur = (cur + 1) % len(conns)
			}
		}
		if unreachable == len(conns) && !maybe {
			return kv.Result{}, fmt.Errorf("no replica reachable at %s (is the cluster running?): %v", strings.Join(addrs, ", "), lastErr)
		}
		if ctx.Err() != nil {
			if maybe {
				return kv.Result{}, fmt.Errorf("no answer in time; the request may or may not have taken effect (outcome unknown): %v", lastErr)
			}
			return kv.Result{}, fmt.Errorf("no answer in time; the request did not take effect: %v", lastErr)
		}
		select {
		case <-time.After(pause):
		case <-ctx.Done():
		}
	}
}

// statusOf is one replica's /status, or why it did not answer.
type statusOf struct {
	st  *kv.StatusReply
	err error
}

// shortErr keeps the end of a network error: "connection refused" rather
// than "Get "http://...": dial tcp ...: connect: connection refused".
func shortErr(err error) error {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		return errors.New(s[i+2:])
	}
	return err
}

// runStatus prints the cluster's state as the replicas see it.
func runStatus(ctx context.Context, cc *clientConn, stdout, stderr io.Writer) int {
	var first *kv.StatusReply
	var errs []string
	for _, a := range cc.addrs {
		st, err := cc.status(ctx, a)
		if err == nil {
			first = st
			break
		}
		errs = append(errs, fmt.Sprintf("%s: %v", a, err))
	}
	if first == nil {
		fmt.Fprintf(stderr, "raftkv status: no replica reachable (is the cluster running?): %s\n", strings.Join(errs, "; "))
		return exitFailed
	}
	peers := first.Peers
	if len(peers) == 0 {
		peers = map[int]string{first.ID: first.HTTP}
	}
	ids := sortedIDs(peers)
	all := make(map[int]statusOf, len(ids))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, id := range ids {
		if id == first.ID {
			all[id] = statusOf{st: first}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := cc.status(ctx, peers[id])
			mu.Lock()
			all[id] = statusOf{st, err}
			mu.Unlock()
		}()
	}
	wg.Wait()

	var leader *kv.StatusReply
	for _, id := range ids {
		if s := all[id].st; s != nil && s.Role == "leader" && (leader == nil || s.Term > leader.Term) {
			leader = s
		}
	}
	if leader != nil {
		fmt.Fprintf(stdout, "leader: replica %d (%s), term %d\n\n", leader.ID, urlOf(leader.HTTP), leader.Term)
	} else {
		fmt.Fprintf(stdout, "leader: none known (an election may be under way, or too few replicas are up)\n\n")
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REPLICA\tHTTP\tROLE\tTERM\tCOMMIT\tAPPLIED\tLAST LOG\tSNAPSHOT\tLOG\tMATCH")
	for _, id := range ids {
		s := all[id]
		if s.st == nil {
			fmt.Fprintf(tw, "%d\t%s\tdown (%v)\t-\t-\t-\t-\t-\t-\t-\n", id, urlOf(peers[id]), s.err)
			continue
		}
		match := "-"
		if leader != nil {
			if m, ok := leader.Match[id]; ok {
				match = fmt.Sprint(m)
			}
		}
		snap := "-"
		if s.st.SnapshotIndex > 0 {
			snap = fmt.Sprintf("%d/%d", s.st.SnapshotIndex, s.st.SnapshotTerm)
		}
		log := fmt.Sprintf("%d entries, %s", s.st.LogEntries, byteSize(s.st.LogBytes))
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", id, urlOf(peers[id]), s.st.Role, s.st.Term, s.st.Commit, s.st.Applied, s.st.LastLog, snap, log, match)
	}
	tw.Flush()
	if leader == nil {
		return exitError
	}
	return exitOK
}

// byteSize formats n bytes for people: 512 B, 1.5 KiB, 16.0 MiB.
func byteSize(n int) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, suffix := float64(n)/unit, "KiB"
	for _, s := range []string{"MiB", "GiB", "TiB"} {
		if f < unit {
			break
		}
		f, suffix = f/unit, s
	}
	return fmt.Sprintf("%.1f %s", f, suffix)
}

func urlOf(addr string) string {
	if strings.Contains(addr, "://") {
		return addr
	}
	return "http://" + addr
}
