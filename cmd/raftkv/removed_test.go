package main

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// A replica killed with -9, removed while it was down, and started again
// as it was, learns of its removal from the leader: it says so and exits
// with status 0, and the two remaining replicas keep serving.
func TestMembersRemovedWhileDownExitsOnReturn(t *testing.T) {
	c := startProcCluster(t, 3, "-log-level", "warn")
	l := c.waitLeader(30 * time.Second)
	f := l%3 + 1
	mustRun(t, "put", "-addr", c.allURLs(), "k", "v1")
	c.replicas[f].kill()
	if out := mustRun(t, "remove", "-addr", c.allURLs(), "-timeout", "15s", strconv.Itoa(f)); !strings.Contains(out, "is removed") {
		t.Fatalf("remove %d: %q", f, out)
	}
	mustRun(t, "put", "-addr", c.urls[l], "k", "v2")

	c.replicas[f].start(t)
	if err := c.replicas[f].waitExit(t, 30*time.Second); err != nil {
		t.Fatalf("replica %d, removed while down, after its restart: %v, want exit status 0\n%s", f, err, tail(c.replicas[f].out.String(), 2048))
	}
	if s := c.replicas[f].out.String(); !strings.Contains(s, "was removed from the cluster") {
		t.Fatalf("replica %d stopped without saying it was removed:\n%s", f, tail(s, 2048))
	}
	checkKeys(t, c.urls[l], map[string]string{"k": "v2"})
}
