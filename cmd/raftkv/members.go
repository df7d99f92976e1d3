package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/core"
	"github.com/raftkit/raft/kv"
)

// Membership changes (Raft thesis 4): GET and POST /admin/members on the
// leader, and the commands raftkv members, add-voter, add-learner,
// promote and remove.

// memberOps are the operations of POST /admin/members.
var memberOps = map[string]bool{"add-voter": true, "add-learner": true, "promote": true, "remove": true}

// membersRequest is the body of POST /admin/members: the operation, the
// server it is about, and, to add one, its Raft address and, optionally,
// its HTTP address, which the leader records through the log (kv's
// directory) before the change, for the replicas that were not given it
// in -http-peers.
type membersRequest struct {
	Op   string `json:"op"`
	ID   *int   `json:"id"`
	Addr string `json:"addr,omitempty"`
	HTTP string `json:"http,omitempty"`
}

// memberJSON is a server of the configuration, with its HTTP address if
// the answering replica knows it (from -http-peers or the directory).
type memberJSON struct {
	ID      int    `json:"id"`
	Addr    string `json:"addr"`
	HTTP    string `json:"http,omitempty"`
	Learner bool   `json:"learner"`
}

// membersReply answers GET and POST /admin/members: the configuration as
// the answering replica knows it (after the change, for a POST that
// succeeded), the index of the entry holding it and whether that entry
// is committed; on failure, why, and the leader as far as the replica
// knows.
type membersReply struct {
	From       int          `json:"from,omitempty"`
	Members    []memberJSON `json:"members,omitempty"`
	Index      int          `json:"index,omitempty"`
	Committed  bool         `json:"committed"`
	Leader     *int         `json:"leader,omitempty"`
	LeaderHTTP string       `json:"leaderHTTP,omitempty"`
	Error      string       `json:"error,omitempty"`
	Code       string       `json:"code,omitempty"`
}

// memberChangeWait bounds a change on the server side; the client's
// request context usually ends it first. AddVoter waits there for the
// learner to catch up, which a large store may take minutes to do.
const memberChangeWait = 10 * time.Minute

// membersView fills rep with this replica's view of the configuration
// and of the leader.
func (r *replica) membersView(rep *membersReply) {
	st, _ := r.rf.Status()
	rep.From = r.cfg.id
	rep.Members = rep.Members[:0]
	for _, m := range st.Membership.Members {
		rep.Members = append(rep.Members, memberJSON{ID: m.ID, Addr: m.Addr, HTTP: r.peers.Addr(m.ID), Learner: m.Learner})
	}
	rep.Index, rep.Committed = st.MembershipIndex, st.MembershipCommitted
	if st.Leader >= 0 {
		rep.Leader, rep.LeaderHTTP = &st.Leader, r.peers.Addr(st.Leader)
	}
}

