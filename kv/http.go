package kv

// The store's HTTP+JSON API: a handler that serves it on one replica
// (NewHTTPHandler) and a Conn that talks to it (HTTPConn).
//
// Routes (every reply, errors included, is a JSON object):
//
//	GET    /kv/{key}         200 {"key","value"}; 404 {"error":"not found","code":"not_found","key"}
//	PUT    /kv/{key}         body {"value": "..."}; 200 {"key","value","previous","found"}
//	POST   /kv/{key}/append  body {"value": "..."}; 200 {"key","value" (the new value),"previous","found"}
//	DELETE /kv/{key}         200 {"key","found","previous" (if found)}
//	GET    /status           200 {"id","http","term","role","leader","leaderHTTP","commit","applied","lastLog","match","peers"}
//
// "previous" is the value before the operation and "found" whether the key
// existed before it. A key is the rest of the path, unescaped: it may hold
// slashes, and one ending in "/append" must be sent with its slash escaped
// (%2F), as HTTPConn does for every key.
//
// A request may carry a client identity, for exactly-once: the body fields
// "clientId" and "seq" (numbers) or the headers X-Client-ID and X-Seq. A
// retry of a request with the same identity takes effect once. The
// contract (see the package documentation): one client ID per client, one
// request at a time, seq 1 for its first request and one more for each new
// request, and a retry repeats the same request with the same seq. Without
// an identity, the request is an operation of its own.
//
// Keys and values are text: a key (after unescaping the path) or a body
// that is not valid UTF-8, or a JSON string with an unpaired UTF-16
// surrogate escape, is refused with 400 rather than altered; encode binary
// data (as base64, say) before storing it.
//
// Limits: a body is refused with 413 from its Content-Length alone when
// that is over MaxBodyBytes, without reading it; a body that does not
// arrive within BodyTimeout gets 408 and the connection is closed; beyond
// MaxInFlight requests in progress, a request gets 503 overloaded at once,
// its body unread.
//
// Errors are {"error": text, "code": code, ...}:
//
//	401 unauthorized    no valid credentials, with Auth (see Auth); the body is not read
//	400 bad_request     empty key, malformed JSON, missing or unexpected "value", bad identity,
//	                    key or value not valid UTF-8
//	404 not_found       GET of a missing key (with "key")
//	404 no_route        unknown path
//	405 bad_method      wrong method for the path; the Allow header lists the right ones
//	408 body_timeout    the body did not arrive within BodyTimeout
//	409 stale           the client already had a later request applied; not applied
//	409 seq_reused      the client's seq was used for another request; not applied
//	409 client_expired  the store does not know the client (expired, or no request of it
//	                    with seq 1 applied) and seq is above 1; not applied: start over
//	                    with a new client ID and seq 1
//	413 too_large       a value over MaxValueBytes, a body over MaxBodyBytes, or an
//	                    operation over the Raft log's command limit
//	414 key_too_long    a key over MaxKeyBytes
//	503 no_leader, not_leader, leader_unreachable, stopped, overloaded:
//	                    the request did not take effect; retry (Retry-After header,
//	                    "retryAfterMs", and "leader"/"leaderHTTP" if known)
//	503 leadership_lost, timeout, forward_failed:
//	                    the outcome is unknown ("outcomeUnknown": true); a retry
//	                    with the same client identity is safe
//
// A replica that is not the leader forwards a request to the leader's HTTP
// address (the one it was given, else the one the store's directory
// holds: see HTTPPeers), marking it with the X-Raftkv-Forwarded-By
// header; a forwarded request that reaches a non-leader is answered 503
// not_leader, never forwarded again. The forwarded request carries the client's
// credentials: its Authorization header as it came, or, for a client
// authenticated by its certificate, the HeaderClient header naming it
// (which the leader believes only from a peer with a server certificate,
// the one HTTPOptions.Client presents).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/core"
)

// Headers of the HTTP API.
const (
	HeaderClientID  = "X-Client-ID"
	HeaderSeq       = "X-Seq"
	HeaderForwarded = "X-Raftkv-Forwarded-By" // the ID of the replica that forwarded the request
	HeaderServedBy  = "X-Raftkv-Served-By"    // the ID of the replica that answered
)

// Defaults of HTTPOptions.
const (
	DefaultMaxValueBytes = 1 << 20
	DefaultMaxKeyBytes   = 4 << 10
	DefaultHTTPWait      = 2 * time.Second
	DefaultRetryAfter    = 250 * time.Millisecond
	DefaultBodyTimeout   = 10 * time.Second
	DefaultMaxInFlight   = 128
)

