package main

import (
	"context"
	"crypto/tls"
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
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/kv"
	"github.com/raftkit/raft/storage"
	"github.com/raftkit/raft/transport"
)

// serveConfig is what "raftkv serve" runs.
type serveConfig struct {
	id         int
	peers      map[int]string // Raft addresses
	httpAddr   string         // where the HTTP API listens
	httpPeers  map[int]string // HTTP addresses
	dataDir    string
	election   time.Duration
	heartbeat  time.Duration
	maxValue   int
	maxFlight  int           // HTTP requests served at once
	bodyWait   time.Duration // how long a request body may take
	logLevel   slog.Level
	faultsAPI  bool
	pprof      bool // serve net/http/pprof under /debug/pprof/
	logReads   bool // GETs through the log, not ReadIndex
	join       bool // a new member of a running cluster (raft.Config.Join)
	leaseReads bool // raft.Config.LeaderLease
	fwerReads  bool // raft.Config.FollowerReads
	dialMaxGap time.Duration
	snapBytes  int          // raft.Config.SnapshotBytes
	segBytes   int64        // storage.Options.SegmentBytes; 0: the default
	raftTLS    raftTLS      // the Raft transport's TLS (raft_tls.go)
	httpSec    httpSecurity // the HTTP API's (httpsec.go)
	// httpLn and raftLn, if set, are listeners on httpAddr and this
	// replica's entry in peers, opened before (by tests, or by the local
	// launcher, whose replicas inherit them): no port is closed and opened
	// again, so none can be taken in between. startReplica owns them.
	httpLn, raftLn net.Listener
}

func runServe(args []string, stdout, stderr io.Writer) int {
	cfg, code, ok := parseServe(args, stdout, stderr)
	if !ok {
		return code
	}
	var err error
	if cfg.httpLn, cfg.raftLn, err = inheritedListeners(); err != nil {
		fmt.Fprintf(stderr, "raftkv serve: replica %d: %v\n", cfg.id, err)
		return exitError
	}
	return serve(cfg, stdout, stderr)
}

