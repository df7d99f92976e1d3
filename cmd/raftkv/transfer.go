package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/raftkit/raft"
)

// Leadership transfer (Raft thesis 3.10): POST /admin/transfer on the
// leader, the "raftkv transfer" command, and the hand-over of a leader
// stopped by SIGTERM.

// transferRequest is the body of POST /admin/transfer: the replica to hand
// the leadership to; absent or -1 for the one whose log is most
// up-to-date.
type transferRequest struct {
	To *int `json:"to,omitempty"`
}

// transferReply answers POST /admin/transfer: on success, who led before
// and who leads now, in which term; on failure, why, and the leader as
// far as the replica knows.
type transferReply struct {
	From       int    `json:"from,omitempty"`
	Leader     *int   `json:"leader,omitempty"`
	LeaderHTTP string `json:"leaderHTTP,omitempty"`
	Term       int    `json:"term,omitempty"`
	Error      string `json:"error,omitempty"`
	Code       string `json:"code,omitempty"`
}

// transferWait bounds a transfer: the leader abandons it after an election
// timeout (raft.ErrTransferAbandoned), so twice the longest one is ample.
func (r *replica) transferWait() time.Duration {
	e := r.cfg.election
	if e <= 0 {
		e = 300 * time.Millisecond // raft.Config's default
	}
	return 4 * e
}

// serveTransfer is POST /admin/transfer: it hands this replica's
// leadership over and answers once another replica leads.
func (r *replica) serveTransfer(w http.ResponseWriter, req *http.Request) {
	if !postOnly(w, req) {
		return
	}
	var tr transferRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, req.Body, 1<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&tr); err != nil && !errors.Is(err, io.EOF) {
		writeJSON(w, http.StatusBadRequest, transferReply{Error: `bad body: ` + err.Error() + `; want {"to": ID} or nothing`, Code: "bad_request"})
		return
	}
	to := -1
	if tr.To != nil {
		to = *tr.To
	}
	if st, _ := r.rf.Status(); to != -1 {
		if _, ok := st.Membership.Find(to); !ok {
			writeJSON(w, http.StatusBadRequest, transferReply{Error: fmt.Sprintf("replica %d is not in the cluster (servers %v)", to, st.Membership.Voters()), Code: "bad_request"})
			return
		}
	}
	ctx, cancel := context.WithTimeout(req.Context(), r.transferWait())
	defer cancel()
	err := r.rf.TransferLeadership(ctx, to)
	st, _ := r.rf.Status()
	rep := transferReply{From: r.cfg.id, Term: st.Term}
	if st.Leader >= 0 {
		rep.Leader, rep.LeaderHTTP = &st.Leader, r.peers.Addr(st.Leader)
	}
	var nl *raft.NotLeaderError
	switch {
	case err == nil:
		r.log.Info("raftkv serve: handed the leadership over", "to", st.Leader, "term", st.Term)
		writeJSON(w, http.StatusOK, rep)
		return
	case errors.As(err, &nl):
		rep.From, rep.Code = 0, "not_leader"
		if nl.Leader >= 0 {
			rep.Leader, rep.LeaderHTTP = &nl.Leader, r.peers.Addr(nl.Leader)
		}
		rep.Error = fmt.Sprintf("replica %d is not the leader; ask the leader", r.cfg.id)
		writeJSON(w, http.StatusConflict, rep)
		return
	case errors.Is(err, raft.ErrTransferAbandoned):
		rep.Code = "transfer_abandoned"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		rep.Code = "timeout"
	default:
		rep.Code = "stopped"
	}
	rep.Error = err.Error()
	writeJSON(w, http.StatusServiceUnavailable, rep)
}

// handOver, on a leader about to stop, hands the leadership to the most
// up-to-date replica, so that clients see a new leader at once rather
// than after an election timeout. It waits at most transferWait.
func (r *replica) handOver() {
	if _, isLeader := r.rf.GetState(); !isLeader {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.transferWait())
	defer cancel()
	if err := r.rf.TransferLeadership(ctx, -1); err != nil {
		r.log.Warn("raftkv serve: could not hand the leadership over before stopping; the others elect a leader after an election timeout", "err", err)
		return
	}
	st, _ := r.rf.Status()
	r.log.Info("raftkv serve: handed the leadership over before stopping", "to", st.Leader, "term", st.Term)
}

// runTransfer is "raftkv transfer [ID]": it asks the leader to hand its
// leadership to replica ID, or to the most up-to-date replica.
func runTransfer(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("transfer", stderr)
	cf := addClientFlags(fs)
	timeout := fs.Duration("timeout", 10*time.Second, "")
	pos, code, ok := parseFlags(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	to := -1
	if len(pos) > 1 {
		fmt.Fprintf(stderr, "raftkv transfer: takes at most 1 argument (ID), got %s: %q\n%s\n", plural(len(pos), "argument"), pos, usageHint("transfer"))
		return exitUsage
	}
	if len(pos) == 1 {
		n, err := strconv.Atoi(pos[0])
		if err != nil || n < 0 {
			fmt.Fprintf(stderr, "raftkv transfer: replica ID %q: want a non-negative integer\n", pos[0])
			return exitUsage
		}
		to = n
	}
	cc, ctx, cancel, code := cf.connect("transfer", *timeout, stderr)
	if code != exitOK {
		return code
	}
	defer cancel()
	rep, err := transferLeadership(ctx, cc, to)
	if err != nil {
		fmt.Fprintf(stderr, "raftkv transfer: %v\n", err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "replica %d now leads (term %d); replica %d led before\n", *rep.Leader, rep.Term, rep.From)
	return exitOK
}

// transferLeadership finds the leader through the replicas of cc and asks
// it to hand its leadership to replica to (-1: any), until one answers or
// ctx ends.
func transferLeadership(ctx context.Context, cc *clientConn, to int) (*transferReply, error) {
	body, _ := json.Marshal(transferRequest{To: &to})
	var rep *transferReply
	err := untilLeader(ctx, cc, "transfer", func(leader string) (bool, error) {
		var retry bool
		var err error
		rep, retry, err = postTransfer(ctx, cc, leader, body)
		return retry, err
	})
	return rep, err
}

// postTransfer posts POST /admin/transfer to the replica at addr. retry
// says whether asking the leader again may help.
func postTransfer(ctx context.Context, cc *clientConn, addr string, body []byte) (rep *transferReply, retry bool, err error) {
	rep = new(transferReply)
	status, err := adminRequest(ctx, cc, http.MethodPost, addr, "/admin/transfer", body, rep)
	switch {
	case err != nil:
		return nil, true, err
	case status == http.StatusOK && rep.Leader != nil:
		return rep, false, nil
	case status == http.StatusBadRequest:
		return nil, false, fmt.Errorf("%s refused: %s", addr, rep.Error)
	}
	return nil, status == http.StatusConflict || status == http.StatusServiceUnavailable,
		fmt.Errorf("%s: HTTP %d: %s", addr, status, rep.Error)
}
