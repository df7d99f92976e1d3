package kv

// Tests of the store's snapshots: what a restored replica knows, and what
// Restore refuses.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/raftkit/raft"
)

// state describes everything a server's store holds: the applied index,
// the log's clock, the table of clients (least recently active first,
// with each client's latest request and result), and the data.
func (s *Server) state() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "applied %d, now %d, clients:", s.applied, s.sessions.now)
	for e := s.sessions.lru.Front(); e != nil; e = e.Next() {
		x := e.Value.(*session)
		fmt.Fprintf(&b, " %d:%d:%x:%q:%v@%d", x.client, x.seq, x.digest[:4], x.res.Value, x.res.Found, x.lastActive)
	}
	fmt.Fprintf(&b, " | data %v | http %v", s.data, s.httpDir) // fmt sorts map keys
	return b.String()
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// writeRecorder records the size of the largest Write.
type writeRecorder struct {
	bytes.Buffer
	maxWrite int
}

func (w *writeRecorder) Write(p []byte) (int, error) {
	w.maxWrite = max(w.maxWrite, len(p))
	return w.Buffer.Write(p)
}

// snapshotOf returns s's snapshot, checking that it was streamed, not
// written in one piece.
func snapshotOf(t *testing.T, s *Server) []byte {
	t.Helper()
	var w writeRecorder
	if err := s.Snapshot(&w); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	if w.Len() > 256<<10 && w.maxWrite > 64<<10 {
		t.Fatalf("a snapshot of %d bytes was written in pieces of up to %d bytes: not streamed", w.Len(), w.maxWrite)
	}
	return w.Bytes()
}

// clientMix is a changing set of clients, as Clerks: 12 at a time, each
// now and then replaced by a new one, as a Clerk starts over with a new ID
// (and all of them after a lull, when the store forgets them).
type clientMix struct {
	ids   [12]int64
	seqs  map[int64]int64
	next  int64 // the next new client ID
	stamp int64 // the latest time stamp
}

func newClientMix(base int64) *clientMix {
	m := &clientMix{seqs: map[int64]int64{}, next: 1, stamp: base}
	for i := range m.ids {
		m.ids[i] = m.newID()
	}
	return m
}

func (m *clientMix) newID() int64 {
	m.next++
	return m.next
}

// commands returns n commands of the clients, at indexes from first, with
// time stamps that mostly advance, sometimes go back, and sometimes leap
// by more than ttl.
func (m *clientMix) commands(rng *rand.Rand, first, n int, ttl time.Duration) []raft.Command {
	var cmds []raft.Command
	for i := first; i < first+n; i++ {
		m.stamp += int64(rng.IntN(30)-5) * int64(time.Millisecond)
		if rng.IntN(60) == 0 {
			m.stamp += int64(ttl) + 1 // a lull: everyone expires
			for j := range m.ids {
				m.ids[j] = m.newID()
			}
		}
		slot := rng.IntN(len(m.ids))
		if rng.IntN(20) == 0 {
			m.ids[slot] = m.newID()
		}
		client := m.ids[slot]
		m.seqs[client]++
		op := Op{Key: fmt.Sprintf("k%d", rng.IntN(5)), Value: fmt.Sprintf("%d.%d;", client, m.seqs[client]), ClientID: client, Seq: m.seqs[client], Time: m.stamp}
		switch rng.IntN(8) {
		case 0:
			op.Kind, op.Value = Get, ""
		case 1:
			op.Kind, op.Value = Delete, ""
		case 2:
			op.Kind = Put
		default:
			op.Kind = Append
		}
		if rng.IntN(15) == 0 {
			op.Seq = 0 // not deduplicated
		}
		cmds = append(cmds, opCommand(i, op))
	}
	return cmds
}

