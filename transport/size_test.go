package transport

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/raftkit/raft/core"
)

// fullEntry returns an AppendEntries request with every number at its
// largest (PrevLogIndex one less, for the entry's index) and one entry
// carrying a command of n bytes.
func fullEntry(n int) *core.AppendEntriesArgs {
	return &core.AppendEntriesArgs{
		Term: math.MaxInt64, LeaderID: math.MaxInt64, PrevLogIndex: math.MaxInt64 - 1, PrevLogTerm: math.MaxInt64, LeaderCommit: math.MaxInt64,
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

// fullChunk returns an InstallSnapshot request with every number at its
// largest and n bytes of data.
func fullChunk(n int) *core.InstallSnapshotArgs {
	return &core.InstallSnapshotArgs{
		Term: math.MaxInt64, LeaderID: math.MaxInt64, LastIncludedIndex: math.MaxInt64, LastIncludedTerm: math.MaxInt64,
		Offset: math.MaxInt64, Data: bytes.Repeat([]byte{0xa5}, n), Done: true,
	}
}

// sendChunk sends fullChunk(n) from server 0 to server 1 and checks the
// reply if the call succeeds.
func sendChunk(c *cluster, n int) error {
	c.t.Helper()
	args := fullChunk(n)
	var reply core.InstallSnapshotReply
	err := c.peer(0, 1).call(methodInstallSnapshot, args, &reply)
	if err == nil && reply != (core.InstallSnapshotReply{Term: math.MaxInt64, Index: chunkSum(args)}) {
		c.t.Errorf("the chunk of %d bytes arrived changed", n)
	}
	return err
}

func TestMaxChunkBytes(t *testing.T) {
	// What the request takes besides its data, measured.
	if over := bodySize(t, fullChunk(1<<20)) - 1<<20; over > chunkOverhead/4 {
		t.Errorf("an InstallSnapshot request takes %d bytes besides its data; chunkOverhead %d leaves too little room", over, chunkOverhead)
	}
	for _, limit := range []int{0, 4 << 10, chunkOverhead + 1} {
		t.Run(fmt.Sprintf("MaxMessageBytes=%d", limit), func(t *testing.T) {
			c := newCluster(t, 2, func(cfg *Config) {
				cfg.MaxMessageBytes = limit
				cfg.CallTimeout = time.Minute // (see TestMaxCommandBytes)
			})
			most := c.tr[0].MaxChunkBytes()
			if want := cmp(limit, DefaultMaxMessageBytes) - chunkOverhead; most != want {
				t.Fatalf("MaxChunkBytes %d, want %d", most, want)
			}
			if err := sendChunk(c, most); err != nil {
				t.Errorf("InstallSnapshot with MaxChunkBytes of data: %v", err)
			}
			before := c.h[1].calls.Load()
			if err := sendChunk(c, most+1); !errors.Is(err, errTooLarge) || !strings.Contains(err.Error(), "MaxChunkBytes") {
				t.Errorf("InstallSnapshot with a byte over MaxChunkBytes: %v, want %v naming MaxChunkBytes", err, errTooLarge)
			}
			if !c.logs[0].has("refused to send a snapshot chunk over the size limit") {
				t.Errorf("no log line about the chunk over the limit:\n%s", c.logs[0])
			}
			if n := c.h[1].calls.Load(); n != before {
				t.Errorf("the handler ran for the chunk over the limit")
			}
			// The connection serves on.
			if err := sendChunk(c, most); err != nil {
				t.Errorf("InstallSnapshot after a refused one: %v", err)
			}
			c.mustCall(0, 1)
			if n := dials(c.peer(0, 1)); n != 1 {
				t.Errorf("%d dials, want 1", n)
			}
		})
	}
	t.Run("too small", func(t *testing.T) {
		c := newCluster(t, 2, func(cfg *Config) { cfg.MaxMessageBytes = chunkOverhead - 1 })
		if got := c.tr[0].MaxChunkBytes(); got != 0 {
			t.Fatalf("MaxChunkBytes %d, want 0", got)
		}
		if err := sendChunk(c, 0); err != nil {
			t.Errorf("InstallSnapshot with no data: %v", err)
		}
		if err := sendChunk(c, 1); !errors.Is(err, errTooLarge) {
			t.Errorf("InstallSnapshot with a byte of data: %v, want %v", err, errTooLarge)
		}
	})
	// A peer with a smaller limit refuses the chunk, and serves on.
	t.Run("smaller peer", func(t *testing.T) {
		c := newCluster(t, 2, func(cfg *Config) {
			if cfg.ID == 1 {
				cfg.MaxMessageBytes = 4 << 10
			}
		})
		err := sendChunk(c, c.tr[1].MaxChunkBytes()+chunkOverhead)
		if err == nil || !strings.Contains(err.Error(), "over server 1's limit") {
			t.Errorf("InstallSnapshot over the peer's limit: %v, want a refusal", err)
		}
		if err := sendChunk(c, c.tr[1].MaxChunkBytes()); err != nil {
			t.Errorf("InstallSnapshot with the peer's MaxChunkBytes of data: %v", err)
		}
		if n := dials(c.peer(0, 1)); n != 1 {
			t.Errorf("%d dials, want 1", n)
		}
	})
}
