package raft

import (
	"bytes"
	"fmt"

	"github.com/raftkit/raft/core"
	"github.com/raftkit/raft/labgob"
)

// Storage keeps what a server must not forget across a crash: its
// HardState and its log.
type Storage interface {
	// Load returns what was saved last: a HardState with Vote core.None
	// and no entries if nothing was.
	Load() (HardState, []Entry, error)
	// Save durably records hs and replaces the saved log from
	// ents[0].Index onwards with ents (if ents is not empty) before it
	// returns.
	Save(hs HardState, ents []Entry) error
}

// persisterStorage keeps the state in a Persister, as one blob that it
// rewrites on every Save (the Persister has no other way).
type persisterStorage struct {
	ps   *Persister
	ents []Entry // the saved log; entry i at position i-1
}

func (s *persisterStorage) Load() (HardState, []Entry, error) {
	data := s.ps.ReadRaftState()
	if len(data) == 0 {
		return HardState{Vote: core.None}, nil, nil
	}
	var st persistedState
	if err := labgob.NewDecoder(bytes.NewReader(data)).Decode(&st); err != nil {
		return HardState{}, nil, fmt.Errorf("persister: decode raft state: %w", err)
	}
	s.ents = st.Log
	return st.State, st.Log, nil
}

func (s *persisterStorage) Save(hs HardState, ents []Entry) error {
	if len(ents) > 0 {
		at := ents[0].Index - 1
		if at > len(s.ents) {
			return fmt.Errorf("persister: save entries from %d after a log ending at %d", at+1, len(s.ents))
		}
		s.ents = append(s.ents[:at:at], ents...)
	}
	var buf bytes.Buffer
	if err := labgob.NewEncoder(&buf).Encode(persistedState{State: hs, Log: s.ents}); err != nil {
		return fmt.Errorf("persister: encode raft state: %w", err)
	}
	s.ps.SaveRaftState(buf.Bytes())
	return nil
}

// persistedState is the blob persisterStorage saves.
type persistedState struct {
	State HardState
	Log   []Entry
}
