package transport

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkit/raft/core"
)

// TestSnapshotTransfer sends a snapshot of 200 MiB as 200 InstallSnapshot
// calls of 1 MiB in sequence on one connection, while heartbeats go to the
// same peer: every call succeeds, on the one connection (neither the idle
// timeout nor the stall detection drops it), and every chunk arrives
// intact. The call timeout is the cluster's generous one, not the default
// 1 s, so as not to assert a speed on a loaded machine; the test logs the
// slowest call (under 200 ms with the race detector at a load of 6 on 2
// cores; BenchmarkInstallSnapshot measures a few ms without it).
func TestSnapshotTransfer(t *testing.T) {
	const (
		chunks    = 200
		chunkSize = 1 << 20
		// Generous: the race detector on a loaded machine.
		bound = 5 * time.Minute
	)
	c := newCluster(t, 2, func(cfg *Config) { cfg.IdleTimeout = DefaultIdleTimeout })
	p := c.peer(0, 1)
	c.mustCall(0, 1)

	var stop atomic.Bool
	var beats, beatsFailed atomic.Int64
	var wg sync.WaitGroup
	end := func() {
		stop.Store(true)
		wg.Wait()
	}
	t.Cleanup(end) // before the cluster's, if the test fails
	wg.Go(func() {
		for !stop.Load() {
			beats.Add(1)
			if err := c.appendEntries(0, 1, 0, 0); err != nil {
				beatsFailed.Add(1)
				t.Errorf("heartbeat during the transfer: %v", err)
			}
			time.Sleep(10 * time.Millisecond) // the pace of heartbeats, not a wait for a condition
		}
	})

	data := snapshotData(0, chunkSize)
	start := time.Now()
	var slowest time.Duration
	for i := range chunks {
		// Each chunk different from the others, so that a reply to the
		// wrong one shows.
		binary.BigEndian.PutUint64(data, uint64(i))
		args := &core.InstallSnapshotArgs{Term: 9, LeaderID: 0, LastIncludedIndex: 5000, LastIncludedTerm: 8,
			Offset: int64(i) * chunkSize, Data: data, Done: i == chunks-1}
		var reply core.InstallSnapshotReply
		callStart := time.Now()
		if err := p.call(methodInstallSnapshot, args, &reply); err != nil {
			t.Fatalf("chunk %d of %d: %v", i, chunks, err)
		}
		slowest = max(slowest, time.Since(callStart))
		if want := (core.InstallSnapshotReply{Term: 9, Index: chunkSum(args)}); reply != want {
			t.Fatalf("chunk %d: reply %+v, want %+v", i, reply, want)
		}
		if time.Since(start) > bound {
			t.Fatalf("%d chunks of %d took over %v", i+1, chunks, bound)
		}
	}
	end()
	t.Logf("%d chunks of %d bytes in %v, the slowest in %v (DefaultCallTimeout %v); %d heartbeats meanwhile",
		chunks, chunkSize, time.Since(start), slowest, DefaultCallTimeout, beats.Load())
	if beatsFailed.Load() != 0 {
		t.Errorf("%d of %d heartbeats failed", beatsFailed.Load(), beats.Load())
	}
	if n := dials(p); n != 1 {
		t.Errorf("%d dials, want 1: the connection was dropped during the transfer", n)
	}
	for id, logs := range c.logs {
		if s := logs.String(); strings.Contains(s, "level=WARN") || strings.Contains(s, "level=ERROR") {
			t.Errorf("server %d logged a warning during the transfer:\n%s", id, s)
		}
	}
}

// discardConn is a net.Conn that swallows what is written to it.
type discardConn struct{ fuzzConn }

// TestChunkBuffersKept checks the buffers of a transfer of InstallSnapshot
// requests of 1 MiB, the chunk size MaxChunkBytes advises: the writer
// lays out the chunks in its two buffers (one filled while the other is
// written), not in a new one it allocates and clears each time; the reader reads every chunk into a buffer of its own (its
// Data aliases it, and the Handler may keep it), and the replies into one
// it keeps.
func TestChunkBuffersKept(t *testing.T) {
	const frames = 4
	args := fullChunk(1 << 20)
	q := newOutQueue(0)
	written := make(chan uint64)
	done := make(chan error)
	go func() { done <- q.run(discardConn{}, time.Minute, func(tag uint64) { written <- tag }) }()
	var wire, laid []*byte
	var stream []byte
	for i := range frames {
		var at *byte
		if _, err := q.push(uint64(i), DefaultMaxMessageBytes, func(b []byte) ([]byte, int, error) {
			b, n, err := appendRequest(b, uint64(i), args)
			if err == nil {
				at = &b[0]
				stream = append(stream, b...)
			}
			return b, n, err
		}); err != nil {
			t.Fatal(err)
		}
		if tag := <-written; tag != uint64(i) {
			t.Fatalf("write %d reported tag %d", i, tag)
		}
		laid = append(laid, at)
	}
	q.close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i := 2; i < frames; i++ {
		if laid[i] != laid[i-2] {
			t.Errorf("the writer laid out frame %d in a new buffer", i)
		}
	}
	for i := range frames {
		stream, _, _ = appendReply(stream, uint64(i), &core.InstallSnapshotReply{Term: 1, Index: i})
	}
	rd := newFrameReader(bufio.NewReader(bytes.NewReader(stream)), DefaultMaxMessageBytes)
	for i := range frames {
		in, err := rd.readRequest()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		got := in.req.(*core.InstallSnapshotArgs)
		if chunkSum(got) != chunkSum(args) {
			t.Fatalf("chunk %d arrived changed", i)
		}
		wire = append(wire, &got.Data[0])
	}
	for i := 1; i < frames; i++ {
		if wire[i] == wire[0] {
			t.Errorf("the reader read chunk %d into the buffer of chunk 0", i)
		}
	}
	var replies []*byte
	for i := range frames {
		if in, err := rd.readReply(); err != nil || in.reply.(*core.InstallSnapshotReply).Index != i {
			t.Fatalf("reply %d: %+v, %v", i, in, err)
		}
		replies = append(replies, &rd.scratch[0])
	}
	for i := 1; i < frames; i++ {
		if replies[i] != replies[0] {
			t.Errorf("the reader read reply %d into a new buffer", i)
		}
	}
}

