package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/raftkit/raft/core"
)

// The wire format of the messages; the package doc describes it.

// Frame types. A reply's type is its request's with typeReply set.
const (
	typeRequestVote     byte = 1
	typeAppendEntries   byte = 2
	typeInstallSnapshot byte = 3
	typeProbe           byte = 4
	typeTimeoutNow      byte = 5
	typeReadIndex       byte = 6
	typeReply           byte = 0x80
	typeError           byte = 0xff
)

// Error frame codes.
const (
	// codeFailed: the server failed the request (its Handler answered
	// with an error, or the request or the reply was over a size limit).
	codeFailed byte = 0
	// codeLost: an injected fault on the server's side lost the request
	// or the reply; the caller counts the call as lost.
	codeLost byte = 1
)

const (
	// frameHeaderLen is the size of a frame's header: the payload's
	// length (u32), the type (u8) and the request ID (u64), big endian.
	frameHeaderLen = 4 + 1 + 8
	// maxFramePayload is the largest payload a header can describe.
	maxFramePayload = math.MaxUint32
	// maxErrorLen bounds the message of an error frame; a server cuts
	// longer ones.
	maxErrorLen = 1 << 10
)

// errProtocol marks a malformed stream; the connection is closed.
var errProtocol = errors.New("protocol error")

// Flag bits of the messages' booleans.
const (
	flagPreVote     = 1 << 0 // RequestVoteArgs.PreVote
	flagTransfer    = 1 << 1 // RequestVoteArgs.Transfer
	flagVoteGranted = 1 << 0 // RequestVoteReply.VoteGranted
	flagReplyPre    = 1 << 1 // RequestVoteReply.PreVote
	flagSuccess     = 1 << 0 // AppendEntriesReply.Success
	flagDone        = 1 << 0 // InstallSnapshotArgs.Done
	flagEmpty       = 1 << 0 // ProbeReply.Empty
	flagFounder     = 1 << 1 // ProbeReply.Founder
)

// typeName names a frame type, for errors and logs.
func typeName(typ byte) string {
	req := typ &^ typeReply
	var name string
	switch {
	case typ == typeError:
		return "error"
	case req == typeRequestVote:
		name = "RequestVote"
	case req == typeAppendEntries:
		name = "AppendEntries"
	case req == typeInstallSnapshot:
		name = "InstallSnapshot"
	case req == typeProbe:
		name = "Probe"
	case req == typeTimeoutNow:
		name = "TimeoutNow"
	case req == typeReadIndex:
		name = "ReadIndex"
	default:
		return fmt.Sprintf("unknown type %#x", typ)
	}
	if typ&typeReply != 0 {
		return name + " reply"
	}
	return name
}

// isRequest reports whether typ is a request's frame type.
func isRequest(typ byte) bool { return typ >= typeRequestVote && typ <= typeReadIndex }

// requestType returns the frame type of a request, or 0 if req is not a
// non-nil pointer to one of the core package's RPC arguments.
func requestType(req any) byte {
	switch r := req.(type) {
	case *core.RequestVoteArgs:
		if r != nil {
			return typeRequestVote
		}
	case *core.AppendEntriesArgs:
		if r != nil {
			return typeAppendEntries
		}
	case *core.InstallSnapshotArgs:
		if r != nil {
			return typeInstallSnapshot
		}
	case *core.ProbeArgs:
		if r != nil {
			return typeProbe
		}
	case *core.TimeoutNowArgs:
		if r != nil {
			return typeTimeoutNow
		}
	case *core.ReadIndexArgs:
		if r != nil {
			return typeReadIndex
		}
	}
	return 0
}

// appendHeader appends a frame's header with the length left zero;
// finishFrame fills it in.
func appendHeader(b []byte, typ byte, id uint64) []byte {
	b = append(b, 0, 0, 0, 0, typ)
	return binary.BigEndian.AppendUint64(b, id)
}

// finishFrame fills in the length of the frame that starts at b[start:]
// and returns its payload's length.
func finishFrame(b []byte, start int) (int, error) {
	n := len(b) - start - frameHeaderLen
	if n > maxFramePayload {
		return n, fmt.Errorf("%w: payload of %d bytes, over the frame's limit of %d", errTooLarge, n, maxFramePayload)
	}
	binary.BigEndian.PutUint32(b[start:], uint32(n))
	return n, nil
}

// setFrameID sets the request ID of the frame at the start of b.
func setFrameID(b []byte, id uint64) { binary.BigEndian.PutUint64(b[5:], id) }

func appendInt(b []byte, v int) []byte { return binary.AppendVarint(b, int64(v)) }

