package main

import (
	"fmt"
	"strings"
)

// The usage: "raftkv -h" prints it all; "raftkv CMD -h" prints CMD's
// synopsis and section.

const usageIntro = `raftkv: a replicated key/value store on Raft, with an HTTP+JSON API.

Usage:
  raftkv [local] [flags]            start a local cluster: 3 replicas as processes on 127.0.0.1
  raftkv serve -id N -peers LIST -http-peers LIST [flags]
                                    run one replica
  raftkv put KEY VALUE              set KEY to VALUE
  raftkv get KEY                    print KEY's value (exit status 1 if KEY is missing)
  raftkv append KEY VALUE           append VALUE to KEY's value and print the new value
  raftkv del KEY                    delete KEY
  raftkv status                     show the leader, each replica's term, role, commit
                                    and applied index, snapshot and log, and the
                                    leader's match indexes
  raftkv bench [flags]              load a running cluster and report throughput and latency
  raftkv transfer [ID]              have the leader hand its leadership to replica ID (default:
                                    the most up-to-date one) and print the new leader
  raftkv members                    print the cluster's configuration: each server's ID, role
                                    (voter or learner), Raft address and HTTP address
  raftkv add-voter ID RAFTADDR -http HTTPADDR
                                    add server ID (started with serve -join) as a learner, wait
                                    for it to catch up, then make it a voter; -http records its
                                    HTTP address in the log first, so that every replica can
                                    forward requests to it (see "Membership" below)
  raftkv add-learner ID RAFTADDR -http HTTPADDR
                                    add server ID as a learner (gets the log, does not vote)
  raftkv promote ID                 make learner ID a voter once it has caught up
  raftkv remove ID                  remove server ID from the configuration; it stops itself
  raftkv certs -dir DIR [-ids LIST] [-hosts LIST]
                                    write a CA and the replicas' certificates for mutual TLS
  raftkv -h                         this help; raftkv CMD -h: CMD's alone
`

const usageLocal = `Local cluster (raftkv local, or raftkv with no command):
  -n N              number of replicas (default 3)
  -base-http ADDR   HTTP address of replica 1; replica i uses port+i-1 (default 127.0.0.1:8001);
                    port 0 gives each replica a free port
  -base-raft ADDR   Raft address of replica 1; replica i uses port+i-1 (default 127.0.0.1:9001);
                    port 0 gives each replica a free port
  -data DIR         replica i keeps its log in DIR/i (default ./raftkv-data)
  -log-level LEVEL  the replicas' log level: debug, info, warn or error (default warn)
  -election-timeout D, -heartbeat D   the replicas' Raft timing (see serve)
  -snapshot-bytes N the replicas' snapshot interval (see serve)
  -reads-through-log the replicas serve GETs through the log (see serve)
  -lease-reads      the leader serves GETs from its lease (see serve)
  -follower-reads   followers serve GETs too (see serve)
  -pprof            the replicas serve net/http/pprof (see serve)
  -insecure-http    the replicas serve plain HTTP without authentication (see serve)
  By default the launcher makes a CA and certificates in DIR/certs and a token in
  DIR/tokens (0600), keeping those that exist; the replicas serve HTTPS and want
  the token (see docs/security.md). The client commands find them when run with
  the default addresses from the directory that holds ./raftkv-data.
  With the defaults, replicas 1, 2, 3 serve HTTP on 127.0.0.1:8001, 8002, 8003 and
  Raft on 127.0.0.1:9001, 9002, 9003. The launcher prints where each listens and
  which one leads; Ctrl-C stops them all, and so does the launcher's death (on
  Linux). A replica that dies is not restarted: the launcher prints the command
  that restarts it on its data. Restarting with the same -data resumes where they
  stopped. The replicas talk over mutual TLS, with certificates the launcher
  makes in DIR/certs on the first start (as raftkv certs does).
`

