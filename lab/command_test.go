package lab

import (
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/labgob"
)

type testCommand struct {
	Key   string
	Value []int
}

func init() { labgob.Register(testCommand{}) }

func TestCommandRoundTrip(t *testing.T) {
	for _, cmd := range []any{
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

// A committed command the service cannot decode stops the server with an
// error rather than skipping it or crashing the process.
func TestUndecodableCommandStopsServer(t *testing.T) {
	ch := make(chan ApplyMsg, 10)
	var failed error
	sm := &chanSM{ch: ch, done: make(chan struct{}), fail: func(err error) { failed = err }}
	good, _ := encodeCommand(5)
	sm.Apply(raft.Command{Index: 1, Term: 1, Data: good})
	sm.Apply(raft.Command{Index: 2, Term: 1, Data: []byte{99}})
	if failed == nil || !strings.Contains(failed.Error(), "index 2") {
		t.Fatalf("failure reported: %v, want one naming index 2", failed)
	}
	if len(ch) != 1 {
		t.Fatalf("%d commands sent, want 1 (the one before the bad one)", len(ch))
	}
	if m := <-ch; m.CommandIndex != 1 || m.Command != 5 || m.CommandTerm != 1 {
		t.Errorf("sent %+v, want command 5 at index 1 of term 1", m)
	}
}

// TestStoppedServerSendsNoGap checks that a stopped server's apply channel
// never skips a command: with a reader always ready, a stopped chanSM
// sends nothing more, so what it sent is a prefix of what it applied.
func TestStoppedServerSendsNoGap(t *testing.T) {
	ch := make(chan ApplyMsg)
	got := make(chan []int)
	go func() {
		var idx []int
		for m := range ch {
			idx = append(idx, m.CommandIndex)
		}
		got <- idx
	}()
	sm := &chanSM{ch: ch, done: make(chan struct{}), fail: func(err error) { t.Error(err) }}
	data, err := encodeCommand(1)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 10; i++ {
		sm.Apply(raft.Command{Index: i, Term: 1, Data: data})
	}
	sm.stop()
	for i := 11; i <= 200; i++ {
		runtime.Gosched() // let the reader wait on the channel again
		sm.Apply(raft.Command{Index: i, Term: 1, Data: data})
	}
	close(ch)
	idx := <-got
	for k, i := range idx {
		if i != k+1 {
			t.Fatalf("the apply channel got %v: index %d in place %d", idx, i, k+1)
		}
	}
	if len(idx) != 10 {
		t.Fatalf("the apply channel got %d commands, want the 10 applied before the stop", len(idx))
	}
}