// TestSnapshotOversizeReply checks that an InstallSnapshot reply over the
// limit fails its call only, on either side, and that the refusal of the
// first such reply on a connection does not cost the stream the type's
// description (which the primer carries).
func TestSnapshotOversizeReply(t *testing.T) {
	args := &core.InstallSnapshotArgs{}
	small := bodySize(t, &core.InstallSnapshotReply{Index: chunkSum(args)})
	big := bodySize(t, &core.InstallSnapshotReply{Term: math.MaxInt64, Index: math.MaxInt64})
	limit := (small + big) / 2
	if req := bodySize(t, args); req > limit || small > limit || big <= limit {
		t.Fatalf("request of %d bytes, replies of %d and %d, limit %d: want all but the big reply under it", req, small, big, limit)
	}
	c := newCluster(t, 2, func(cfg *Config) {
		if cfg.ID == 0 {
			cfg.MaxMessageBytes = limit
		}
	})
	call := func(from, to int) error {
		return c.peer(from, to).call(methodInstallSnapshot, args, new(core.InstallSnapshotReply))
	}
	for id := range 2 {
		c.h[id].set(func(h *fakeHandler) { h.bigReply = true })
	}
	// 1→0, the first InstallSnapshot on the connection: server 0 refuses
	// to send the reply.
	if err := call(1, 0); err == nil || !strings.Contains(err.Error(), "over server 0's limit") {
		t.Errorf("call with an oversize reply from server 0: %v, want a refusal", err)
	}
	// 0→1: server 0 refuses to read it.
	if err := call(0, 1); !errors.Is(err, errTooLarge) {
		t.Errorf("call with an oversize reply from server 1: %v, want %v", err, errTooLarge)
	}
	for id := range 2 {
		c.h[id].set(func(h *fakeHandler) { h.bigReply = false })
	}
	for range 3 {
		if err := call(1, 0); err != nil {
			t.Fatalf("call 1→0 after the refusals: %v", err)
		}
		if err := call(0, 1); err != nil {
			t.Fatalf("call 0→1 after the refusals: %v", err)
		}
	}
	if d0, d1 := dials(c.peer(0, 1)), dials(c.peer(1, 0)); d0 != 1 || d1 != 1 {
		t.Errorf("dials %d, %d; want one connection each way", d0, d1)
	}
}

// TestSnapshotFaults checks that the injected faults apply to
// InstallSnapshot: on the caller's side and on the server's, to the
// request and to the reply.
func TestSnapshotFaults(t *testing.T) {
	fs := map[int]*Faults{0: NewFaults(1), 1: NewFaults(2)}
	for _, f := range fs {
		f.SetLostWait(0)
	}
	c := newCluster(t, 2, func(cfg *Config) { cfg.Faults = fs[cfg.ID] })
	if err := c.installSnapshot(0, 1, 0, 100); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		fault   func()
		handled bool // whether the handler runs
	}{
		{"link cut, known to the caller", func() { fs[0].Cut(0, 1) }, false},
		{"link cut, known to the server", func() { fs[1].Cut(0, 1) }, false},
		{"request dropped", func() { fs[0].SetDrop(0, 1, 1) }, false},
		{"reply dropped", func() { fs[1].SetDrop(1, 0, 1) }, true},
	} {
		tc.fault()
		before := c.h[1].calls.Load()
		if err := c.installSnapshot(0, 1, 100, 100); !errors.Is(err, errLost) {
			t.Errorf("%s: %v, want %v", tc.name, err, errLost)
		}
		if ran := c.h[1].calls.Load() != before; ran != tc.handled {
			t.Errorf("%s: the handler ran: %v, want %v", tc.name, ran, tc.handled)
		}
		for _, f := range fs {
			f.Reset()
		}
		if err := c.installSnapshot(0, 1, 100, 100); err != nil {
			t.Errorf("%s: after Reset: %v", tc.name, err)
		}
	}
}

// BenchmarkInstallSnapshot measures calls carrying snapshot chunks over
// loopback, one after another as a transfer makes them.
func BenchmarkInstallSnapshot(b *testing.B) {
	for _, size := range []int{64 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("chunk=%dKiB", size>>10), func(b *testing.B) {
			lns, peers, err := ListenLocal(0, 1)
			if err != nil {
				b.Fatal(err)
			}
			var trs []*TCP
			for id := range 2 {
				tr, err := New(Config{Insecure: true, ID: id, Peers: peers, Listener: lns[id]})
				if err != nil {
					b.Fatal(err)
				}
				defer tr.Close()
				tr.Serve(nopHandler{})
				trs = append(trs, tr)
			}
			p, _ := trs[0].Peer(1)
			args := &core.InstallSnapshotArgs{Term: 1, LastIncludedIndex: 1000, LastIncludedTerm: 1, Data: snapshotData(0, size)}
			call := func() {
				if err := p.call(methodInstallSnapshot, args, new(core.InstallSnapshotReply)); err != nil {
					b.Fatal(err)
				}
			}
			call()
			b.SetBytes(int64(size))
			b.ResetTimer()
			for range b.N {
				call()
			}
		})
	}
}
