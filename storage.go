package raft

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/raftkit/raft/core"
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
	// Close releases the storage.
	Close() error
}

// persisterStorage keeps the state in a Persister, which can only store
// one blob. The blob is edited in place under the Persister's lock, so
// that a Save encodes only the new entries and copies nothing:
//
//	version byte | term uint64 | vote int64 | entries
//
// with each entry as uvarint(term) uvarint(len(command)) command; entry i
// is the i-th one. The Persister's Raft state belongs to the storage: it
// must not be replaced by anyone else while the storage is in use.
type persisterStorage struct {
	ps   *Persister
	offs []int // offs[i-1]: where entry i starts in the blob
}

const (
	persistVersion = 1
	headerLen      = 1 + 8 + 8
)

func (s *persisterStorage) Load() (HardState, []Entry, error) {
	s.offs = nil
	blob := s.ps.ReadRaftState()
	if len(blob) == 0 {
		return HardState{Vote: core.None}, nil, nil
	}
	hs, ents, offs, err := decodeState(blob)
	if err != nil {
		return HardState{}, nil, fmt.Errorf("persister: %w", err)
	}
	s.offs = offs
	return hs, ents, nil
}

func (s *persisterStorage) Save(hs HardState, ents []Entry) error {
	at := len(s.offs)
	if len(ents) > 0 {
		at = ents[0].Index - 1
		if at > len(s.offs) {
			return fmt.Errorf("persister: save entries from %d after a log ending at %d", at+1, len(s.offs))
		}
	}
	s.ps.editRaftState(func(blob []byte) []byte {
		if len(blob) < headerLen {
			blob = make([]byte, headerLen, 4096)
		}
		if at < len(s.offs) {
			blob, s.offs = blob[:s.offs[at]], s.offs[:at]
		}
		for _, e := range ents {
			s.offs = append(s.offs, len(blob))
			blob = binary.AppendUvarint(blob, uint64(e.Term))
			blob = binary.AppendUvarint(blob, uint64(len(e.Command)))
			blob = append(blob, e.Command...)
		}
		blob[0] = persistVersion
		binary.LittleEndian.PutUint64(blob[1:], uint64(hs.Term))
		binary.LittleEndian.PutUint64(blob[9:], uint64(int64(hs.Vote)))
		return blob
	})
	return nil
}

// Close does nothing: the Persister belongs to the tester.
func (s *persisterStorage) Close() error { return nil }

var errTruncated = errors.New("truncated")

// decodeState decodes a blob that persisterStorage saved. The commands of
// the entries share b's memory.
func decodeState(b []byte) (hs HardState, ents []Entry, offs []int, err error) {
	if len(b) < headerLen || b[0] != persistVersion {
		return hs, nil, nil, fmt.Errorf("raft state of %d bytes has no valid header", len(b))
	}
	hs.Term = int(binary.LittleEndian.Uint64(b[1:]))
	hs.Vote = int(int64(binary.LittleEndian.Uint64(b[9:])))
	for at := headerLen; at < len(b); {
		offs = append(offs, at)
		term, n := binary.Uvarint(b[at:])
		if n <= 0 {
			return hs, nil, nil, fmt.Errorf("entry %d at byte %d: term: %w", len(ents)+1, at, errTruncated)
		}
		size, m := binary.Uvarint(b[at+n:])
		if m <= 0 || size > uint64(len(b)-at-n-m) {
			return hs, nil, nil, fmt.Errorf("entry %d at byte %d: command: %w", len(ents)+1, at, errTruncated)
		}
		at += n + m
		cmd := b[at : at+int(size) : at+int(size)]
		ents = append(ents, Entry{Index: len(ents) + 1, Term: int(term), Command: cmd})
		at += int(size)
	}
	return hs, ents, offs, nil
}