// serveMembers is GET /admin/members (this replica's view of the
// configuration) and POST /admin/members (a change, on the leader).
func (r *replica) serveMembers(w http.ResponseWriter, req *http.Request) {
	var rep membersReply
	if req.Method == http.MethodGet {
		r.membersView(&rep)
		writeJSON(w, http.StatusOK, rep)
		return
	}
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "use GET or POST", "code": "bad_method"})
		return
	}
	var mr membersRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, req.Body, 1<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&mr); err != nil {
		writeJSON(w, http.StatusBadRequest, membersReply{Error: `bad body: ` + err.Error() + `; want {"op": "add-voter"|"add-learner"|"promote"|"remove", "id": ID, "addr": "host:port", "http": "host:port"}`, Code: "bad_request"})
		return
	}
	if msg := checkMembersRequest(mr); msg != "" {
		writeJSON(w, http.StatusBadRequest, membersReply{Error: msg, Code: "bad_request"})
		return
	}
	id := *mr.ID
	ctx, cancel := context.WithTimeout(req.Context(), memberChangeWait)
	defer cancel()
	err := r.recordHTTP(ctx, mr)
	switch {
	case err != nil:
	case mr.Op == "add-voter":
		err = r.rf.AddVoter(ctx, id, mr.Addr)
	case mr.Op == "add-learner":
		err = r.rf.AddLearner(ctx, id, mr.Addr)
	case mr.Op == "promote":
		err = r.rf.Promote(ctx, id)
	case mr.Op == "remove":
		err = r.rf.RemoveServer(ctx, id)
	}
	if err == nil {
		r.log.Info("raftkv serve: configuration changed", "op", mr.Op, "server", id, "addr", mr.Addr, "http", mr.HTTP)
		r.membersView(&rep)
		writeJSON(w, http.StatusOK, rep)
		return
	}
	r.membersView(&rep)
	rep.Members, rep.Index, rep.Committed = nil, 0, false
	status, code := memberErrorCode(err)
	rep.Code, rep.Error = code, err.Error()
	if code == "not_leader" {
		rep.From = 0
		var nl *raft.NotLeaderError
		if errors.As(err, &nl) {
			rep.Leader, rep.LeaderHTTP = nil, ""
			if nl.Leader >= 0 {
				rep.Leader, rep.LeaderHTTP = &nl.Leader, r.peers.Addr(nl.Leader)
			}
		} else if rep.Leader != nil && *rep.Leader == r.cfg.id { // lost the leadership while recording
			rep.Leader, rep.LeaderHTTP = nil, ""
		}
		rep.Error = fmt.Sprintf("replica %d is not the leader; ask the leader", r.cfg.id)
	}
	if code == "timeout" && mr.Op == "add-voter" {
		again := fmt.Sprintf("raftkv add-voter %d %s", id, mr.Addr)
		if mr.HTTP != "" {
			again += " -http " + mr.HTTP
		}
		rep.Error += fmt.Sprintf("; server %d may be a learner still catching up: see raftkv members, and run %s again to promote it once it has", id, again)
	}
	if code == "outcome_unknown" {
		rep.Error += "; see raftkv members for whether the change took effect"
	}
	writeJSON(w, status, rep)
}

// recordHTTP records, for an add, the new server's HTTP address through
// the log (kv's directory), before the change: once the server is a
// member, every replica that applied the change can forward requests to
// it. Nothing is recorded without "http", nor for an add-learner of a
// member, which the library refuses.
func (r *replica) recordHTTP(ctx context.Context, mr membersRequest) error {
	if mr.HTTP == "" {
		return nil
	}
	if st, _ := r.rf.Status(); mr.Op == "add-learner" {
		if _, member := st.Membership.Find(*mr.ID); member {
			return nil
		}
	}
	if err := r.kv.SetMemberHTTP(ctx, *mr.ID, mr.HTTP); err != nil {
		return fmt.Errorf("recording the HTTP address %s of server %d, before the change (not made): %w", mr.HTTP, *mr.ID, err)
	}
	r.log.Info("raftkv serve: recorded the HTTP address of a server", "server", *mr.ID, "http", mr.HTTP)
	return nil
}

// checkMembersRequest says what is wrong with mr, or "".
func checkMembersRequest(mr membersRequest) string {
	switch {
	case !memberOps[mr.Op]:
		return fmt.Sprintf(`op %q: want "add-voter", "add-learner", "promote" or "remove"`, mr.Op)
	case mr.ID == nil:
		return `no "id": the server the change is about`
	case *mr.ID <= 0:
		return fmt.Sprintf("id %d: want a positive server ID", *mr.ID)
	case (mr.Op == "add-voter" || mr.Op == "add-learner") && mr.Addr == "":
		return fmt.Sprintf(`%s needs "addr": the new server's Raft address, host:port`, mr.Op)
	case (mr.Op == "promote" || mr.Op == "remove") && mr.Addr != "":
		return fmt.Sprintf(`%s takes no "addr"`, mr.Op)
	case (mr.Op == "promote" || mr.Op == "remove") && mr.HTTP != "":
		return fmt.Sprintf(`%s takes no "http"`, mr.Op)
	}
	if mr.HTTP != "" {
		if err := kv.CheckHTTPAddr(mr.HTTP); err != nil {
			return fmt.Sprintf("http: %v", err)
		}
	}
	if mr.Addr != "" {
		if _, _, err := net.SplitHostPort(mr.Addr); err != nil {
			return fmt.Sprintf("addr %q: want host:port: %v", mr.Addr, err)
		}
	}
	return ""
}

