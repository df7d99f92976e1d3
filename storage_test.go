package raft

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/raftkit/raft/core"
)

func entries(from int, terms ...int) []Entry {
	var es []Entry
	for i, t := range terms {
		es = append(es, Entry{Index: from + i, Term: t, Command: []byte(fmt.Sprintf("c%d.%d", from+i, t))})
	}
	return es
}

func reload(t *testing.T, ps *Persister) (HardState, []Entry) {
	t.Helper()
	s := &persisterStorage{ps: ps.Copy()}
	hs, ents, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	return hs, ents
}

func TestPersisterStorageRoundTrip(t *testing.T) {
	ps := MakePersister()
	s := &persisterStorage{ps: ps}
	if hs, ents, err := s.Load(); err != nil || hs != (HardState{Vote: core.None}) || ents != nil {
		t.Fatalf("empty persister loads %v %v %v", hs, ents, err)
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
	}
	for i, st := range steps {
		if err := s.Save(st.hs, st.ents); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		hs, ents := reload(t, ps)
		if hs != st.hs || !reflect.DeepEqual(ents, st.want) {
			t.Fatalf("step %d: reloaded %v %v, want %v %v", i, hs, ents, st.hs, st.want)
		}
	}
	// Reopened storage continues where it left off.
	s2 := &persisterStorage{ps: ps}
	if _, _, err := s2.Load(); err != nil {
		t.Fatal(err)
	}
	if err := s2.Save(HardState{Term: 5, Vote: 1}, entries(2, 5)); err != nil {
		t.Fatal(err)
	}
	if hs, ents := reload(t, ps); hs.Term != 5 || !reflect.DeepEqual(ents, entries(1, 4, 5)) {
		t.Fatalf("after reopen: %v %v", hs, ents)
	}
	if err := s2.Save(HardState{Term: 5}, entries(9, 5)); err == nil {
		t.Fatal("saving entries past the end of the log succeeded")
	}
}

func TestPersisterStorageCorrupt(t *testing.T) {
	ps := MakePersister()
	s := &persisterStorage{ps: ps}
	s.Load()
	s.Save(HardState{Term: 2, Vote: 1}, entries(1, 1, 2))
	good := ps.ReadRaftState()
	for _, bad := range [][]byte{
		{9},                            // no header
		append([]byte{7}, good[1:]...), // unknown version
		good[:len(good)-1],             // torn last command
		append(good, 0x80),             // torn varint
	} {
		ps.SaveRaftState(bad)
		_, _, err := (&persisterStorage{ps: ps}).Load()
		if err == nil || !strings.HasPrefix(err.Error(), "persister: ") {
			t.Errorf("loading %x: error %v, want a persister error", bad, err)
		}
	}
}
