package lab

// The snapshot tests of the lab (part "4C" here; 3D in the current MIT
// 6.5840 Raft lab): a service snapshots every few entries through
// Snapshot, lagging followers catch up through InstallSnapshot, and
// servers restart from their snapshots.

import (
	"bytes"
	"fmt"
	"math/rand"
	"testing"

	"github.com/raftkit/raft/labgob"
)

// snapshotInterval is how often (in log entries) the tester's service
// snapshots.
const snapshotInterval = 10

// maxLogSize bounds the Raft state the servers may keep when their service
// snapshots every snapshotInterval entries.
const maxLogSize = 2000

// applierSnap is applier for a service that snapshots: it checks what it
// applies as applier does, takes a snapshot of everything it applied every
// snapshotInterval entries (the index, then the commands from index 0),
// and restores from the snapshots Raft hands it, which must never go back
// before what it applied.
func (cfg *config) applierSnap(i int, applyCh chan ApplyMsg) {
	cfg.mu.Lock()
	rf := cfg.rafts[i]
	cfg.mu.Unlock()
	for m := range applyCh {
		errMsg := ""
		cfg.mu.Lock()
		current := cfg.applyChs[i] == applyCh
		switch {
		case m.SnapshotValid:
			if m.SnapshotIndex <= cfg.lastApplied[i] && current {
				errMsg = fmt.Sprintf("server %v got a snapshot through %v after applying %v", i, m.SnapshotIndex, cfg.lastApplied[i])
			} else if current {
				errMsg = cfg.ingestSnap(i, m.Snapshot, m.SnapshotIndex)
			}
		case m.CommandValid:
			if current && m.CommandIndex != cfg.lastApplied[i]+1 {
				errMsg = fmt.Sprintf("server %v apply out of order: expected index %v, got %v", i, cfg.lastApplied[i]+1, m.CommandIndex)
			}
			if e := cfg.checkLogs(i, m, current); e != "" && errMsg == "" {
				errMsg = e
			}
			if current {
				cfg.lastApplied[i] = m.CommandIndex
			}
		}
		var snap []byte
		if current && m.CommandValid && (m.CommandIndex+1)%snapshotInterval == 0 {
			w := new(bytes.Buffer)
			e := labgob.NewEncoder(w)
			e.Encode(m.CommandIndex)
			var xlog []any
			for j := 0; j <= m.CommandIndex; j++ {
				xlog = append(xlog, cfg.logs[i][j])
			}
			e.Encode(xlog)
			snap = w.Bytes()
		}
		if errMsg != "" && cfg.applyErr[i] == "" {
			cfg.applyErr[i] = errMsg
		}
		cfg.mu.Unlock()
		if snap != nil && rf != nil {
			rf.Snapshot(m.CommandIndex, snap) // from the goroutine reading applyCh
		}
	}
}

// ingestSnap restores server i's applied state from a snapshot that
// applierSnap made; index is the index Raft says it holds through, or -1
// to take the snapshot's own. It returns "" or what is wrong. cfg.mu must
// be held.
func (cfg *config) ingestSnap(i int, snapshot []byte, index int) string {
	if snapshot == nil {
		return fmt.Sprintf("server %v: nil snapshot", i)
	}
	d := labgob.NewDecoder(bytes.NewBuffer(snapshot))
	var lastIncludedIndex int
	var xlog []any
	if d.Decode(&lastIncludedIndex) != nil || d.Decode(&xlog) != nil {
		return fmt.Sprintf("server %v: snapshot does not decode", i)
	}
	if index != -1 && index != lastIncludedIndex {
		return fmt.Sprintf("server %v: snapshot through %v handed out as through %v", i, lastIncludedIndex, index)
	}
	cfg.logs[i] = map[int]any{}
	for j := 0; j < len(xlog); j++ {
		cfg.logs[i][j] = xlog[j]
		if j > 0 {
			if old, ok := cfg.committed[j]; ok && !sameCommand(old, xlog[j]) {
				return fmt.Sprintf("server %v: snapshot holds %v at index %v, where %v was committed", i, xlog[j], j, old)
			}
		}
	}
	cfg.lastApplied[i] = lastIncludedIndex
	return ""
}

// logSize returns the largest Raft state any server keeps.
func (cfg *config) logSize() int {
	size := 0
	for i := 0; i < cfg.n; i++ {
		if cfg.dirs == nil {
			size = max(size, cfg.saved[i].RaftStateSize())
		}
	}
	return size
}

// makeSnapConfig is makeConfig with services that snapshot.
func makeSnapConfig(t *testing.T, n int, unreliable bool) *config {
	cfg := makeConfig(t, n, unreliable)
	for i := 0; i < n; i++ {
		cfg.start1(i, cfg.applierSnap)
		cfg.connect(i)
	}
	return cfg
}

