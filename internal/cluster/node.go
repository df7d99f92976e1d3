package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/core"
	"github.com/raftkit/raft/internal/certs"
	"github.com/raftkit/raft/storage"
	"github.com/raftkit/raft/transport"
)

// Config describes a Node.
type Config struct {
	ID    int
	Peers map[int]string // every server's Raft address, this one's included
	Dir   string         // where the server keeps its state
	// ControlAddr is where the control API listens; port 0 picks a free one
	// (Node.ControlAddr tells which).
	ControlAddr string
	// Cut lists the servers this one starts cut off from, as if it had
	// received {"cut": Cut} on /faults before its first message.
	Cut []int
	// Listener, if set, is where the Raft transport accepts, instead of
	// listening on Peers[ID]. Start takes it over: the node's Close
	// closes it, and so does a Start that fails. ConfigFromEnv sets it
	// from a listener the process inherited (see Environ).
	Listener net.Listener

	// CertDir, if set, runs the Raft transport over mutual TLS, with the
	// certificates certs.WriteLocalCluster writes there (ca.crt,
	// server-<id>.crt and .key); otherwise over plain TCP.
	CertDir string

	// Raft timing; zero means raft's defaults.
	ElectionTimeout, HeartbeatInterval time.Duration

	Logger *slog.Logger // default slog.Default()
}

// The environment variables that carry a Config to a node process (see
// Config.Environ and ConfigFromEnv).
const (
	EnvNode     = "RAFT_CLUSTER_NODE" // "1" in a node process
	envID       = "RAFT_CLUSTER_ID"
	envPeers    = "RAFT_CLUSTER_PEERS" // 1=127.0.0.1:7001,2=...
	envDir      = "RAFT_CLUSTER_DIR"
	envControl  = "RAFT_CLUSTER_CONTROL"
	envCut      = "RAFT_CLUSTER_CUT" // 2,3
	envElection = "RAFT_CLUSTER_ELECTION_TIMEOUT"
	envHeart    = "RAFT_CLUSTER_HEARTBEAT"
	envCertDir  = "RAFT_CLUSTER_CERT_DIR"
	// envListenFD is the file descriptor of a listener the process
	// inherited for its Raft transport (exec.Cmd.ExtraFiles).
	envListenFD = "RAFT_CLUSTER_LISTEN_FD"
)

// Environ returns the environment variables that ConfigFromEnv reads back
// into c (all but Logger and Listener). To hand a node process its Raft
// listener, pass the listener's file as exec.Cmd.ExtraFiles[i] and add
// ListenFDEnv(i).
func (c Config) Environ() []string {
	ids := make([]int, 0, len(c.Peers))
	for id := range c.Peers {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	peers := make([]string, len(ids))
	for i, id := range ids {
		peers[i] = fmt.Sprintf("%d=%s", id, c.Peers[id])
	}
	env := []string{
		EnvNode + "=1",
		envID + "=" + strconv.Itoa(c.ID),
		envPeers + "=" + strings.Join(peers, ","),
		envDir + "=" + c.Dir,
		envControl + "=" + c.ControlAddr,
		envCut + "=" + joinInts(c.Cut),
		envCertDir + "=" + c.CertDir,
	}
	if c.ElectionTimeout != 0 {
		env = append(env, envElection+"="+c.ElectionTimeout.String())
	}
	if c.HeartbeatInterval != 0 {
		env = append(env, envHeart+"="+c.HeartbeatInterval.String())
	}
	return env
}

// ListenFDEnv returns the environment variable that tells a node process
// that exec.Cmd.ExtraFiles[i] is the listener for its Raft transport.
func ListenFDEnv(i int) string {
	return envListenFD + "=" + strconv.Itoa(3+i) // after stdin, stdout, stderr
}

// ConfigFromEnv reads a Config from the variables that Config.Environ and
// ListenFDEnv set.
func ConfigFromEnv() (Config, error) {
	var c Config
	var err error
	if c.ID, err = strconv.Atoi(os.Getenv(envID)); err != nil {
		return c, fmt.Errorf("%s: %w", envID, err)
	}
	c.Peers = make(map[int]string)
	for _, p := range strings.Split(os.Getenv(envPeers), ",") {
		id, addr, ok := strings.Cut(p, "=")
		n, err := strconv.Atoi(id)
		if !ok || err != nil || addr == "" {
			return c, fmt.Errorf("%s: bad peer %q (want ID=host:port)", envPeers, p)
		}
		c.Peers[n] = addr
	}
	if c.Dir = os.Getenv(envDir); c.Dir == "" {
		return c, fmt.Errorf("%s is empty", envDir)
	}
	if c.ControlAddr = os.Getenv(envControl); c.ControlAddr == "" {
		c.ControlAddr = "127.0.0.1:0"
	}
	if c.Cut, err = splitInts(os.Getenv(envCut)); err != nil {
		return c, fmt.Errorf("%s: %w", envCut, err)
	}
	c.CertDir = os.Getenv(envCertDir)
	if s := os.Getenv(envListenFD); s != "" {
		if c.Listener, err = inheritedListener(s); err != nil {
			return c, fmt.Errorf("%s: %w", envListenFD, err)
		}
	}
	for _, v := range []struct {
		name string
		d    *time.Duration
	}{{envElection, &c.ElectionTimeout}, {envHeart, &c.HeartbeatInterval}} {
		if s := os.Getenv(v.name); s != "" {
			if *v.d, err = time.ParseDuration(s); err != nil {
				return c, fmt.Errorf("%s: %w", v.name, err)
			}
		}
	}
	return c, nil
}

// inheritedListener returns the listener on the file descriptor fd names.
func inheritedListener(fd string) (net.Listener, error) {
	n, err := strconv.Atoi(fd)
	if err != nil || n < 3 {
		return nil, fmt.Errorf("bad file descriptor %q (want a number >= 3)", fd)
	}
	f := os.NewFile(uintptr(n), "raft-listener")
	defer f.Close() // FileListener keeps a copy
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("file descriptor %d: %w", n, err)
	}
	return ln, nil
}

