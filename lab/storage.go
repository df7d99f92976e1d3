package lab

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/core"
)

// The types of package raft this file uses.
type (
	HardState    = raft.HardState
	Entry        = raft.Entry
	SnapshotMeta = raft.SnapshotMeta
	SnapshotSink = raft.SnapshotSink
)

// persisterStorage keeps the state in a Persister, which stores one blob
// of Raft state and the service's snapshot. The blob is edited in place
// under the Persister's lock, so that a Save encodes only the new entries
// and copies nothing:
//
//	version byte (2) | term uint64 | vote int64 |
//	snapshot index uint64 | snapshot term uint64 | entries
//
// (integers little-endian) with each entry as its type byte, uvarint
// term, uvarint len(command), command; entry i is the one at index
// snapshot index + i. Version 1, which had no snapshot and no entry
// types, is read and rewritten as version 2 by Load. The Persister's
// snapshot is the service's bytes exactly. Both belong to the storage:
// they must not be replaced by anyone else while the storage is in use.
type persisterStorage struct {
	ps *Persister

	mu     sync.Mutex // Save, a sink's Commit and OpenSnapshot may run at once
	loaded bool       // the Persister's state was read: the fields below are its
	hs     HardState
	snap   SnapshotMeta
	offs   []int // offs[i]: where entry snap.Index+1+i starts in the blob
}

const (
	persistVersion   = 2
	persistVersionV1 = 1
	headerLen        = 1 + 8 + 8 + 8 + 8
	headerLenV1      = 1 + 8 + 8
)

// Load returns the state in the Persister (see Storage.Load).
func (s *persisterStorage) Load() (HardState, SnapshotMeta, []Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.load()
}

// load reads the Persister's state, and notes where things are in it.
// s.mu must be held.
func (s *persisterStorage) load() (HardState, SnapshotMeta, []Entry, error) {
	s.loaded, s.hs, s.snap, s.offs = false, HardState{Vote: core.None}, SnapshotMeta{}, nil
	blob := s.ps.ReadRaftState()
	if len(blob) == 0 {
		s.loaded = true
		return s.hs, s.snap, nil, nil
	}
	hs, snap, ents, offs, err := decodeState(blob)
	if err != nil {
		return HardState{}, SnapshotMeta{}, nil, fmt.Errorf("persister: %w", err)
	}
	if blob[0] != persistVersion {
		// An older version's blob: rewrite it in the current one, which
		// Save appends to.
		var b []byte
		b, offs = encodeState(hs, snap, ents)
		s.ps.edit(func(_, snapshot []byte) ([]byte, []byte) { return b, snapshot })
	}
	s.loaded, s.hs, s.snap, s.offs = true, hs, snap, offs
	return hs, snap, ents, nil
}

// ensureLoaded reads the Persister's state if that was not done yet, so
// that a Save or a Commit before any Load edits it rather than replaces
// it. s.mu must be held.
func (s *persisterStorage) ensureLoaded() error {
	if s.loaded {
		return nil
	}
	_, _, _, err := s.load()
	return err
}

// Save records hs and ents in the Persister (see Storage.Save).
func (s *persisterStorage) Save(hs HardState, ents []Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ensureLoaded(); err != nil {
		return err
	}
	at := len(s.offs)
	if len(ents) > 0 {
		first := ents[0].Index
		if first <= s.snap.Index {
			return fmt.Errorf("persister: save entries from %d, which the snapshot through %d covers", first, s.snap.Index)
		}
		at = first - s.snap.Index - 1
		if at > len(s.offs) {
			return fmt.Errorf("persister: save entries from %d after a log ending at %d", first, s.snap.Index+len(s.offs))
		}
	}
	s.ps.edit(func(blob, snapshot []byte) ([]byte, []byte) {
		if len(blob) < headerLen {
			blob = appendHeader(make([]byte, 0, 4096), s.hs, s.snap)
		}
		if at < len(s.offs) {
			blob, s.offs = blob[:s.offs[at]], s.offs[:at]
		}
		for i := range ents {
			s.offs = append(s.offs, len(blob))
			blob = appendEntry(blob, &ents[i])
		}
		putHardState(blob, hs)
		return blob, snapshot
	})
	s.hs = hs
	return nil
}

// CreateSnapshot returns a sink that keeps the snapshot in memory until
// Commit, which saves it and the compacted Raft state together,
// atomically.
func (s *persisterStorage) CreateSnapshot(meta SnapshotMeta) (SnapshotSink, error) {
	if meta.Index < 1 || meta.Term < 1 {
		return nil, fmt.Errorf("persister: create snapshot through index %d term %d: a snapshot needs an index and a term of at least 1", meta.Index, meta.Term)
	}
	return &memSink{s: s, meta: meta}, nil
}

// OpenSnapshot returns the current snapshot's meta and a reader of a copy
// of its bytes, or a zero meta and a nil reader if there is none.
func (s *persisterStorage) OpenSnapshot() (SnapshotMeta, io.ReadCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ensureLoaded(); err != nil {
		return SnapshotMeta{}, nil, err
	}
	if s.snap.Index == 0 {
		return SnapshotMeta{}, nil, nil
	}
	return s.snap, io.NopCloser(bytes.NewReader(s.ps.ReadSnapshot())), nil
}

// Close does nothing: the Persister belongs to the tester.
func (s *persisterStorage) Close() error { return nil }

