package transport

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"
)

// Handshake. With Config.TLS, a TLS handshake comes first (tls.go), and
// the rest runs inside TLS. The dialer opens with a hello:
//
//	magic    "RAFTKIT"
//	version  1 byte
//	from     int64, big endian: the dialer's server ID
//	to       int64, big endian: the ID of the server it means to reach
//
// The server answers with magic, version and a status byte; unless the
// status is statusOK it then closes the connection. Only then do frames
// flow (wire.go), the dialer's possibly right behind its hello.

const (
	magic = "RAFTKIT"
	// version 2 added the Probe RPC's types to the primers, version 3
	// the InstallSnapshot RPC's; version 4 replaced net/rpc and gob with
	// the binary frames of wire.go; version 5 added the TimeoutNow RPC
	// and RequestVote's Transfer flag (leadership transfer), and
	// AppendEntries' heartbeat Round (ReadIndex); version 6 the ReadIndex
	// RPC (reads on followers).
	version   byte = 6
	helloLen       = len(magic) + 1 + 8 + 8
	answerLen      = len(magic) + 1 + 1
)

// Handshake statuses.
const (
	statusOK          byte = 0
	statusUnknownID   byte = 1 // the dialer's ID is not in the server's Peers
	statusWrongServer byte = 2 // the dialer meant to reach another server
	statusVersion     byte = 3 // unsupported protocol version
	statusNotYourCert byte = 4 // the dialer's ID is not the one its certificate names
)

func statusText(s byte) string {
	switch s {
	case statusOK:
		return "accepted"
	case statusUnknownID:
		return "our server ID is not among its peers"
	case statusWrongServer:
		return "it is not the server we meant to reach (check the peer addresses)"
	case statusVersion:
		return "unsupported protocol version"
	case statusNotYourCert:
		return "our server ID is not the one our certificate names"
	}
	return fmt.Sprintf("unknown status %d", s)
}

// clientHandshake runs the dialer's side of the handshake on conn, as
// server from reaching server to, and returns the reader of the frames
// that follow, of up to maxMsg bytes of payload; it must be over by
// deadline.
func clientHandshake(conn net.Conn, from, to, maxMsg int, deadline time.Time) (*frameReader, error) {
	conn.SetDeadline(deadline)
	if _, err := conn.Write(appendHello(nil, from, to)); err != nil {
		return nil, fmt.Errorf("send hello: %w", err)
	}
	br := bufio.NewReaderSize(conn, readBuffer)
	var ans [answerLen]byte
	if _, err := io.ReadFull(br, ans[:]); err != nil {
		return nil, fmt.Errorf("read the server's answer to hello: %w", err)
	}
	if string(ans[:len(magic)]) != magic {
		return nil, fmt.Errorf("%w: the server's answer to hello starts with %q, not %q", errProtocol, ans[:len(magic)], magic)
	}
	if st := ans[answerLen-1]; st != statusOK {
		return nil, fmt.Errorf("server refused the connection: %s", statusText(st))
	}
	conn.SetDeadline(time.Time{})
	return newFrameReader(br, maxMsg), nil
}

// appendHello appends the hello of server from, reaching server to, to b.
func appendHello(b []byte, from, to int) []byte {
	b = append(b, magic...)
	b = append(b, version)
	b = binary.BigEndian.AppendUint64(b, uint64(int64(from)))
	return binary.BigEndian.AppendUint64(b, uint64(int64(to)))
}

// serverHandshake runs the server's side of the handshake on an accepted
// conn and returns the caller's ID and the reader of its requests, and the
// connection to serve them on (a TLS one with Config.TLS), which it
// returns even with an error, to close. It refuses callers outside
// Config.Peers, and with TLS, callers whose certificate does not name the
// ID they claim.
func (t *TCP) serverHandshake(raw net.Conn) (from int, conn net.Conn, rd *frameReader, err error) {
	conn = raw
	deadline := time.Now().Add(t.callTimeout)
	conn.SetDeadline(deadline)
	certID, cert := 0, (*x509.Certificate)(nil)
	if t.tls != nil {
		ctx, cancel := context.WithDeadline(t.ctx, deadline)
		tc, id, c, err := tlsHandshake(ctx, raw, t.serverTLSConf, false)
		cancel()
		if err != nil {
			return 0, conn, nil, err
		}
		if !t.swapTracked(raw, tc) {
			return 0, tc, nil, errClosed
		}
		conn, certID, cert = tc, id, c
	}
	br := bufio.NewReaderSize(conn, readBuffer)
	var hello [helloLen]byte
	if _, err := io.ReadFull(br, hello[:]); err != nil {
		return 0, conn, nil, fmt.Errorf("read hello: %w", err)
	}
	if string(hello[:len(magic)]) != magic {
		return 0, conn, nil, fmt.Errorf("%w: hello starts with %q, not %q", errProtocol, hello[:len(magic)], magic)
	}
	from64 := int64(binary.BigEndian.Uint64(hello[len(magic)+1:]))
	to64 := int64(binary.BigEndian.Uint64(hello[len(magic)+9:]))
	from = int(from64)
	status := statusOK
	known := t.known(from)
	switch {
	case hello[len(magic)] != version:
		status = statusVersion
		err = fmt.Errorf("hello of protocol version %d, want %d", hello[len(magic)], version)
	case cert != nil && from64 != int64(certID):
		status = statusNotYourCert
		err = fmt.Errorf("caller claims to be server %d, but its certificate says %s", from64, certSays(cert))
	case !known || int64(from) != from64 || from == t.id:
		status = statusUnknownID
		err = fmt.Errorf("caller's server ID %d is not among the peers", from64)
	case to64 != int64(t.id):
		status = statusWrongServer
		err = fmt.Errorf("caller %d meant to reach server %d", from64, to64)
	}
	var ans [answerLen]byte
	copy(ans[:], magic)
	ans[len(magic)] = version
	ans[answerLen-1] = status
	_, werr := conn.Write(ans[:])
	if err != nil {
		return 0, conn, nil, err
	}
	if werr != nil {
		return 0, conn, nil, fmt.Errorf("answer hello: %w", werr)
	}
	conn.SetDeadline(time.Time{})
	return from, conn, newFrameReader(br, t.maxMsg), nil
}
