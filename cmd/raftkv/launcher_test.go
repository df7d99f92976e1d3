package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// launchedReplica is what the launcher says of a replica it started.
type launchedReplica struct {
	httpAddr, raftAddr, dir string
	pid                     int
}

var launchedRE = regexp.MustCompile(`replica (\d+): HTTP https://(\S+)  Raft (\S+)  data (.+)  \(pid (\d+)\)`)

// launched parses the launcher's output for the replicas it started.
func launched(t *testing.T, out string, n int) map[int]launchedReplica {
	t.Helper()
	rs := map[int]launchedReplica{}
	for _, m := range launchedRE.FindAllStringSubmatch(out, -1) {
		id, _ := strconv.Atoi(m[1])
		pid, _ := strconv.Atoi(m[5])
		rs[id] = launchedReplica{httpAddr: m[2], raftAddr: m[3], dir: m[4], pid: pid}
	}
	if len(rs) != n {
		t.Fatalf("the launcher's output names %d replicas; want %d:\n%s", len(rs), n, out)
	}
	return rs
}

// gone tells whether process pid has exited (a zombie counts: its
// parent, the launcher, is dead and nobody may reap it).
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return os.IsNotExist(err)
	}
	// pid (comm) S ...: the state follows the last ')'.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] == 'Z' || s[i+2] == 'X'
	}
	return false
}

// free tells whether addr can be listened on.
func free(addr string) bool {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// waitUntil waits up to timeout for cond.
func waitUntil(timeout time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// TestLauncherReplicaDeath runs "raftkv local" on port 0 with -pprof:
// the replicas serve pprof; a replica killed with -9 gets a message with
// the command that restarts it on its data, and that command brings it
// back into the cluster; and when the launcher itself is killed with -9,
// the replicas it started exit (on Linux), freeing their ports.
func TestLauncherReplicaDeath(t *testing.T) {
	bin := raftkvBinary(t)
	data := filepath.Join(t.TempDir(), "data with space")
	l := startLauncher(t, bin, []string{"local", "-base-http", "127.0.0.1:0", "-base-raft", "127.0.0.1:0", "-data", data, "-pprof"})
	out := l.waitFor(t, regexp.MustCompile(`replica \d is the leader`), 30*time.Second)
	rs := launched(t, out, 3)
	for id, r := range rs {
		if strings.HasSuffix(r.httpAddr, ":0") || strings.HasSuffix(r.raftAddr, ":0") || r.dir != filepath.Join(data, strconv.Itoa(id)) {
			t.Fatalf("replica %d: %+v; want the ports picked and its data directory", id, r)
		}
	}
	runCmd := func(t *testing.T, args ...string) (int, string, string) { return runCmdEnv(t, localEnv(data), args...) }
	if resp, err := localClient(t, data).Get("https://" + rs[1].httpAddr + "/debug/pprof/cmdline"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("local -pprof: replica 1 answers /debug/pprof/cmdline with %v (%v); want 200", resp, err)
	}
	if code, _, _ := runCmd(t, "put", "-addr", "https://"+rs[1].httpAddr, "k", "before"); code != 0 {
		t.Fatalf("put: exit %d", code)
	}

	// kill -9 replica 2: the launcher says how to restart it.
	if err := syscall.Kill(rs[2].pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	out = l.waitFor(t, regexp.MustCompile(`to restart replica 2 on its data.*:\n  (.*)\n`), 20*time.Second)
	hint := regexp.MustCompile(`to restart replica 2 on its data.*:\n  (.*)\n`).FindStringSubmatch(out)[1]
	// The data directory is quoted: it has a space.
	for _, want := range []string{"serve", "-id 2", "-http " + rs[2].httpAddr, "-data '" + rs[2].dir + "'", "-pprof"} {
		if !strings.Contains(hint, want) {
			t.Errorf("restart command %q lacks %q", hint, want)
		}
	}
	if strings.Contains(strings.ToLower(out), "delete") || strings.Contains(out, "rm -") {
		t.Errorf("the launcher advises deleting something:\n%s", out)
	}
	// The command, run by a shell, brings replica 2 back on its data.
	restarted := exec.Command("sh", "-c", "exec "+hint)
	restartedOut := &syncBuffer{}
	restarted.Stdout, restarted.Stderr = restartedOut, restartedOut
	if err := restarted.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		restarted.Process.Kill()
		restarted.Wait()
	})
	if code, _, _ := runCmd(t, "put", "-addr", "https://"+rs[1].httpAddr, "k", "after"); code != 0 {
		t.Fatalf("put: exit %d", code)
	}
	if !waitUntil(30*time.Second, func() bool {
		code, stdout, _ := runCmd(t, "status", "-addr", "https://"+rs[2].httpAddr)
		return code == 0 && strings.Count(stdout, "follower") == 2
	}) {
		t.Fatalf("replica 2, restarted with %q, did not rejoin:\n%s", hint, restartedOut.String())
	}

	// kill -9 the launcher: replicas 1 and 3, its children, exit and
	// free their ports.
	if err := l.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-l.done
	for _, id := range []int{1, 3} {
		r := rs[id]
		if !waitUntil(20*time.Second, func() bool { return gone(r.pid) }) {
			t.Errorf("replica %d (pid %d) still runs 20s after its launcher was killed", id, r.pid)
			syscall.Kill(r.pid, syscall.SIGKILL)
			continue
		}
		for _, addr := range []string{r.httpAddr, r.raftAddr} {
			if !waitUntil(10*time.Second, func() bool { return free(addr) }) {
				t.Errorf("replica %d exited, but its port %s is still taken", id, addr)
			}
		}
	}
}