const usageServe = `serve flags:
  -id N                 this replica's ID (required)
  -peers LIST           every replica's Raft address, this one's included (required):
                        1=127.0.0.1:9001,2=127.0.0.1:9002,3=127.0.0.1:9003
  -http ADDR            where the HTTP API listens (default: this replica's entry in -http-peers)
  -http-peers LIST      every replica's HTTP address, for forwarding requests to the
                        leader: 1=127.0.0.1:8001,2=127.0.0.1:8002,3=127.0.0.1:8003. For a
                        server it lacks, the replica uses the address recorded in the
                        log by add-voter/add-learner -http
  -data DIR             the replica's data directory (default ./raftkv-data/N)
  -join                 start as a new member of a running cluster: with an empty data
                        directory, the replica waits for the leader to add it (raftkv
                        add-voter N ADDR -http HTTPADDR); -peers then lists the cluster's
                        servers and this one, -http-peers their HTTP addresses. Use a NEW
                        ID, never one the cluster had (docs/operations.md, "Adding a server")
  -election-timeout D   base election timeout (default 300ms)
  -heartbeat D          leader heartbeat interval (default 100ms)
  -snapshot-bytes N     snapshot the store after every N bytes of commands applied,
                        then discard the log it covers: the data directory holds one
                        snapshot and the log since (in WAL segments of 64 MiB), a
                        restart replays about N bytes at most, and a replica that fell
                        further behind gets the leader's snapshot (default 16777216)
  -max-value-bytes N    largest value accepted (default 1048576)
  -max-inflight N       HTTP requests served at once; beyond, 503 "overloaded" with
                        Retry-After, the body unread (default 128)
  -body-timeout D       how long a request body may take to arrive: 408 beyond (default 10s)
  -log-level LEVEL      debug, info, warn or error (default info)
  -reads-through-log    serve GETs through the Raft log like writes; without it, a GET
                        with no client identity (as the client commands send them) is
                        served by the leader with ReadIndex: no log entry, no disk write
  -lease-reads          the leader serves such GETs from a lease, with no round of
                        heartbeats, for (election timeout - 1 tick)/1.1 - 1 tick after
                        a round a majority acknowledged. Assumes clocks that drift by
                        less than 10% and every replica running with PreVote (the
                        default); see docs/operations.md, "Reads"
  -follower-reads       a follower serves such GETs too: it asks the leader for the
                        read index and answers once it has applied the log through it
  -pprof                serve Go's profiles (net/http/pprof) under /debug/pprof/ on the
                        HTTP address (default off: 404)
  -tls-ca FILE, -tls-cert FILE, -tls-key FILE
                        mutual TLS between the replicas (required, unless -insecure):
                        the CAs to trust, and this replica's certificate (naming it by
                        the URI SAN raft://server/N) and key, in PEM; raftkv certs
                        makes them. SIGHUP reads the three files again: new
                        connections use them, open ones go on
  -insecure             run the Raft transport over plain TCP: anyone who reaches the
                        Raft address can pose as a replica. For trusted networks and tests
  -http-tls-cert FILE, -http-tls-key FILE
                        the HTTPS certificate and key of the HTTP API (TLS 1.2 or later)
  -http-tokens FILE     bearer tokens accepted ("Authorization: Bearer TOKEN"): one a
                        line, "name:token" or the token alone, # comments; reread when
                        the file changes (checked every second) and on SIGHUP
  -http-ca FILE         accept client certificates of this CA (URI SAN
                        raft://client/NAME), and trust it for the peers' HTTPS
  -http-open-status     serve GET /status and /metrics without credentials (default:
                        they want them, as every route does)
  -insecure-http        plain HTTP, no authentication: anyone who reaches the port reads
                        and writes every key (a loud warning off loopback)
  One of -http-tls-cert/-key and -insecure-http is required, and with HTTPS one of
  -http-tokens and -http-ca. SIGHUP rereads the tokens, certificate and CA.
  GET /metrics on the HTTP address serves the replica's metrics in the Prometheus
  text format (docs/operations.md lists them).
  A replica removed from the configuration (raftkv remove) stops by itself, with
  exit status 0, keeping its data directory; do not start it again.
  SIGTERM or SIGINT shuts the replica down cleanly (exit status 0); a leader first
  hands its leadership to the most up-to-date replica (waiting at most 4 election
  timeouts), so that clients need not wait for an election timeout.
`

const usageCerts = `certs flags (raftkv certs; existing files are kept, missing ones made):
  -dir DIR          where to write ca.crt, ca.key, server-N.crt, server-N.key for each
                    replica, and client.crt, client.key (required)
  -ids LIST         the replicas' IDs (default 1,2,3)
  -hosts LIST       host names and IP addresses the certificates are valid for, besides
                    localhost, 127.0.0.1 and ::1: db1.example,10.0.0.5
  Then run each replica with -tls-ca DIR/ca.crt -tls-cert DIR/server-N.crt
  -tls-key DIR/server-N.key. Keep ca.key away from the replicas.
  For a server joining later, run raftkv certs again on the same DIR with its new
  ID in -ids: the existing CA (ca.crt, ca.key) signs its certificate, and the
  files already there are kept.
`

