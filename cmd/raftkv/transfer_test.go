package main

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkit/raft/kv"
)

// mustStatus returns replica id's /status, failing the test if it does
// not answer.
func (c *procCluster) mustStatus(id int) kv.StatusReply {
	c.t.Helper()
	st, err := c.status(id)
	if err != nil {
		c.t.Fatalf("replica %d /status: %v", id, err)
	}
	return st
}

var handedOver = regexp.MustCompile(`handed the leadership over before stopping".* to=(\d+) term=(\d+)`)

// Thesis 3.10 in raftkv: POST /admin/transfer on a follower is refused
// naming the leader; "raftkv transfer ID" makes replica ID the leader of
// the next term; and a leader stopped by SIGTERM hands its leadership to
// another replica first. The new leader leads the very next term, and the
// old leader saw it lead while it still ran (and heartbeated), so no
// election timeout (2 s here) had to pass: the others never stopped
// hearing from a leader.
func TestTransferCommandAndHandOverOnSIGTERM(t *testing.T) {
	c := startProcCluster(t, 3, "-election-timeout", "2s", "-heartbeat", "100ms")
	l := c.waitLeader(60 * time.Second)
	if code, _, errOut := runCmd(t, "put", "-addr", c.urls[l], "k", "v"); code != 0 {
		t.Fatalf("put: exit %d: %s", code, errOut)
	}
	term := c.mustStatus(l).Term
	f := l%3 + 1

	resp, err := httpClient.Post(c.urls[f]+"/admin/transfer", "application/json", strings.NewReader(`{"to": `+strconv.Itoa(f)+`}`))
	if err != nil {
		t.Fatal(err)
	}
	var rep transferReply
	json.NewDecoder(resp.Body).Decode(&rep)
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict || rep.Code != "not_leader" || rep.Leader == nil || *rep.Leader != l {
		t.Fatalf("POST /admin/transfer on follower %d: %s %+v, want 409 not_leader naming %d", f, resp.Status, rep, l)
	}

	var all []string
	for i := 1; i <= 3; i++ {
		all = append(all, c.urls[i])
	}
	code, out, errOut := runCmd(t, "transfer", "-addr", strings.Join(all, ","), strconv.Itoa(f))
	if want := "replica " + strconv.Itoa(f) + " now leads (term " + strconv.Itoa(term+1) + ")"; code != 0 || !strings.Contains(out, want) {
		t.Fatalf("raftkv transfer %d: exit %d, %q %q; want %q", f, code, out, errOut, want)
	}
	if st := c.mustStatus(f); st.Role != "leader" || st.Term != term+1 {
		t.Fatalf("replica %d after the transfer: %s at term %d, want leader at %d", f, st.Role, st.Term, term+1)
	}

	if err := c.replicas[f].stop(30 * time.Second); err != nil {
		t.Fatalf("replica %d on SIGTERM: %v, want exit status 0", f, err)
	}
	m := handedOver.FindStringSubmatch(c.replicas[f].out.String())
	if m == nil {
		t.Fatalf("replica %d stopped without handing its leadership over", f)
	}
	to, _ := strconv.Atoi(m[1])
	if got, _ := strconv.Atoi(m[2]); got != term+2 || to == f {
		t.Fatalf("replica %d handed over to %d in term %d, want another replica in term %d", f, to, got, term+2)
	}
	if st := c.mustStatus(to); st.Role != "leader" || st.Term != term+2 {
		t.Fatalf("replica %d after the hand-over: %s at term %d, want leader at %d", to, st.Role, st.Term, term+2)
	}
	if code, out, errOut := runCmd(t, "get", "-addr", c.urls[to], "k"); code != 0 || strings.TrimSpace(out) != "v" {
		t.Fatalf("get k from the new leader: exit %d, %q %q", code, out, errOut)
	}
}
