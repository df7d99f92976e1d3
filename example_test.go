package raft_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/storage"
	"github.com/raftkit/raft/transport"
)

// counter is a StateMachine: it adds up the numbers proposed to it.
type counter struct {
	mu  sync.Mutex
	sum int64
}

func (c *counter) Apply(cmd raft.Command) any {
	n, _ := binary.Varint(cmd.Data)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sum += n
	return c.sum // Apply's Result.Value on the proposing server
}

func (c *counter) Snapshot(w io.Writer) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := w.Write(binary.AppendVarint(nil, c.sum))
	return err
}

func (c *counter) Restore(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	n, k := binary.Varint(b)
	if k <= 0 {
		return errors.New("counter: bad snapshot")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sum = n
	return nil
}

// Three servers in one process, over TCP on 127.0.0.1, each with its log
// on disk, replicate a counter. Commands are applied on the leader.
func Example() {
	dir, err := os.MkdirTemp("", "raft-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	lns, peers, err := transport.ListenLocal(1, 2, 3) // in production: fixed addresses
	if err != nil {
		log.Fatal(err)
	}
	servers := map[int]*raft.Raft{}
	for id := range peers {
		wal, err := storage.Open(fmt.Sprintf("%s/%d", dir, id), storage.Options{Logger: quiet})
		if err != nil {
			log.Fatal(err)
		}
		// Plain TCP, for the example: on a network others reach, set TLS
		// instead (mutual TLS; see transport.TLSConfig).
		tr, err := transport.New(transport.Config{Insecure: true, ID: id, Peers: peers, Listener: lns[id], Logger: quiet})
		if err != nil {
			log.Fatal(err)
		}
		rf, err := raft.New(raft.Config{
			ID: id, Peers: peers, Transport: raft.TCP(tr), Storage: wal,
			StateMachine: &counter{},
			Bootstrap:    true, // an empty directory founds a new cluster
			Logger:       quiet,
		})
		if err != nil {
			log.Fatal(err)
		}
		defer rf.Close()
		servers[id] = rf
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range []int64{1, 2, 3} {
		res, err := applyOnLeader(ctx, servers, binary.AppendVarint(nil, n))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("sum", res.Value)
	}
	// Output:
	// sum 1
	// sum 3
	// sum 6
}

// applyOnLeader applies cmd on the leader: it follows server 1's view of
// the leadership (WatchLeader), and a NotLeaderError's hint.
func applyOnLeader(ctx context.Context, servers map[int]*raft.Raft, cmd []byte) (raft.Result, error) {
	watch, stop := servers[1].WatchLeader()
	defer stop()
	for {
		select {
		case l := <-watch:
			for l.Leader > 0 {
				res, err := servers[l.Leader].Apply(ctx, cmd)
				var nl *raft.NotLeaderError
				if !errors.As(err, &nl) {
					return res, err // applied, or an error to report
				}
				l.Leader = nl.Leader // -1 if unknown: wait for the next change
			}
		case <-ctx.Done():
			return raft.Result{}, ctx.Err()
		}
	}
}