// HTTPOptions tunes NewHTTPHandler; the zero value means the defaults.
type HTTPOptions struct {
	// MaxValueBytes bounds a value (default 1 MiB): 413 beyond.
	MaxValueBytes int
	// MaxKeyBytes bounds a key (default 4 KiB): 414 beyond.
	MaxKeyBytes int
	// MaxBodyBytes bounds a request body (default 6*MaxValueBytes + 4 KiB,
	// room for a value of MaxValueBytes however JSON escapes it): 413
	// beyond.
	MaxBodyBytes int64
	// BodyTimeout bounds how long a request's body may take to arrive
	// once its headers are in (default 10 s): 408 beyond, and the
	// connection is closed.
	BodyTimeout time.Duration
	// MaxInFlight bounds the requests this replica serves at once,
	// forwarded ones included (default 128): beyond it, 503 overloaded at
	// once, without reading the body. Bodies in memory take at most
	// MaxInFlight * MaxBodyBytes.
	MaxInFlight int
	// Wait bounds how long a request waits for its operation to be
	// applied (default 2 s): 503 timeout beyond.
	Wait time.Duration
	// RetryAfter is the retry hint of 503 answers (default 250 ms).
	RetryAfter time.Duration
	// Client forwards requests to the leader (default: a client whose
	// timeout is Wait plus 1 s).
	Client *http.Client
	// Logger gets forwarding failures and internal errors (default
	// slog.Default()).
	Logger *slog.Logger
	// Auth, if set, authenticates every request first (see Auth); nil
	// serves everyone.
	Auth *Auth
	// DirectoryScheme is the scheme given to a server's HTTP address
	// from the store's directory (Server.SetMemberHTTP) recorded as
	// host:port: "https" or "http" (default "http"; see HTTPPeers).
	DirectoryScheme string
}

// StatusProvider is what the handler needs of the Raft server for
// /status; *raft.Raft is one.
type StatusProvider interface {
	Status() (raft.Status, bool)
}

// StatusReply is the answer to GET /status.
type StatusReply struct {
	ID         int    `json:"id"`
	HTTP       string `json:"http"` // this replica's HTTP address
	Term       int    `json:"term"`
	Role       string `json:"role"`   // "follower", "candidate" or "leader"
	Leader     int    `json:"leader"` // -1 if unknown
	LeaderHTTP string `json:"leaderHTTP"`
	Commit     int    `json:"commit"`
	Applied    int    `json:"applied"`
	LastLog    int    `json:"lastLog"`
	// The snapshot the log starts after: the index and term of the last
	// entry it covers (0 and 0 before the first snapshot).
	SnapshotIndex int `json:"snapshotIndex"`
	SnapshotTerm  int `json:"snapshotTerm"`
	// The log after the snapshot: its entries (lastLog - snapshotIndex)
	// and their commands' bytes.
	LogEntries int         `json:"logEntries"`
	LogBytes   int         `json:"logBytes"`
	Match      map[int]int `json:"match"` // leader only: each replica's match index; {} elsewhere
	// Peers is every replica's HTTP address this one knows: those it was
	// given, and the directory's for the configuration's other servers.
	Peers map[int]string `json:"peers"`
}

// httpRequest is the JSON body of a request.
type httpRequest struct {
	Value    *string `json:"value,omitempty"`
	ClientID *int64  `json:"clientId,omitempty"`
	Seq      *int64  `json:"seq,omitempty"`
}

// httpReply is every JSON answer, success or error; the fields a route
// does not use are omitted.
type httpReply struct {
	Key      string  `json:"key,omitempty"`
	Value    *string `json:"value,omitempty"`
	Previous *string `json:"previous,omitempty"`
	Found    *bool   `json:"found,omitempty"`

	Error          string `json:"error,omitempty"`
	Code           string `json:"code,omitempty"`
	RetryAfterMs   int64  `json:"retryAfterMs,omitempty"`
	Leader         *int   `json:"leader,omitempty"`
	LeaderHTTP     string `json:"leaderHTTP,omitempty"`
	OutcomeUnknown bool   `json:"outcomeUnknown,omitempty"`
}

// Error codes of the HTTP API.
const (
	CodeBadRequest        = "bad_request"
	CodeNotFound          = "not_found"
	CodeNoRoute           = "no_route"
	CodeBadMethod         = "bad_method"
	CodeBodyTimeout       = "body_timeout"
	CodeStale             = "stale"
	CodeSeqReused         = "seq_reused"
	CodeClientExpired     = "client_expired"
	CodeTooLarge          = "too_large"
	CodeKeyTooLong        = "key_too_long"
	CodeNoLeader          = "no_leader"
	CodeNotLeader         = "not_leader"
	CodeLeaderUnreachable = "leader_unreachable"
	CodeLeadershipLost    = "leadership_lost"
	CodeTimeout           = "timeout"
	CodeStopped           = "stopped"
	CodeForwardFailed     = "forward_failed"
	CodeOverloaded        = "overloaded"
	CodeInternal          = "internal"
)

