// Package core is the Raft protocol as a deterministic state machine: events
// go in (Step for a message from a peer, Tick for the passing of time,
// Propose for a new command) and effects come out of Ready (state to save,
// messages to send, entries to apply). It runs no goroutines and does no
// I/O; time is counted in ticks and randomness comes from the caller.
//
// Comments name the rule of Figure 2 or the section of the extended Raft
// paper (Ongaro and Ousterhout, 2014) that each piece implements.
package core
