package lab

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/core"
)

func entries(from int, terms ...int) []Entry {
	var es []Entry
	for i, t := range terms {
		es = append(es, Entry{Index: from + i, Term: t, Command: []byte(fmt.Sprintf("c%d.%d", from+i, t))})
	}
	return es
}

// Storage is the interface persisterStorage implements.
type Storage = raft.Storage

// loaded is what a Storage's Load returns.
type loaded struct {
	hs   HardState
	snap SnapshotMeta
	ents []Entry
}

// reload loads a copy of ps as a restarted server would.
func reload(t *testing.T, ps *Persister) loaded {
	t.Helper()
	s := &persisterStorage{ps: ps.Copy()}
	hs, snap, ents, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	return loaded{hs, snap, ents}
}

func TestPersisterStorageRoundTrip(t *testing.T) {
	ps := MakePersister()
	s := &persisterStorage{ps: ps}
	if hs, snap, ents, err := s.Load(); err != nil || hs != (HardState{Vote: core.None}) || !snap.Equal(SnapshotMeta{}) || ents != nil {
		t.Fatalf("empty persister loads %v %v %v %v", hs, snap, ents, err)
	}
	steps := []struct {
		hs   HardState
		ents []Entry
		want []Entry
	}{
		{HardState{Term: 1, Vote: 0}, nil, nil},
		{HardState{Term: 1, Vote: 0}, entries(1, 1, 1, 1), entries(1, 1, 1, 1)},
		{HardState{Term: 3, Vote: core.None}, entries(4, 3), entries(1, 1, 1, 1, 3)},
		// A conflicting suffix is replaced.
		{HardState{Term: 4, Vote: 2}, entries(2, 4, 4), entries(1, 1, 4, 4)},
		{HardState{Term: 4, Vote: 2}, entries(1, 4), entries(1, 4)},
		// Entry types survive.
		{HardState{Term: 4, Vote: 2}, []Entry{{Index: 2, Term: 4, Type: core.EntryNoOp}, {Index: 3, Term: 4, Type: 7, Command: []byte("x")}},
			[]Entry{entries(1, 4)[0], {Index: 2, Term: 4, Type: core.EntryNoOp}, {Index: 3, Term: 4, Type: 7, Command: []byte("x")}}},
	}
	for i, st := range steps {
		if err := s.Save(st.hs, st.ents); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got := reload(t, ps); got.hs != st.hs || !got.snap.Equal(SnapshotMeta{}) || !reflect.DeepEqual(got.ents, st.want) {
			t.Fatalf("step %d: reloaded %+v, want %v %v", i, got, st.hs, st.want)
		}
	}
	// Reopened storage continues where it left off.
	s2 := &persisterStorage{ps: ps}
	if _, _, _, err := s2.Load(); err != nil {
		t.Fatal(err)
	}
	if err := s2.Save(HardState{Term: 5, Vote: 1}, entries(2, 5)); err != nil {
		t.Fatal(err)
	}
	if got := reload(t, ps); got.hs.Term != 5 || !reflect.DeepEqual(got.ents, entries(1, 4, 5)) {
		t.Fatalf("after reopen: %+v", got)
	}
	if err := s2.Save(HardState{Term: 5}, entries(9, 5)); err == nil {
		t.Fatal("saving entries past the end of the log succeeded")
	}
	// A Save, a Commit or an OpenSnapshot before any Load reads the
	// state first, and edits it.
	s3 := &persisterStorage{ps: ps}
	if err := s3.Save(HardState{Term: 6, Vote: 1}, entries(3, 6)); err != nil {
		t.Fatal(err)
	}
	if got := reload(t, ps); got.hs != (HardState{Term: 6, Vote: 1}) || !reflect.DeepEqual(got.ents, entries(1, 4, 5, 6)) {
		t.Fatalf("after a Save before Load: %+v", got)
	}
	commitSnapshot(t, &persisterStorage{ps: ps}, SnapshotMeta{Index: 1, Term: 4}, []byte("one"), true)
	checkSnapshot(t, &persisterStorage{ps: ps}, SnapshotMeta{Index: 1, Term: 4}, []byte("one"))
	if got := reload(t, ps); got.hs != (HardState{Term: 6, Vote: 1}) || !reflect.DeepEqual(got.ents, entries(2, 5, 6)) {
		t.Fatalf("after a Commit before Load: %+v", got)
	}
}

// commitSnapshot writes data to a new sink of s for meta and commits it.
func commitSnapshot(t *testing.T, s Storage, meta SnapshotMeta, data []byte, keepLog bool) {
	t.Helper()
	sink, err := s.CreateSnapshot(meta)
	if err != nil {
		t.Fatal(err)
	}
	if !sink.Meta().Equal(meta) {
		t.Fatalf("sink's Meta = %+v, want %+v", sink.Meta(), meta)
	}
	if _, err := sink.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := sink.Commit(keepLog); err != nil {
		t.Fatalf("Commit(%v) of %+v: %v", keepLog, meta, err)
	}
}