type httpHandler struct {
	s     *Server
	rf    StatusProvider
	self  int
	peers HTTPPeers
	opts  HTTPOptions
	log   *slog.Logger
	slots chan struct{} // one token per request in progress
}

// NewHTTPHandler returns the HTTP API of replica self, whose store is s and
// whose Raft server is rf; httpAddrs maps replicas' IDs to their HTTP
// addresses ("host:port" or a base URL), for forwarding to the leader and
// for /status. For a replica httpAddrs lacks, the handler takes the
// address recorded in s's directory (Server.SetMemberHTTP).
func NewHTTPHandler(s *Server, rf StatusProvider, self int, httpAddrs map[int]string, opts HTTPOptions) http.Handler {
	if opts.MaxValueBytes <= 0 {
		opts.MaxValueBytes = DefaultMaxValueBytes
	}
	if opts.MaxKeyBytes <= 0 {
		opts.MaxKeyBytes = DefaultMaxKeyBytes
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 6*int64(opts.MaxValueBytes) + 4<<10
	}
	if opts.Wait <= 0 {
		opts.Wait = DefaultHTTPWait
	}
	if opts.BodyTimeout <= 0 {
		opts.BodyTimeout = DefaultBodyTimeout
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = DefaultMaxInFlight
	}
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = DefaultRetryAfter
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: opts.Wait + time.Second, Transport: newHTTPTransport()}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	addrs := make(map[int]string, len(httpAddrs))
	for id, a := range httpAddrs {
		addrs[id] = a
	}
	peers := HTTPPeers{Local: addrs, Store: s, Scheme: opts.DirectoryScheme}
	return &httpHandler{s: s, rf: rf, self: self, peers: peers, opts: opts, log: opts.Logger, slots: make(chan struct{}, opts.MaxInFlight)}
}

func newHTTPTransport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	return tr
}

// route is what a request asks for.
type route struct {
	kind   Kind // "" for /status
	key    string
	status bool
}

func (h *httpHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(HeaderServedBy, strconv.Itoa(h.self))
	if h.opts.Auth != nil {
		var ok bool
		if r, ok = h.opts.Auth.authenticate(w, r); !ok {
			return
		}
	}
	select {
	case h.slots <- struct{}{}:
		defer func() { <-h.slots }()
	default:
		h.refuseBody(w, r)
		h.retryLater(w, http.StatusServiceUnavailable, CodeOverloaded,
			fmt.Sprintf("replica %d has %d requests in progress, its limit; the request did not take effect", h.self, h.opts.MaxInFlight), false)
		return
	}
	rt, ok := h.route(w, r)
	if !ok {
		return
	}
	if rt.status {
		h.serveStatus(w)
		return
	}
	op, ok := h.parseOp(w, r, rt)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.Wait)
	defer cancel()
	res, err := h.s.Do(ctx, op)
	switch {
	case err == nil:
		writeResult(w, op, res)
	case errors.Is(err, ErrWrongLeader):
		h.forward(w, r, op)
	case errors.Is(err, ErrLeadershipLost):
		h.retryLater(w, http.StatusServiceUnavailable, CodeLeadershipLost,
			"leadership lost before the request committed: outcome unknown, the request may or may not take effect", true)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		h.retryLater(w, http.StatusServiceUnavailable, CodeTimeout,
			fmt.Sprintf("request not applied within %v: outcome unknown, the request may or may not take effect", h.opts.Wait), true)
	case errors.Is(err, ErrStale):
		writeError(w, http.StatusConflict, CodeStale, fmt.Sprintf(
			"seq %d of client %d: the client already had a later request applied; this one was not applied", op.Seq, op.ClientID))
	case errors.Is(err, ErrConflict):
		writeError(w, http.StatusConflict, CodeSeqReused, fmt.Sprintf(
			"seq %d of client %d was already used for another request (another operation, key or value); this one was not applied: "+
				"a retry must repeat the same request, and a new request takes the next seq", op.Seq, op.ClientID))
	case errors.Is(err, ErrClientExpired):
		writeError(w, http.StatusConflict, CodeClientExpired, fmt.Sprintf(
			"client %d is unknown to the store (it was idle too long and expired, or no request of it with seq 1 was applied), so seq %d was not applied: "+
				"start again with a new client ID and seq 1", op.ClientID, op.Seq))
	case errors.Is(err, ErrTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, CodeTooLarge, err.Error()+"; the request did not take effect")
	case errors.Is(err, ErrStopped):
		// Do answers ErrLeadershipLost for a request it had started.
		h.retryLater(w, http.StatusServiceUnavailable, CodeStopped,
			"replica stopped; the request did not take effect", false)
	default:
		h.log.Error("kv http: request failed", "op", op.Kind, "key", op.Key, "err", err)
		writeJSON(w, http.StatusInternalServerError, httpReply{Error: err.Error(), Code: CodeInternal})
	}
}

