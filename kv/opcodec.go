package kv

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// An Op travels through the Raft log in a compact binary form:
//
//	version  1 byte, opVersion
//	kind     1 byte: 1 get, 2 put, 3 append, 4 delete, 5 a server's
//	         HTTP address (see memberHTTP: the key is the server's ID in
//	         decimal, the value the address)
//	ClientID varint (zig-zag, as encoding/binary's)
//	Seq      varint
//	Time     varint
//	Key      uvarint length, then the bytes
//	Value    uvarint length, then the bytes
//
// Every varint takes its shortest form and nothing follows the value, so
// that each Op has exactly one encoding. A replica refuses a version it
// does not know rather than guess: every replica must read what any
// replica writes. (A replica older than kind 5 stops at the first entry
// of that kind: upgrade every replica before recording HTTP addresses.)
const opVersion = 1

// kindCodes numbers the kinds in the encoding; the numbers never change.
var kindCodes = map[Kind]byte{Get: 1, Put: 2, Append: 3, Delete: 4, memberHTTP: 5}

// codeKinds is kindCodes inverted.
var codeKinds = map[byte]Kind{1: Get, 2: Put, 3: Append, 4: Delete, 5: memberHTTP}

// errBadOp is wrapped by every error of UnmarshalBinary.
var errBadOp = errors.New("kv: malformed op")

// MarshalBinary returns op's encoding in the log. It fails only for an
// unknown Kind, or a record of an HTTP address that is not valid.
func (op Op) MarshalBinary() ([]byte, error) {
	code, ok := kindCodes[op.Kind]
	if !ok {
		return nil, fmt.Errorf("kv: encode op: unknown kind %q (want get, put, append or delete)", op.Kind)
	}
	if op.Kind == memberHTTP {
		if _, _, err := memberHTTPOf(op); err != nil {
			return nil, fmt.Errorf("kv: encode op: %w", err)
		}
	}
	b := make([]byte, 0, 2+3*binary.MaxVarintLen64+2*binary.MaxVarintLen32+len(op.Key)+len(op.Value))
	b = append(b, opVersion, code)
	b = binary.AppendVarint(b, op.ClientID)
	b = binary.AppendVarint(b, op.Seq)
	b = binary.AppendVarint(b, op.Time)
	b = binary.AppendUvarint(b, uint64(len(op.Key)))
	b = append(b, op.Key...)
	b = binary.AppendUvarint(b, uint64(len(op.Value)))
	b = append(b, op.Value...)
	return b, nil
}

// UnmarshalBinary sets op from its encoding in the log. It refuses
// anything MarshalBinary would not have written, with an error that says
// what is wrong and at which byte; op is then left as it was.
func (op *Op) UnmarshalBinary(b []byte) error {
	d := opDecoder{b: b}
	if len(b) == 0 {
		return d.fail("empty")
	}
	if v := d.byte(); v != opVersion {
		return fmt.Errorf("%w: version %d at byte 0, which this server does not know (it reads version %d): is a newer replica in the cluster?", errBadOp, v, opVersion)
	}
	var o Op
	if len(d.b) == d.off {
		return d.fail("no kind")
	}
	code := d.byte()
	kind, ok := codeKinds[code]
	if !ok {
		d.off--
		return d.fail(fmt.Sprintf("unknown kind %d", code))
	}
	o.Kind = kind
	for _, f := range []struct {
		name string
		v    *int64
	}{{"client ID", &o.ClientID}, {"seq", &o.Seq}, {"time", &o.Time}} {
		if err := d.varint(f.name, f.v); err != nil {
			return err
		}
	}
	keyAt := d.off // where the key starts
	for _, f := range []struct {
		name string
		v    *string
	}{{"key", &o.Key}, {"value", &o.Value}} {
		if err := d.string(f.name, f.v); err != nil {
			return err
		}
	}
	if d.off != len(d.b) {
		return d.fail(fmt.Sprintf("%d bytes after the value", len(d.b)-d.off))
	}
	if o.Kind == memberHTTP {
		if _, _, err := memberHTTPOf(o); err != nil {
			d.off = keyAt
			return d.fail("record of an HTTP address: " + err.Error())
		}
	}
	*op = o
	return nil
}

// opDecoder reads an Op's encoding, keeping the offset for its errors.
type opDecoder struct {
	b   []byte
	off int
}

func (d *opDecoder) fail(what string) error {
	return fmt.Errorf("%w: %s at byte %d of %d", errBadOp, what, d.off, len(d.b))
}

func (d *opDecoder) byte() byte {
	c := d.b[d.off]
	d.off++
	return c
}

// varint reads a varint in its shortest form.
func (d *opDecoder) varint(name string, v *int64) error {
	x, n := binary.Varint(d.b[d.off:])
	switch {
	case n == 0:
		return d.fail(name + ": truncated")
	case n < 0:
		return d.fail(name + ": over 64 bits")
	case n != varintLen(x):
		return d.fail(fmt.Sprintf("%s: varint not in its shortest form (%d bytes, not %d)", name, n, varintLen(x)))
	}
	d.off += n
	*v = x
	return nil
}

// string reads a length in its shortest form, then that many bytes.
func (d *opDecoder) string(name string, v *string) error {
	x, n := binary.Uvarint(d.b[d.off:])
	switch {
	case n == 0:
		return d.fail(name + " length: truncated")
	case n < 0:
		return d.fail(name + " length: over 64 bits")
	case n != uvarintLen(x):
		return d.fail(fmt.Sprintf("%s length: uvarint not in its shortest form (%d bytes, not %d)", name, n, uvarintLen(x)))
	}
	if left := uint64(len(d.b) - d.off - n); x > left {
		return d.fail(fmt.Sprintf("%s of %d bytes, with %d left", name, x, left))
	}
	d.off += n
	*v = string(d.b[d.off : d.off+int(x)])
	d.off += int(x)
	return nil
}

func varintLen(x int64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutVarint(b[:], x)
}

func uvarintLen(x uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], x)
}