// checkSnapshot checks that s's current snapshot is meta holding data.
func checkSnapshot(t *testing.T, s Storage, meta SnapshotMeta, data []byte) {
	t.Helper()
	got, r, err := s.OpenSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(meta) {
		t.Fatalf("OpenSnapshot meta = %+v, want %+v", got, meta)
	}
	if meta.Equal(SnapshotMeta{}) {
		if r != nil {
			t.Fatal("OpenSnapshot with no snapshot returned a reader")
		}
		return
	}
	b, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(b, data) {
		t.Fatalf("snapshot holds %q (%v), want %q", b, err, data)
	}
}

func TestPersisterStorageSnapshot(t *testing.T) {
	ps := MakePersister()
	s := &persisterStorage{ps: ps}
	s.Load()
	checkSnapshot(t, s, SnapshotMeta{}, nil)
	hs := HardState{Term: 2, Vote: 1}
	if err := s.Save(hs, entries(1, 1, 1, 1, 2, 2, 2)); err != nil {
		t.Fatal(err)
	}
	before := ps.RaftStateSize()

	// A service's snapshot through 4 keeps the entries after it.
	snap4 := SnapshotMeta{Index: 4, Term: 2}
	commitSnapshot(t, s, snap4, []byte("state at 4"), true)
	if got := reload(t, ps); got.hs != hs || !got.snap.Equal(snap4) || !reflect.DeepEqual(got.ents, entries(5, 2, 2)) {
		t.Fatalf("after compaction: %+v", got)
	}
	if after := ps.RaftStateSize(); after >= before {
		t.Fatalf("Raft state of %d bytes after compacting 4 of 6 entries, %d before", after, before)
	}
	if !bytes.Equal(ps.ReadSnapshot(), []byte("state at 4")) || ps.SnapshotSize() != len("state at 4") {
		t.Fatalf("persister's snapshot = %q", ps.ReadSnapshot())
	}
	checkSnapshot(t, s, snap4, []byte("state at 4"))

	// Saves go on after it, replacing and appending.
	if err := s.Save(hs, entries(6, 3, 3)); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(hs, entries(4, 3)); err == nil {
		t.Fatal("saving entries that the snapshot covers succeeded")
	}
	if got := reload(t, ps); !reflect.DeepEqual(got.ents, entries(5, 2, 3, 3)) {
		t.Fatalf("after a Save: %+v", got)
	}

	// A snapshot not newer than the current one changes nothing.
	state, snapBytes := ps.ReadRaftState(), ps.ReadSnapshot()
	commitSnapshot(t, s, SnapshotMeta{Index: 4, Term: 2}, []byte("other"), true)
	commitSnapshot(t, s, SnapshotMeta{Index: 3, Term: 2}, []byte("older"), false)
	if !bytes.Equal(ps.ReadRaftState(), state) || !bytes.Equal(ps.ReadSnapshot(), snapBytes) {
		t.Fatal("a snapshot not newer than the current one changed the persister")
	}

	// One installed from a leader, past the log, empties it.
	snap20 := SnapshotMeta{Index: 20, Term: 5}
	commitSnapshot(t, s, snap20, []byte("state at 20"), false)
	if got := reload(t, ps); got.hs != hs || !got.snap.Equal(snap20) || got.ents != nil {
		t.Fatalf("after install: %+v", got)
	}
	if err := s.Save(HardState{Term: 5, Vote: core.None}, entries(22, 5)); err == nil {
		t.Fatal("a Save leaving a gap after the snapshot succeeded")
	}
	if err := s.Save(HardState{Term: 5, Vote: core.None}, entries(21, 5, 5)); err != nil {
		t.Fatal(err)
	}
	// An install within the log empties it too.
	snap21 := SnapshotMeta{Index: 21, Term: 5}
	commitSnapshot(t, s, snap21, nil, false)
	if got := reload(t, ps); !got.snap.Equal(snap21) || got.ents != nil || got.hs.Term != 5 {
		t.Fatalf("after install within the log: %+v", got)
	}
	checkSnapshot(t, s, snap21, nil)

	// A restarted server sees the snapshot and continues.
	s2 := &persisterStorage{ps: ps}
	if hs, snap, ents, err := s2.Load(); err != nil || !snap.Equal(snap21) || ents != nil || hs.Term != 5 {
		t.Fatalf("Load after restart: %v %v %v %v", hs, snap, ents, err)
	}
	checkSnapshot(t, s2, snap21, nil)
	if err := s2.Save(HardState{Term: 6, Vote: 2}, entries(22, 6)); err != nil {
		t.Fatal(err)
	}
	if got := reload(t, ps); !got.snap.Equal(snap21) || !reflect.DeepEqual(got.ents, entries(22, 6)) {
		t.Fatalf("after a Save after restart: %+v", got)
	}
}

