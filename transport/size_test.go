package transport

import (
	"bytes"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/raftkit/raft/core"
)

// fullEntry returns an AppendEntries request with every number at its
// largest and one entry carrying a command of n bytes.
func fullEntry(n int) *core.AppendEntriesArgs {
	return &core.AppendEntriesArgs{
		Term: math.MaxInt64, LeaderID: math.MaxInt64, PrevLogIndex: math.MaxInt64, PrevLogTerm: math.MaxInt64, LeaderCommit: math.MaxInt64,
		Entries: []core.Entry{{Index: math.MaxInt64, Term: math.MaxInt64, Type: math.MaxUint8, Command: bytes.Repeat([]byte{0xa5}, n)}},
	}
}

func TestMaxCommandBytes(t *testing.T) {
	// What the request takes besides the command, measured.
	if over := bodySize(t, fullEntry(1<<20)) - 1<<20; over > commandOverhead/4 {
		t.Errorf("an AppendEntries request takes %d bytes besides its command; commandOverhead %d leaves too little room", over, commandOverhead)
	}
	for _, limit := range []int{0, 4 << 10, commandOverhead + 1} {
		t.Run(fmt.Sprintf("MaxMessageBytes=%d", limit), func(t *testing.T) {
			c := newCluster(t, 2, func(cfg *Config) {
				cfg.MaxMessageBytes = limit
				// 16 MiB under the race detector on a loaded machine
				// can take over 10 s.
				cfg.CallTimeout = time.Minute
			})
			tr := c.tr[0]
			want := cmp(limit, DefaultMaxMessageBytes) - commandOverhead
			if got := tr.MaxCommandBytes(); got != want {
				t.Fatalf("MaxCommandBytes %d, want %d", got, want)
			}
			args := fullEntry(tr.MaxCommandBytes())
			var reply core.AppendEntriesReply
			if err := c.peer(0, 1).call(methodAppendEntries, args, &reply); err != nil {
				t.Errorf("AppendEntries with a command of MaxCommandBytes: %v", err)
			} else if reply.ConflictTerm != int(checksum(args.Entries)) {
				t.Errorf("the entry arrived changed")
			}
		})
	}
	t.Run("too small", func(t *testing.T) {
		c := newCluster(t, 2, func(cfg *Config) { cfg.MaxMessageBytes = commandOverhead - 1 })
		if got := c.tr[0].MaxCommandBytes(); got != 0 {
			t.Errorf("MaxCommandBytes %d, want 0", got)
		}
	})
}
