package kvcheck_test

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/raftkit/raft/kv"
	"github.com/raftkit/raft/kv/kvcheck"
)

// The checker and the model can fail: hand-made histories.

func op(client int, in kvcheck.Input, out kvcheck.Output, call, ret int64) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: in, Output: out, Call: call, Return: ret}
}

func get(k string) kvcheck.Input                         { return kvcheck.Input{Kind: kv.Get, Key: k} }
func put(k, v string) kvcheck.Input                      { return kvcheck.Input{Kind: kv.Put, Key: k, Value: v} }
func appendOp(k, v string) kvcheck.Input                 { return kvcheck.Input{Kind: kv.Append, Key: k, Value: v} }
func del(k string) kvcheck.Input                         { return kvcheck.Input{Kind: kv.Delete, Key: k} }
func found(v string) kvcheck.Output                      { return kvcheck.Output{Value: v, Found: true} }
func absent() kvcheck.Output                             { return kvcheck.Output{} }
func unknown() kvcheck.Output                            { return kvcheck.Output{Unknown: true} }
func never() int64                                       { return math.MaxInt64 }
func ops(o ...porcupine.Operation) []porcupine.Operation { return o }

func TestCheckerModel(t *testing.T) {
	cases := []struct {
		name string
		ops  []porcupine.Operation
		want porcupine.CheckResult
	}{
		{"get of a value never written", ops(
			op(0, put("x", "a"), absent(), 0, 10),
			op(1, get("x"), found("b"), 20, 30),
		), porcupine.Illegal},
		{"stale read after a completed put", ops(
			op(0, put("x", "a"), absent(), 0, 10),
			op(0, put("x", "b"), found("a"), 11, 20),
			op(1, get("x"), found("a"), 30, 40),
		), porcupine.Illegal},
		{"reads that disagree on the order of two puts", ops(
			op(0, put("x", "a"), absent(), 0, 100),
			op(1, put("x", "b"), absent(), 0, 100),
			op(2, get("x"), found("a"), 110, 120),
			op(3, get("x"), found("b"), 130, 140),
		), porcupine.Illegal},
		{"an append applied twice", ops(
			op(0, appendOp("x", "t;"), absent(), 0, 10),
			op(1, get("x"), found("t;t;"), 20, 30),
		), porcupine.Illegal},
		{"a get of a deleted key", ops(
			op(0, put("x", "a"), absent(), 0, 10),
			op(0, del("x"), found("a"), 20, 30),
			op(1, get("x"), found("a"), 40, 50),
		), porcupine.Illegal},
		{"a put reporting a wrong previous value", ops(
			op(0, put("x", "a"), absent(), 0, 10),
			op(0, put("x", "b"), absent(), 20, 30),
		), porcupine.Illegal},
		{"a violation on one key among legal keys", ops(
			op(0, put("y", "a"), absent(), 0, 10),
			op(1, get("y"), found("a"), 20, 30),
			op(0, put("x", "a"), absent(), 0, 10),
			op(1, get("x"), absent(), 20, 30),
		), porcupine.Illegal},
		{"an unknown put cannot make a value appear before its call", ops(
			op(1, get("x"), found("a"), 0, 10),
			op(0, put("x", "a"), unknown(), 20, never()),
		), porcupine.Illegal},
		{"concurrent puts, reads agree", ops(
			op(0, put("x", "a"), absent(), 0, 100),
			op(1, put("x", "b"), found("a"), 0, 100),
			op(2, get("x"), found("b"), 50, 120),
			op(3, get("x"), found("b"), 130, 140),
		), porcupine.Ok},
		{"appends, deletes, a missing key", ops(
			op(0, get("x"), absent(), 0, 10),
			op(0, appendOp("x", "1"), absent(), 11, 20),
			op(1, appendOp("x", "2"), found("1"), 21, 30),
			op(1, get("x"), found("12"), 31, 40),
			op(0, del("x"), found("12"), 41, 50),
			op(0, del("x"), absent(), 51, 60),
			op(1, get("x"), absent(), 61, 70),
		), porcupine.Ok},
		{"an unknown put that happened", ops(
			op(0, put("x", "a"), unknown(), 0, never()),
			op(1, get("x"), found("a"), 20, 30),
		), porcupine.Ok},
		{"an unknown append that did not happen", ops(
			op(0, appendOp("x", "a"), unknown(), 0, never()),
			op(1, get("x"), absent(), 20, 30),
			op(1, put("x", "b"), absent(), 40, 50),
			op(1, get("x"), found("b"), 60, 70),
		), porcupine.Ok},
		{"an unknown append that happened late", ops(
			op(0, appendOp("x", "a"), unknown(), 0, never()),
			op(1, get("x"), absent(), 20, 30),
			op(1, get("x"), found("a"), 40, 50),
		), porcupine.Ok},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, _ := porcupine.CheckOperationsVerbose(kvcheck.Model, c.ops, 5*time.Second)
			if res != c.want {
				t.Fatalf("check: %s, want %s", res, c.want)
			}
		})
	}
}

