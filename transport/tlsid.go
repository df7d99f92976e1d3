package transport

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Certificate identities. A server's certificate names it by the URI SAN
// raft://server/<id>; a client's (a tool's, not a Raft server's) by
// raft://client/<name>. The transport takes a peer's server ID from its
// certificate, never from what the peer says.
const (
	uriScheme       = "raft"
	uriServerHost   = "server"
	uriClientHost   = "client"
	serverURIPrefix = uriScheme + "://" + uriServerHost + "/"
	clientURIPrefix = uriScheme + "://" + uriClientHost + "/"
)

// ServerURI returns the URI SAN that names server id in its certificate:
// raft://server/<id>.
func ServerURI(id int) *url.URL {
	return &url.URL{Scheme: uriScheme, Host: uriServerHost, Path: "/" + strconv.Itoa(id)}
}

// ClientURI returns the URI SAN that names the client name in its
// certificate: raft://client/<name>.
func ClientURI(name string) *url.URL {
	return &url.URL{Scheme: uriScheme, Host: uriClientHost, Path: "/" + name}
}

// errNotServer is ServerID's error for a certificate that names no server.
var errNotServer = errors.New("the certificate names no Raft server (no URI SAN raft://server/<id>)")

// ServerID returns the server ID that cert names by its URI SAN
// raft://server/<id>. It fails if cert names no server, or more than one.
func ServerID(cert *x509.Certificate) (int, error) {
	id, found := 0, false
	for _, u := range cert.URIs {
		if u.Scheme != uriScheme || u.Host != uriServerHost {
			continue
		}
		s := strings.TrimPrefix(u.Path, "/")
		n, err := strconv.Atoi(s)
		if err != nil || strconv.Itoa(n) != s {
			return 0, fmt.Errorf("the certificate's URI SAN %s does not name a server ID (want %s<id>)", u, serverURIPrefix)
		}
		if found && n != id {
			return 0, fmt.Errorf("the certificate names two servers, %d and %d", id, n)
		}
		id, found = n, true
	}
	if !found {
		return 0, errNotServer
	}
	return id, nil
}

// certSays describes what cert names, for log lines: its URI SANs and its
// subject.
func certSays(cert *x509.Certificate) string {
	var b strings.Builder
	for i, u := range cert.URIs {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(u.String())
	}
	if b.Len() == 0 {
		b.WriteString("no URI SAN")
	}
	fmt.Fprintf(&b, " (subject %q, issuer %q)", cert.Subject.String(), cert.Issuer.String())
	return b.String()
}
