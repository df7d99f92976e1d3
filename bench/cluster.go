package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// A side is one Raft library under test: startCluster starts a fresh
// cluster of three servers in one process, over TCP on 127.0.0.1, each
// keeping its durable log under its own folder of dir. It returns once the
// cluster has a leader. Each library's side lives in a file of its own
// (ours.go, theirs.go), so that a change of a library's API changes only
// that file.
type side struct {
	name         string
	startCluster func(dir string) (cluster, error)
}

// cluster is a running cluster of one side.
type cluster interface {
	// propose proposes cmd on the leader and returns once the leader has
	// applied it to its state machine. It returns errRetry if cmd may not
	// have been applied (leadership moved, or the leader was not found in
	// time): the caller proposes it again. Any other error means the
	// cluster is broken. propose is called from many goroutines at once;
	// it does not keep cmd past its return, nor change it.
	propose(cmd []byte) error
	// ledgers returns the servers' state machines.
	ledgers() []*ledger
	// saves returns how many log writes the servers made since they
	// started, all three together, and the entries those carried. Each
	// write is one fsync (ours: Metrics().Saves; hashicorp: StoreLogs
	// calls on the bolt store, each one bolt transaction).
	saves() (writes, entries int64)
	// stop stops every server and releases their logs and listeners.
	stop() error
}

// errRetry: the command may not have been applied; propose it again.
var errRetry = errors.New("not applied: leadership moved, propose again")

// retryPause is how long propose pauses before it returns errRetry, so
// that proposers do not spin while leadership moves.
const retryPause = 5 * time.Millisecond

// retry pauses, then returns errRetry.
func retry() error {
	time.Sleep(retryPause)
	return errRetry
}

// Timing that both sides use, as far as each library lets it be set.
const (
	// electionTimeout is the base election timeout: a follower that hears
	// no leader for a random time in [electionTimeout, 2*electionTimeout)
	// stands for election. Ours: Config.ElectionTimeout. Hashicorp:
	// HeartbeatTimeout and ElectionTimeout (same meaning there).
	electionTimeout = 300 * time.Millisecond
	// heartbeatInterval is how often an idle leader contacts followers.
	// Ours: Config.HeartbeatInterval. Hashicorp fixes it at
	// HeartbeatTimeout/10 (30 ms), which cannot be set apart.
	heartbeatInterval = 100 * time.Millisecond
	// callTimeout bounds one RPC: ours, transport.Config.CallTimeout
	// (its default); hashicorp, the NetworkTransport's timeout.
	callTimeout = time.Second
	// leaderWait bounds how long propose looks for a leader before it
	// gives up with errRetry, and how long startCluster waits for the
	// first one.
	leaderWait = 10 * time.Second
)

// applyWait bounds how long propose waits for its command to be applied
// before it gives up with errRetry: a last resort, for a leader cut off
// from the others (which this harness never does). A variable for tests.
var applyWait = 5 * time.Second

// tagLen is the length of the tag at the start of every command (see
// makeTag).
const tagLen = 8

// tagOf returns the tag a command starts with, or 0 for a command too
// short to have one (no command proposed here is: see newCommand).
func tagOf(cmd []byte) uint64 {
	if len(cmd) < tagLen {
		return 0
	}
	return binary.LittleEndian.Uint64(cmd)
}

// newCommand returns a command of size bytes starting with tag (see
// makeTag).
func newCommand(tag uint64, size int) []byte {
	cmd := make([]byte, size)
	binary.LittleEndian.PutUint64(cmd, tag)
	for i := tagLen; i < size; i++ {
		cmd[i] = byte(i)
	}
	return cmd
}

// waitLeader polls find until it returns true, for at most leaderWait.
func waitLeader(find func() bool) error {
	deadline := time.Now().Add(leaderWait)
	for !find() {
		if time.Now().After(deadline) {
			return fmt.Errorf("no leader after %v", leaderWait)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}