// appendBytes appends a byte slice: its length plus one, 0 for nil, then
// its bytes.
func appendBytes(b []byte, s []byte) []byte {
	if s == nil {
		return append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(s))+1)
	return append(b, s...)
}

func flag(v bool, bit byte) byte {
	if v {
		return bit
	}
	return 0
}

// appendRequest appends the frame of request req, with ID id, to b. On
// error b is returned as it was.
func appendRequest(b []byte, id uint64, req any) ([]byte, int, error) {
	start := len(b)
	switch r := req.(type) {
	case *core.RequestVoteArgs:
		b = appendHeader(b, typeRequestVote, id)
		b = appendInt(b, r.Term)
		b = appendInt(b, r.CandidateID)
		b = appendInt(b, r.LastLogIndex)
		b = appendInt(b, r.LastLogTerm)
		b = append(b, flag(r.PreVote, flagPreVote)|flag(r.Transfer, flagTransfer))
	case *core.AppendEntriesArgs:
		for i, e := range r.Entries {
			if want := r.PrevLogIndex + 1 + i; e.Index != want {
				return b, 0, fmt.Errorf("AppendEntries entry %d has index %d, want %d (PrevLogIndex+1+%d): the wire format carries consecutive entries only", i, e.Index, want, i)
			}
		}
		b = appendHeader(b, typeAppendEntries, id)
		b = appendInt(b, r.Term)
		b = appendInt(b, r.LeaderID)
		b = appendInt(b, r.PrevLogIndex)
		b = appendInt(b, r.PrevLogTerm)
		b = appendInt(b, r.LeaderCommit)
		if r.Entries == nil {
			b = append(b, 0)
		} else {
			b = binary.AppendUvarint(b, uint64(len(r.Entries))+1)
		}
		for _, e := range r.Entries {
			b = appendInt(b, e.Term)
			b = append(b, byte(e.Type))
			b = appendBytes(b, e.Command)
		}
		b = binary.AppendUvarint(b, r.Round)
	case *core.InstallSnapshotArgs:
		b = appendHeader(b, typeInstallSnapshot, id)
		b = appendInt(b, r.Term)
		b = appendInt(b, r.LeaderID)
		b = appendInt(b, r.LastIncludedIndex)
		b = appendInt(b, r.LastIncludedTerm)
		b = binary.AppendVarint(b, r.Offset)
		b = append(b, flag(r.Done, flagDone))
		b = appendBytes(b, r.Data)
		var err error
		if b, err = appendMembership(b, r.Membership); err != nil {
			return b[:start], 0, err
		}
	case *core.ProbeArgs:
		b = appendHeader(b, typeProbe, id)
	case *core.TimeoutNowArgs:
		b = appendHeader(b, typeTimeoutNow, id)
		b = appendInt(b, r.Term)
		b = appendInt(b, r.LeaderID)
	case *core.ReadIndexArgs:
		b = appendHeader(b, typeReadIndex, id)
		b = appendInt(b, r.Term)
		b = binary.AppendUvarint(b, r.ID)
	default:
		return b, 0, fmt.Errorf("cannot encode a %T as a request", req)
	}
	n, err := finishFrame(b, start)
	if err != nil {
		return b[:start], n, err
	}
	return b, n, nil
}

// appendReply appends the frame of reply, the answer to request id, to b.
// On error b is returned as it was.
func appendReply(b []byte, id uint64, reply any) ([]byte, int, error) {
	start := len(b)
	switch r := reply.(type) {
	case *core.RequestVoteReply:
		b = appendHeader(b, typeRequestVote|typeReply, id)
		b = appendInt(b, r.Term)
		b = append(b, flag(r.VoteGranted, flagVoteGranted)|flag(r.PreVote, flagReplyPre))
	case *core.AppendEntriesReply:
		b = appendHeader(b, typeAppendEntries|typeReply, id)
		b = appendInt(b, r.Term)
		b = append(b, flag(r.Success, flagSuccess))
		b = appendInt(b, r.Index)
		b = appendInt(b, r.ConflictTerm)
		b = appendInt(b, r.ConflictIndex)
		b = binary.AppendUvarint(b, r.Round)
	case *core.InstallSnapshotReply:
		b = appendHeader(b, typeInstallSnapshot|typeReply, id)
		b = appendInt(b, r.Term)
		b = appendInt(b, r.Index)
	case *core.ProbeReply:
		b = appendHeader(b, typeProbe|typeReply, id)
		b = appendInt(b, r.Term)
		b = appendInt(b, r.LastIndex)
		b = append(b, flag(r.Empty, flagEmpty)|flag(r.Founder, flagFounder))
	case *core.TimeoutNowReply:
		b = appendHeader(b, typeTimeoutNow|typeReply, id)
		b = appendInt(b, r.Term)
	case *core.ReadIndexReply:
		b = appendHeader(b, typeReadIndex|typeReply, id)
		b = appendInt(b, r.Term)
		b = binary.AppendUvarint(b, r.ID)
		b = appendInt(b, r.Index)
	default:
		return b, 0, fmt.Errorf("cannot encode a %T as a reply", reply)
	}
	n, err := finishFrame(b, start)
	if err != nil {
		return b[:start], n, err
	}
	return b, n, nil
}

