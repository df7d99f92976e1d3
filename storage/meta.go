package storage

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/raftkit/raft/core"
)

// The encoding of a core.SnapshotMeta, shared by the snapshot records of
// the log and the header of a snapshot file, which both store it with its
// length in front:
//
//	version byte (metaVersion) | uvarint index | uvarint term
//
// When SnapshotMeta gains fields (a membership configuration, say), they
// get a new version, which older code refuses rather than misreads.
const metaVersion = 1

// minMeta is the fewest bytes an encoded meta takes.
const minMeta = 3

// maxMetaBytes bounds the length of an encoded meta that a reader
// accepts, so that a damaged length cannot make it allocate much.
const maxMetaBytes = 1 << 20

// appendMeta appends the encoding of m to dst. m's fields must not be
// negative.
func appendMeta(dst []byte, m core.SnapshotMeta) []byte {
	dst = append(dst, metaVersion)
	dst = binary.AppendUvarint(dst, uint64(m.Index))
	return binary.AppendUvarint(dst, uint64(m.Term))
}

// metaSize returns the length of the encoding of m.
func metaSize(m core.SnapshotMeta) int {
	return 1 + uvarintSize(uint64(m.Index)) + uvarintSize(uint64(m.Term))
}

// decodeMeta decodes b, which must hold exactly one encoded meta. A meta
// names a snapshot (index and term at least 1) or none (both 0).
func decodeMeta(b []byte) (core.SnapshotMeta, error) {
	d := decoder{b: b}
	var m core.SnapshotMeta
	v := d.byte("meta version")
	if d.err == nil && v != metaVersion {
		return m, fmt.Errorf("snapshot meta of version %d (written by a newer version?)", v)
	}
	m.Index = d.uint("snapshot index")
	m.Term = d.uint("snapshot term")
	switch {
	case d.err != nil:
		return core.SnapshotMeta{}, d.err
	case len(d.b) != 0:
		return core.SnapshotMeta{}, fmt.Errorf("%d stray bytes after the snapshot meta", len(d.b))
	case (m.Index == 0) != (m.Term == 0):
		return core.SnapshotMeta{}, fmt.Errorf("snapshot meta with index %d and term %d", m.Index, m.Term)
	}
	return m, nil
}

// checkMeta validates the meta of a snapshot to be created.
func checkMeta(m core.SnapshotMeta) error {
	if m.Index < 1 || m.Term < 1 {
		return errors.New("a snapshot needs an index and a term of at least 1")
	}
	return nil
}