// route parses the path and checks the method; it answers the request
// itself (404, 405, 400) when they are wrong.
func (h *httpHandler) route(w http.ResponseWriter, r *http.Request) (route, bool) {
	p := r.URL.EscapedPath()
	switch {
	case p == "/status":
		if r.Method != http.MethodGet {
			badMethod(w, r, "GET")
			return route{}, false
		}
		return route{status: true}, true
	case p == "/kv" || strings.HasPrefix(p, "/kv/"):
		rest := strings.TrimPrefix(strings.TrimPrefix(p, "/kv"), "/")
		var rt route
		if k, ok := strings.CutSuffix(rest, "/append"); ok {
			if r.Method != http.MethodPost {
				badMethod(w, r, "POST")
				return route{}, false
			}
			rt.kind, rest = Append, k
		} else {
			switch r.Method {
			case http.MethodGet:
				rt.kind = Get
			case http.MethodPut:
				rt.kind = Put
			case http.MethodDelete:
				rt.kind = Delete
			default:
				badMethod(w, r, "GET, PUT, DELETE")
				return route{}, false
			}
		}
		key, err := url.PathUnescape(rest)
		switch {
		case err != nil:
			writeError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("bad escape in key: %v", err))
			return route{}, false
		case key == "":
			writeError(w, http.StatusBadRequest, CodeBadRequest, "empty key: use /kv/{key}")
			return route{}, false
		case !utf8.ValidString(key):
			writeError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf(
				"key is not valid UTF-8 (byte %d): keys are text; percent-encode the key's UTF-8 bytes, and encode a binary key (as hex or base64, say) first",
				invalidUTF8At(key)))
			return route{}, false
		case len(key) > h.opts.MaxKeyBytes:
			writeError(w, http.StatusRequestURITooLong, CodeKeyTooLong,
				fmt.Sprintf("key of %d bytes is over the limit of %d", len(key), h.opts.MaxKeyBytes))
			return route{}, false
		}
		rt.key = key
		return rt, true
	}
	writeError(w, http.StatusNotFound, CodeNoRoute,
		fmt.Sprintf("no route %s %s: the API is GET|PUT|DELETE /kv/{key}, POST /kv/{key}/append, GET /status", r.Method, p))
	return route{}, false
}

func badMethod(w http.ResponseWriter, r *http.Request, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, http.StatusMethodNotAllowed, CodeBadMethod,
		fmt.Sprintf("method %s not allowed on %s; allowed: %s", r.Method, r.URL.EscapedPath(), allow))
}

// parseOp reads the body and the client identity into an Op; it answers
// bad requests itself.
func (h *httpHandler) parseOp(w http.ResponseWriter, r *http.Request, rt route) (Op, bool) {
	op := Op{Kind: rt.kind, Key: rt.key}
	var body httpRequest
	data, ok := h.readBody(w, r)
	if !ok {
		return op, false
	}
	if err := checkJSONText(data); err != nil {
		writeError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf(
			"body: %v; decoding would replace it with U+FFFD, so it is refused: values are text, encode binary data (as base64, say) first", err))
		return op, false
	}
	if len(bytes.TrimSpace(data)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		err := dec.Decode(&body)
		if err == nil && dec.More() {
			err = errors.New("data after the JSON object")
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, CodeBadRequest,
				fmt.Sprintf(`malformed body: %v (want a JSON object like {"value": "..."})`, err))
			return op, false
		}
	}
	switch op.Kind {
	case Put, Append:
		if body.Value == nil {
			writeError(w, http.StatusBadRequest, CodeBadRequest,
				fmt.Sprintf(`%s needs a body {"value": "..."}`, strings.ToUpper(string(op.Kind))))
			return op, false
		}
		if len(*body.Value) > h.opts.MaxValueBytes {
			writeError(w, http.StatusRequestEntityTooLarge, CodeTooLarge,
				fmt.Sprintf("value of %d bytes is over the limit of %d", len(*body.Value), h.opts.MaxValueBytes))
			return op, false
		}
		op.Value = *body.Value
	default:
		if body.Value != nil {
			writeError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("%s takes no value", r.Method))
			return op, false
		}
	}

	// The client identity: body fields, else headers, else a fresh one.
	id, seq := body.ClientID, body.Seq
	for _, f := range []struct {
		v    **int64
		name string
	}{{&id, HeaderClientID}, {&seq, HeaderSeq}} {
		if *f.v != nil {
			continue
		}
		if s := r.Header.Get(f.name); s != "" {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				writeError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("header %s: %q is not an integer", f.name, s))
				return op, false
			}
			*f.v = &n
		}
	}
	switch {
	case id == nil && seq == nil:
		// Not deduplicated: Seq 0, no table entry.
	case id == nil || seq == nil:
		writeError(w, http.StatusBadRequest, CodeBadRequest,
			fmt.Sprintf("a client identity needs both clientId and seq (or headers %s and %s)", HeaderClientID, HeaderSeq))
		return op, false
	case *seq < 0:
		writeError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("seq %d: want 0 (not deduplicated) or more", *seq))
		return op, false
	default:
		op.ClientID, op.Seq = *id, *seq
	}
	return op, true
}

