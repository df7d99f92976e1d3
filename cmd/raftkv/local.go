package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/raftkit/raft/internal/certs"
)

// child is one replica process of the local cluster.
type child struct {
	id       int
	httpAddr string
	raftAddr string
	dir      string
	args     []string // the serve command line, without the program
	cmd      *exec.Cmd
	exited   chan struct{} // closed once cmd.Wait returned
	err      error         // cmd.Wait's
	output   sync.WaitGroup

	reportedExit bool
}

// exitText describes how a process ended.
func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// runLocal starts a local cluster and runs it until SIGINT or SIGTERM.
func runLocal(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("local", stderr)
	n := fs.Int("n", 3, "")
	baseHTTP := fs.String("base-http", "127.0.0.1:8001", "")
	baseRaft := fs.String("base-raft", "127.0.0.1:9001", "")
	data := fs.String("data", "raftkv-data", "")
	logLevel := fs.String("log-level", "warn", "")
	election := fs.Duration("election-timeout", 0, "")
	heartbeat := fs.Duration("heartbeat", 0, "")
	snapBytes := fs.Int("snapshot-bytes", 0, "")
	pprof := fs.Bool("pprof", false, "")
	logReads := fs.Bool("reads-through-log", false, "")
	leaseReads := fs.Bool("lease-reads", false, "")
	followerReads := fs.Bool("follower-reads", false, "")
	insecureHTTP := fs.Bool("insecure-http", false, "")
	pos, code, ok := parseFlags(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "raftkv local: "+format+"\n"+usageHint("local")+"\n", a...)
		return exitUsage
	}
	switch {
	case len(pos) > 0:
		return fail("%s (a command goes first: raftkv put KEY VALUE)", noArgs(pos))
	case *n < 1 || *n > 99:
		return fail("-n %d: want 1 to 99 replicas", *n)
	case *snapBytes < 0:
		return fail("-snapshot-bytes %d: want a positive size", *snapBytes)
	}
	httpAddrs, err := addrRange(*baseHTTP, *n)
	if err != nil {
		return fail("-base-http: %v", err)
	}
	raftAddrs, err := addrRange(*baseRaft, *n)
	if err != nil {
		return fail("-base-raft: %v", err)
	}
	dataDir, err := filepath.Abs(*data)
	if err != nil {
		return fail("-data: %v", err)
	}

	// The replicas talk over mutual TLS; the certificates are made on the
	// first start, and kept.
	certDir := filepath.Join(dataDir, "certs")
	ids := make([]int, *n)
	for i := range ids {
		ids[i] = i + 1
	}
	if err := certs.WriteLocalCluster(certDir, ids, nil); err != nil {
		fmt.Fprintf(stderr, "raftkv local: %v\n", err)
		return exitError
	}

	// Every port must be free: find out before starting anything, by
	// listening on them all. Each replica inherits its two listeners
	// (where it can: see canHandOver), so that no port is closed and
	// opened again in between; and port 0 gives each a free port.
	lns, err := listenAll(httpAddrs, raftAddrs)
	if err != nil {
		fmt.Fprintf(stderr, "raftkv local: %v\n", err)
		return exitError
	}
	defer lns.close()
	cc := plainClientConn(nil)
	var sec *localSecurity
	if !*insecureHTTP {
		host, _, _ := net.SplitHostPort(httpAddrs[1])
		s, err := prepareLocalSecurity(dataDir, *n, host)
		if err != nil {
			fmt.Fprintf(stderr, "raftkv local: %v\n", err)
			return exitError
		}
		sec = &s
		if cc, err = localClientConn(s); err != nil {
			fmt.Fprintf(stderr, "raftkv local: %v\n", err)
			return exitError
		}
	}
	scheme := "http"
	if sec != nil {
		scheme = "https"
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "raftkv: cannot find my own executable to start the replicas: %v\n", err)
		return exitError
	}

	// SIGINT (Ctrl-C) and SIGTERM stop the cluster. The replicas run in
	// process groups of their own, so the terminal's Ctrl-C reaches only
	// the launcher, which stops them in order.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)

	fmt.Fprintf(stdout, "raftkv: starting %d replicas; data in %s\n", *n, dataDir)
	var out sync.Mutex // one line at a time on stderr
	sp := startSpawner()
	defer sp.stop()
	children := make([]*child, 0, *n)
	for i := 1; i <= *n; i++ {
		c := &child{id: i, httpAddr: httpAddrs[i], raftAddr: raftAddrs[i], dir: filepath.Join(dataDir, strconv.Itoa(i)), exited: make(chan struct{})}
		c.args = []string{"serve",
			"-id", strconv.Itoa(i),
			"-peers", idMap(raftAddrs),
			"-http", c.httpAddr,
			"-http-peers", idMap(httpAddrs),
			"-data", c.dir,
			"-log-level", *logLevel,
		}
		c.args = append(c.args, localTLSArgs(certDir, i)...)
		if *election > 0 {
			c.args = append(c.args, "-election-timeout", election.String())
		}
		if *heartbeat > 0 {
			c.args = append(c.args, "-heartbeat", heartbeat.String())
		}
		if *snapBytes > 0 {
			c.args = append(c.args, "-snapshot-bytes", strconv.Itoa(*snapBytes))
		}
		if *pprof {
			c.args = append(c.args, "-pprof")
		}
		if *logReads {
			c.args = append(c.args, "-reads-through-log")
		}
		if *leaseReads {
			c.args = append(c.args, "-lease-reads")
		}
		if *followerReads {
			c.args = append(c.args, "-follower-reads")
		}
		if sec != nil {
			c.args = append(c.args, sec.serveFlags(i)...)
		} else {
			c.args = append(c.args, "-insecure-http")
		}
		c.cmd = exec.Command(exe, c.args...)
		c.cmd.SysProcAttr = childProcAttr()
		err := c.start(sp, lns.take(i), &out, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "raftkv: cannot start replica %d: %v\n", i, err)
			stopAll(children, stdout, stderr)
			return exitError
		}
		children = append(children, c)
		fmt.Fprintf(stdout, "  replica %d: HTTP %s://%s  Raft %s  data %s  (pid %d)\n", i, scheme, c.httpAddr, c.raftAddr, c.dir, c.cmd.Process.Pid)
	}
	fmt.Fprintf(stdout, "raftkv: waiting for a leader...\n")

	leader, term := -1, 0
	elected := false
	poll := time.NewTicker(200 * time.Millisecond)
	defer poll.Stop()
	for {
		select {
		case sig := <-sigs:
			fmt.Fprintf(stdout, "raftkv: %v: stopping the replicas...\n", sig)
			go func() {
				// A second signal: no more waiting.
				<-sigs
				for _, c := range children {
					c.cmd.Process.Kill()
				}
			}()
			if stopAll(children, stdout, stderr) {
				fmt.Fprintf(stdout, "raftkv: all replicas stopped\n")
				return exitOK
			}
			return exitError
		case <-poll.C:
		}
		alive := 0
		for _, c := range children {
			select {
			case <-c.exited:
				if !c.reportedExit {
					c.reportedExit = true
					fmt.Fprintf(stdout, "raftkv: replica %d exited: %s\n", c.id, exitText(c.err))
					if elected {
						fmt.Fprintf(stdout, "raftkv: to restart replica %d on its data (it then runs on its own: this launcher neither watches nor stops it):\n  %s\n",
							c.id, shellJoin(append(selfCommand(exe), c.args...)))
					}
					if !elected {
						fmt.Fprintf(stderr, "raftkv: replica %d failed to start (its messages are above); stopping the others\n", c.id)
						stopAll(children, stdout, stderr)
						return exitError
					}
				}
			default:
				alive++
			}
		}
		if alive == 0 {
			fmt.Fprintf(stderr, "raftkv: every replica has exited\n")
			return exitError
		}
		if id, t, ok := findLeader(cc, children); ok && (id != leader || t != term) {
			if !elected || id != leader {
				c := children[id-1]
				verb := "is the leader"
				if elected {
					verb = "is the leader now"
				}
				fmt.Fprintf(stdout, "raftkv: replica %d %s (term %d): HTTP %s://%s\n", id, verb, t, scheme, c.httpAddr)
			}
			if !elected {
				printHints(stdout, exe, httpAddrs, dataDir, sec)
			}
			elected, leader, term = true, id, t
		}
	}
}

