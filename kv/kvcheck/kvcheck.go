package kvcheck

import (
	"flag"
	"fmt"
	"hash/fnv"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/raftkit/raft/kv"
)

// Input is an operation as issued: the input of a porcupine.Operation in
// histories checked against Model.
type Input struct {
	Kind  kv.Kind
	Key   string
	Value string // Put, Append
}

// Output is an operation's outcome: for Get the value, for Put, Append and
// Delete the value before (as kv.Result). Unknown marks an operation whose
// outcome the client never learned (kv.ErrUnknown): it may or may not have
// taken effect, with any result. It is recorded with an infinite return
// time (see History.AddUnknown), so the checker may place it anywhere after
// its call, including after everything else (that is, never).
type Output struct {
	Value   string
	Found   bool
	Unknown bool
}

// state is one key's state.
type state struct {
	Value string
	Found bool
}

// Model is the sequential specification of the store for porcupine, with
// Input and Output as operations' input and output. Histories are
// partitioned by key; Model is the model of one key. An operation of a
// kind other than Get, Put, Append and Delete is never legal.
var Model = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		return partition(history, func(op porcupine.Operation) string { return op.Input.(Input).Key })
	},
	PartitionEvent: func(history []porcupine.Event) [][]porcupine.Event {
		// The key is in the call's input only: map ids to keys first.
		keyOf := map[int]string{}
		for _, e := range history {
			if e.Kind == porcupine.CallEvent {
				keyOf[e.Id] = e.Value.(Input).Key
			}
		}
		return partition(history, func(e porcupine.Event) string { return keyOf[e.Id] })
	},
	Init: func() any { return state{} },
	Step: func(st, input, output any) (bool, any) {
		s, in, out := st.(state), input.(Input), output.(Output)
		var next state
		switch in.Kind {
		case kv.Get:
			next = s
		case kv.Put:
			next = state{Value: in.Value, Found: true}
		case kv.Append:
			next = state{Value: s.Value + in.Value, Found: true}
		case kv.Delete:
			next = state{}
		default:
			return false, s
		}
		if out.Unknown {
			return true, next
		}
		// Every operation reports the state it found.
		return out.Value == s.Value && out.Found == s.Found, next
	},
	Equal: func(a, b any) bool { return a.(state) == b.(state) },
	Hash: func(st any) uint64 {
		s := st.(state)
		h := fnv.New64a()
		h.Write([]byte(s.Value))
		if s.Found {
			h.Write([]byte{1})
		}
		return h.Sum64()
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(Input), output.(Output)
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
	DescribeState: func(st any) string {
		s := st.(state)
		if !s.Found {
			return "absent"
		}
		return fmt.Sprintf("%q", short(s.Value))
	},
}

// partition groups items by key, in the order of the keys.
func partition[T any](items []T, key func(T) string) [][]T {
	byKey := map[string][]T{}
	for _, it := range items {
		k := key(it)
		byKey[k] = append(byKey[k], it)
	}
	keys := slices.Sorted(maps.Keys(byKey))
	parts := make([][]T, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, byKey[k])
	}
	return parts
}

// short keeps the end of long values, where appends land.
func short(s string) string {
	if len(s) > 48 {
		return "…" + s[len(s)-47:]
	}
	return s
}

// History collects operations from concurrent clients; it is safe for
// concurrent use. Its times come from its own clock (Now).
type History struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
}

// NewHistory returns an empty history whose clock starts now.
func NewHistory() *History { return &History{start: time.Now()} }

// Now is the history's clock: monotonic nanoseconds since NewHistory.
func (h *History) Now() int64 { return int64(time.Since(h.start)) }

// Add records an operation of client that was called at call and returned
// out at ret (times from Now). meta labels it in the visualization.
func (h *History) Add(client int, in Input, out Output, call, ret int64, meta string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret, Metadata: meta})
}

// AddUnknown records an operation of client, called at call, whose outcome
// is unknown: its output is Output{Unknown: true} and its return time
// math.MaxInt64.
func (h *History) AddUnknown(client int, in Input, call int64, meta string) {
	h.Add(client, in, Output{Unknown: true}, call, math.MaxInt64, meta)
}

// Operations returns a copy of the operations recorded so far.
func (h *History) Operations() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]porcupine.Operation(nil), h.ops...)
}

// Check fails t unless porcupine finds ops (with Input and Output as
// input and output) linearizable under Model within timeout: it fails on
// an Illegal history and on an Unknown result (the check timed out). For
// an illegal history it writes porcupine's HTML visualization to a file and
// names the file in the failure message: under t.ArtifactDir() when go
// test runs with -artifacts, else in os.TempDir().
func Check(t testing.TB, ops []porcupine.Operation, timeout time.Duration) {
	t.Helper()
	start := time.Now()
	res, info := porcupine.CheckOperationsVerbose(Model, ops, timeout)
	t.Logf("linearizability check of %d operations: %s in %v", len(ops), res, time.Since(start).Round(time.Millisecond))
	switch res {
	case porcupine.Ok:
	case porcupine.Illegal:
		path, err := visualizationPath(t)
		if err == nil {
			err = porcupine.VisualizePath(Model, info, path)
		}
		if err != nil {
			t.Fatalf("history is not linearizable (and writing the visualization failed: %v)", err)
		}
		t.Fatalf("history is not linearizable; visualization: %s", path)
	default:
		t.Fatalf("linearizability check gave %s after %v (history too large?)", res, timeout)
	}
}

// visualizationPath returns where to write a visualization for t: under
// t.ArtifactDir() when go test runs with -artifacts (otherwise that
// directory is removed with the test), else in os.TempDir().
func visualizationPath(t testing.TB) (string, error) {
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
