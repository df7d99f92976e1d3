package kv

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
)

// Kind names an operation.
type Kind string

// The operations.
const (
	Get    Kind = "get"
	Put    Kind = "put"
	Append Kind = "append"
	Delete Kind = "delete"
)

// Op is one client request, as it travels to a server and through the log.
type Op struct {
	Kind     Kind
	Key      string
	Value    string // Put and Append
	ClientID int64  // the client that issued it
	Seq      int64  // the client's count of its requests, from 1; a retry keeps it; 0: not deduplicated
	// Time is the proposing server's wall clock (Unix nanoseconds) when it
	// put the request in the log: the log's clock for client expiry. The
	// server sets it; what a client sends is overwritten.
	Time int64
}

// Result is the outcome of an applied Op.
type Result struct {
	Value string // Get: the value; Put, Append and Delete: the value before
	Found bool   // whether the key existed before the operation
}

// Errors a server answers with. None means the request took effect.
var (
	// ErrWrongLeader: the server is not the leader; try another.
	ErrWrongLeader = errors.New("kv: not the leader")
	// ErrLeadershipLost: the server lost leadership while the request
	// waited; it may or may not take effect, and a retry is safe.
	ErrLeadershipLost = errors.New("kv: leadership lost before the request committed")
	// ErrStale: the client already had a later request applied, so this
	// one was not executed.
	ErrStale = errors.New("kv: request older than the client's latest")
	// ErrConflict: the client's sequence number was already used for
	// another request (another kind, key or value), so this one was not
	// executed. A retry must repeat its request exactly; a new request
	// takes the next sequence number.
	ErrConflict = errors.New("kv: sequence number already used for another request of this client")
	// ErrClientExpired: the store does not know the client (it expired
	// or was evicted, or no request of it with Seq 1 was applied), so a
	// request with Seq above 1 was not executed. Start again with a new
	// client ID and Seq 1.
	ErrClientExpired = errors.New("kv: client ID unknown to the store (expired, or no request of it with seq 1 applied)")
	// ErrTooLarge: the request is over the size the Raft log takes for
	// one command; it was not started.
	ErrTooLarge = errors.New("kv: request too large for the log")
	// ErrOverloaded: the server has too many requests in progress; it did
	// not start this one. Retry later, or at another server.
	ErrOverloaded = errors.New("kv: server overloaded")
	// ErrStopped: the server has stopped; it did not start the request.
	ErrStopped = errors.New("kv: server stopped")
)

// digest identifies what a request asks for (kind, key and value), to tell
// a retry from another request under the same sequence number.
func (op Op) digest() [sha256.Size]byte {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for _, f := range []string{string(op.Kind), op.Key, op.Value} {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(f)))])
		h.Write([]byte(f))
	}
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
}

// randomClientID returns a random positive client ID.
func randomClientID() int64 {
	var b [8]byte
	for {
		rand.Read(b[:])
		if id := int64(binary.LittleEndian.Uint64(b[:]) >> 1); id != 0 {
			return id
		}
	}
}