// readBody reads the request's body, within the limits: MaxBodyBytes
// (refused from the Content-Length, before reading, when it says more) and
// BodyTimeout. It answers the request itself when it fails.
func (h *httpHandler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if r.ContentLength > h.opts.MaxBodyBytes {
		h.refuseBody(w, r)
		writeError(w, http.StatusRequestEntityTooLarge, CodeTooLarge,
			fmt.Sprintf("request body of %d bytes (Content-Length) is over the limit of %d", r.ContentLength, h.opts.MaxBodyBytes))
		return nil, false
	}
	if r.ContentLength == 0 {
		return nil, true
	}
	rc := http.NewResponseController(w)
	h.setReadDeadline(rc, time.Now().Add(h.opts.BodyTimeout))
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength) + bytes.MinRead) // no regrowth: ReadFrom wants MinRead free at EOF
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, h.opts.MaxBodyBytes))
	if err == nil {
		// What follows the body is not the body's business: no deadline,
		// as net/http would otherwise cancel a long wait for the log.
		h.setReadDeadline(rc, time.Time{})
		return buf.Bytes(), true
	}
	h.refuseBody(w, r) // net/http would try to read the rest
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, CodeTooLarge,
			fmt.Sprintf("request body over the limit of %d bytes", tooBig.Limit))
	case errors.Is(err, os.ErrDeadlineExceeded):
		writeError(w, http.StatusRequestTimeout, CodeBodyTimeout,
			fmt.Sprintf("request body not received within %v of the headers; send it at once", h.opts.BodyTimeout))
	default:
		writeError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("reading the body: %v", err))
	}
	return nil, false
}

// refuseBody makes sure that nothing more is read of r's body, which the
// handler answers without reading (on, if need be): the connection
// closes after the answer, and reading from it fails from now on (after
// the handler, net/http would read what remains of a small body).
// log (nil for slog.Default()) gets a failure to set the deadline.
func refuseBody(w http.ResponseWriter, r *http.Request, log *slog.Logger) {
	if r.ContentLength == 0 {
		return
	}
	w.Header().Set("Connection", "close")
	setReadDeadline(http.NewResponseController(w), time.Now(), log)
}

func (h *httpHandler) refuseBody(w http.ResponseWriter, r *http.Request) { refuseBody(w, r, h.log) }

func (h *httpHandler) setReadDeadline(rc *http.ResponseController, t time.Time) {
	setReadDeadline(rc, t, h.log)
}

func setReadDeadline(rc *http.ResponseController, t time.Time, log *slog.Logger) {
	if err := rc.SetReadDeadline(t); err != nil && !errors.Is(err, http.ErrNotSupported) {
		if log == nil {
			log = slog.Default()
		}
		log.Warn("kv http: cannot set the connection's read deadline", "err", err)
	}
}

func writeResult(w http.ResponseWriter, op Op, res Result) {
	found := res.Found
	rep := httpReply{Key: op.Key, Found: &found}
	switch op.Kind {
	case Get:
		if !res.Found {
			writeJSON(w, http.StatusNotFound, httpReply{Key: op.Key, Error: "not found", Code: CodeNotFound})
			return
		}
		rep = httpReply{Key: op.Key, Value: &res.Value}
	case Put:
		rep.Value, rep.Previous = &op.Value, &res.Value
	case Append:
		v := res.Value + op.Value
		rep.Value, rep.Previous = &v, &res.Value
	case Delete:
		if res.Found {
			rep.Previous = &res.Value
		}
	}
	writeJSON(w, http.StatusOK, rep)
}

