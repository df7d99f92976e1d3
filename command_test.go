package raft

import (
	"math"
	"reflect"
	"testing"

	"github.com/raftkit/raft/core"
	"github.com/raftkit/raft/labgob"
)

type testCommand struct {
	Key   string
	Value []int
}

func init() { labgob.Register(testCommand{}) }

func TestCommandRoundTrip(t *testing.T) {
	for _, cmd := range []interface{}{
		0, 1, -1, math.MaxInt, math.MinInt, "", "x", "ünïcode",
		testCommand{Key: "k", Value: []int{1, 2}}, int64(7), []byte("b"),
	} {
		b, err := encodeCommand(cmd)
		if err != nil {
			t.Fatalf("encode %#v: %v", cmd, err)
		}
		got, err := decodeCommand(b)
		if err != nil {
			t.Fatalf("decode %#v: %v", cmd, err)
		}
		if !reflect.DeepEqual(got, cmd) {
			t.Errorf("decoded %#v (%T), want %#v (%T)", got, got, cmd, cmd)
		}
	}
}

func TestCommandMalformed(t *testing.T) {
	for _, b := range [][]byte{
		nil,
		{0},
		{99, 1},
		{cmdInt},
		{cmdInt, 2, 0}, // trailing byte
		{cmdInt, 0x80}, // truncated varint
		{cmdGob, 1, 2, 3},
	} {
		if cmd, err := decodeCommand(b); err == nil {
			t.Errorf("decode %v = %#v, want an error", b, cmd)
		}
	}
}

// A committed command the server cannot decode stops the server with an
// error rather than skipping it or crashing the process.
func TestApplierStopsOnUndecodableCommand(t *testing.T) {
	ch := make(chan ApplyMsg, 10)
	done := make(chan struct{})
	var failed error
	a := &applier{wake: make(chan struct{}, 1), ch: ch, done: done, metrics: newMetrics(), fail: func(err error) { failed = err; close(done) }}
	good, _ := encodeCommand(5)
	a.push([]core.Entry{{Index: 1, Command: good}, {Index: 2, Command: []byte{99}}, {Index: 3, Command: good}})
	a.run()
	if failed == nil {
		t.Fatal("no failure reported")
	}
	if len(ch) != 1 {
		t.Fatalf("%d commands applied, want 1 (those before the bad one)", len(ch))
	}
	if m := <-ch; m.CommandIndex != 1 || m.Command != 5 {
		t.Errorf("applied %+v, want command 5 at index 1", m)
	}
}