// TestSnapshotRestoreSessions: a server restored from another's snapshot
// holds the same store and table of clients; it answers a retry with the
// first result, refuses a stale seq and a reused one, and from then on,
// applying the same log, forgets and evicts the same clients at the same
// points, and gives every request the same answer.
func TestSnapshotRestoreSessions(t *testing.T) {
	const ttl = time.Second
	opts := ServerOptions{ClientTTL: ttl, MaxClients: 8, Now: func() time.Time { return time.Unix(0, 1) }}
	rng := rand.New(rand.NewPCG(3, 4))
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	mix := newClientMix(base)
	orig := newFakeServer(&fakeLog{}, opts)
	defer orig.Stop()
	cmds := mix.commands(rng, 1, 400, ttl)
	for _, c := range cmds {
		orig.Apply(c)
	}
	snap := snapshotOf(t, orig)

	f := &fakeLog{}
	restored := newFakeServer(f, opts)
	defer restored.Stop()
	if err := restored.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if a, b := orig.state(), restored.state(); a != b {
		t.Fatalf("restored from a snapshot:\n%s\nwhile the original holds:\n%s", b, a)
	}

	// The latest request of a client in the table, retried, gets its
	// first answer from the table, and nothing goes to the log.
	var last Op
	var want outcome
	for i := len(cmds) - 1; i >= 0 && last.Seq == 0; i-- {
		var op Op
		if err := op.UnmarshalBinary(cmds[i].Data); err != nil {
			t.Fatal(err)
		}
		orig.mu.Lock()
		out, known := orig.sessions.check(op)
		orig.mu.Unlock()
		if op.Seq > 1 && known && out.err == nil && out.res.Found {
			last, want = op, out
		}
	}
	if last.Seq == 0 {
		t.Fatalf("no request of the log is in the original's table: %s", orig.state())
	}
	ctx := context.Background()
	if res, err := restored.Do(ctx, last); err != nil || res != want.res {
		t.Fatalf("retry of %+v at the restored server: %+v, %v; want its first answer %+v", last, res, err, want.res)
	}
	stale := last
	stale.Seq--
	if _, err := restored.Do(ctx, stale); !errors.Is(err, ErrStale) {
		t.Fatalf("seq %d of client %d, whose latest is %d, at the restored server: %v; want ErrStale", stale.Seq, stale.ClientID, last.Seq, err)
	}
	reused := last
	reused.Value += "other"
	reused.Kind = Put
	if _, err := restored.Do(ctx, reused); !errors.Is(err, ErrConflict) {
		t.Fatalf("seq %d of client %d reused for another request at the restored server: %v; want ErrConflict", last.Seq, last.ClientID, err)
	}
	if n := f.len(); n != 0 {
		t.Fatalf("%d entries proposed for requests the table answers", n)
	}

	// The same log from here on, duplicates and lulls included: the same
	// answers, and the same state at every point.
	more := mix.commands(rng, len(cmds)+1, 400, ttl)
	more = append(more, opCommand(len(cmds)+401, Op{Kind: Append, Key: "k0", Value: "x", ClientID: 1 << 40, Seq: 1, Time: mix.stamp + int64(time.Hour)}))
	for i, c := range more {
		if i%7 == 0 && i > 0 { // a duplicate of an earlier entry
			dup := more[i-1-rng.IntN(min(i, 20))]
			dup.Index = c.Index
			c = dup
		}
		orig.Apply(c)
		restored.Apply(c)
		if a, b := orig.state(), restored.state(); a != b {
			t.Fatalf("after applying %d more entries, the restored server holds\n%s\nand the original\n%s", i+1, b, a)
		}
	}
	// The last request came after a lull: every other client expired,
	// alike on both.
	next := Op{Kind: Get, Key: "k0", ClientID: last.ClientID, Seq: last.Seq + 1, Time: 1}
	for name, s := range map[string]*Server{"original": orig, "restored": restored} {
		s.mu.Lock()
		out, known := s.sessions.check(next)
		n := s.sessions.len()
		s.mu.Unlock()
		if n != 1 || !known || !errors.Is(out.err, ErrClientExpired) {
			t.Fatalf("%s after a lull: %d clients, next request of client %d: %v, %v; want 1 client, and client %d expired", name, n, last.ClientID, out.err, known, last.ClientID)
		}
	}
}

// TestSnapshotLarge: a store of a few MiB, with values over the reader's
// chunk, is written in pieces and restored whole.
func TestSnapshotLarge(t *testing.T) {
	s := newFakeServer(&fakeLog{}, ServerOptions{})
	defer s.Stop()
	big := strings.Repeat("v", 3<<20/2)
	for i := range 2000 {
		s.Apply(opCommand(i+1, Op{Kind: Put, Key: fmt.Sprintf("key%d", i), Value: fmt.Sprint(i), ClientID: int64(i%50 + 1), Seq: int64(i/50 + 1), Time: 1}))
	}
	s.Apply(opCommand(2001, Op{Kind: Put, Key: "big", Value: big}))
	s.Apply(opCommand(2002, Op{Kind: Append, Key: "big", Value: big}))
	snap := snapshotOf(t, s)
	r := newFakeServer(&fakeLog{}, ServerOptions{})
	defer r.Stop()
	if err := r.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	if a, b := s.state(), r.state(); a != b {
		t.Fatalf("restored %d bytes of %d: the states differ", len(b), len(a))
	}
}

// rawSnapshot builds a snapshot from its parts after the magic, with a
// valid checksum.
func rawSnapshot(parts ...any) []byte { return rawSnapshotV(snapVersion, parts...) }