// forward sends a request this replica cannot serve, not being the
// leader, to the leader, and passes its answer back.
func (h *httpHandler) forward(w http.ResponseWriter, r *http.Request, op Op) {
	st, ok := h.rf.Status()
	if !ok {
		h.retryLater(w, http.StatusServiceUnavailable, CodeStopped, "replica stopped; the request did not take effect", false)
		return
	}
	leader := st.Leader
	if by := r.Header.Get(HeaderForwarded); by != "" {
		h.notLeader(w, CodeNotLeader, fmt.Sprintf("replica %d is not the leader (request forwarded by replica %s; not forwarded again)", h.self, by), leader)
		return
	}
	addr := h.peers.Addr(leader)
	if leader == core.None || leader == h.self || addr == "" {
		h.notLeader(w, CodeNoLeader, "no leader", leader)
		return
	}

	u := baseURL(addr) + r.URL.EscapedPath()
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.Wait+time.Second)
	defer cancel()
	req, err := opRequest(ctx, r.Method, u, op)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, httpReply{Error: err.Error(), Code: CodeInternal})
		return
	}
	req.Header.Set(HeaderForwarded, strconv.Itoa(h.self))
	forwardIdentity(req, r)
	resp, err := h.opts.Client.Do(req)
	if err != nil {
		h.log.Debug("kv http: forward failed", "leader", leader, "addr", addr, "err", err)
		if isDialError(err) {
			h.notLeader(w, CodeLeaderUnreachable,
				fmt.Sprintf("leader %d at %s is unreachable (%v); the request did not take effect", leader, addr, rootCause(err)), leader)
			return
		}
		h.retryLater(w, http.StatusServiceUnavailable, CodeForwardFailed,
			fmt.Sprintf("forwarding to leader %d at %s failed (%v): outcome unknown, the request may or may not take effect", leader, addr, rootCause(err)), true)
		return
	}
	defer resp.Body.Close()
	for _, k := range []string{"Content-Type", "Retry-After", "Allow", HeaderServedBy, "WWW-Authenticate"} {
		if v := resp.Header.Get(k); v != "" {
			w.Header().Set(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

// notLeader answers 503 for a request that did not take effect because
// this replica is not the leader, with the leader if it knows one.
func (h *httpHandler) notLeader(w http.ResponseWriter, code, msg string, leader int) {
	rep := h.retryReply(code, msg, false)
	if leader != core.None && leader != h.self {
		rep.Leader = &leader
		rep.LeaderHTTP = h.peers.Addr(leader)
	}
	writeJSON(w, http.StatusServiceUnavailable, rep)
}

func (h *httpHandler) retryLater(w http.ResponseWriter, status int, code, msg string, unknown bool) {
	writeJSON(w, status, h.retryReply(code, msg, unknown))
}

func (h *httpHandler) retryReply(code, msg string, unknown bool) httpReply {
	return httpReply{Error: msg, Code: code, RetryAfterMs: h.opts.RetryAfter.Milliseconds(), OutcomeUnknown: unknown}
}

func (h *httpHandler) serveStatus(w http.ResponseWriter) {
	st, ok := h.rf.Status()
	if !ok {
		h.retryLater(w, http.StatusServiceUnavailable, CodeStopped, "replica stopped", false)
		return
	}
	rep := StatusReply{
		ID:      h.self,
		HTTP:    h.peers.Addr(h.self),
		Term:    st.Term,
		Role:    st.Role.String(),
		Leader:  st.Leader,
		Commit:  st.Commit,
		Applied: h.s.Applied(),
		LastLog: st.LastLog,
		Match:   st.Match,
		Peers:   h.peers.All(st.Membership),

		SnapshotIndex: st.Snapshot.Index,
		SnapshotTerm:  st.Snapshot.Term,
		LogEntries:    st.LastLog - st.Snapshot.Index,
		LogBytes:      st.LogBytes,
	}
	if rep.Leader != core.None {
		rep.LeaderHTTP = h.peers.Addr(rep.Leader)
	}
	if rep.Match == nil {
		rep.Match = map[int]int{}
	}
	writeJSON(w, http.StatusOK, rep)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, httpReply{Error: msg, Code: code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(httpReply{Error: "encoding the reply: " + err.Error(), Code: CodeInternal})
	}
	w.Header().Set("Content-Type", "application/json")
	if rep, ok := v.(httpReply); ok && rep.RetryAfterMs > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(float64(rep.RetryAfterMs)/1000)), 10))
	}
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// baseURL turns "host:port" into "http://host:port"; a URL stays as it is,
// without a trailing slash.
func baseURL(addr string) string {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return strings.TrimSuffix(addr, "/")
}