// selfCommand is how to run this program again: its executable, or "go
// run ./cmd/raftkv" if it was built by go run (whose executable goes when
// it exits).
func selfCommand(exe string) []string {
	if strings.Contains(exe, "go-build") {
		return []string{"go", "run", "./cmd/raftkv"}
	}
	return []string{exe}
}

// start starts the process, from sp's thread, handing it its listeners
// l (closing the launcher's copies), with its output, line by line and
// prefixed with the replica, on stderr.
func (c *child) start(sp *spawner, l replicaListeners, out *sync.Mutex, stderr io.Writer) error {
	defer l.close()
	if canHandOver {
		files, err := handOver(c.cmd, l.http, l.raft)
		if err != nil {
			return err
		}
		defer closeFiles(files)
	} else {
		l.close() // the replica listens itself
	}
	ro, wo, err := os.Pipe()
	if err != nil {
		return err
	}
	c.cmd.Stdout, c.cmd.Stderr = wo, wo
	if err := sp.start(c.cmd); err != nil {
		ro.Close()
		wo.Close()
		return err
	}
	wo.Close()
	c.output.Add(1)
	go func() {
		defer c.output.Done()
		defer ro.Close()
		sc := bufio.NewScanner(ro)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			out.Lock()
			fmt.Fprintf(stderr, "[replica %d] %s\n", c.id, sc.Text())
			out.Unlock()
		}
	}()
	go func() {
		c.err = c.cmd.Wait()
		c.output.Wait()
		close(c.exited)
	}()
	return nil
}

