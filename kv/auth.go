package kv

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/raftkit/raft/transport"
)

// HeaderClient names, on a request a replica forwards to the leader, the
// client that the forwarding replica authenticated by its certificate.
// The leader believes it only from a peer that authenticated with a
// server certificate; from anyone else it is ignored.
const HeaderClient = "X-Raftkv-Client"

// CodeUnauthorized is the error code of a request refused for want of
// valid credentials (401).
const CodeUnauthorized = "unauthorized"

// ErrUnauthorized is the error (wrapped in an *HTTPError) of a request
// refused for want of valid credentials: no retry helps, other
// credentials may.
var ErrUnauthorized = errors.New("kv: unauthorized")

// How a request was authenticated (Identity.Via).
const (
	ViaToken     = "token"     // a bearer token of the token file
	ViaCert      = "cert"      // a client certificate, raft://client/<name>
	ViaServer    = "server"    // a server certificate, raft://server/<id>
	ViaForwarded = "forwarded" // HeaderClient, from a peer with a server certificate
	ViaOpen      = "open"      // none: a route open to all
)

// Identity is who sent a request, as Auth established it.
type Identity struct {
	// Name is the token's name (its "name:" in the file, or "line N"),
	// the client's name in its certificate, or "server N".
	Name string
	// Via is how the request was authenticated: ViaToken, ViaCert,
	// ViaServer, ViaForwarded or ViaOpen.
	Via string
	// Server is the ID of the server whose certificate the peer presented
	// (ViaServer, ViaForwarded), 0 otherwise.
	Server int
}

type identityKey struct{}

// RequestIdentity returns the identity Auth gave the request with context
// ctx, if any.
func RequestIdentity(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// Auth authenticates the requests of the HTTP API: each must carry a
// bearer token of Tokens (header "Authorization: Bearer TOKEN"), or come
// over TLS with a verified client certificate (if Certs is set), unless
// Open says its route is open. A request with an Authorization header is
// judged by it alone. Others get 401, with the WWW-Authenticate header
// and a JSON error, before their body is read.
type Auth struct {
	// Tokens are the bearer tokens accepted; nil for none.
	Tokens *TokenFile
	// Certs accepts a client certificate that the TLS handshake verified
	// (so the server must ask for one, tls.VerifyClientCertIfGiven, with
	// the CA as ClientCAs) and that names a client (raft://client/<name>)
	// or a server (raft://server/<id>).
	Certs bool
	// Open, if set, tells the requests served without credentials (as
	// GET /status for monitoring).
	Open func(*http.Request) bool
}

// Wrap returns next behind the authentication: next sees only
// authenticated requests (and open ones), with their Identity in the
// context (RequestIdentity).
func (a *Auth) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r, ok := a.authenticate(w, r); ok {
			next.ServeHTTP(w, r)
		}
	})
}

// authenticate returns r with its identity in its context, or answers 401
// and returns false.
func (a *Auth) authenticate(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	id, err := a.identify(r)
	if err != nil {
		if a.Open == nil || !a.Open(r) {
			unauthorized(w, r, err)
			return nil, false
		}
		id = Identity{Via: ViaOpen}
	}
	r.Header.Del(HeaderClient) // read: not for what follows to believe
	return r.WithContext(context.WithValue(r.Context(), identityKey{}, id)), true
}

// authError is why a request is not authenticated.
type authError struct {
	msg      string
	badToken bool // a token was given, and is not valid
}

func (e *authError) Error() string { return e.msg }

// identify returns the identity of r's credentials.
func (a *Auth) identify(r *http.Request) (Identity, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
			return Identity{}, &authError{msg: "the Authorization header is not \"Bearer TOKEN\"", badToken: true}
		}
		if a.Tokens != nil {
			if name, ok := a.Tokens.Check(strings.TrimSpace(tok)); ok {
				return Identity{Name: name, Via: ViaToken}, nil
			}
		}
		return Identity{}, &authError{msg: "invalid bearer token", badToken: true}
	}
	if a.Certs && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		cert := r.TLS.VerifiedChains[0][0]
		if id, ok := serverOf(cert); ok {
			if c := r.Header.Get(HeaderClient); c != "" {
				return Identity{Name: c, Via: ViaForwarded, Server: id}, nil
			}
			return Identity{Name: "server " + strconv.Itoa(id), Via: ViaServer, Server: id}, nil
		}
		if name, ok := clientOf(cert); ok {
			return Identity{Name: name, Via: ViaCert}, nil
		}
		return Identity{}, &authError{msg: "the client certificate names no client (URI SAN raft://client/<name>) nor server"}
	}
	msg := "no credentials: send \"Authorization: Bearer TOKEN\""
	if a.Certs {
		msg += ", or a client certificate of the cluster's CA"
	}
	return Identity{}, &authError{msg: msg}
}

// unauthorized answers 401, without reading the body.
func unauthorized(w http.ResponseWriter, r *http.Request, err error) {
	chal := `Bearer realm="raftkv"`
	if ae, ok := err.(*authError); ok && ae.badToken {
		chal += `, error="invalid_token"`
	}
	w.Header().Set("WWW-Authenticate", chal)
	refuseBody(w, r, nil)
	writeError(w, http.StatusUnauthorized, CodeUnauthorized, fmt.Sprintf("%v; the request did not take effect", err))
}

// serverOf returns the server ID that cert names (raft://server/<id>).
func serverOf(cert *x509.Certificate) (int, bool) {
	id, err := transport.ServerID(cert)
	return id, err == nil && id > 0
}

// clientOf returns the client name that cert names by its one URI SAN
// raft://client/<name>.
func clientOf(cert *x509.Certificate) (string, bool) {
	name, n := "", 0
	for _, u := range cert.URIs {
		if u.Scheme == transport.ClientURI("").Scheme && u.Host == transport.ClientURI("").Host {
			name = strings.TrimPrefix(u.Path, "/")
			n++
		}
	}
	return name, n == 1 && name != ""
}

// forwardIdentity gives req, which forwards r to the leader, r's
// credentials: its Authorization header, or the name of the client that
// its certificate authenticated (HeaderClient).
func forwardIdentity(req, r *http.Request) {
	if a := r.Header.Get("Authorization"); a != "" {
		req.Header.Set("Authorization", a)
		return
	}
	if id, ok := RequestIdentity(r.Context()); ok && (id.Via == ViaCert || id.Via == ViaServer) {
		req.Header.Set(HeaderClient, id.Name)
	}
}