// Main runs a node process: it reads its Config from the environment,
// starts the Node, prints "ready <control address>" on standard output,
// and runs until SIGTERM or SIGINT, when it closes the node, or until the
// Raft server stops on its own (Node.Err, e.g. raft.ErrClusterExists). It
// returns the process's exit code: 0 after a clean stop on a signal, 1 on
// failure or if the server stopped on its own (logged on standard error).
func Main() int {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg, err := ConfigFromEnv()
	if err != nil {
		logger.Error("cluster node: bad configuration", "err", err)
		return 1
	}
	cfg.Logger = logger.With("node", cfg.ID)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	n, err := Start(cfg)
	if err != nil {
		cfg.Logger.Error("cluster node: start failed", "err", err)
		return 1
	}
	fmt.Printf("ready %s\n", n.ControlAddr())
	code := 0
	select {
	case <-ctx.Done():
		cfg.Logger.Info("cluster node: signalled, closing")
	case <-n.Done():
		cfg.Logger.Error("cluster node: stopped on its own", "err", n.Err())
		code = 1
	}
	if err := n.Close(); err != nil {
		cfg.Logger.Error("cluster node: close", "err", err)
		return 1
	}
	cfg.Logger.Info("cluster node: closed")
	return code
}

// Node is one Raft server with its storage, transport, applier and control
// API.
type Node struct {
	cfg    Config
	rf     *raft.Raft
	faults *transport.Faults
	ctrl   net.Listener
	srv    *http.Server
	done   chan struct{} // closed when the server stops, on its own or by Close
	wg     sync.WaitGroup

	doneOnce  sync.Once
	closeOnce sync.Once
	closeErr  error

	mu      sync.Mutex
	applied []Applied // the commands applied, in order; indexes increase
	errs    []string  // what went wrong in applying: indexes out of order, foreign commands
	cut     map[int]bool
}

// Start starts a node: it opens its storage in cfg.Dir, its transport on
// cfg.Listener or cfg.Peers[cfg.ID] and its control API on
// cfg.ControlAddr, and starts the Raft server, which founds a new cluster
// if no server has state yet (raft.Config.Bootstrap).
func Start(cfg Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	n := &Node{cfg: cfg, faults: new(transport.Faults), done: make(chan struct{}), cut: make(map[int]bool)}
	for _, id := range cfg.Cut {
		n.setCut(id, true)
	}
	closeListener := func() {
		if cfg.Listener != nil {
			cfg.Listener.Close()
		}
	}
	store, err := storage.Open(cfg.Dir, storage.Options{Logger: cfg.Logger})
	if err != nil {
		closeListener()
		return nil, fmt.Errorf("open storage: %w", err)
	}
	tcfg := transport.Config{
		ID:       cfg.ID,
		Peers:    cfg.Peers,
		Listener: cfg.Listener,
		Logger:   cfg.Logger,
		Faults:   n.faults,
		Insecure: cfg.CertDir == "",
	}
	if cfg.CertDir != "" {
		r, err := transport.NewCertReloader(filepath.Join(cfg.CertDir, certs.CACertFile),
			filepath.Join(cfg.CertDir, certs.ServerCertFile(cfg.ID)), filepath.Join(cfg.CertDir, certs.ServerKeyFile(cfg.ID)))
		if err != nil {
			closeListener()
			store.Close()
			return nil, err
		}
		tcfg.TLS = r.TLSConfig()
	}
	tr, err := transport.New(tcfg)
	if err != nil {
		closeListener()
		store.Close()
		return nil, fmt.Errorf("transport: %w", err)
	}
	n.ctrl, err = net.Listen("tcp", cfg.ControlAddr)
	if err != nil {
		tr.Close()
		store.Close()
		return nil, fmt.Errorf("control API: %w", err)
	}
	n.rf, err = raft.New(raft.Config{
		ID:                cfg.ID,
		Peers:             cfg.Peers,
		Transport:         raft.TCP(tr),
		Storage:           store,
		StateMachine:      n,
		SnapshotBytes:     snapshotBytes,
		Bootstrap:         true,
		ElectionTimeout:   cfg.ElectionTimeout,
		HeartbeatInterval: cfg.HeartbeatInterval,
		Logger:            cfg.Logger,
	})
	if err != nil {
		n.ctrl.Close()
		tr.Close()
		store.Close()
		return nil, err
	}
	n.wg.Add(1)
	go func() { defer n.wg.Done(); n.watch() }()

	mux := http.NewServeMux()
	mux.HandleFunc("POST /start", n.handleStart)
	mux.HandleFunc("GET /state", n.handleState)
	mux.HandleFunc("POST /faults", n.handleFaults)
	n.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.srv.Serve(n.ctrl); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cfg.Logger.Error("cluster node: control API", "err", err)
		}
	}()
	return n, nil
}