// stopAll sends SIGTERM to every replica still running and waits for them
// (killing those that take over 10 s); it reports whether all those
// exited cleanly. Replicas that had exited before are not waited for.
func stopAll(children []*child, stdout, stderr io.Writer) bool {
	var running []*child
	for _, c := range children {
		select {
		case <-c.exited:
			continue
		default:
		}
		running = append(running, c)
		c.cmd.Process.Signal(syscall.SIGTERM)
	}
	clean := true
	for _, c := range running {
		select {
		case <-c.exited:
		case <-time.After(10 * time.Second):
			fmt.Fprintf(stderr, "raftkv: replica %d did not stop within 10s; killing it\n", c.id)
			c.cmd.Process.Kill()
			<-c.exited
		}
		if c.err != nil {
			clean = false
			fmt.Fprintf(stderr, "raftkv: replica %d: %s\n", c.id, exitText(c.err))
		}
	}
	return clean
}

// findLeader asks the replicas who leads; a leader that says so itself
// counts.
func findLeader(cc *clientConn, children []*child) (id, term int, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, c := range children {
		select {
		case <-c.exited:
			continue
		default:
		}
		st, err := cc.status(ctx, withScheme(c.httpAddr, cc.token != ""))
		if err == nil && st.Role == "leader" && st.ID >= 1 && st.ID <= len(children) {
			if st.Term > term {
				id, term, ok = st.ID, st.Term, true
			}
		}
	}
	return id, term, ok
}

// addrRange returns n addresses from base ("host:port", or a port for
// 127.0.0.1) on consecutive ports, keyed 1 to n.
func addrRange(base string, n int) (map[int]string, error) {
	host, p, err := net.SplitHostPort(base)
	if err != nil {
		host, p = "127.0.0.1", base
	}
	first, err := strconv.Atoi(p)
	if err != nil || first < 0 || first+n-1 > 65535 {
		return nil, fmt.Errorf("%q: want host:port or a port, with room for %d ports", base, n)
	}
	m := make(map[int]string, n)
	for i := 1; i <= n; i++ {
		port := 0 // each picks a free one
		if first > 0 {
			port = first + i - 1
		}
		m[i] = net.JoinHostPort(host, strconv.Itoa(port))
	}
	return m, nil
}

func port(addr string) string {
	if _, p, err := net.SplitHostPort(addr); err == nil {
		return p
	}
	return addr
}

// idMap formats addresses as serve's lists: 1=a,2=b.
func idMap(m map[int]string) string {
	parts := make([]string, 0, len(m))
	for _, id := range sortedIDs(m) {
		parts = append(parts, fmt.Sprintf("%d=%s", id, m[id]))
	}
	return strings.Join(parts, ",")
}

// shellJoin joins args into a command line for a POSIX shell, quoting
// those that need it.
func shellJoin(args []string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = shellQuote(a)
	}
	return strings.Join(quoted, " ")
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:=,@+%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