// parseServe reads serve's flags. It prints what is wrong, or the usage
// for -h; ok is false if it did, and code is the exit status then.
func parseServe(args []string, stdout, stderr io.Writer) (cfg serveConfig, code int, ok bool) {
	fs := newFlagSet("serve", stderr)
	id := fs.Int("id", 0, "")
	peers := fs.String("peers", "", "")
	httpAddr := fs.String("http", "", "")
	httpPeers := fs.String("http-peers", "", "")
	data := fs.String("data", "", "")
	election := fs.Duration("election-timeout", 0, "")
	heartbeat := fs.Duration("heartbeat", 0, "")
	maxValue := fs.Int("max-value-bytes", kv.DefaultMaxValueBytes, "")
	maxFlight := fs.Int("max-inflight", kv.DefaultMaxInFlight, "")
	bodyWait := fs.Duration("body-timeout", kv.DefaultBodyTimeout, "")
	logLevel := fs.String("log-level", "info", "")
	snapBytes := fs.Int("snapshot-bytes", raft.DefaultSnapshotBytes, "")
	pprof := fs.Bool("pprof", false, "")
	logReads := fs.Bool("reads-through-log", false, "")
	join := fs.Bool("join", false, "")
	leaseReads := fs.Bool("lease-reads", false, "")
	followerReads := fs.Bool("follower-reads", false, "")
	// Test only, and so not in the usage: POST /debug/faults cuts and
	// heals this replica's Raft links (see serveFaults).
	faultsAPI := fs.Bool("faults-api", false, "")
	// Test only: small WAL segments, so that tests see segments deleted
	// after snapshots.
	segBytes := fs.Int64("wal-segment-bytes", 0, "")
	httpSec := addHTTPSecFlags(fs)
	raftTLS := addRaftTLSFlags(fs)
	pos, code, ok := parseFlags(fs, args, stdout, stderr)
	if !ok {
		return cfg, code, false
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "raftkv serve: "+format+"\n"+usageHint("serve")+"\n", a...)
		return exitUsage
	}
	if len(pos) > 0 {
		return cfg, fail("%s", noArgs(pos)), false
	}
	cfg = serveConfig{id: *id, election: *election, heartbeat: *heartbeat, maxValue: *maxValue, maxFlight: *maxFlight, bodyWait: *bodyWait,
		faultsAPI: *faultsAPI, pprof: *pprof, logReads: *logReads, join: *join, leaseReads: *leaseReads, fwerReads: *followerReads, dialMaxGap: time.Second, snapBytes: *snapBytes, segBytes: *segBytes, raftTLS: *raftTLS}
	var err error
	if cfg.peers, err = parseIDList(*peers); err != nil {
		return cfg, fail("-peers: %v", err), false
	}
	if cfg.httpPeers, err = parseIDList(*httpPeers); err != nil {
		return cfg, fail("-http-peers: %v", err), false
	}
	if len(cfg.peers) == 0 {
		return cfg, fail("-peers is required: every replica's Raft address, as 1=127.0.0.1:9001,2=127.0.0.1:9002,..."), false
	}
	if _, ok := cfg.peers[cfg.id]; !ok {
		return cfg, fail("replica %d is not in -peers (which lists %s); give this replica's ID with -id", cfg.id, idList(cfg.peers)), false
	}
	for hid := range cfg.httpPeers {
		if _, ok := cfg.peers[hid]; !ok {
			return cfg, fail("-http-peers lists replica %d, which is not in -peers (%s)", hid, idList(cfg.peers)), false
		}
	}
	cfg.httpAddr = *httpAddr
	if cfg.httpAddr == "" {
		cfg.httpAddr = cfg.httpPeers[cfg.id]
	}
	if cfg.httpAddr == "" {
		return cfg, fail("no HTTP address: give -http, or this replica's entry in -http-peers"), false
	}
	if _, ok := cfg.httpPeers[cfg.id]; !ok {
		cfg.httpPeers[cfg.id] = cfg.httpAddr
	}
	cfg.dataDir = *data
	if cfg.dataDir == "" {
		cfg.dataDir = filepath.Join("raftkv-data", fmt.Sprint(cfg.id))
	}
	if cfg.maxValue <= 0 {
		return cfg, fail("-max-value-bytes %d: want a positive size", cfg.maxValue), false
	}
	if limit := maxValueLimit(); cfg.maxValue > limit {
		return cfg, fail("-max-value-bytes %d is over what one log entry carries with the longest key (%d bytes); give at most %d", cfg.maxValue, raft.DefaultMaxCommandBytes, limit), false
	}
	if cfg.maxFlight <= 0 {
		return cfg, fail("-max-inflight %d: want a positive number of requests", cfg.maxFlight), false
	}
	if cfg.bodyWait <= 0 {
		return cfg, fail("-body-timeout %v: want a positive duration", cfg.bodyWait), false
	}
	if cfg.snapBytes <= 0 {
		return cfg, fail("-snapshot-bytes %d: want a positive size (the default is %d)", cfg.snapBytes, raft.DefaultSnapshotBytes), false
	}
	if cfg.segBytes < 0 {
		return cfg, fail("-wal-segment-bytes %d: want a positive size, or 0 for the default", cfg.segBytes), false
	}
	if err := cfg.logLevel.UnmarshalText([]byte(*logLevel)); err != nil {
		return cfg, fail("-log-level %q: want debug, info, warn or error", *logLevel), false
	}
	if err := cfg.raftTLS.check(); err != nil {
		return cfg, fail("%v", err), false
	}
	if cfg.httpSec, err = httpSec.config(cfg.raftTLS.ca, cfg.raftTLS.cert, cfg.raftTLS.key); err != nil {
		return cfg, fail("%v", err), false
	}
	if !cfg.httpSec.insecure {
		cfg.httpPeers = httpsURLs(cfg.httpPeers)
	}
	return cfg, exitOK, true
}