// isDialError reports whether err is a failure to connect, so that the
// request was certainly not sent.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// rootCause strips url.Error's "Get "http://...": " prefix.
func rootCause(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// ErrLost means a request or its answer was lost: the request may or may
// not have taken effect.
var ErrLost = errLost

// HTTPError is an error answer of the HTTP API. It wraps ErrWrongLeader,
// ErrStopped or ErrOverloaded for answers that mean the request did not
// take effect and another replica, or a later try, may serve it;
// ErrLeadershipLost or ErrLost for those whose outcome is unknown;
// ErrStale, ErrConflict, ErrClientExpired or ErrTooLarge for those
// refusals; ErrUnauthorized for 401; nothing for other bad requests (4xx). No retry fixes a 4xx
// answer (see Refused).
type HTTPError struct {
	StatusCode     int
	Code           string // the reply's "code"
	Message        string // the reply's "error"
	RetryAfter     time.Duration
	Leader         int    // -1 if the reply names none
	LeaderHTTP     string // the leader's HTTP address, if the reply names it
	OutcomeUnknown bool
	kind           error
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("HTTP %d %s: %s", e.StatusCode, e.Code, e.Message)
}

// Unwrap returns the error the answer means (see HTTPError), or nil.
func (e *HTTPError) Unwrap() error { return e.kind }

// unreachableError is a replica that could not be connected to: the
// request was certainly not sent, as with a stopped server.
type unreachableError struct {
	addr string
	err  error
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("kv: %s unreachable: %v", e.addr, e.err)
}

func (e *unreachableError) Is(target error) bool { return target == ErrStopped }

func (e *unreachableError) Unwrap() error { return e.err }

// DefaultHTTPConnTimeout bounds one request of an HTTPConn.
const DefaultHTTPConnTimeout = 5 * time.Second

var defaultHTTPClient = &http.Client{Transport: newHTTPTransport()}

// HTTPConn is a Conn to one replica over its HTTP API; it sends each Op's
// ClientID and Seq, so a Clerk over HTTPConns gets exactly-once requests.
//
// Do's errors: ErrWrongLeader (wrapped in an *HTTPError) when the replica
// says the request did not take effect (no leader, not the leader, leader
// unreachable); ErrOverloaded, wrapped, when it had too many requests in
// progress; ErrStopped, wrapped, when the replica has stopped or could
// not be connected to (the request was certainly not sent);
// ErrLeadershipLost or ErrLost, wrapped, when the outcome is unknown
// (leadership lost, timeout, a connection that broke, an unreadable
// answer); an *HTTPError with a 4xx status for a refused request (see
// Refused); ErrNotText, unsent, for a key or value that is not UTF-8.
type HTTPConn struct {
	// Addr is the replica's HTTP address: "host:port" or a base URL.
	Addr string
	// Client sends the requests (default: a shared client with no timeout
	// of its own).
	Client *http.Client
	// Timeout bounds each request, within ctx (default
	// DefaultHTTPConnTimeout; negative means none).
	Timeout time.Duration
	// Addrs, if set, is the Clerk's list of servers, for leader hints: a
	// reply naming the leader's HTTP address gives its position here.
	Addrs []string
	// Token, if set, is sent as "Authorization: Bearer Token".
	Token string
}

// HTTPConns returns a Conn for each address, in order, sharing client
// (nil for the default) and knowing each other for leader hints.
func HTTPConns(client *http.Client, addrs ...string) []Conn {
	return HTTPConnsAuth(client, "", addrs...)
}

// HTTPConnsAuth is HTTPConns with a bearer token sent on every request (none
// if token is ""); NewHTTPClient makes a client for a CA of one's own.
func HTTPConnsAuth(client *http.Client, token string, addrs ...string) []Conn {
	conns := make([]Conn, len(addrs))
	for i, a := range addrs {
		conns[i] = &HTTPConn{Addr: a, Client: client, Addrs: addrs, Token: token}
	}
	return conns
}

// Do sends op to the replica and waits for its answer.
func (c *HTTPConn) Do(ctx context.Context, op Op) (Result, int, error) {
	timeout := c.Timeout
	if timeout == 0 {
		timeout = DefaultHTTPConnTimeout
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	client := c.Client
	if client == nil {
		client = defaultHTTPClient
	}
	// JSON would replace the bytes that are not UTF-8.
	for _, f := range []struct{ what, s string }{{"key", op.Key}, {"value", op.Value}} {
		if i := invalidUTF8At(f.s); i >= 0 {
			return Result{}, -1, fmt.Errorf("%w: the %s, at byte %d (the HTTP API carries text only: encode binary data, as base64 say, first); not sent", ErrNotText, f.what, i)
		}
	}
	u := baseURL(c.Addr) + "/kv/" + url.PathEscape(op.Key)
	var method string
	switch op.Kind {
	case Get:
		method = http.MethodGet
	case Put:
		method = http.MethodPut
	case Append:
		method, u = http.MethodPost, u+"/append"
	case Delete:
		method = http.MethodDelete
	default:
		return Result{}, -1, fmt.Errorf("kv: unknown operation %q", op.Kind)
	}
	req, err := opRequest(ctx, method, u, op)
	if err != nil {
		return Result{}, -1, err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := client.Do(req)
	if err != nil {
		if isDialError(err) {
			return Result{}, -1, &unreachableError{c.Addr, rootCause(err)}
		}
		return Result{}, -1, fmt.Errorf("%w: %s: %v", errLost, c.Addr, rootCause(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return Result{}, -1, fmt.Errorf("%w: %s: reading the answer: %v", errLost, c.Addr, err)
	}
	var rep httpReply
	if err := json.Unmarshal(data, &rep); err != nil {
		return Result{}, -1, fmt.Errorf("%w: %s: HTTP %d with an unreadable answer: %v", errLost, c.Addr, resp.StatusCode, err)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		res := Result{Found: rep.Found != nil && *rep.Found}
		switch op.Kind {
		case Get:
			if rep.Value == nil {
				return Result{}, -1, fmt.Errorf("%w: %s: answer without a value", errLost, c.Addr)
			}
			res = Result{Value: *rep.Value, Found: true}
		case Put, Append, Delete:
			if rep.Found == nil {
				return Result{}, -1, fmt.Errorf("%w: %s: answer without \"found\"", errLost, c.Addr)
			}
			if rep.Previous != nil {
				res.Value = *rep.Previous
			}
		}
		return res, -1, nil
	case resp.StatusCode == http.StatusNotFound && rep.Code == CodeNotFound && op.Kind == Get:
		return Result{}, -1, nil
	}
	e := &HTTPError{
		StatusCode:     resp.StatusCode,
		Code:           rep.Code,
		Message:        rep.Error,
		RetryAfter:     time.Duration(rep.RetryAfterMs) * time.Millisecond,
		Leader:         -1,
		LeaderHTTP:     rep.LeaderHTTP,
		OutcomeUnknown: rep.OutcomeUnknown,
	}
	if rep.Leader != nil {
		e.Leader = *rep.Leader
	}
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	switch {
	case rep.Code == CodeNoLeader || rep.Code == CodeNotLeader || rep.Code == CodeLeaderUnreachable:
		e.kind = ErrWrongLeader
	case rep.Code == CodeStopped:
		e.kind = ErrStopped
	case rep.Code == CodeOverloaded:
		e.kind = ErrOverloaded
	case rep.Code == CodeLeadershipLost:
		e.kind = ErrLeadershipLost
	case rep.Code == CodeStale:
		e.kind = ErrStale
	case rep.Code == CodeSeqReused:
		e.kind = ErrConflict
	case rep.Code == CodeClientExpired:
		e.kind = ErrClientExpired
	case rep.Code == CodeTooLarge:
		e.kind = ErrTooLarge
	case resp.StatusCode == http.StatusUnauthorized:
		e.kind = ErrUnauthorized
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		// A bad request: no retry helps.
	default:
		e.kind = errLost // timeout, forward failed, 5xx: maybe done
	}
	return Result{}, c.hint(e.LeaderHTTP), e
}

// hint returns the position of the replica at leaderHTTP in c.Addrs, or -1.
func (c *HTTPConn) hint(leaderHTTP string) int {
	if leaderHTTP == "" {
		return -1
	}
	want := baseURL(leaderHTTP)
	for i, a := range c.Addrs {
		if baseURL(a) == want {
			return i
		}
	}
	return -1
}

// opRequest returns the HTTP request that carries op, with its client
// identity, to the URL u.
func opRequest(ctx context.Context, method, u string, op Op) (*http.Request, error) {
	var body io.Reader
	if op.Kind == Put || op.Kind == Append {
		b, _ := json.Marshal(httpRequest{Value: &op.Value, ClientID: &op.ClientID, Seq: &op.Seq})
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set(HeaderClientID, strconv.FormatInt(op.ClientID, 10))
	req.Header.Set(HeaderSeq, strconv.FormatInt(op.Seq, 10))
	return req, nil
}
