package raft

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/raftkit/raft/storage"
	"github.com/raftkit/raft/transport"
)

// bigSM is a StateMachine whose state is the number of commands it
// applied, and whose snapshot is that number followed by size bytes of a
// stream derived from it: large snapshots, made and checked without ever
// holding them in memory.
type bigSM struct {
	size int64

	mu       sync.Mutex
	applied  int
	restores int
}

func (m *bigSM) Apply(Command) any {
	m.mu.Lock()
	m.applied++
	m.mu.Unlock()
	return nil
}

// block is the unit of a bigSM snapshot: a 64 KiB pattern that depends
// on the count, with the block's number in its first 8 bytes.
const blockBytes = 64 << 10

func pattern(count int) []byte {
	b := make([]byte, blockBytes)
	for i := range b {
		b[i] = byte(i*2654435761>>13) ^ byte(count)
	}
	return b
}

func (m *bigSM) Snapshot(w io.Writer) error {
	m.mu.Lock()
	count := m.applied
	m.mu.Unlock()
	if err := binary.Write(w, binary.LittleEndian, int64(count)); err != nil {
		return err
	}
	block := pattern(count)
	for k := int64(0); k*blockBytes < m.size; k++ {
		binary.LittleEndian.PutUint64(block, uint64(k))
		if _, err := w.Write(block); err != nil {
			return err
		}
	}
	return nil
}

func (m *bigSM) Restore(r io.Reader) error {
	var count int64
	if err := binary.Read(r, binary.LittleEndian, &count); err != nil {
		return fmt.Errorf("read count: %w", err)
	}
	want, got := pattern(int(count)), make([]byte, blockBytes)
	var k int64
	for ; ; k++ {
		if _, err := io.ReadFull(r, got); err == io.EOF {
			break
		} else if err != nil {
			return fmt.Errorf("read block %d: %w", k, err)
		}
		binary.LittleEndian.PutUint64(want, uint64(k))
		if !bytes.Equal(got, want) {
			return fmt.Errorf("block %d of the snapshot differs", k)
		}
	}
	if k*blockBytes < m.size {
		return fmt.Errorf("snapshot of %d blocks, want %d bytes", k, m.size)
	}
	m.mu.Lock()
	m.applied, m.restores = int(count), m.restores+1
	m.mu.Unlock()
	return nil
}

func (m *bigSM) state() (applied, restores int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.applied, m.restores
}

// A follower that was down while the leader compacted its log past it
// catches up through InstallSnapshot over TCP, with a snapshot far larger
// than the transport's message limit (streamed in chunks, from the
// leader's snapshot file to the follower's), and is then a full member.
func TestInstallLargeSnapshotOverTCP(t *testing.T) {
	const size = 110 << 20 // over 100 MiB, with messages of at most 16 MiB
	if testing.Short() {
		t.Skip("writes several snapshots of 110 MiB")
	}
	ids := []int{1, 2, 3}
	lns, peers, err := transport.ListenLocal(ids...)
	if err != nil {
		t.Fatal(err)
	}
	for _, ln := range lns {
		ln.Close()
	}
	dirs := map[int]string{}
	for _, id := range ids {
		dirs[id] = t.TempDir()
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	tlsConfigs := testTLS(t, ids) // the snapshot streams over mutual TLS
	sms := map[int]*bigSM{}
	rafts := map[int]*Raft{}
	startServer := func(id int) {
		store, err := storage.Open(dirs[id], storage.Options{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		tr, err := transport.New(transport.Config{TLS: tlsConfigs[id], ID: id, Peers: peers, Logger: quiet, DialBackoffMax: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		sms[id] = &bigSM{size: size}
		rafts[id], err = New(Config{ID: id, Peers: peers, Transport: TCP(tr), Storage: store, StateMachine: sms[id],
			SnapshotBytes: 16 << 10, Bootstrap: true, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		for _, rf := range rafts {
			rf.Close()
		}
	}()
	for _, id := range ids {
		startServer(id)
	}
	leader := func() *Raft {
		var l *Raft
		waitFor(t, "a leader", func() bool {
			for _, rf := range rafts {
				if _, isLeader := rf.GetState(); isLeader {
					l = rf
					return true
				}
			}
			return false
		})
		return l
	}
	// The third server goes down; the others commit enough for a snapshot.
	lead := leader()
	down := 3
	if lead.me == down {
		down = 1
	}
	rafts[down].Close()
	delete(rafts, down)
	cmd := make([]byte, 1<<10)
	var last int
	for i := 0; i < 20; i++ {
		waitFor(t, "a proposal to be taken", func() bool {
			idx, _, err := leader().Propose(cmd)
			last = idx
			return err == nil
		})
	}
	waitFor(t, "the log to be compacted past the first commands", func() bool {
		st, ok := leader().Status()
		return ok && st.Commit >= last && st.Snapshot.Index > 1
	})
	startServer(down)
	waitFor(t, "the follower to install the snapshot and catch up", func() bool {
		st, ok := leader().Status()
		applied, restores := sms[down].state()
		return ok && restores > 0 && st.Match[down] >= last && applied >= 20
	})
	st, _ := rafts[down].Status()
	if st.Snapshot.Index == 0 {
		t.Errorf("the follower's log has no snapshot: %+v", st.Status)
	}
	// It takes part as usual afterwards.
	idx := -1
	waitFor(t, "one more command on all three", func() bool {
		if idx < 0 {
			idx, _, _ = leader().Propose(cmd)
			return false
		}
		for _, rf := range rafts {
			if s, ok := rf.Status(); !ok || s.Commit < idx {
				return false
			}
		}
		return true
	})
}