// maxValueLimit is the largest value that fits in one log entry
// (raft.DefaultMaxCommandBytes) with a key of kv.DefaultMaxKeyBytes and the
// rest of the request.
func maxValueLimit() int { return raft.DefaultMaxCommandBytes - kv.DefaultMaxKeyBytes - 4<<10 }

func idList(m map[int]string) string {
	ids := make([]string, 0, len(m))
	for _, id := range sortedIDs(m) {
		ids = append(ids, fmt.Sprint(id))
	}
	return strings.Join(ids, ", ")
}

func sortedIDs[V any](m map[int]V) []int {
	ids := make([]int, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	return ids
}

// replica is one running replica.
type replica struct {
	cfg    serveConfig
	log    *slog.Logger
	rf     *raft.Raft
	kv     *kv.Server
	peers  kv.HTTPPeers // the replicas' HTTP addresses: -http-peers, then the store's directory
	faults *transport.Faults
	certs  *transport.CertReloader // nil without TLS
	srv    *http.Server
	ln     net.Listener
	guard  *httpGuard         // the HTTP API's TLS and authentication
	cancel context.CancelFunc // ends every request's context
}

// serve runs a replica until SIGTERM or SIGINT.
func serve(cfg serveConfig, stdout, stderr io.Writer) int {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.logLevel})).With("replica", cfg.id)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	r, err := startReplica(cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "raftkv serve: replica %d: %v\n", cfg.id, err)
		return exitError
	}
	fmt.Fprintf(stdout, "raftkv: replica %d ready: HTTP %s, Raft %s, data %s\n", cfg.id, r.ln.Addr(), cfg.peers[cfg.id], cfg.dataDir)

	served := make(chan error, 1)
	go func() { served <- r.srv.Serve(r.ln) }()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	watch := time.NewTicker(100 * time.Millisecond)
	defer watch.Stop()
	code := exitOK
loop:
	for {
		select {
		case <-ctx.Done():
			log.Info("raftkv serve: signalled; shutting down")
			r.handOver()
			break loop
		case <-hup:
			r.reloadCerts()
			r.guard.reload(log)
		case err := <-served:
			log.Error("raftkv serve: HTTP server failed", "err", err)
			code = exitError
			break loop
		case <-watch.C:
			if err := r.rf.Err(); err != nil {
				if errors.Is(err, raft.ErrRemoved) {
					log.Warn("raftkv serve: removed from the cluster's configuration; stopping")
					fmt.Fprintf(stderr, "raftkv serve: replica %d was removed from the cluster and stopped; its data directory %s is kept. Do not start it again under ID %d\n", cfg.id, cfg.dataDir, cfg.id)
					break loop
				}
				log.Error("raftkv serve: the Raft server stopped", "err", err)
				if errors.Is(err, raft.ErrClusterExists) || errors.Is(err, raft.ErrIDInUse) {
					fmt.Fprintf(stderr, "raftkv serve: replica %d refuses to start: %v\n%s\n", cfg.id, err, replaceAdvice(cfg.id))
				} else {
					fmt.Fprintf(stderr, "raftkv serve: replica %d (data directory %s) stopped: %v\n", cfg.id, cfg.dataDir, err)
				}
				code = exitError
				break loop
			}
		}
	}
	// A removed server's Close returns ErrRemoved: its expected end.
	if err := r.close(); err != nil && code == exitOK && !errors.Is(err, raft.ErrRemoved) {
		log.Error("raftkv serve: shutdown", "err", err)
		code = exitError
	}
	log.Info("raftkv serve: stopped")
	return code
}