const usageMembers = `Membership (members, add-voter, add-learner, promote, remove; the client flags
below apply):
  -http HTTPADDR  add-voter and add-learner: the new server's HTTP address, where the
                  other replicas reach its API (host:port, or a base URL http://... or
                  https://...; at most 256 bytes). The leader records it in the log
                  before the change, and every
                  replica whose -http-peers lacks the server uses it to forward requests
                  to it when it leads, and shows it in raftkv members. Without -http, only
                  replicas given the address in -http-peers can. add-voter of a voter
                  with -http records the address and changes nothing else.
  raftkv members prints, per server: ID, voter or learner, Raft address, HTTP address
  ("-" if the replica asked does not know it).
`

const usageClient = `Client flags (put, get, append, del, status, transfer, members, add-voter,
add-learner, promote, remove; before or after the arguments):
  -addr URLS      replicas to ask, comma-separated, tried in turn (default
                  http://127.0.0.1:8001, falling back on :8002 and :8003)
  -timeout D      give up after D (default 10s)
  -ca FILE        trust this CA for HTTPS (default $RAFTKV_CA)
  -token-file F   send the first token of F (default $RAFTKV_TOKEN_FILE)
  Without -addr, -ca, -token-file and their variables, the local cluster's
  ./raftkv-data/certs/ca.crt and ./raftkv-data/tokens, if there. An address
  without a scheme is https with a CA or token, http otherwise.
  A value that starts with "-" goes after "--": raftkv put k -- -1
`

const usageBench = `bench flags (raftkv bench; each client has its own client ID and sequence numbers,
one request at a time, and retries exactly once; it goes to the replica that last
answered it, which is the leader, and waits as told by Retry-After):
  -addr URLS        the replicas, as for the client commands
  -clients LIST     concurrent clients: a number, or a list run in turn: 1,16,64,256 (default 16)
  -duration D       the measured part of each run (default 10s; with -ops alone, no limit)
  -ops N            stop each run after N operations (default 0: no limit)
  -put-ratio F      share of PUTs, 0 to 1; the rest are GETs (default 0.5)
  -keys K           keys k0 .. k(K-1), chosen uniformly (default 10000)
  -value-bytes N    size of each PUT's value (default 100)
  -warmup D         load before each run's measured part, not counted (default 0s)
  -timeout D        give up an operation after D, and the bench when no operation
                    got done for D (default 10s)
  -json             print the results as JSON
  -spread           client i sends its first request to replica i (round-robin), and
                    stays with the replica that answers: with serve -follower-reads,
                    followers answer the GETs
  Every second a progress line (ops so far, ops/s in the last second, failed tries)
  goes to stderr; at the end, per client count: ops/s, latency p50/p90/p99/max,
  failed operations and failed tries by kind (no_leader, overloaded, ...).
  Operations in flight at the end get 3s more, then are given up (FAILED).
`

const usageAPI = `HTTP API (any replica; a follower forwards to the leader):
  GET    /kv/KEY                           200 {"key","value"}; 404 if missing
  PUT    /kv/KEY         {"value":"..."}   200 {"key","value","previous","found"}
  POST   /kv/KEY/append  {"value":"..."}   200 {"key","value","previous","found"}
  DELETE /kv/KEY                           200 {"key","found"}
  GET    /status                           term, role, leader, commit, applied, lastLog,
                                           snapshotIndex, snapshotTerm, logEntries,
                                           logBytes, match...
  GET    /metrics                          the replica's metrics, Prometheus text format
  POST   /admin/transfer {"to":ID}         leader only: hand the leadership to replica ID
                                           (or, without "to", the most up-to-date one);
                                           200 {"from","leader","term"} once ID leads; 409
                                           not_leader; 503 transfer_abandoned or timeout
  GET    /admin/members                    the configuration as this replica knows it:
                                           {"from","members":[{"id","addr","http","learner"}],
                                           "index","committed","leader","leaderHTTP"}
                                           ("http" if this replica knows it)
  POST   /admin/members {"op","id","addr","http"}
                                           leader only: op add-voter (learner, catch up,
                                           promote), add-learner, promote or remove; "addr"
                                           (the Raft address) for the adds, and "http" (the
                                           HTTP address, optional), recorded in the log
                                           before the change. 200 with the new
                                           configuration once committed; 400 bad_request; 409
                                           not_leader (with "leader", "leaderHTTP"),
                                           already_member, not_member, last_voter; 503
                                           leader_not_ready, change_in_progress,
                                           not_caught_up, outcome_unknown, timeout, stopped
  Every route wants "Authorization: Bearer TOKEN" or a client certificate,
  else 401 (unless -insecure-http; /status and /metrics with -http-open-status).
  Keys and values are UTF-8 text; anything else is refused with 400, never
  altered (encode binary data first, as base64 say).
  Optional exactly-once identity: headers X-Client-ID and X-Seq (or JSON
  "clientId", "seq"). One client ID per client, one request at a time; seq
  is 1 for its first request and one more for each new one; a retry repeats
  the same request with the same seq (until one request is answered, retry
  seq 1 or take a new ID). A seq used for another request: 409 seq_reused.
  A client idle for an hour, or beyond the 10000 most recently active, is
  forgotten: its next request (seq above 1) gets 409 client_expired, not
  applied (start over: new client ID, seq 1), and a late retry of its seq 1
  takes effect again.
  Errors are {"error": "...", "code": "..."}: 400 bad request, 404, 405, 408
  body too slow, 409 stale/seq_reused/client_expired, 413 value or body too
  large (from Content-Length, unread), 503 no leader, overloaded (Retry-After)
  or outcome unknown.
`

