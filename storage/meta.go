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
//	version 1: version byte | uvarint index | uvarint term
//	version 2: version byte | uvarint index | uvarint term |
//	           the configuration as of index (core.Membership.AppendBinary),
//	           to the end; none if the meta has none
//
// Version 2 is written; both are read (a version 1 meta has no
// configuration: the initial one applies). A version older code does not
// know is refused rather than misread.
const (
	metaVersion1 = 1
	metaVersion  = 2
)

// minMeta is the fewest bytes an encoded meta takes.
const minMeta = 3

// maxMetaBytes bounds the length of an encoded meta that a reader
// accepts, so that a damaged length cannot make it allocate much.
const maxMetaBytes = 1 << 20

// appendMeta appends the encoding of m to dst. m's fields must not be
// negative, nor its members' IDs.
func appendMeta(dst []byte, m core.SnapshotMeta) []byte {
	dst = append(dst, metaVersion)
	dst = binary.AppendUvarint(dst, uint64(m.Index))
	dst = binary.AppendUvarint(dst, uint64(m.Term))
	if !m.Membership.Empty() {
		dst, _ = m.Membership.AppendBinary(dst) // checked by checkMeta
	}
	return dst
}

// metaSize returns the length of the encoding of m.
func metaSize(m core.SnapshotMeta) int { return len(appendMeta(nil, m)) }

// decodeMeta decodes b, which must hold exactly one encoded meta. A meta
// names a snapshot (index and term at least 1) or none (both 0).
func decodeMeta(b []byte) (core.SnapshotMeta, error) {
	d := decoder{b: b}
	var m core.SnapshotMeta
	v := d.byte("meta version")
	if d.err == nil && v != metaVersion && v != metaVersion1 {
		return m, fmt.Errorf("snapshot meta of version %d (written by a newer version?)", v)
	}
	m.Index = d.uint("snapshot index")
	m.Term = d.uint("snapshot term")
	if d.err == nil && v == metaVersion && len(d.b) > 0 {
		conf, err := core.DecodeMembership(d.b)
		if err != nil {
			return core.SnapshotMeta{}, fmt.Errorf("snapshot meta: %w", err)
		}
		m.Membership, d.b = conf, nil
	}
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
	if _, err := m.Membership.AppendBinary(nil); err != nil {
		return fmt.Errorf("the snapshot's configuration: %w", err)
	}
	return nil
}