// TestCheckerVisualization checks that porcupine writes a visualization of
// an illegal history under the model, describing its operations.
func TestCheckerVisualization(t *testing.T) {
	h := ops(
		op(0, put("x", "a"), absent(), 0, 10),
		op(1, get("x"), found("b"), 20, 30),
	)
	res, info := porcupine.CheckOperationsVerbose(kvcheck.Model, h, 5*time.Second)
	if res != porcupine.Illegal {
		t.Fatalf("check: %s, want Illegal", res)
	}
	path := filepath.Join(t.TempDir(), "v.html")
	if err := porcupine.VisualizePath(kvcheck.Model, info, path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `get(x) -> \"b\"`) && !strings.Contains(string(b), "get(x)") {
		t.Fatalf("visualization (%d bytes) does not describe the operations", len(b))
	}
}

// fakeTB records how Check ends a test: Fatalf stops the goroutine, as
// testing.T's does, after recording the message.
type fakeTB struct {
	testing.TB // the real test: Name, ArtifactDir
	fatal      string
}

func (f *fakeTB) Helper()                      {}
func (f *fakeTB) Logf(format string, a ...any) { f.TB.Logf(format, a...) }
func (f *fakeTB) Fatalf(format string, a ...any) {
	f.fatal = fmt.Sprintf(format, a...)
	runtime.Goexit()
}

// check runs kvcheck.Check on ops with a fake test and returns the
// failure message ("" if it passed).
func check(t *testing.T, ops []porcupine.Operation) string {
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		kvcheck.Check(f, ops, 5*time.Second)
	}()
	<-done
	return f.fatal
}

// TestCheck checks that Check passes a linearizable history, and fails an
// illegal one naming a visualization it wrote.
func TestCheck(t *testing.T) {
	h := kvcheck.NewHistory()
	h.Add(0, put("x", "a"), absent(), h.Now(), h.Now(), "put")
	h.AddUnknown(1, appendOp("x", "b"), h.Now(), "unknown append")
	h.Add(0, get("x"), found("ab"), h.Now(), h.Now(), "get")
	if msg := check(t, h.Operations()); msg != "" {
		t.Fatalf("Check of a linearizable history failed: %s", msg)
	}
	if ret := h.Operations()[1].Return; ret != math.MaxInt64 {
		t.Errorf("AddUnknown recorded return time %d, want math.MaxInt64", ret)
	}

	msg := check(t, ops(
		op(0, put("x", "a"), absent(), 0, 10),
		op(1, get("x"), found("b"), 20, 30),
	))
	const prefix = "history is not linearizable; visualization: "
	path, ok := strings.CutPrefix(msg, prefix)
	if !ok {
		t.Fatalf("Check of an illegal history: %q, want %q and a path", msg, prefix)
	}
	if !strings.HasPrefix(path, t.ArtifactDir()) {
		t.Cleanup(func() { os.Remove(path) })
	}
	if b, err := os.ReadFile(path); err != nil || !strings.Contains(string(b), "get(x)") {
		t.Fatalf("visualization %s: %d bytes, %v; want one describing get(x)", path, len(b), err)
	}
	if dir := filepath.Dir(path); dir != t.ArtifactDir() && dir != filepath.Clean(os.TempDir()) {
		t.Errorf("visualization written to %s, want it in t.ArtifactDir() or os.TempDir()", dir)
	}
}