const usageExit = `Exit status: 0 success; 1 get of a missing key, status with no leader, or a
replica or cluster that failed to start; 2 usage error; 3 request failed (bench:
no replica reachable, or a run with no operation done).
`

// usage is the whole help, "raftkv -h".
var usage = strings.Join([]string{usageIntro, usageLocal, usageServe, usageCerts, usageMembers, usageClient, usageBench, usageAPI, usageExit}, "\n")

// clientArgs are the arguments each client command takes.
var clientArgs = map[string][]string{
	"put": {"KEY", "VALUE"}, "append": {"KEY", "VALUE"},
	"get": {"KEY"}, "del": {"KEY"}, "delete": {"KEY"}, "status": nil,
}

// clientSynopsis is how client command cmd is called.
func clientSynopsis(cmd string) string {
	return strings.TrimSpace(fmt.Sprintf("raftkv %s [-addr URLS] [-timeout D] %s", cmd, strings.Join(clientArgs[cmd], " ")))
}

// commandHelp is "raftkv CMD -h": CMD's synopsis and its section of the
// usage. cmd is a flag set's name.
func commandHelp(cmd string) string {
	switch cmd {
	case "local":
		return "Usage: raftkv [local] [flags]\n\n" + usageLocal
	case "serve":
		return "Usage: raftkv serve -id N -peers LIST -http-peers LIST [flags]\n\n" + usageServe
	case "bench":
		return "Usage: raftkv bench [flags]\n\n" + usageBench
	case "transfer":
		return "Usage: raftkv transfer [-addr URLS] [-timeout D] [ID]\n\n" + usageClient
	case "members", "add-voter", "add-learner", "promote", "remove":
		return "Usage: " + memberSynopsis(cmd) + "\n\n" + usageMembers + "\n" + usageClient
	case "certs":
		return "Usage: raftkv certs -dir DIR [-ids LIST] [-hosts LIST]\n\n" + usageCerts
	}
	if _, ok := clientArgs[cmd]; ok {
		return "Usage: " + clientSynopsis(cmd) + "\n\n" + usageClient
	}
	return usage
}

// memberSynopsis is how membership command cmd is called.
func memberSynopsis(cmd string) string {
	s := strings.TrimSpace("raftkv " + cmd + " [-addr URLS] [-timeout D] " + memberArgs[cmd])
	if cmd == "add-voter" || cmd == "add-learner" {
		s += " [-http HTTPADDR]"
	}
	return s
}

// memberArgs are the arguments each membership command takes.
var memberArgs = map[string]string{"members": "", "add-voter": "ID RAFTADDR", "add-learner": "ID RAFTADDR", "promote": "ID", "remove": "ID"}

// usageHint points at cmd's help, after an error.
func usageHint(cmd string) string { return fmt.Sprintf("Run 'raftkv %s -h' for usage.", cmd) }

// plural is "1 argument", "2 arguments".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// noArgs says that a command taking none got the arguments pos.
func noArgs(pos []string) string {
	return fmt.Sprintf("takes no arguments, got %s: %q", plural(len(pos), "argument"), pos)
}