// memberErrorCode maps the error of a membership change to an HTTP
// status and a code. Those with 409 not_leader, and 503 leader_not_ready,
// change_in_progress, not_caught_up and stopped, may succeed if asked
// again (of the leader).
func memberErrorCode(err error) (status int, code string) {
	var nl *raft.NotLeaderError
	switch {
	case errors.As(err, &nl), errors.Is(err, kv.ErrWrongLeader), errors.Is(err, kv.ErrLeadershipLost):
		// kv's: recording the HTTP address; the change was not made.
		return http.StatusConflict, "not_leader"
	case errors.Is(err, core.ErrMember):
		return http.StatusConflict, "already_member"
	case errors.Is(err, core.ErrNotMember):
		return http.StatusConflict, "not_member"
	case errors.Is(err, core.ErrLastVoter):
		return http.StatusConflict, "last_voter"
	case errors.Is(err, raft.ErrOutcomeUnknown):
		return http.StatusServiceUnavailable, "outcome_unknown"
	case errors.Is(err, raft.ErrLeaderNotReady):
		return http.StatusServiceUnavailable, "leader_not_ready"
	case errors.Is(err, raft.ErrChangeInProgress):
		return http.StatusServiceUnavailable, "change_in_progress"
	case errors.Is(err, raft.ErrNotCaughtUp):
		return http.StatusServiceUnavailable, "not_caught_up"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable, "timeout"
	}
	return http.StatusServiceUnavailable, "stopped"
}

// retryMemberCode says whether asking the leader again may help after an
// answer with code.
func retryMemberCode(code string) bool {
	switch code {
	case "not_leader", "leader_not_ready", "change_in_progress", "not_caught_up", "stopped":
		return true
	}
	return false
}

