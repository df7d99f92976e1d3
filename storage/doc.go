// Package storage is a durable write-ahead log (WAL) for what a Raft
// server must not forget across a crash: its HardState (term and vote),
// its latest snapshot, and its log after the snapshot. A *WAL implements
// the raft package's Storage interface.
//
// # Files
//
// A WAL lives in a directory of its own, which holds
//
//   - LOCK, flocked while a WAL has the directory open;
//   - the segment files 00000000000000000001.wal, 00000000000000000002.wal,
//     ...: a 20-digit zero-padded sequence number, consecutive. Records
//     are appended to the last segment; when a record would take it past
//     Options.SegmentBytes, the WAL starts the next one. The segments at
//     the front go once a snapshot covers them (see Snapshots), so the
//     first one is not always 1;
//   - the current snapshot, INDEX-TERM.snap (each a 20-digit zero-padded
//     number), and while one is being written its temporary file
//     INDEX-TERM.snap.RANDOM.tmp.
//
// Other files in the directory are ignored.
//
// # Records
//
// A segment is a sequence of records, with no header of its own. A record
// is
//
//	length  uint32, little-endian: the payload length, at most 64 MiB
//	crc     uint32, little-endian: CRC32C (Castagnoli) of type and payload
//	type    byte
//	payload length bytes
//
// and the payload, of varints (encoding/binary's uvarint and varint) and
// single bytes, is by type:
//
//	4 hardState:         uvarint term, varint vote, end byte
//	5 entries:           uvarint first index, uvarint count, then per
//	                     entry the type byte (its core.EntryType), uvarint
//	                     term, uvarint len, len command bytes; end byte
//	6 hardState+entries: uvarint term, varint vote, then an entries
//	                     payload (with its end byte)
//	7 snapshot:          keepLog byte (0 or 1), uvarint len, len bytes of
//	                     snapshot meta, end byte
//	8 segment header:    uvarint term, varint vote, uvarint len, len
//	                     bytes of snapshot meta (zero if none), uvarint
//	                     last index, end byte
//
// A snapshot meta is a version byte (1), uvarint index, uvarint term; a
// later version may add fields (a membership configuration, say), which
// this one refuses rather than misreads.
//
// The end byte is 0xFF, so that a whole record never ends in a zero byte
// (see Damage). Types 1-3, which older versions wrote, still decode: they
// are types 4-6 without the type bytes and without the end byte, and their
// entries are core.EntryNormal. Any value of core.EntryType is kept as it
// is; the WAL does not interpret it. Type 0 is never used, so zeros are
// never a record.
//
// Replaying the records in order gives the state. There is no truncate
// record: an entries record replaces the log from its first index on,
// which must be after the current snapshot and at most one past the log's
// last index at that point. A snapshot record makes its snapshot the
// current one: with keepLog the entries after its index stay, without
// the log after it is empty. Every segment the WAL starts begins with a
// segment header: the HardState, the current snapshot and the log's last
// index at that point, so that the log can be replayed from that segment
// without the ones before it. Replayed in the middle of the log, a header
// must match the state so far. Segments that older versions wrote have no
// header.
//
// # Snapshots
//
// A snapshot file is a header (magic "RAFTSNAP", version byte 1, uint32
// meta length, the snapshot meta, uint32 CRC32C of the header so far),
// the data in blocks (uint32 length of 1 to 64 KiB, uint32 CRC32C of the
// data, the data), and an end block (uint32 0, uint32 CRC32C of the next
// 8 bytes, uint64 the number of data bytes); integers little-endian.
// A sink (CreateSnapshot) writes the blocks to a temporary file as they
// fill, and a reader (OpenSnapshot) streams them back, checking each one
// before it hands out its bytes: neither holds more than a block.
//
// The log is the truth: a snapshot is current once its snapshot record
// is durable. Commit
//
//  1. writes the end block and fsyncs the temporary file;
//  2. renames it to INDEX-TERM.snap and fsyncs the directory;
//  3. appends the snapshot record and fsyncs the segment;
//  4. deletes the older snapshot files, and the segments at the front up
//     to the last one that starts with a segment header and is preceded
//     only by segments with no entry after the snapshot's index.
//
// A snapshot not newer (by index) than the current one is discarded
// before step 2. Until step 3 the previous snapshot is current and its
// file stays. So what the directory holds, whatever the history, is the
// snapshot and the segments from about the one that holds the first
// entry after it; and Open replays only those.
//
// # Crash safety
//
// A crash at any step leaves the state of the last durable record, and
// Open tidies up: it removes temporary snapshot files, and snapshot files
// other than the current one (newer ones were renamed but never recorded),
// each with a log line. Step 4 deletes segments in order, each deletion
// fsynced before the next, so the segments left are always consecutive;
// Open refuses a gap. It replays the log from segment 1 if it is there,
// else from the first segment with a header; segments before that one
// (without a header: an older version wrote them) are removed with a log
// line. The entries from the header's snapshot to its last index are in
// the segments before it, so they must be covered by a later snapshot
// record or replaced by later entries: otherwise Open fails with
// ErrCorrupt naming the missing entries and segment. So deleting a
// segment never loses the latest vote or snapshot, and a log with a gap
// after the snapshot never opens.
//
// # Writing
//
// A Save writes one record (hardState, entries, or both in one record,
// the HardState first), then fsyncs the segment before it returns. Only a
// batch whose payload would pass 64 MiB is split into several records,
// each synced before the next is written, with the HardState in the first.
// So every record is on disk before the next one is written: a crash can
// damage only the last record of the log. A new segment (its header and
// the record that starts it) is written, fsynced, and then its directory
// is fsynced.
//
// After a write or an fsync of the log fails the WAL is finished: that
// Save and every later one return the same error, which wraps ErrFailed.
// (On Linux a failed fsync may drop the dirty pages and a retried one
// then succeeds without having written them.) Reopening the directory is
// the way on. A failure in steps 1-2 of a commit only fails that commit;
// one in step 3 finishes the WAL; one in step 4 is logged, and retried
// by the next commit or Open.
//
// # Damage
//
// The current snapshot's file is read whole at Open, and by every reader:
// damage (a bad checksum, a cut, a header that does not match its name,
// bytes after the end) is an error wrapping ErrCorrupt that names the file
// and the offset of the bad block. Open never falls back to an older
// snapshot: the log after it may need the newer one.
//
// Open replays the segments. A record is damaged if it does not decode: a
// short header, a length over 64 MiB or past the end of the file, or a
// bad checksum. Damage to the last record of the last
// segment is a write torn by a crash, and is cut, only if no valid record
// follows it and it looks like a write that did not finish:
//
//   - fewer than 9 bytes (a short header) are left in the file;
//   - its header is 9 zero bytes;
//   - its length runs past the end of the file, unless the checksum is
//     right for the bytes up to the end of the file (then the record was
//     written whole and its length field has been damaged since); or
//   - all of its length is in the file, and the file is zero-filled from
//     some byte of the record to its end.
//
// Cutting means the file is truncated at the start of the damaged record,
// fsynced, and one line is logged naming the file and offset. A segment
// left empty gets its header again.
//
// A whole record (all of its length in the file) with a bad checksum that
// does not end in such zeros was damaged after it was written, not torn:
// it was fsynced, may have been acknowledged, and may hold a vote, so Open
// refuses it even at the very end. Only the end byte of types 4-8 makes
// this sound: a record of types 1-3 can end in zero bytes of its own (a
// vote for server 0, an empty command), so a damaged such record at the
// very end is cut as torn.
//
// Any damage other than a torn write, which could drop entries that were
// acknowledged, makes Open fail with an error wrapping ErrCorrupt that
// names the segment and byte offset: a bad record anywhere in a segment
// that is not the last, a bad record in the last one that does not look
// unfinished (as above) or is followed by a valid record, a record whose
// checksum is right but whose type is unknown (written by a newer
// version, perhaps) or whose payload does not decode, entries that do
// not follow the log (a gap in the indexes) or that a snapshot covers, a
// snapshot record not newer than the current snapshot, a segment header
// that does not match the log before it, or missing segments. "A
// valid record follows" means a whole record with a good checksum
// starting at any byte after the damaged one's start, since a damaged
// length says nothing of where the next record starts; so a torn record
// whose commands happen to hold a whole record makes Open refuse rather
// than cut, which errs on the safe side.
package storage