func TestPersisterStorageSinks(t *testing.T) {
	ps := MakePersister()
	s := &persisterStorage{ps: ps}
	s.Load()
	s.Save(HardState{Term: 1, Vote: 0}, entries(1, 1, 1, 1, 1))
	if _, err := s.CreateSnapshot(SnapshotMeta{}); err == nil {
		t.Fatal("CreateSnapshot of a zero meta succeeded")
	}
	// Two open at once: the newer wins whatever the order of commits.
	a, _ := s.CreateSnapshot(SnapshotMeta{Index: 2, Term: 1})
	b, _ := s.CreateSnapshot(SnapshotMeta{Index: 3, Term: 1})
	a.Write([]byte("two"))
	b.Write([]byte("three"))
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	if err := a.Commit(true); err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, s, SnapshotMeta{Index: 3, Term: 1}, []byte("three"))
	if _, err := a.Write([]byte("more")); err == nil {
		t.Fatal("Write after Commit succeeded")
	}
	if err := a.Commit(true); err == nil {
		t.Fatal("a second Commit succeeded")
	}
	// An aborted one changes nothing.
	c, _ := s.CreateSnapshot(SnapshotMeta{Index: 4, Term: 1})
	c.Write([]byte("four"))
	if err := c.Abort(); err != nil {
		t.Fatal(err)
	}
	if err := c.Commit(true); err == nil {
		t.Fatal("Commit after Abort succeeded")
	}
	checkSnapshot(t, s, SnapshotMeta{Index: 3, Term: 1}, []byte("three"))
	if got := reload(t, ps); got.snap.Index != 3 || !reflect.DeepEqual(got.ents, entries(4, 1)) {
		t.Fatalf("after an abort: %+v", got)
	}
}

// TestPersisterStorageBounded: with a service that snapshots every few
// entries, the Raft state stays small however long the log grows, as
// the lab's tests check.
func TestPersisterStorageBounded(t *testing.T) {
	ps := MakePersister()
	s := &persisterStorage{ps: ps}
	s.Load()
	hs := HardState{Term: 1, Vote: 0}
	maxSize := 0
	for i := 1; i <= 2000; i++ {
		if err := s.Save(hs, []Entry{{Index: i, Term: 1, Command: bytes.Repeat([]byte{'x'}, 100)}}); err != nil {
			t.Fatal(err)
		}
		maxSize = max(maxSize, ps.RaftStateSize())
		if i%10 == 7 {
			commitSnapshot(t, s, SnapshotMeta{Index: i - 3, Term: 1}, []byte(fmt.Sprint(i-3)), true)
		}
	}
	if maxSize > 20*110 {
		t.Fatalf("Raft state reached %d bytes with a snapshot every 10 entries of ~100 bytes", maxSize)
	}
	got := reload(t, ps)
	if got.snap.Index != 1994 || len(got.ents) != 6 || got.ents[0].Index != 1995 {
		t.Fatalf("reloaded snapshot %+v and %d entries", got.snap, len(got.ents))
	}
}

// TestPersisterStorageConcurrent: a sink is committed from another
// goroutine than the one calling Save (run with -race).
func TestPersisterStorageConcurrent(t *testing.T) {
	ps := MakePersister()
	s := &persisterStorage{ps: ps}
	s.Load()
	hs := HardState{Term: 1, Vote: 0}
	const n = 300
	applied := make(chan int, n)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range applied {
			if i%7 == 0 {
				sink, err := s.CreateSnapshot(SnapshotMeta{Index: i, Term: 1})
				if err != nil {
					t.Error(err)
					return
				}
				fmt.Fprint(sink, i)
				if err := sink.Commit(true); err != nil {
					t.Error(err)
					return
				}
				s.OpenSnapshot()
			}
		}
	}()
	for i := 1; i <= n; i++ {
		if err := s.Save(hs, entries(i, 1)); err != nil {
			t.Fatal(err)
		}
		applied <- i
	}
	close(applied)
	wg.Wait()
	got := reload(t, ps)
	if got.snap.Index != 294 || !reflect.DeepEqual(got.ents, entries(295, 1, 1, 1, 1, 1, 1)) {
		t.Fatalf("reloaded %+v", got)
	}
	if string(ps.ReadSnapshot()) != "294" {
		t.Fatalf("snapshot %q", ps.ReadSnapshot())
	}
}