// appendError appends an error frame answering request id, with msg cut
// to maxErrorLen bytes.
func appendError(b []byte, id uint64, code byte, msg string) []byte {
	if len(msg) > maxErrorLen {
		msg = msg[:maxErrorLen]
	}
	start := len(b)
	b = appendHeader(b, typeError, id)
	b = append(b, code)
	b = binary.AppendUvarint(b, uint64(len(msg)))
	b = append(b, msg...)
	finishFrame(b, start) // (cannot fail: the message is short)
	return b
}

// decoder reads the fields of a payload. The first error sticks: every
// later read returns zero values.
type decoder struct {
	typ byte // the frame's type, for errors
	b   []byte
	off int
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: malformed %s at payload offset %d of %d: %s", errProtocol, typeName(d.typ), d.off, len(d.b), fmt.Sprintf(format, args...))
	}
}

func (d *decoder) varint(field string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.fail("%s is not a varint", field)
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail("%s is not a uvarint", field)
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) int(field string) int {
	v := d.varint(field)
	if int64(int(v)) != v {
		d.fail("%s %d overflows an int", field, v)
		return 0
	}
	return int(v)
}

func (d *decoder) u8(field string) byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.b) {
		d.fail("%s missing", field)
		return 0
	}
	c := d.b[d.off]
	d.off++
	return c
}

// flags reads a byte of flags, refusing bits outside known.
func (d *decoder) flags(field string, known byte) byte {
	f := d.u8(field)
	if f&^known != 0 {
		d.fail("%s %#x has unknown bits", field, f)
		return 0
	}
	return f
}

// count reads a slice's length as appendBytes and appendRequest write it
// (plus one, 0 for nil), refusing one that the rest of the payload could
// not hold with at least least bytes per element. isNil reports a nil
// slice.
func (d *decoder) count(field string, least int) (n int, isNil bool) {
	v := d.uvarint(field)
	if d.err != nil {
		return 0, true
	}
	if v == 0 {
		return 0, true
	}
	v--
	if left := uint64(len(d.b) - d.off); v > left/uint64(least) {
		d.fail("%s claims %d elements of at least %d bytes, %d bytes left", field, v, least, left)
		return 0, true
	}
	return int(v), false
}

// bytes reads a byte slice as appendBytes writes it. The slice aliases
// the payload, with its capacity cut to its length.
func (d *decoder) bytes(field string) []byte {
	n, isNil := d.count(field, 1)
	if isNil {
		return nil
	}
	s := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	return s
}

// end returns the first error, or one if bytes are left over.
// membership decodes a configuration that appendMembership encoded.
func (d *decoder) membership(field string) core.Membership {
	b := d.bytes(field)
	if d.err != nil || len(b) == 0 {
		return core.Membership{}
	}
	m, err := core.DecodeMembership(b)
	if err != nil {
		d.fail("%s: %v", field, err)
	}
	return m
}

// appendMembership appends m, length first; none is an empty field.
func appendMembership(b []byte, m core.Membership) ([]byte, error) {
	if m.Empty() {
		return appendBytes(b, nil), nil
	}
	enc, err := m.AppendBinary(nil)
	if err != nil {
		return b, err
	}
	return appendBytes(b, enc), nil
}

func (d *decoder) end() error {
	if d.err == nil && d.off != len(d.b) {
		d.fail("%d stray bytes at the end", len(d.b)-d.off)
	}
	return d.err
}