// startReplica opens everything a replica needs, or closes what it opened
// and explains what went wrong.
func startReplica(cfg serveConfig, log *slog.Logger) (*replica, error) {
	r := &replica{cfg: cfg, log: log, faults: transport.NewFaults(uint64(time.Now().UnixNano()))}
	var err error
	// The HTTP port first: of the failures, "address in use" is the
	// likeliest, and it costs nothing to find out.
	if r.ln = cfg.httpLn; r.ln == nil {
		if r.ln, err = net.Listen("tcp", cfg.httpAddr); err != nil {
			closeListener(cfg.raftLn)
			return nil, listenError("HTTP", cfg.httpAddr, err)
		}
	}
	if r.guard, err = newHTTPGuard(cfg.httpSec, r.ln, log); err != nil {
		r.ln.Close()
		closeListener(cfg.raftLn)
		return nil, err
	}
	store, err := storage.Open(cfg.dataDir, storage.Options{Logger: log, SegmentBytes: cfg.segBytes})
	if err != nil {
		r.ln.Close()
		closeListener(cfg.raftLn)
		switch {
		case errors.Is(err, storage.ErrLocked):
			return nil, fmt.Errorf("data directory %s is in use by another process (is this replica already running?): %w", cfg.dataDir, err)
		case errors.Is(err, storage.ErrCorrupt):
			return nil, fmt.Errorf("data directory %s holds a damaged log, so this replica cannot vouch for what it acknowledged; keep the directory as it is (starting this replica empty under ID %d could lose acknowledged writes): %w\n%s", cfg.dataDir, cfg.id, err, replaceAdvice(cfg.id))
		}
		return nil, fmt.Errorf("data directory %s: %w", cfg.dataDir, err)
	}
	tcfg := transport.Config{
		ID:             cfg.id,
		Peers:          cfg.peers,
		Logger:         log,
		Faults:         r.faults,
		DialBackoffMax: cfg.dialMaxGap,
		Listener:       cfg.raftLn,
	}
	if r.certs, err = cfg.raftTLS.apply(&tcfg, log); err != nil {
		store.Close()
		r.ln.Close()
		closeListener(cfg.raftLn)
		return nil, err
	}
	tr, err := transport.New(tcfg)
	if err != nil {
		store.Close()
		r.ln.Close()
		closeListener(cfg.raftLn)
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, listenError("Raft", cfg.peers[cfg.id], err)
		}
		return nil, err
	}
	r.kv = kv.NewServer(kv.ServerOptions{Logger: log, ReadsThroughLog: cfg.logReads})
	r.rf, err = raft.New(raft.Config{
		ID:                cfg.id,
		Peers:             cfg.peers,
		Transport:         raft.TCP(tr),
		Storage:           store,
		StateMachine:      r.kv,
		SnapshotBytes:     cfg.snapBytes,
		Bootstrap:         !cfg.join, // a replica with no data checks with its peers that the cluster is new
		Join:              cfg.join,  // or waits for the leader to add it
		ElectionTimeout:   cfg.election,
		HeartbeatInterval: cfg.heartbeat,
		LeaderLease:       cfg.leaseReads,
		FollowerReads:     cfg.fwerReads,
		Logger:            log,
	})
	if err != nil {
		tr.Close()
		store.Close()
		r.ln.Close()
		if errors.Is(err, raft.ErrNoState) {
			return nil, fmt.Errorf("%w\n%s", err, replaceAdvice(cfg.id))
		}
		return nil, err
	}
	r.kv.Attach(r.rf)
	// An address the directory holds as host:port gets the scheme this
	// replica's own API has, as -http-peers entries do (httpsURLs).
	scheme := "https"
	if cfg.httpSec.insecure {
		scheme = "http"
	}
	r.peers = kv.HTTPPeers{Local: cfg.httpPeers, Store: r.kv, Scheme: scheme}
	opts := kv.HTTPOptions{MaxValueBytes: cfg.maxValue, MaxInFlight: cfg.maxFlight, BodyTimeout: cfg.bodyWait, Logger: log, Auth: r.guard.auth, DirectoryScheme: scheme}
	if r.guard.tls != nil {
		opts.Client = r.guard.tls.forwardClient()
		r.ln = tls.NewListener(r.ln, r.guard.tls.serverConfig())
	}
	api := kv.NewHTTPHandler(r.kv, r.rf, cfg.id, cfg.httpPeers, opts)
	h := r.routes(api)
	base, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.srv = &http.Server{
		Handler:           h,
		BaseContext:       func(net.Listener) context.Context { return base },
		ReadHeaderTimeout: 10 * time.Second,
		// A backstop for routes that do not bound their body's read
		// time themselves, as the API's do (-body-timeout).
		ReadTimeout: cfg.bodyWait + 10*time.Second,
		IdleTimeout: 2 * time.Minute,
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return r, nil
}