// TestPersisterStorageVersion1: a blob of the first version, without
// snapshot or entry types, still loads, and Saves go on after it.
func TestPersisterStorageVersion1(t *testing.T) {
	b := []byte{1}
	b = binary.LittleEndian.AppendUint64(b, 3)
	none := int64(core.None)
	b = binary.LittleEndian.AppendUint64(b, uint64(none))
	for _, e := range entries(1, 1, 2) {
		b = binary.AppendUvarint(b, uint64(e.Term))
		b = binary.AppendUvarint(b, uint64(len(e.Command)))
		b = append(b, e.Command...)
	}
	ps := MakePersister()
	ps.Save(b, nil)
	s := &persisterStorage{ps: ps}
	hs, snap, ents, err := s.Load()
	if err != nil || hs != (HardState{Term: 3, Vote: core.None}) || !snap.Equal(SnapshotMeta{}) || !reflect.DeepEqual(ents, entries(1, 1, 2)) {
		t.Fatalf("version 1 blob loads %v %v %v %v", hs, snap, ents, err)
	}
	if err := s.Save(HardState{Term: 3, Vote: 1}, []Entry{{Index: 3, Term: 3, Type: core.EntryNoOp}}); err != nil {
		t.Fatal(err)
	}
	want := append(entries(1, 1, 2), Entry{Index: 3, Term: 3, Type: core.EntryNoOp})
	if got := reload(t, ps); got.hs != (HardState{Term: 3, Vote: 1}) || !reflect.DeepEqual(got.ents, want) {
		t.Fatalf("after a Save: %+v", got)
	}
	commitSnapshot(t, s, SnapshotMeta{Index: 2, Term: 2}, []byte("s"), true)
	if got := reload(t, ps); got.snap.Index != 2 || !reflect.DeepEqual(got.ents, want[2:]) {
		t.Fatalf("after a snapshot: %+v", got)
	}
}

func TestPersisterStorageCorrupt(t *testing.T) {
	ps := MakePersister()
	s := &persisterStorage{ps: ps}
	s.Load()
	s.Save(HardState{Term: 2, Vote: 1}, entries(1, 1, 2))
	good := ps.ReadRaftState()
	termOnly := append(bytes.Clone(good[:headerLen]), good[headerLen:]...)
	binary.LittleEndian.PutUint64(termOnly[25:], 5) // a snapshot term with index 0
	for _, bad := range [][]byte{
		{9},                            // no header
		append([]byte{7}, good[1:]...), // unknown version
		good[:headerLen-1],             // short header
		good[:len(good)-1],             // torn last command
		append(good, 0),                // torn entry: a type byte only
		append(good, 0, 0x80),          // torn varint
		termOnly,
	} {
		ps.SaveRaftState(bad)
		_, _, _, err := (&persisterStorage{ps: ps}).Load()
		if err == nil || !strings.HasPrefix(err.Error(), "persister: ") {
			t.Errorf("loading %x: error %v, want a persister error", bad, err)
		}
	}
}

func TestPersister(t *testing.T) {
	ps := MakePersister()
	if ps.ReadRaftState() != nil || ps.ReadSnapshot() != nil || ps.RaftStateSize() != 0 || ps.SnapshotSize() != 0 {
		t.Fatal("a new Persister is not empty")
	}
	state, snap := []byte("state"), []byte("snapshot")
	ps.Save(state, snap)
	state[0], snap[0] = 'X', 'X' // the Persister keeps copies
	if string(ps.ReadRaftState()) != "state" || string(ps.ReadSnapshot()) != "snapshot" || ps.RaftStateSize() != 5 || ps.SnapshotSize() != 8 {
		t.Fatalf("after Save: %q %q", ps.ReadRaftState(), ps.ReadSnapshot())
	}
	ps.ReadRaftState()[0] = 'X' // and hands out copies
	cp := ps.Copy()
	ps.SaveRaftState([]byte("state2")) // keeps the snapshot
	if string(ps.ReadRaftState()) != "state2" || string(ps.ReadSnapshot()) != "snapshot" {
		t.Fatalf("after SaveRaftState: %q %q", ps.ReadRaftState(), ps.ReadSnapshot())
	}
	if string(cp.ReadRaftState()) != "state" || string(cp.ReadSnapshot()) != "snapshot" {
		t.Fatalf("the copy changed: %q %q", cp.ReadRaftState(), cp.ReadSnapshot())
	}
	ps.SaveStateAndSnapshot([]byte("s3"), nil)
	if string(ps.ReadRaftState()) != "s3" || ps.ReadSnapshot() != nil || ps.SnapshotSize() != 0 {
		t.Fatalf("after SaveStateAndSnapshot: %q %q", ps.ReadRaftState(), ps.ReadSnapshot())
	}
}