// ControlAddr returns the address of the control API.
func (n *Node) ControlAddr() string { return n.ctrl.Addr().String() }

// Raft returns the node's Raft server.
func (n *Node) Raft() *raft.Raft { return n.rf }

// Done is closed when the node stops: by Close, or on its own because
// its Raft server stopped (Err tells why).
func (n *Node) Done() <-chan struct{} { return n.done }

// Err returns why the Raft server stopped on its own, or nil.
func (n *Node) Err() error { return n.rf.Err() }

// Close stops the control API and the Raft server, which closes the
// transport and the storage.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n.srv.Shutdown(ctx)
		n.closeErr = n.rf.Close()
		n.stopped()
		n.wg.Wait()
	})
	return n.closeErr
}

func (n *Node) stopped() { n.doneOnce.Do(func() { close(n.done) }) }

// watch notices a Raft server that stopped on its own (see raft.Raft.Err).
func (n *Node) watch() {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-n.done:
			return
		case <-t.C:
			if n.rf.Err() != nil {
				n.stopped()
				return
			}
		}
	}
}

// snapshotBytes is how often, in bytes of commands, a node snapshots: small,
// so that the tests go through many snapshots, compactions and installs.
const snapshotBytes = 2 << 10

// Apply records an applied command (the node is its server's
// raft.StateMachine), checking that indexes increase. They may skip:
// entries without a command for the service (the no-op of a new leader)
// are not applied.
func (n *Node) Apply(c raft.Command) any {
	n.mu.Lock()
	defer n.mu.Unlock()
	if last := n.lastApplied(); c.Index <= last {
		n.fault("applied index %d after index %d (indexes must increase)", c.Index, last)
		return nil
	}
	n.applied = append(n.applied, Applied{Index: c.Index, Cmd: string(c.Data)})
	return nil
}

// Snapshot writes the node's state: every command it applied.
func (n *Node) Snapshot(w io.Writer) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return json.NewEncoder(w).Encode(n.applied)
}

