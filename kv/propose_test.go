package kv

// Tests of how the server proposes: without a lock across Propose, so that
// concurrent requests share the leader's saves, and with the log's refusals
// mapped to the client's errors.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkit/raft"
)

// leaderSaves is a storage that counts the saves carrying entries, and
// their entries, made while its server leads: the batches of proposals.
type leaderSaves struct {
	raft.Storage
	rf             *atomic.Pointer[raft.Raft]
	saves, entries *atomic.Int64
}

func (s leaderSaves) Save(hs raft.HardState, ents []raft.Entry) error {
	if rf := s.rf.Load(); rf != nil && len(ents) > 0 {
		if _, leader := rf.GetState(); leader {
			s.saves.Add(1)
			s.entries.Add(int64(len(ents)))
		}
	}
	return s.Storage.Save(hs, ents)
}

// TestConcurrentProposalsShareSaves: 50 clients at once, each appending to
// a key of its own; the leader's saves must carry several entries on
// average, and every client must get its own results. With a lock held
// across Propose, each proposal waited for the save of the one before:
// 1.00 to 1.03 entries per save. Without, this test sees 4 to 4.5; it asks
// for 2, a count of entries, not of time.
func TestConcurrentProposalsShareSaves(t *testing.T) {
	var saves, entries atomic.Int64
	c := newHTClusterWith(t, htSetup{storage: func(id int, s raft.Storage, rf *atomic.Pointer[raft.Raft]) raft.Storage {
		return leaderSaves{Storage: s, rf: rf, saves: &saves, entries: &entries}
	}})
	c.leader()
	saves.Store(0)
	entries.Store(0)

	const clients, perClient = 50, 20
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Go(func() {
			key := fmt.Sprintf("c%d", i)
			want := ""
			for seq := int64(1); seq <= perClient; seq++ {
				v := fmt.Sprintf("%d;", seq)
				op := Op{Kind: Append, Key: key, Value: v, ClientID: int64(1000 + i), Seq: seq}
				res, err := c.doAtLeader(op)
				if err != nil {
					errs <- fmt.Errorf("client %d, seq %d: %w", i, seq, err)
					return
				}
				if res.Value != want || res.Found != (seq > 1) {
					errs <- fmt.Errorf("client %d, seq %d: result %+v; want the value before its append, %q", i, seq, res, want)
					return
				}
				want += v
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	n, e := saves.Load(), entries.Load()
	t.Logf("%d clients: %d entries in %d leader saves, %.2f per save", clients, e, n, float64(e)/float64(max(n, 1)))
	if e < clients*perClient {
		t.Fatalf("the leaders saved %d entries for %d requests", e, clients*perClient)
	}
	if float64(e)/float64(n) < 2 {
		t.Fatalf("%d entries in %d saves: concurrent proposals do not share the leader's saves", e, n)
	}
}

// doAtLeader runs op at whichever replica leads, again (the same request)
// while there is no leader or it changes.
func (c *htCluster) doAtLeader(op Op) (Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		for _, n := range c.nodes {
			if _, leader := n.rf.GetState(); !leader {
				continue
			}
			res, err := n.kv.Do(ctx, op)
			if err == nil || !errors.Is(err, ErrWrongLeader) && !errors.Is(err, ErrLeadershipLost) {
				return res, err
			}
		}
		select {
		case <-ctx.Done():
			return Result{}, fmt.Errorf("no leader served the request: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestCommandTooLarge: an operation that the log refuses for its size is
// answered 413 with the reason, not taken for a leadership problem.
func TestCommandTooLarge(t *testing.T) {
	c := newHTClusterWith(t, htSetup{opts: HTTPOptions{MaxValueBytes: 10000}, maxCommandBytes: 2000})
	l := c.leader()
	for _, id := range []int{l, c.followers(l)[0]} {
		body := fmt.Sprintf(`{"value":%q}`, strings.Repeat("v", 5000))
		code, _, m := htDoSettled(t, "PUT", c.urls[id]+"/kv/big", body, nil)
		msg, _ := m["error"].(string)
		if code != 413 || m["code"] != CodeTooLarge || !strings.Contains(msg, "too large for the log") {
			t.Fatalf("PUT of an operation over the log's limit at %d: %d %v; want 413 too_large saying so", id, code, m)
		}
	}
	if _, err := c.doAtLeader(Op{Kind: Put, Key: "big", Value: strings.Repeat("v", 5000)}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Do of an operation over the log's limit: %v; want ErrTooLarge", err)
	}
	c.mustGet(c.urls[l], "_probe", "x")
	if code, _, m := htDoSettled(t, "GET", c.urls[l]+"/kv/big", "", nil); code != 404 {
		t.Fatalf("GET big: %d %v; want 404: a refused put took effect", code, m)
	}
}
