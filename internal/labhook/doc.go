// Package labhook lets package lab start servers of package raft with the
// settings of the lab's contract, which the production API does not offer
// because they are unsafe on real disks or serve only the lab's tester: a
// server with no state starts empty without asking its peers, no no-op
// entry at the start of a term (the tester counts indexes without gaps),
// one AppendEntries in flight (labrpc reorders calls), snapshots taken only
// when the service asks, and every change of term or role reported.
//
// Package raft sets Start when it is initialised; the types are those of
// package raft, as any, because this package cannot import it.
package labhook
