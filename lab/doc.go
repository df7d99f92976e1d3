// Package lab is the classic lab interface to a Raft server (MIT 6.5840's
// Raft lab, parts A to D): Make on the simulated network of package
// labrpc, Start with any gob-encodable command, committed commands and
// installed snapshots as ApplyMsgs on a channel, snapshots the service
// takes itself with Snapshot, and state kept in a Persister. It adapts the
// same server as package raft, whose API (New, Apply, StateMachine) is
// the one to use outside the lab.
package lab
