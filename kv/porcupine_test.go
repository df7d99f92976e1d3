package kv_test

// The sequential specification of the store for porcupine's
// linearizability checker, and histories recorded by the tests.

import (
	"flag"
	"fmt"
	"hash/fnv"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/raftkit/raft/kv"
)

// kvInput is an operation as issued.
type kvInput struct {
	Kind  kv.Kind
	Key   string
	Value string // Put, Append
}

// kvOutput is its outcome: for Get the value, for Put, Append and Delete
// the value before (as kv.Result). Unknown marks an operation whose outcome
// the client never learned (kv.ErrUnknown): it may or may not have taken
// effect, with any result. It is recorded with an infinite return time, so
// the checker may place it anywhere after its call, including after
// everything else (that is, never).
type kvOutput struct {
	Value   string
	Found   bool
	Unknown bool
}

// kvState is one key's state.
type kvState struct {
	Value string
	Found bool
}

// kvModel is the model of one key (histories are partitioned by key).
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(kvInput).Key
			byKey[k] = append(byKey[k], op)
		}
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, byKey[k])
		}
		return parts
	},
	PartitionEvent: func(history []porcupine.Event) [][]porcupine.Event {
		// The key is in the call's input only: map ids to keys first.
		keyOf := map[int]string{}
		for _, e := range history {
			if e.Kind == porcupine.CallEvent {
				keyOf[e.Id] = e.Value.(kvInput).Key
			}
		}
		byKey := map[string][]porcupine.Event{}
		for _, e := range history {
			k := keyOf[e.Id]
			byKey[k] = append(byKey[k], e)
		}
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([][]porcupine.Event, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, byKey[k])
		}
		return parts
	},
	Init: func() interface{} { return kvState{} },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		st, in, out := state.(kvState), input.(kvInput), output.(kvOutput)
		var next kvState
		switch in.Kind {
		case kv.Get:
			next = st
		case kv.Put:
			next = kvState{Value: in.Value, Found: true}
		case kv.Append:
			next = kvState{Value: st.Value + in.Value, Found: true}
		case kv.Delete:
			next = kvState{}
		default:
			return false, st
		}
		if out.Unknown {
			return true, next
		}
		// Every operation reports the state it found.
		return out.Value == st.Value && out.Found == st.Found, next
	},
	Equal: func(a, b interface{}) bool { return a.(kvState) == b.(kvState) },
	Hash: func(state interface{}) uint64 {
		st := state.(kvState)
		h := fnv.New64a()
		h.Write([]byte(st.Value))
		if st.Found {
			h.Write([]byte{1})
		}
		return h.Sum64()
	},
	DescribeOperation: func(input, output interface{}) string {
		in, out := input.(kvInput), output.(kvOutput)
		var res string
		switch {
		case out.Unknown:
			res = "unknown"
		case !out.Found:
			res = "absent"
		default:
			res = fmt.Sprintf("%q", short(out.Value))
		}
		switch in.Kind {
		case kv.Get, kv.Delete:
			return fmt.Sprintf("%s(%s) -> %s", in.Kind, in.Key, res)
		default:
			return fmt.Sprintf("%s(%s, %q) -> %s", in.Kind, in.Key, in.Value, res)
		}
	},
	DescribeState: func(state interface{}) string {
		st := state.(kvState)
		if !st.Found {
			return "absent"
		}
		return fmt.Sprintf("%q", short(st.Value))
	},
}

// short keeps the end of long values, where appends land.
func short(s string) string {
	if len(s) > 48 {
		return "…" + s[len(s)-47:]
	}
	return s
}

// checkTimeout bounds one linearizability check.
const checkTimeout = 30 * time.Second

// history collects operations from concurrent clients.
type history struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
}

func newHistory() *history { return &history{start: time.Now()} }

// now is the history's clock: monotonic nanoseconds since its start.
func (h *history) now() int64 { return int64(time.Since(h.start)) }

// add records an operation that returned with output out.
func (h *history) add(client int, in kvInput, out kvOutput, call, ret int64, meta string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret, Metadata: meta})
}

// addUnknown records an operation whose outcome is unknown.
func (h *history) addUnknown(client int, in kvInput, call int64, meta string) {
	h.add(client, in, kvOutput{Unknown: true}, call, math.MaxInt64, meta)
}

func (h *history) operations() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]porcupine.Operation(nil), h.ops...)
}

// visualizationPath returns where to write a visualization for t: under
// t.ArtifactDir() when go test runs with -artifacts (otherwise that
// directory is removed with the test), else in os.TempDir().
func visualizationPath(t *testing.T) (string, error) {
	if f := flag.Lookup("test.artifacts"); f != nil && f.Value.String() == "true" {
		return filepath.Join(t.ArtifactDir(), "linearizability.html"), nil
	}
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	f, err := os.CreateTemp("", "kv-"+name+"-*.html")
	if err != nil {
		return "", err
	}
	f.Close()
	return f.Name(), nil
}

// checkLinearizable fails t unless porcupine finds ops linearizable within
// checkTimeout. For an illegal history it writes porcupine's visualization
// and names the file.
func checkLinearizable(t *testing.T, ops []porcupine.Operation) {
	t.Helper()
	start := time.Now()
	res, info := porcupine.CheckOperationsVerbose(kvModel, ops, checkTimeout)
	t.Logf("linearizability check of %d operations: %s in %v", len(ops), res, time.Since(start).Round(time.Millisecond))
	switch res {
	case porcupine.Ok:
	case porcupine.Illegal:
		path, err := visualizationPath(t)
		if err == nil {
			err = porcupine.VisualizePath(kvModel, info, path)
		}
		if err != nil {
			t.Fatalf("history is not linearizable (and writing the visualization failed: %v)", err)
		}
		t.Fatalf("history is not linearizable; visualization: %s", path)
	default:
		t.Fatalf("linearizability check gave %s after %v (history too large?)", res, checkTimeout)
	}
}

// The checker and the model can fail: hand-made histories.

func op(client int, in kvInput, out kvOutput, call, ret int64) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: in, Output: out, Call: call, Return: ret}
}

func get(k string) kvInput                               { return kvInput{Kind: kv.Get, Key: k} }
func put(k, v string) kvInput                            { return kvInput{Kind: kv.Put, Key: k, Value: v} }
func appendOp(k, v string) kvInput                       { return kvInput{Kind: kv.Append, Key: k, Value: v} }
func del(k string) kvInput                               { return kvInput{Kind: kv.Delete, Key: k} }
func found(v string) kvOutput                            { return kvOutput{Value: v, Found: true} }
func absent() kvOutput                                   { return kvOutput{} }
func unknown() kvOutput                                  { return kvOutput{Unknown: true} }
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
			res, _ := porcupine.CheckOperationsVerbose(kvModel, c.ops, 5*time.Second)
			if res != c.want {
				t.Fatalf("check: %s, want %s", res, c.want)
			}
		})
	}
}

// TestCheckerVisualization checks that an illegal history makes
// checkLinearizable fail with a visualization on disk.
func TestCheckerVisualization(t *testing.T) {
	h := ops(
		op(0, put("x", "a"), absent(), 0, 10),
		op(1, get("x"), found("b"), 20, 30),
	)
	res, info := porcupine.CheckOperationsVerbose(kvModel, h, 5*time.Second)
	if res != porcupine.Illegal {
		t.Fatalf("check: %s, want Illegal", res)
	}
	path := filepath.Join(t.TempDir(), "v.html")
	if err := porcupine.VisualizePath(kvModel, info, path); err != nil {
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
