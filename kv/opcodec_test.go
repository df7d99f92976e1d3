package kv

// Tests of the Op encoding in the log.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"
)

// codecOps are Ops with every kind, empty and long fields, and extreme
// numbers.
var codecOps = []Op{
	{Kind: Get, Key: "k"},
	{Kind: Put, Key: "key", Value: "value", ClientID: 42, Seq: 7, Time: 1767225600000000000},
	{Kind: Append, Key: "", Value: "", ClientID: -1, Seq: 0, Time: -5},
	{Kind: Delete, Key: "k\x00\xff", ClientID: math.MaxInt64, Seq: math.MaxInt64, Time: math.MinInt64},
	{Kind: Put, Key: strings.Repeat("k", 300), Value: strings.Repeat("v", 70000), ClientID: math.MinInt64, Seq: 1},
	memberHTTPOp(4, "10.0.0.4:8001"),
	{Kind: memberHTTP, Key: "9223372036854775807", Value: "https://db4.example:8443/", ClientID: 77, Time: 1767225600000000000},
}

func TestOpRoundTrip(t *testing.T) {
	for _, op := range codecOps {
		b, err := op.MarshalBinary()
		if err != nil {
			t.Fatalf("encode %+v: %v", op, err)
		}
		var got Op
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatalf("decode the encoding of %.80v: %v", op, err)
		}
		if got != op {
			t.Fatalf("round trip of %.80v gives %.80v", op, got)
		}
	}
}

func TestOpEncodeUnknownKind(t *testing.T) {
	_, err := Op{Kind: "frob", Key: "k"}.MarshalBinary()
	if err == nil || !strings.Contains(err.Error(), `unknown kind "frob"`) {
		t.Fatalf("encode of an unknown kind: %v; want an error naming it", err)
	}
}

// TestOpDecodeMalformed: every input that MarshalBinary would not write is
// refused, with an error that says what is wrong, and leaves the Op as it
// was.
func TestOpDecodeMalformed(t *testing.T) {
	good, err := Op{Kind: Put, Key: "key", Value: "val", ClientID: 300, Seq: 2, Time: 99}.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// good is: version, kind, client ID (2 bytes), seq, time (2 bytes),
	// key length, key, value length, value.
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	cases := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "empty at byte 0"},
		{"unknown version", cat([]byte{2}, good[1:]), "version 2 at byte 0"},
		{"version 0", cat([]byte{0}, good[1:]), "version 0 at byte 0"},
		{"no kind", good[:1], "no kind at byte 1"},
		{"kind 0", cat(good[:1], []byte{0}, good[2:]), "unknown kind 0 at byte 1"},
		{"kind 6", cat(good[:1], []byte{6}, good[2:]), "unknown kind 6 at byte 1"},
		{"client ID truncated", good[:3], "client ID: truncated at byte 2"},
		{"client ID over 64 bits", cat(good[:2], bytes.Repeat([]byte{0xff}, 10), []byte{0x7f}), "client ID: over 64 bits at byte 2"},
		{"client ID not minimal", cat(good[:2], []byte{0x80, 0x00}, good[4:]), "client ID: varint not in its shortest form (2 bytes, not 1) at byte 2"},
		{"seq missing", good[:4], "seq: truncated at byte 4"},
		{"time missing", good[:5], "time: truncated at byte 5"},
		{"key length missing", good[:7], "key length: truncated at byte 7"},
		{"key length not minimal", cat(good[:7], []byte{0x83, 0x00}, good[8:]), "key length: uvarint not in its shortest form (2 bytes, not 1) at byte 7"},
		{"key cut", good[:9], "key of 3 bytes, with 1 left at byte 7"},
		{"key length over the input", cat(good[:7], binary.AppendUvarint(nil, math.MaxUint64)), "key of 18446744073709551615 bytes, with 0 left at byte 7"},
		{"value length missing", good[:11], "value length: truncated at byte 11"},
		{"value cut", good[:len(good)-1], "value of 3 bytes, with 2 left at byte 11"},
		{"trailing bytes", cat(good, []byte{0, 1}), "2 bytes after the value at byte 15"},
	}
	for _, tc := range cases {
		op := Op{Kind: Get, Key: "untouched"}
		err := op.UnmarshalBinary(tc.in)
		if err == nil || !errors.Is(err, errBadOp) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s (% x): %v; want an error saying %q", tc.name, tc.in, err, tc.want)
		}
		if op != (Op{Kind: Get, Key: "untouched"}) {
			t.Errorf("%s: a refused decode changed the Op to %+v", tc.name, op)
		}
	}
	// Every proper prefix of a valid encoding is refused.
	for n := range len(good) {
		var op Op
		if err := op.UnmarshalBinary(good[:n]); err == nil {
			t.Errorf("the first %d of %d bytes of an encoding decode, to %+v", n, len(good), op)
		}
	}
}

// FuzzOpDecode: no input crashes the decoder, and an input it accepts is
// exactly the encoding of what it decoded (one encoding per Op).
func FuzzOpDecode(f *testing.F) {
	for _, op := range codecOps[:4] {
		b, err := op.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{1, 2, 0x80, 0x00})
	f.Fuzz(func(t *testing.T, in []byte) {
		var op Op
		if err := op.UnmarshalBinary(in); err != nil {
			if !errors.Is(err, errBadOp) {
				t.Fatalf("decode error %v does not wrap errBadOp", err)
			}
			return
		}
		out, err := op.MarshalBinary()
		if err != nil {
			t.Fatalf("a decoded op does not encode: %v", err)
		}
		if !bytes.Equal(in, out) {
			t.Fatalf("% x decodes to %+v, which encodes to % x", in, op, out)
		}
	})
}