// decodeRequest decodes the payload of a request frame of type typ. The
// byte slices of the result (an entry's Command, a chunk's Data) alias p.
func decodeRequest(typ byte, p []byte) (any, error) {
	d := &decoder{typ: typ, b: p}
	switch typ {
	case typeRequestVote:
		r := &core.RequestVoteArgs{
			Term:         d.int("Term"),
			CandidateID:  d.int("CandidateID"),
			LastLogIndex: d.int("LastLogIndex"),
			LastLogTerm:  d.int("LastLogTerm"),
		}
		f := d.flags("flags", flagPreVote|flagTransfer)
		r.PreVote, r.Transfer = f&flagPreVote != 0, f&flagTransfer != 0
		return r, d.end()
	case typeAppendEntries:
		r := &core.AppendEntriesArgs{
			Term:         d.int("Term"),
			LeaderID:     d.int("LeaderID"),
			PrevLogIndex: d.int("PrevLogIndex"),
			PrevLogTerm:  d.int("PrevLogTerm"),
			LeaderCommit: d.int("LeaderCommit"),
		}
		// An entry takes at least 3 bytes: term, type, length.
		n, isNil := d.count("entry count", 3)
		if n > 0 && r.PrevLogIndex > math.MaxInt-n {
			d.fail("%d entries after PrevLogIndex %d overflow the index", n, r.PrevLogIndex)
		}
		if d.err == nil && !isNil {
			r.Entries = make([]core.Entry, n)
			for i := range r.Entries {
				e := &r.Entries[i]
				e.Index = r.PrevLogIndex + 1 + i
				e.Term = d.int("entry Term")
				e.Type = core.EntryType(d.u8("entry Type"))
				e.Command = d.bytes("entry Command")
			}
		}
		r.Round = d.uvarint("Round")
		return r, d.end()
	case typeInstallSnapshot:
		r := &core.InstallSnapshotArgs{
			Term:              d.int("Term"),
			LeaderID:          d.int("LeaderID"),
			LastIncludedIndex: d.int("LastIncludedIndex"),
			LastIncludedTerm:  d.int("LastIncludedTerm"),
			Offset:            d.varint("Offset"),
		}
		r.Done = d.flags("flags", flagDone) != 0
		r.Data = d.bytes("Data")
		r.Membership = d.membership("Membership")
		return r, d.end()
	case typeProbe:
		return &core.ProbeArgs{}, d.end()
	case typeTimeoutNow:
		r := &core.TimeoutNowArgs{Term: d.int("Term"), LeaderID: d.int("LeaderID")}
		return r, d.end()
	case typeReadIndex:
		r := &core.ReadIndexArgs{Term: d.int("Term"), ID: d.uvarint("ID")}
		return r, d.end()
	}
	return nil, fmt.Errorf("%w: frame of type %#x where a request was expected", errProtocol, typ)
}

// decodeReply decodes the payload of a reply frame of type typ (not an
// error frame).
func decodeReply(typ byte, p []byte) (any, error) {
	d := &decoder{typ: typ, b: p}
	switch typ {
	case typeRequestVote | typeReply:
		r := &core.RequestVoteReply{Term: d.int("Term")}
		f := d.flags("flags", flagVoteGranted|flagReplyPre)
		r.VoteGranted, r.PreVote = f&flagVoteGranted != 0, f&flagReplyPre != 0
		return r, d.end()
	case typeAppendEntries | typeReply:
		r := &core.AppendEntriesReply{Term: d.int("Term")}
		r.Success = d.flags("flags", flagSuccess) != 0
		r.Index = d.int("Index")
		r.ConflictTerm = d.int("ConflictTerm")
		r.ConflictIndex = d.int("ConflictIndex")
		r.Round = d.uvarint("Round")
		return r, d.end()
	case typeInstallSnapshot | typeReply:
		r := &core.InstallSnapshotReply{Term: d.int("Term"), Index: d.int("Index")}
		return r, d.end()
	case typeProbe | typeReply:
		r := &core.ProbeReply{Term: d.int("Term"), LastIndex: d.int("LastIndex")}
		f := d.flags("flags", flagEmpty|flagFounder)
		r.Empty, r.Founder = f&flagEmpty != 0, f&flagFounder != 0
		return r, d.end()
	case typeTimeoutNow | typeReply:
		r := &core.TimeoutNowReply{Term: d.int("Term")}
		return r, d.end()
	case typeReadIndex | typeReply:
		r := &core.ReadIndexReply{Term: d.int("Term"), ID: d.uvarint("ID"), Index: d.int("Index")}
		return r, d.end()
	}
	return nil, fmt.Errorf("%w: frame of type %#x where a reply was expected", errProtocol, typ)
}

// decodeError decodes the payload of an error frame.
func decodeError(p []byte) (code byte, msg string, err error) {
	d := &decoder{typ: typeError, b: p}
	code = d.u8("code")
	if code != codeFailed && code != codeLost {
		d.fail("unknown code %d", code)
	}
	n := d.uvarint("message length")
	if d.err == nil && n > uint64(len(p)-d.off) {
		d.fail("message of %d bytes, %d left", n, len(p)-d.off)
	}
	if d.err == nil {
		msg = string(p[d.off : d.off+int(n)])
		d.off += int(n)
	}
	return code, msg, d.end()
}
