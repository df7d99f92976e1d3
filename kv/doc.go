// Package kv is a replicated key/value store built on package raft: every
// operation, reads included, goes through the Raft log, so each one is
// linearizable; client IDs and sequence numbers make a retried request take
// effect once.
//
// # Client identity
//
// A request that carries a client ID and a sequence number (Seq >= 1) is
// deduplicated; the contract is:
//
//   - one client ID per client, chosen at random (Clerk does this), never
//     shared by two clients;
//   - one request at a time per client ID;
//   - the first request of a client ID has Seq 1, and each new request
//     takes the next one (Seq increases by one);
//   - a retry reuses the Seq of the request it retries, with the same
//     request (same kind, key and value);
//   - the store learns a client from its first applied request, so until
//     one has been answered, the client retries its request with Seq 1 or
//     starts over with a new client ID (Clerk does the latter).
//
// A Seq reused for another request is refused with ErrConflict; a Seq
// below the client's latest applied one with ErrStale. Neither takes
// effect. A request with Seq 0 is not deduplicated: it takes effect each
// time it reaches the log.
//
// # Client expiry
//
// The store remembers, per client, its latest request and its result. It
// forgets a client that sent nothing for ServerOptions.ClientTTL, and the
// least recently active clients beyond ServerOptions.MaxClients. Time here
// is the log's: the server that proposes a request stamps it with its wall
// clock, and every replica takes the largest stamp applied so far as
// "now", so every replica forgets the same clients at the same log
// position. (A proposer whose clock runs far ahead makes clients expire
// early.)
//
// A forgotten client's next request with Seq above 1 is refused with
// ErrClientExpired and does not take effect: the client must start again
// with a new client ID and Seq 1 (Clerk does so by itself for a new
// request). A late retry of a forgotten client's request with Seq 1 looks
// like a new client's first request: it takes effect again.
//
// # Snapshots
//
// A Server is the raft.StateMachine of its Raft server. Its snapshots hold
// the store and the table of clients, the log's clock included, so a
// replica restored from one answers every later request (a retry, a stale
// or reused sequence number, an expired client) as a replica that applied
// the whole log would; and the directory of the servers' HTTP addresses.
//
// # Servers' HTTP addresses
//
// The library's configuration holds the servers' Raft addresses only. The
// store keeps, as replicated service data, a directory of their HTTP
// addresses (Server.SetMemberHTTP, recorded through the log), which the
// HTTP API uses to forward requests to a leader whose address the
// replica was not given (HTTPPeers).
package kv
