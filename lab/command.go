package lab

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/raftkit/raft/labgob"
)

// A command is kept in the log as a tag byte and the command's encoding.
// Ints and strings, the commonest commands, are encoded directly; any other
// value goes through labgob (with its warnings), in a stream of its own.
const (
	cmdGob byte = iota + 1
	cmdInt
	cmdString
)

// encodeCommand returns the log's encoding of cmd.
func encodeCommand(cmd any) ([]byte, error) {
	switch c := cmd.(type) {
	case int:
		return binary.AppendVarint([]byte{cmdInt}, int64(c)), nil
	case string:
		return append([]byte{cmdString}, c...), nil
	}
	buf := bytes.NewBuffer([]byte{cmdGob})
	if err := labgob.NewEncoder(buf).Encode(&cmd); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// decodeCommand returns the command that encodeCommand encoded into b.
func decodeCommand(b []byte) (any, error) {
	if len(b) == 0 {
		return nil, errors.New("empty command")
	}
	switch b[0] {
	case cmdInt:
		v, n := binary.Varint(b[1:])
		if n <= 0 || 1+n != len(b) {
			return nil, errors.New("malformed int command")
		}
		return int(v), nil
	case cmdString:
		return string(b[1:]), nil
	case cmdGob:
		var cmd any
		err := labgob.NewDecoder(bytes.NewReader(b[1:])).Decode(&cmd)
		return cmd, err
	}
	return nil, fmt.Errorf("unknown command encoding %d", b[0])
}