// rawSnapshotV is rawSnapshot of the given version.
func rawSnapshotV(version byte, parts ...any) []byte {
	b := append([]byte(snapMagic), version)
	for _, p := range parts {
		switch v := p.(type) {
		case uint64:
			b = binary.AppendUvarint(b, v)
		case int64:
			b = binary.AppendVarint(b, v)
		case string:
			b = binary.AppendUvarint(b, uint64(len(v)))
			b = append(b, v...)
		case []byte:
			b = append(b, v...)
		}
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

// TestRestoreMalformed: Restore refuses every damaged or foreign snapshot
// with an error that says what is wrong, and leaves the store as it was.
func TestRestoreMalformed(t *testing.T) {
	src := newFakeServer(&fakeLog{}, ServerOptions{})
	defer src.Stop()
	for i, op := range []Op{
		{Kind: Put, Key: "a", Value: "1", ClientID: 5, Seq: 1, Time: 10},
		{Kind: Append, Key: "b", Value: "2", ClientID: 6, Seq: 1, Time: 11},
	} {
		src.Apply(opCommand(i+1, op))
	}
	good := snapshotOf(t, src)
	digest := make([]byte, 32)
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 0x20
		return b
	}
	cases := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "does not start as a snapshot"},
		{"foreign", []byte("PK\x03\x04 something else entirely"), "does not start as a snapshot"},
		{"newer version", append([]byte(snapMagic), 3, 0, 0, 0, 0), "version 3, which this server does not know"},
		{"damaged data", flip(len(good) / 2), "malformed snapshot"},
		{"damaged checksum", flip(len(good) - 1), "the snapshot is damaged"},
		{"data after the end", append(bytes.Clone(good), 0), "data after the checksum"},
		{"no checksum", good[:len(good)-4], "checksum: the snapshot ends early"},
		{"key twice", rawSnapshot(uint64(1), int64(0), uint64(2), "k", "v", "k", "w", uint64(0)), `key "k" twice`},
		{"client twice", rawSnapshot(uint64(1), int64(0), uint64(0), uint64(2),
			int64(7), int64(1), digest, "", []byte{0}, int64(0),
			int64(7), int64(2), digest, "", []byte{0}, int64(0)), "client 7 twice"},
		{"found flag", rawSnapshot(uint64(1), int64(0), uint64(0), uint64(1), int64(7), int64(1), digest, "", []byte{2}, int64(0)), "found flag 2"},
		{"huge value length", rawSnapshot(uint64(1), int64(0), uint64(1), "k", uint64(1)<<62), "the snapshot ends early"},
		{"huge count", rawSnapshot(uint64(1), int64(0), uint64(1)<<62), "the snapshot ends early"},
	}
	for n := range len(good) {
		cases = append(cases, struct {
			name string
			in   []byte
			want string
		}{fmt.Sprintf("cut at byte %d", n), good[:n], ""})
	}
	dst := newFakeServer(&fakeLog{}, ServerOptions{})
	defer dst.Stop()
	dst.Apply(opCommand(1, Op{Kind: Put, Key: "mine", Value: "x", ClientID: 9, Seq: 1, Time: 1}))
	before := dst.state()
	for _, tc := range cases {
		err := dst.Restore(bytes.NewReader(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: restore: %v; want an error saying %q", tc.name, err, tc.want)
		}
		if after := dst.state(); after != before {
			t.Fatalf("%s: a refused restore changed the store to\n%s", tc.name, after)
		}
	}
	if err := dst.Restore(bytes.NewReader(good)); err != nil {
		t.Fatalf("restore of the good snapshot: %v", err)
	}
}

// TestRestoreAnswersWaiting: a request waiting for its entry gets its
// answer when the server restores a snapshot that holds it.
func TestRestoreAnswersWaiting(t *testing.T) {
	op := Op{Kind: Put, Key: "k", Value: "v", ClientID: 9, Seq: 1}
	other := newFakeServer(&fakeLog{}, ServerOptions{})
	defer other.Stop()
	other.Apply(opCommand(1, Op{Kind: Put, Key: "k", Value: "old", Time: 1}))
	other.Apply(opCommand(2, op))
	snap := snapshotOf(t, other)

	f := newFakeLog(t, false)
	s := newFakeServer(f, ServerOptions{})
	defer s.Stop()
	type answer struct {
		res Result
		err error
	}
	got := make(chan answer, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		res, err := s.Do(ctx, op)
		got <- answer{res, err}
	}()
	waitFor(t, "the request proposed", func() bool { return f.len() == 1 })
	if err := s.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	if a := <-got; a.err != nil || a.res != (Result{Value: "old", Found: true}) {
		t.Fatalf("request waiting when a snapshot holding it was restored: %+v, %v; want its result there", a.res, a.err)
	}
}

// TestApplyUndecodable: a command the server cannot decode stops it: it
// answers no request, applies nothing more, and refuses to snapshot (so
// that Raft stops rather than save a store that missed a command).
func TestApplyUndecodable(t *testing.T) {
	f := &fakeLog{}
	s := newFakeServer(f, ServerOptions{Logger: quietLogger()})
	s.Apply(opCommand(1, Op{Kind: Put, Key: "a", Value: "1"}))
	s.Apply(raft.Command{Index: 2, Term: 1, Data: []byte{9, 9, 9}})
	s.Apply(opCommand(3, Op{Kind: Put, Key: "b", Value: "2"}))
	if _, err := s.Do(context.Background(), Op{Kind: Get, Key: "a"}); !errors.Is(err, ErrStopped) {
		t.Fatalf("request after an undecodable command: %v; want ErrStopped", err)
	}
	err := s.Snapshot(&bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "log index 2") || !strings.Contains(err.Error(), "version 9") {
		t.Fatalf("snapshot after an undecodable command: %v; want an error naming index 2 and what is wrong", err)
	}
	if st := s.state(); !strings.Contains(st, "applied 1,") || strings.Contains(st, "b:") {
		t.Fatalf("applied past an undecodable command: %s", st)
	}
}
