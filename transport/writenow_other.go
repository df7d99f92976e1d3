//go:build !unix

package transport

import (
	"net"
	"syscall"
)

// directWrites says whether flush writes plain TCP connections itself.
const directWrites = false

// rawConn returns nil: on this platform every write goes through the
// writer goroutine.
func rawConn(net.Conn) syscall.RawConn { return nil }

// writeNow is never called on this platform (rawConn is nil).
func writeNow(syscall.RawConn, []byte) int { return 0 }
