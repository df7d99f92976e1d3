// Package transport carries Raft's RPCs between servers over TCP.
//
// Each server has one TCP: it listens on its own address and serves the
// RequestVote, AppendEntries, Probe, InstallSnapshot, TimeoutNow and ReadIndex requests of the
// other servers with a Handler (Serve), and gives a Peer for every other
// server. A Peer sends requests two ways: Call waits for the reply (it
// satisfies the raft package's Peer interface), Send pipelines (see below).
// The requests to one peer share one connection, dialed on the first
// request and dialed again, with a growing backoff, when it breaks. Every
// request has a deadline, and a slow, dead or partitioned peer delays
// requests to no other peer. MaxCommandBytes tells the raft package how
// large a command the transport can carry, MaxChunkBytes how large a chunk
// of a snapshot: a snapshot moves as a sequence of InstallSnapshot calls
// on the peer's one connection, each carrying one chunk.
//
// # Ordering and pipelining
//
// The requests Send is given for one peer are written to the connection in
// the order of the calls, without waiting for replies, and the serving
// side reads each connection with one goroutine that hands the requests to
// Handler.Serve in the order they arrived. So a leader can stream
// AppendEntries batches to a follower, several in flight, and the
// follower gets them in order. Serve passes a request on and returns;
// the Handler answers later, from any goroutine, by calling respond, and
// the replies go back as they are given, in any order: each carries its
// request's ID, by which the caller matches it. A Send's done is called
// once the reply comes, or with ok false when it is lost, refused, or
// not there within Config.CallTimeout of the request being written.
//
// Send never blocks. Requests are laid out, as they are sent, in a buffer
// of the connection, which one goroutine writes to the socket, many
// frames per write when requests come faster than the network takes them.
// Beyond Config.SendQueueBytes of requests not yet written, Send (and
// Call) fail at once: a peer that does not read costs a bounded amount of
// memory, and its connection breaks when a write makes no progress for a
// call timeout. Call and Send are not ordered with each other, and a
// broken connection fails every request it had; the requests after it go
// on a new connection, so a caller that needs them in order (Raft does
// not: it only goes faster with them in order) resends what failed.
//
// # Starting servers on ephemeral ports
//
// Config.Peers must hold every server's address before New. To run servers
// on ports the system picks (tests, local clusters), listen first and hand
// the listeners over: ListenLocal listens on 127.0.0.1:0 once per server ID
// and returns the listeners with the Peers map, and each server gets its
// listener as Config.Listener. No port is closed and reopened, so no other
// process can take it in between.
//
//	lns, peers, err := transport.ListenLocal(1, 2, 3)
//	for id := range peers {
//		tr, err := transport.New(transport.Config{ID: id, Peers: peers, Listener: lns[id], TLS: tlsConfigs[id]})
//		...
//	}
//
// # Wire format
//
// A connection starts with a handshake in which the dialer names its own
// server ID and the one it means to reach; the server refuses IDs outside
// its Config.Peers (handshake.go). The from argument of Handler.Serve is
// the ID the handshake established for the connection, never one a
// message claims.
//
// # Security
//
// With Config.TLS, the handshake runs inside mutual TLS (tls.go): each end
// presents a certificate that names its server ID by the URI SAN
// raft://server/<id> (ServerURI), signed by a CA the other trusts, and a
// peer's ID is the one its certificate names; a server refuses a
// certificate of a server outside its Peers, or a hello that claims
// another ID, and a dialer refuses a server whose certificate names
// another server than the one it meant to reach. TLSConfig builds the
// config, CertReloader one whose certificate and CAs are read again from
// their files on demand. A TLS handshake counts as part of the handshake
// for the limits below. With Config.Insecure instead, the handshake is not
// authenticated: anyone who reaches the port can claim a peer's ID, so
// plain TCP is for trusted networks and tests; New refuses a Config with
// neither.
//
// Then each direction is a sequence of frames (wire.go):
//
//	length   u32, big endian: the payload's length
//	type     u8: 1 RequestVote, 2 AppendEntries, 3 InstallSnapshot, 4 Probe,
//	         5 TimeoutNow, 6 ReadIndex;
//	         a reply's type is its request's | 0x80; 0xff an error
//	id       u64, big endian: the request's ID, which its reply repeats
//	payload  the message's fields, in the order of the core package's
//	         struct, each:
//	           int, int64   varint (zig-zag, as encoding/binary's)
//	           bools        one byte of flags for all of a message's
//	           []byte       uvarint length+1 (0 for nil), then the bytes
//	           uint64       uvarint
//	         AppendEntries' Entries: uvarint count+1 (0 for nil), then per
//	         entry its Term (varint), Type (u8) and Command ([]byte); an
//	         entry's Index is implicit: PrevLogIndex+1+i, and Send and
//	         Call refuse entries that are not so numbered.
//	         An error: a code (u8: 0 failed, 1 lost to an injected fault)
//	         and a message (uvarint length, bytes).
//
// A frame whose payload is over Config.MaxMessageBytes is skipped unread by
// its reader, and fails its request alone; a sender refuses to send one. A
// malformed frame (an unknown type, a field cut short, a length beyond the
// frame, stray bytes) breaks the connection: the decoders check every
// length against what the frame holds before allocating for it. The reader
// reads a frame whose message may keep parts of it (the commands of an
// AppendEntries, the data of an InstallSnapshot) into a buffer of its own,
// which the message's byte slices alias and the Handler may keep; every
// other frame into a buffer it reuses.
//
// # Limits on connections
//
// A served connection on which no request arrives for Config.IdleTimeout
// (default 30 s, far above Raft's 100 ms heartbeat) is closed; a caller
// dials anew instead of reusing a connection it has sent nothing on for
// half that time. A server serves at most 2 connections per peer ID (a
// real peer uses one) and closes the oldest beyond that, with a warning;
// and it holds at most 32 accepted connections in the handshake, each for
// at most Config.CallTimeout, closing newer ones at once (limits.go).
//
// On the calling side, a connection on which 3 requests in a row time out
// with nothing read meanwhile is dropped and the peer dialed anew: after a
// silent partition heals, the requests need not wait for TCP to give up on
// the old connection.
//
// # Fault injection
//
// Config.Faults cuts, drops and delays messages between chosen servers; see
// Faults.
package transport
