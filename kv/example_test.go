package kv_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/kv"
	"github.com/raftkit/raft/storage"
	"github.com/raftkit/raft/transport"
)

// localConn reaches a kv.Server in this process (raftkv's replicas are
// reached over HTTP instead: kv.HTTPConns).
type localConn struct{ s *kv.Server }

func (c localConn) Do(ctx context.Context, op kv.Op) (kv.Result, int, error) {
	res, err := c.s.Do(ctx, op)
	return res, -1, err // -1: no hint of the leader; the Clerk tries the others
}

// A replicated key/value store of three replicas in one process: each
// kv.Server is the StateMachine of a Raft server, and a Clerk finds the
// leader and retries for its client.
func Example() {
	dir, err := os.MkdirTemp("", "kv-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	lns, peers, err := transport.ListenLocal(1, 2, 3)
	if err != nil {
		log.Fatal(err)
	}
	var conns []kv.Conn
	for id := range peers {
		wal, err := storage.Open(filepath.Join(dir, strconv.Itoa(id)), storage.Options{Logger: quiet})
		if err != nil {
			log.Fatal(err)
		}
		// Plain TCP, for the example; in production set TLS instead
		// (transport.TLSConfig).
		tr, err := transport.New(transport.Config{Insecure: true, ID: id, Peers: peers, Listener: lns[id], Logger: quiet})
		if err != nil {
			log.Fatal(err)
		}
		store := kv.NewServer(kv.ServerOptions{Logger: quiet})
		rf, err := raft.New(raft.Config{ID: id, Peers: peers, Transport: raft.TCP(tr), Storage: wal,
			StateMachine: store, Bootstrap: true, Logger: quiet})
		if err != nil {
			log.Fatal(err)
		}
		defer rf.Close()
		store.Attach(rf)
		conns = append(conns, localConn{store})
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ck := kv.NewClerk(conns)
	if err := ck.Put(ctx, "greeting", "hello"); err != nil {
		log.Fatal(err)
	}
	if err := ck.Append(ctx, "greeting", ", world"); err != nil {
		log.Fatal(err)
	}
	v, found, err := ck.Get(ctx, "greeting")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(v, found)
	// Output: hello, world true
}