// commit makes data, the snapshot meta, the current snapshot (see
// core.SnapshotSink.Commit): the entries through meta.Index go, and with
// keepLog those after it stay.
func (s *persisterStorage) commit(meta SnapshotMeta, data []byte, keepLog bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ensureLoaded(); err != nil {
		return err
	}
	if meta.Index <= s.snap.Index {
		return nil // not newer: discarded
	}
	drop := meta.Index - s.snap.Index // entries that the snapshot covers, if the log has them
	s.ps.edit(func(blob, _ []byte) ([]byte, []byte) {
		state := appendHeader(nil, s.hs, meta)
		var offs []int
		if keepLog && drop < len(s.offs) {
			from := s.offs[drop]
			for _, off := range s.offs[drop:] {
				offs = append(offs, off-from+len(state))
			}
			state = append(state, blob[from:]...)
		}
		s.offs = offs
		return state, data
	})
	s.snap = meta
	return nil
}

// memSink is a snapshot for a persisterStorage, kept in memory.
type memSink struct {
	s    *persisterStorage
	meta SnapshotMeta
	buf  bytes.Buffer
	done bool
}

// Meta returns what the snapshot covers.
func (m *memSink) Meta() SnapshotMeta { return m.meta }

// Write appends p to the snapshot.
func (m *memSink) Write(p []byte) (int, error) {
	if m.done {
		return 0, m.finished("write")
	}
	return m.buf.Write(p)
}

// Commit saves the snapshot, if it is newer than the current one, and the
// compacted Raft state together, atomically, as Persister.Save does.
func (m *memSink) Commit(keepLog bool) error {
	if m.done {
		return m.finished("commit")
	}
	m.done = true
	return m.s.commit(m.meta, m.buf.Bytes(), keepLog)
}

// Abort drops the snapshot.
func (m *memSink) Abort() error {
	m.done = true
	m.buf = bytes.Buffer{}
	return nil
}

func (m *memSink) finished(what string) error {
	return fmt.Errorf("persister: %s snapshot through index %d: already committed or aborted", what, m.meta.Index)
}

// appendHeader appends the header of a blob holding hs and snap.
func appendHeader(dst []byte, hs HardState, snap SnapshotMeta) []byte {
	dst = append(dst, persistVersion)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(hs.Term))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(int64(hs.Vote)))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(snap.Index))
	return binary.LittleEndian.AppendUint64(dst, uint64(snap.Term))
}

// putHardState writes hs into the header of blob.
func putHardState(blob []byte, hs HardState) {
	binary.LittleEndian.PutUint64(blob[1:], uint64(hs.Term))
	binary.LittleEndian.PutUint64(blob[9:], uint64(int64(hs.Vote)))
}

// appendEntry appends the encoding of e.
func appendEntry(dst []byte, e *Entry) []byte {
	dst = append(dst, byte(e.Type))
	dst = binary.AppendUvarint(dst, uint64(e.Term))
	dst = binary.AppendUvarint(dst, uint64(len(e.Command)))
	return append(dst, e.Command...)
}

// encodeState returns a blob holding hs, snap and ents, and where each
// entry starts in it.
func encodeState(hs HardState, snap SnapshotMeta, ents []Entry) ([]byte, []int) {
	blob := appendHeader(nil, hs, snap)
	offs := make([]int, len(ents))
	for i := range ents {
		offs[i] = len(blob)
		blob = appendEntry(blob, &ents[i])
	}
	return blob, offs
}

var errTruncated = errors.New("truncated")

// decodeState decodes a blob that persisterStorage saved, of the current
// version or version 1. The commands of the entries share b's memory.
func decodeState(b []byte) (hs HardState, snap SnapshotMeta, ents []Entry, offs []int, err error) {
	fail := func(format string, args ...any) (HardState, SnapshotMeta, []Entry, []int, error) {
		return HardState{}, SnapshotMeta{}, nil, nil, fmt.Errorf(format, args...)
	}
	v1 := len(b) >= headerLenV1 && b[0] == persistVersionV1
	if !v1 && (len(b) < headerLen || b[0] != persistVersion) {
		return fail("raft state of %d bytes has no valid header", len(b))
	}
	hs.Term = int(binary.LittleEndian.Uint64(b[1:]))
	hs.Vote = int(int64(binary.LittleEndian.Uint64(b[9:])))
	at := headerLenV1
	if !v1 {
		index, term := binary.LittleEndian.Uint64(b[17:]), binary.LittleEndian.Uint64(b[25:])
		if index > math.MaxInt || term > math.MaxInt || (index == 0) != (term == 0) {
			return fail("raft state has an invalid snapshot index %d and term %d", index, term)
		}
		snap = SnapshotMeta{Index: int(index), Term: int(term)}
		at = headerLen
	}
	for at < len(b) {
		offs = append(offs, at)
		n := len(ents) + 1
		e := Entry{Index: snap.Index + n}
		start := at
		if !v1 {
			e.Type = core.EntryType(b[at])
			at++
		}
		term, k := binary.Uvarint(b[at:])
		if k <= 0 || term > math.MaxInt {
			return fail("entry %d at byte %d: term: %w", e.Index, start, errTruncated)
		}
		size, m := binary.Uvarint(b[at+k:])
		if m <= 0 || size > uint64(len(b)-at-k-m) {
			return fail("entry %d at byte %d: command: %w", e.Index, start, errTruncated)
		}
		at += k + m
		e.Term = int(term)
		if size > 0 {
			e.Command = b[at : at+int(size) : at+int(size)]
		}
		ents = append(ents, e)
		at += int(size)
	}
	return hs, snap, ents, offs, nil
}