// runMembers is "raftkv members", "add-voter ID ADDR [-http HTTPADDR]",
// "add-learner ID ADDR [-http HTTPADDR]", "promote ID" and "remove ID".
func runMembers(cmd string, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet(cmd, stderr)
	cf := addClientFlags(fs)
	timeout := fs.Duration("timeout", 10*time.Second, "")
	adding := cmd == "add-voter" || cmd == "add-learner"
	httpAddr := new(string)
	if adding {
		httpAddr = fs.String("http", "", "")
	}
	pos, code, ok := parseFlags(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	want := len(strings.Fields(memberArgs[cmd]))
	if len(pos) != want {
		msg := noArgs(pos)
		if want > 0 {
			msg = fmt.Sprintf("want %s (%s), got %s: %q", plural(want, "argument"), memberArgs[cmd], plural(len(pos), "argument"), pos)
		}
		fmt.Fprintf(stderr, "raftkv %s: %s\nUsage: %s\n", cmd, msg, memberSynopsis(cmd))
		return exitUsage
	}
	var mr membersRequest
	if want > 0 {
		id, err := strconv.Atoi(pos[0])
		if err != nil || id <= 0 {
			fmt.Fprintf(stderr, "raftkv %s: server ID %q: want a positive integer\n", cmd, pos[0])
			return exitUsage
		}
		mr = membersRequest{Op: cmd, ID: &id}
		if want == 2 {
			mr.Addr = pos[1]
			if _, _, err := net.SplitHostPort(mr.Addr); err != nil {
				fmt.Fprintf(stderr, "raftkv %s: Raft address %q: want host:port, as the new server's -peers entry: %v\n", cmd, mr.Addr, err)
				return exitUsage
			}
		}
	}
	if mr.HTTP = *httpAddr; adding && mr.HTTP != "" {
		if err := kv.CheckHTTPAddr(mr.HTTP); err != nil {
			fmt.Fprintf(stderr, "raftkv %s: -http: %v; give the new server's HTTP address, as its -http flag\n", cmd, err)
			return exitUsage
		}
	}
	cc, ctx, cancel, code := cf.connect(cmd, *timeout, stderr)
	if code != exitOK {
		return code
	}
	defer cancel()
	var rep *membersReply
	var err error
	if cmd == "members" {
		rep, err = getMembers(ctx, cc)
	} else {
		rep, err = changeMembers(ctx, cc, mr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "raftkv %s: %v\n", cmd, err)
		return exitFailed
	}
	switch cmd {
	case "add-voter":
		fmt.Fprintf(stdout, "server %d (%s) is a voter\n", *mr.ID, mr.Addr)
	case "add-learner":
		fmt.Fprintf(stdout, "server %d (%s) is a learner; raftkv promote %d makes it a voter once it has caught up\n", *mr.ID, mr.Addr, *mr.ID)
	case "promote":
		fmt.Fprintf(stdout, "server %d is a voter\n", *mr.ID)
	case "remove":
		fmt.Fprintf(stdout, "server %d is removed; it stops itself once it learns so\n", *mr.ID)
	}
	printMembers(stdout, rep)
	if adding && mr.HTTP == "" {
		how := "run raftkv add-voter %d %s -http HTTPADDR again: for a voter, that records the address and changes nothing else"
		if cmd == "add-learner" {
			how = "promote it with raftkv add-voter %d %s -http HTTPADDR rather than raftkv promote"
		}
		fmt.Fprintf(stderr, "raftkv %s: no -http given, so no HTTP address of server %d was recorded: the replicas whose -http-peers lack it cannot forward requests to it if it leads. To record it, "+how+"\n",
			cmd, *mr.ID, *mr.ID, mr.Addr)
	}
	return exitOK
}

// printMembers prints the configuration of rep: per server, its ID, role,
// Raft address and HTTP address ("-" if the replica does not know it).
func printMembers(w io.Writer, rep *membersReply) {
	state := "committed"
	if !rep.Committed {
		state = "not committed yet"
	}
	leader := "none known"
	if rep.Leader != nil {
		leader = strconv.Itoa(*rep.Leader)
	}
	fmt.Fprintf(w, "configuration at log index %d (%s), leader %s:\n", rep.Index, state, leader)
	for _, m := range rep.Members {
		role := "voter"
		if m.Learner {
			role = "learner"
		}
		h := m.HTTP
		if h == "" {
			h = "-"
		}
		fmt.Fprintf(w, "  %d\t%-7s\t%s\t%s\n", m.ID, role, m.Addr, h)
	}
}

// getMembers asks the leader for the configuration.
func getMembers(ctx context.Context, cc *clientConn) (*membersReply, error) {
	var rep *membersReply
	err := untilLeader(ctx, cc, "members", func(leader string) (bool, error) {
		rep = new(membersReply)
		status, err := adminRequest(ctx, cc, http.MethodGet, leader, "/admin/members", nil, rep)
		if err != nil {
			return true, err
		}
		if status != http.StatusOK {
			return true, fmt.Errorf("%s: HTTP %d: %s", leader, status, rep.Error)
		}
		return false, nil
	})
	return rep, err
}

// changeMembers asks the leader for the change mr, again while asking
// again may help.
func changeMembers(ctx context.Context, cc *clientConn, mr membersRequest) (*membersReply, error) {
	body, _ := json.Marshal(mr)
	var rep *membersReply
	err := untilLeader(ctx, cc, mr.Op, func(leader string) (bool, error) {
		rep = new(membersReply)
		status, err := adminRequest(ctx, cc, http.MethodPost, leader, "/admin/members", body, rep)
		switch {
		case err != nil:
			return true, err
		case status == http.StatusOK:
			return false, nil
		case status == http.StatusBadRequest:
			return false, fmt.Errorf("%s refused: %s", leader, rep.Error)
		}
		return retryMemberCode(rep.Code), fmt.Errorf("%s: HTTP %d %s: %s", leader, status, rep.Code, rep.Error)
	})
	return rep, err
}