// replaceAdvice is the safe way back for replica id, whose data is lost
// or damaged: a new member under a new ID (docs/operations.md,
// "Replacing a lost disk").
func replaceAdvice(id int) string {
	return fmt.Sprintf("To replace replica %d safely, keep its data directory as it is and either restore the directory from a copy taken while it was stopped, "+
		"or replace it as a new member under a NEW ID (docs/operations.md, \"Replacing a lost disk\"):\n"+
		"  1. raftkv remove %d                      (on any running replica: the old ID leaves the configuration)\n"+
		"  2. raftkv serve -join -id NEWID -data EMPTYDIR -peers <the servers, and NEWID=RAFTADDR> ...\n"+
		"                                        (NEWID: an ID the cluster never had; raftkv certs -ids NEWID makes its certificate)\n"+
		"  3. raftkv add-voter NEWID RAFTADDR -http HTTPADDR\n"+
		"                                        (records its HTTP address for the other replicas, adds it as a\n"+
		"                                        learner, lets it catch up, then makes it a voter)\n"+
		"Never start replica %d again with empty data under ID %d.", id, id, id, id)
}

// closeListener closes ln if there is one.
func closeListener(ln net.Listener) {
	if ln != nil {
		ln.Close()
	}
}

func listenError(what, addr string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s address %s is already in use (another replica or program listens there): %w", what, addr, err)
	}
	return fmt.Errorf("cannot listen for %s on %s: %w", what, addr, err)
}

// close shuts the replica down: no new HTTP requests, waiting ones
// answered, then the Raft server, which closes the transport and storage.
func (r *replica) close() error {
	// Requests waiting for the log, or for the leader they were forwarded
	// to, end now (503, outcome unknown) rather than when their wait does.
	r.cancel()
	r.kv.Stop()
	// Shutdown waits for the handlers to return; it also waits 5 s for
	// connections on which no request came yet (Go's http.Server counts
	// them as busy that long), which Close cuts short.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := r.srv.Shutdown(ctx); err != nil {
		r.log.Debug("raftkv serve: closing the HTTP connections still open", "err", err)
		r.srv.Close()
	}
	return r.rf.Close()
}

// faultsRequest is the body of POST /debug/faults. Cut and Heal name the
// replicas whose links with this one to cut or heal (both ways: a cut is
// honoured by both ends, so telling one end is enough); Isolate cuts all
// of this replica's links, Rejoin undoes that, HealAll undoes everything.
type faultsRequest struct {
	Cut     []int `json:"cut,omitempty"`
	Heal    []int `json:"heal,omitempty"`
	Isolate bool  `json:"isolate,omitempty"`
	Rejoin  bool  `json:"rejoin,omitempty"`
	HealAll bool  `json:"healAll,omitempty"`
}

// serveFaults is the test-only fault API (serve -faults-api).
func (r *replica) serveFaults(w http.ResponseWriter, req *http.Request) {
	if !postOnly(w, req) {
		return
	}
	var f faultsRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, req.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad body: " + err.Error()})
		return
	}
	self := r.cfg.id
	if f.HealAll {
		r.faults.HealAll()
	}
	if f.Rejoin {
		r.faults.Rejoin(self)
	}
	for _, id := range f.Heal {
		r.faults.Heal(self, id)
	}
	for _, id := range f.Cut {
		r.faults.Cut(self, id)
	}
	if f.Isolate {
		r.faults.Isolate(self)
	}
	connected := map[int]bool{}
	for id := range r.cfg.peers {
		if id != self {
			connected[id] = r.faults.Connected(self, id)
		}
	}
	r.log.Info("raftkv serve: faults changed", "request", f, "connected", connected)
	writeJSON(w, http.StatusOK, map[string]any{"id": self, "connected": connected})
}