// Restore replaces the node's state with a snapshot's, which must not go
// back before what it applied.
func (n *Node) Restore(r io.Reader) error {
	var applied []Applied
	if err := json.NewDecoder(r).Decode(&applied); err != nil {
		return fmt.Errorf("decode snapshot: %w", err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(applied) < len(n.applied) {
		n.fault("restored a snapshot of %d commands after applying %d", len(applied), len(n.applied))
	}
	n.applied = applied
	return nil
}

// lastApplied returns the index of the last command applied, or 0; n.mu
// is held.
func (n *Node) lastApplied() int {
	if len(n.applied) == 0 {
		return 0
	}
	return n.applied[len(n.applied)-1].Index
}

// fault records a broken promise of the apply channel; n.mu is held. The
// first 100 are kept.
func (n *Node) fault(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if len(n.errs) < 100 {
		n.errs = append(n.errs, msg)
	}
	n.cfg.Logger.Error("cluster node: " + msg)
}

// The control API's messages.
type (
	// StartRequest proposes Cmd (POST /start).
	StartRequest struct {
		Cmd string `json:"cmd"`
	}
	// StartReply is raft's answer to Start.
	StartReply struct {
		Index    int  `json:"index"`
		Term     int  `json:"term"`
		IsLeader bool `json:"isLeader"`
	}
	// State is a node's state (GET /state?since=N&max=M): Applied holds
	// the commands applied after the first N, at most M of them (default
	// 5000), and AppliedCount how many it has applied in all. Indexes
	// skip the entries that carry no command (a new leader's no-op).
	State struct {
		ID            int         `json:"id"`
		PID           int         `json:"pid"`
		Term          int         `json:"term"`
		IsLeader      bool        `json:"isLeader"`
		Leader        int         `json:"leader"` // as far as the server knows; -1 for none
		Commit        int         `json:"commit"`
		LastLog       int         `json:"lastLog"`
		Match         map[int]int `json:"match,omitempty"` // leader only: how far each server's log is known to match
		Bootstrapping bool        `json:"bootstrapping,omitempty"`
		AppliedCount  int         `json:"appliedCount"`
		LastApplied   int         `json:"lastApplied"` // index of the last command applied
		Applied       []Applied   `json:"applied"`
		Cut           []int       `json:"cut"`
		Errors        []string    `json:"errors,omitempty"` // apply-order violations, a stopped server
	}
	// Applied is one applied command.
	Applied struct {
		Index int    `json:"index"`
		Cmd   string `json:"cmd"`
	}
	// FaultsRequest changes the links of a node (POST /faults): it cuts,
	// in both directions, its links to the servers in Cut, heals those to
	// the servers in Heal, or, with HealAll, all of them. The reply is a
	// State without Applied.
	FaultsRequest struct {
		Cut     []int `json:"cut,omitempty"`
		Heal    []int `json:"heal,omitempty"`
		HealAll bool  `json:"healAll,omitempty"`
	}
)

func (n *Node) handleStart(w http.ResponseWriter, r *http.Request) {
	var req StartRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	index, term, err := n.rf.Propose([]byte(req.Cmd))
	writeJSON(w, StartReply{Index: index, Term: term, IsLeader: err == nil})
}

func (n *Node) handleState(w http.ResponseWriter, r *http.Request) {
	since, max := 0, 5000
	for _, q := range []struct {
		name string
		v    *int
	}{{"since", &since}, {"max", &max}} {
		if s := r.URL.Query().Get(q.name); s != "" {
			v, err := strconv.Atoi(s)
			if err != nil || v < 0 {
				http.Error(w, q.name+": want a number >= 0", http.StatusBadRequest)
				return
			}
			*q.v = v
		}
	}
	writeJSON(w, n.state(since, max))
}

func (n *Node) handleFaults(w http.ResponseWriter, r *http.Request) {
	var req FaultsRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, id := range append(req.Cut, req.Heal...) {
		if _, ok := n.cfg.Peers[id]; !ok || id == n.cfg.ID {
			http.Error(w, fmt.Sprintf("%d is not another server of the cluster", id), http.StatusBadRequest)
			return
		}
	}
	if req.HealAll {
		n.healAll()
	}
	for _, id := range req.Heal {
		n.setCut(id, false)
	}
	for _, id := range req.Cut {
		n.setCut(id, true)
	}
	writeJSON(w, n.state(0, 0))
}

func (n *Node) setCut(id int, cut bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	// A cut link is cut both ways, and honoured by both ends: this
	// server neither sends to id nor accepts what id sends.
	if cut {
		n.faults.Cut(n.cfg.ID, id)
		n.cut[id] = true
	} else {
		n.faults.Heal(n.cfg.ID, id)
		delete(n.cut, id)
	}
}

func (n *Node) healAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.faults.HealAll()
	clear(n.cut)
}

func (n *Node) state(since, max int) State {
	st := State{ID: n.cfg.ID, PID: os.Getpid(), Leader: -1}
	st.Term, st.IsLeader = n.rf.GetState()
	if s, ok := n.rf.Status(); ok {
		st.Term, st.Leader, st.Commit, st.LastLog = s.Term, s.Leader, s.Commit, s.LastLog
		st.IsLeader = s.Role == core.Leader
		st.Match, st.Bootstrapping = s.Match, s.Bootstrapping
	}
	if err := n.rf.Err(); err != nil {
		st.Errors = append(st.Errors, "raft stopped: "+err.Error())
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	st.AppliedCount, st.LastApplied = len(n.applied), n.lastApplied()
	if since < len(n.applied) {
		st.Applied = slices.Clone(n.applied[since:min(len(n.applied), since+max)])
	}
	st.Errors = append(st.Errors, n.errs...)
	for id := range n.cut {
		st.Cut = append(st.Cut, id)
	}
	slices.Sort(st.Cut)
	return st
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

func splitInts(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var xs []int
	for _, f := range strings.Split(s, ",") {
		x, err := strconv.Atoi(f)
		if err != nil {
			return nil, err
		}
		xs = append(xs, x)
	}
	return xs, nil
}
