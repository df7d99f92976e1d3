package labgob

import (
	"bytes"
	"reflect"
	"sync"
	"testing"
	"time"
)

type item struct {
	Term    int
	Command any
}

type state struct {
	A     int
	B     []int
	C     string
	D     map[string]int
	Log   []item
	Inner *inner
}

type inner struct {
	X int
	Y []string
}

type lower struct {
	A int
	b int // never sent
}

type nested struct {
	Arr [2]map[string]*lower
}

type stamped struct {
	When time.Time // has unexported fields but encodes itself
}

func roundTrip(t *testing.T, in, out any) {
	t.Helper()
	var buf bytes.Buffer
	if err := NewEncoder(&buf).Encode(in); err != nil {
		t.Fatalf("Encode: %v", err)
	}
	if err := NewDecoder(&buf).Decode(out); err != nil {
		t.Fatalf("Decode: %v", err)
	}
}

func TestRoundTrip(t *testing.T) {
	Register(item{})
	in := state{
		A:     1,
		B:     []int{2, 3},
		C:     "four",
		D:     map[string]int{"five": 5},
		Log:   []item{{Term: 1, Command: 100}, {Term: 2, Command: "x"}},
		Inner: &inner{X: 6, Y: []string{"seven"}},
	}
	var out state
	roundTrip(t, in, &out)
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip: got %+v, want %+v", out, in)
	}

	// Several values on one stream.
	var buf bytes.Buffer
	enc := NewEncoder(&buf)
	for i := 0; i < 3; i++ {
		if err := enc.Encode(i * 10); err != nil {
			t.Fatal(err)
		}
	}
	dec := NewDecoder(&buf)
	for i := 0; i < 3; i++ {
		var x int
		if err := dec.Decode(&x); err != nil {
			t.Fatal(err)
		}
		if x != i*10 {
			t.Fatalf("value %d: got %d, want %d", i, x, i*10)
		}
	}
}

func TestLowerCaseWarning(t *testing.T) {
	reset()
	defer reset()

	var out lower
	roundTrip(t, lower{A: 1, b: 2}, &out)
	if out.A != 1 || out.b != 0 {
		t.Fatalf("got %+v, want {A:1 b:0}", out)
	}
	f, _ := warnings()
	if f != 1 {
		t.Fatalf("unexported-field problems = %d, want 1", f)
	}

	// The same type is checked only once.
	roundTrip(t, lower{A: 3}, &lower{})
	roundTrip(t, &lower{A: 3}, &lower{})
	if f, _ := warnings(); f != 1 {
		t.Fatalf("after re-encoding: problems = %d, want 1", f)
	}
}

func TestLowerCaseWarningNested(t *testing.T) {
	reset()
	defer reset()

	var buf bytes.Buffer
	if err := NewEncoder(&buf).Encode(nested{}); err != nil {
		t.Fatal(err)
	}
	if f, _ := warnings(); f != 1 {
		t.Fatalf("nested: problems = %d, want 1", f)
	}

	reset()
	Register(&lower{})
	if f, _ := warnings(); f != 1 {
		t.Fatalf("Register: problems = %d, want 1", f)
	}

	reset()
	if err := NewDecoder(&buf).Decode(&nested{}); err != nil {
		t.Fatal(err)
	}
	if f, _ := warnings(); f != 1 {
		t.Fatalf("Decode: problems = %d, want 1", f)
	}
}

func TestNoFalseWarnings(t *testing.T) {
	reset()
	defer reset()

	var out state
	roundTrip(t, state{A: 1, Inner: &inner{X: 2}}, &out)
	var ts stamped
	roundTrip(t, stamped{When: time.Unix(1, 0)}, &ts)
	var x int
	roundTrip(t, 7, &x)
	if f, d := warnings(); f != 0 || d != 0 {
		t.Fatalf("problems = %d, %d; want 0, 0", f, d)
	}
}

func TestDefaultWarning(t *testing.T) {
	reset()
	defer reset()

	var buf bytes.Buffer
	enc := NewEncoder(&buf)
	for i := 0; i < 4; i++ {
		if err := enc.Encode(state{A: 1}); err != nil {
			t.Fatal(err)
		}
	}
	dec := NewDecoder(&buf)

	if err := dec.Decode(&state{}); err != nil {
		t.Fatal(err)
	}
	if _, d := warnings(); d != 0 {
		t.Fatalf("zero value: problems = %d, want 0", d)
	}

	stale := state{C: "stale"}
	if err := dec.Decode(&stale); err != nil {
		t.Fatal(err)
	}
	if stale.C != "stale" {
		t.Fatalf("expected gob to keep the stale field, got %q", stale.C)
	}
	if _, d := warnings(); d != 1 {
		t.Fatalf("non-default value: problems = %d, want 1", d)
	}

	if err := dec.Decode(&state{Inner: &inner{X: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(&state{D: map[string]int{"a": 1}}); err != nil {
		t.Fatal(err)
	}
	if _, d := warnings(); d != 3 {
		t.Fatalf("nested non-default values: problems = %d, want 3", d)
	}
}

func TestConcurrent(t *testing.T) {
	reset()
	defer reset()

	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf bytes.Buffer
			if err := NewEncoder(&buf).Encode(nested{}); err != nil {
				t.Error(err)
			}
			var out lower
			if err := NewEncoder(&buf).Encode(lower{A: i}); err != nil {
				t.Error(err)
			}
			if err := NewDecoder(&buf).Decode(&nested{}); err != nil {
				t.Error(err)
			}
			if err := NewDecoder(&buf).Decode(&out); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if f, _ := warnings(); f != 1 {
		t.Fatalf("problems = %d, want 1 (lower checked once)", f)
	}
}