func snapcommon(t *testing.T, name string, disconnect bool, reliable bool, crash bool) {
	iters := 30
	servers := 3
	cfg := makeSnapConfig(t, servers, !reliable)
	defer cfg.cleanup()

	cfg.begin(name)

	cfg.one(rand.Int(), servers, true)
	leader1 := cfg.checkOneLeader()

	for i := 0; i < iters; i++ {
		victim := (leader1 + 1) % servers
		sender := leader1
		if i%3 == 1 {
			sender = (leader1 + 1) % servers
			victim = leader1
		}

		if disconnect {
			cfg.disconnect(victim)
			cfg.one(rand.Int(), servers-1, true)
		}
		if crash {
			cfg.crash1(victim)
			cfg.one(rand.Int(), servers-1, true)
		}

		// perhaps send enough to get a snapshot
		nn := (snapshotInterval / 2) + (rand.Int() % snapshotInterval)
		for i := 0; i < nn; i++ {
			cfg.startOn(sender, rand.Int())
		}

		// let applier threads catch up with the Start()'s
		if !disconnect && !crash {
			// make sure all followers have caught up, so that an
			// InstallSnapshot RPC isn't required for the basic test.
			cfg.one(rand.Int(), servers, true)
		} else {
			cfg.one(rand.Int(), servers-1, true)
		}

		if cfg.logSize() >= maxLogSize {
			cfg.t.Fatalf("Raft state of %d bytes: the log is not compacted", cfg.logSize())
		}
		if disconnect {
			// reconnect a follower, who may be behind and need a
			// snapshot to catch up.
			cfg.connect(victim)
			cfg.one(rand.Int(), servers, true)
			leader1 = cfg.checkOneLeader()
		}
		if crash {
			cfg.start1(victim, cfg.applierSnap)
			cfg.connect(victim)
			cfg.one(rand.Int(), servers, true)
			leader1 = cfg.checkOneLeader()
		}
	}
	cfg.end()
}

func TestSnapshotBasic4C(t *testing.T) {
	snapcommon(t, "Test (4C): snapshots basic", false, true, false)
}

func TestSnapshotInstall4C(t *testing.T) {
	snapcommon(t, "Test (4C): install snapshots (disconnect)", true, true, false)
}

func TestSnapshotInstallUnreliable4C(t *testing.T) {
	snapcommon(t, "Test (4C): install snapshots (disconnect+unreliable)", true, false, false)
}

func TestSnapshotInstallCrash4C(t *testing.T) {
	snapcommon(t, "Test (4C): install snapshots (crash)", false, true, true)
}

func TestSnapshotInstallUnCrash4C(t *testing.T) {
	snapcommon(t, "Test (4C): install snapshots (unreliable+crash)", false, false, true)
}

// Do the servers persist their snapshots, and restart from them with the
// tail of the log?
func TestSnapshotAllCrash4C(t *testing.T) {
	servers := 3
	iters := 5
	cfg := makeSnapConfig(t, servers, false)
	defer cfg.cleanup()

	cfg.begin("Test (4C): crash and restart all servers")

	cfg.one(rand.Int(), servers, true)

	for i := 0; i < iters; i++ {
		// perhaps enough to get a snapshot
		nn := (snapshotInterval / 2) + (rand.Int() % snapshotInterval)
		for i := 0; i < nn; i++ {
			cfg.one(rand.Int(), servers, true)
		}

		index1 := cfg.one(rand.Int(), servers, true)

		for i := 0; i < servers; i++ {
			cfg.crash1(i)
		}
		for i := 0; i < servers; i++ {
			cfg.start1(i, cfg.applierSnap)
			cfg.connect(i)
		}

		index2 := cfg.one(rand.Int(), servers, true)
		if index2 < index1+1 {
			t.Fatalf("index decreased from %v to %v", index1, index2)
		}
	}
	cfg.end()
}

// Do servers initialize their in-memory copy of the snapshot correctly,
// so that later writes to persistent state don't lose it?
func TestSnapshotInit4C(t *testing.T) {
	servers := 3
	cfg := makeSnapConfig(t, servers, false)
	defer cfg.cleanup()

	cfg.begin("Test (4C): snapshot initialization after crash")
	cfg.one(rand.Int(), servers, true)

	// enough ops to make a snapshot
	nn := snapshotInterval + 1
	for i := 0; i < nn; i++ {
		cfg.one(rand.Int(), servers, true)
	}

	for i := 0; i < servers; i++ {
		cfg.crash1(i)
	}
	for i := 0; i < servers; i++ {
		cfg.start1(i, cfg.applierSnap)
		cfg.connect(i)
	}

	// a single op, to get something written back to persistent storage.
	cfg.one(rand.Int(), servers, true)

	for i := 0; i < servers; i++ {
		cfg.crash1(i)
	}
	for i := 0; i < servers; i++ {
		cfg.start1(i, cfg.applierSnap)
		cfg.connect(i)
	}

	// another op, to trigger a potential bug
	cfg.one(rand.Int(), servers, true)
	cfg.end()
}
