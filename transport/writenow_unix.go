//go:build unix

package transport

import (
	"net"
	"syscall"
)

// directWrites says whether flush writes plain TCP connections itself.
const directWrites = true

// rawConn returns the socket of conn for writeNow if conn is a plain TCP
// connection, else nil (a TLS connection encrypts in Write; a wrapper may
// do anything in it).
func rawConn(conn net.Conn) syscall.RawConn {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// writeNow writes as much of b to the socket as it takes without blocking,
// and returns how much that was. Errors end it early: the writer, which
// writes the rest, meets them again and breaks the connection.
func writeNow(rc syscall.RawConn, b []byte) int {
	n := 0
	rc.Write(func(fd uintptr) bool {
		for n < len(b) {
			m, err := syscall.Write(int(fd), b[n:])
			if err == syscall.EINTR {
				continue
			}
			if err != nil || m <= 0 {
				break
			}
			n += m
		}
		return true // never wait for the socket: the writer does
	})
	return n
}
