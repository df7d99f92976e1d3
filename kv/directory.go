package kv

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/raftkit/raft/core"
)

// The directory of the members' HTTP addresses. The library's
// configuration holds each server's Raft address only; the store keeps,
// as service data (as etcd does), the HTTP address of each server an
// operator recorded with SetMemberHTTP. The address travels through the
// log as an operation of its own, so every replica applies it at the same
// position, and snapshots carry the directory: a replica that was not
// told a new member's HTTP address at start learns it from the log, and
// can forward requests to it once it leads.
//
// An entry stays when its server leaves the configuration: the
// configuration's entries do not pass through the store, so dropping it
// would take a second log entry, and a removed server's ID is never used
// again, so its entry is never looked up for forwarding (and HTTPPeers.All
// takes the directory's addresses of the configuration's servers only).

// MaxHTTPAddrBytes bounds an HTTP address in the directory.
const MaxHTTPAddrBytes = 256

// memberHTTP is the kind of the operation that records a server's HTTP
// address: its Key is the server's ID in decimal, its Value the address
// (see memberHTTPOp). It is not a client request: no HTTP route or Conn
// sends it.
const memberHTTP Kind = "member-http"

// ErrBadHTTPAddr is wrapped by the errors of CheckHTTPAddr.
var ErrBadHTTPAddr = errors.New("kv: bad HTTP address")

// CheckHTTPAddr says what is wrong with addr as a replica's HTTP address
// for the directory, or returns nil: it must be host:port (a host name or
// IP address and a port from 1 to 65535, as 10.0.0.4:8001 or [::1]:8001),
// or a base URL with scheme http or https, a host, an optional port and no
// path beyond "/", no user, query or fragment (as
// https://db4.example:8443); at most MaxHTTPAddrBytes bytes of printable
// ASCII.
func CheckHTTPAddr(addr string) error {
	fail := func(format string, a ...any) error {
		return fmt.Errorf("%w %.80q: "+format, append([]any{ErrBadHTTPAddr, addr}, a...)...)
	}
	switch {
	case addr == "":
		return fmt.Errorf("%w: empty: want host:port or a base URL (http:// or https://)", ErrBadHTTPAddr)
	case len(addr) > MaxHTTPAddrBytes:
		return fail("%d bytes, over the limit of %d", len(addr), MaxHTTPAddrBytes)
	}
	for i := 0; i < len(addr); i++ {
		if c := addr[i]; c <= ' ' || c >= 0x7f {
			return fail("byte %d (%#02x) is not printable ASCII", i, c)
		}
	}
	hostPort := addr
	if strings.Contains(addr, "://") {
		u, err := url.Parse(addr)
		switch {
		case err != nil:
			return fail("not a URL: %v", rootCause(err))
		case u.Scheme != "http" && u.Scheme != "https":
			return fail("scheme %q: want http or https", u.Scheme)
		case u.Opaque != "" || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || (u.Path != "" && u.Path != "/"):
			return fail("want a base URL: scheme, host and port only, with no user, path, query or fragment")
		case u.Hostname() == "":
			return fail("no host")
		case u.Port() == "":
			return nil // the scheme's port
		}
		hostPort = u.Host
	}
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil {
		return fail("want host:port or a base URL (http:// or https://): %v", err)
	}
	if host == "" {
		return fail("no host: the other replicas dial this address, so give its host name or IP address")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
		return fail("port %q: want a number from 1 to 65535", port)
	}
	return nil
}

// memberHTTPOp returns the operation that records addr as server id's
// HTTP address.
func memberHTTPOp(id int, addr string) Op {
	return Op{Kind: memberHTTP, Key: strconv.Itoa(id), Value: addr}
}

// memberHTTPOf returns the server ID and the HTTP address that op, of kind
// memberHTTP, records, or says what is wrong with them.
func memberHTTPOf(op Op) (id int, addr string, err error) {
	id, err = strconv.Atoi(op.Key)
	if err != nil || id <= 0 || strconv.Itoa(id) != op.Key {
		return 0, "", fmt.Errorf("server ID %.40q: want a positive integer in decimal", op.Key)
	}
	if err := CheckHTTPAddr(op.Value); err != nil {
		return 0, "", err
	}
	return id, op.Value, nil
}

// SetMemberHTTP records, through the log, addr as the HTTP address of
// server id (CheckHTTPAddr says which addresses are accepted); it
// replaces the address recorded before for id, if any. It returns once
// the record is applied on this server, with the errors of Do: this
// server must be the leader.
func (s *Server) SetMemberHTTP(ctx context.Context, id int, addr string) error {
	op := memberHTTPOp(id, addr)
	if _, _, err := memberHTTPOf(op); err != nil {
		return fmt.Errorf("kv: record the HTTP address of server %d: %w", id, err)
	}
	_, err := s.Do(ctx, op)
	return err
}

// MemberHTTP returns the HTTP address recorded for server id, or "".
func (s *Server) MemberHTTP(id int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.httpDir[id]
}

// applyMemberHTTP records the address op carries; s.mu is held. The
// result is the address recorded before, if any.
func (s *Server) applyMemberHTTP(op Op) outcome {
	id, addr, _ := memberHTTPOf(op) // checked when decoded
	old, found := s.httpDir[id]
	s.httpDir[id] = addr
	return outcome{res: Result{Value: old, Found: found}}
}

// HTTPPeers finds the HTTP addresses of the replicas: in Local, the
// addresses this replica was given (its operator's word), and for the
// IDs Local lacks, in Store's directory.
type HTTPPeers struct {
	Local map[int]string
	Store *Server // nil: Local only
	// Scheme is given to a directory address recorded as host:port:
	// "https" or "http" ("" is "http").
	Scheme string
}

// Addr returns the HTTP address of replica id, or "" if neither Local
// nor the directory knows it.
func (p HTTPPeers) Addr(id int) string {
	if a := p.Local[id]; a != "" {
		return a
	}
	if p.Store == nil {
		return ""
	}
	return p.withScheme(p.Store.MemberHTTP(id))
}

// All returns Local, and the directory's addresses of the other servers
// that m lists.
func (p HTTPPeers) All(m core.Membership) map[int]string {
	all := maps.Clone(p.Local)
	if all == nil {
		all = map[int]string{}
	}
	if p.Store == nil {
		return all
	}
	for _, mb := range m.Members {
		if _, ok := all[mb.ID]; !ok {
			if a := p.withScheme(p.Store.MemberHTTP(mb.ID)); a != "" {
				all[mb.ID] = a
			}
		}
	}
	return all
}

// withScheme gives addr p's scheme if it has none.
func (p HTTPPeers) withScheme(addr string) string {
	if addr == "" || strings.Contains(addr, "://") {
		return addr
	}
	scheme := p.Scheme
	if scheme == "" {
		scheme = "http"
	}
	return scheme + "://" + addr
}
