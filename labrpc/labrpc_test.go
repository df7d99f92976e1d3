package labrpc

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkit/raft/labgob"
)

type JunkArgs struct {
	X int
}

type JunkReply struct {
	X string
}

type JunkServer struct {
	mu    sync.Mutex
	log1  []string
	log2  []int
	calls atomic.Int64
	block chan struct{} // if non-nil, Block waits for it to be closed
	entry chan struct{} // if non-nil, Block signals on it when called
}

func (js *JunkServer) Handler1(args *string, reply *int) {
	js.mu.Lock()
	defer js.mu.Unlock()
	js.log1 = append(js.log1, *args)
	fmt.Sscanf(*args, "%d", reply)
}

func (js *JunkServer) Handler2(args *int, reply *string) {
	js.mu.Lock()
	defer js.mu.Unlock()
	js.log2 = append(js.log2, *args)
	*reply = "handler2-" + fmt.Sprint(*args)
}

// Handler4 takes and returns pointers to structs.
func (js *JunkServer) Handler4(args *JunkArgs, reply *JunkReply) {
	js.calls.Add(1)
	reply.X = fmt.Sprintf("pointer-%d", args.X)
}

// Block blocks until js.block is closed.
func (js *JunkServer) Block(args *JunkArgs, reply *JunkReply) {
	if js.entry != nil {
		js.entry <- struct{}{}
	}
	<-js.block
	reply.X = "unblocked"
}

// ByValue takes its argument by value, so it is not a handler.
func (js *JunkServer) ByValue(args JunkArgs, reply *JunkReply) {}

// Skipped has the wrong shape to be a handler.
func (js *JunkServer) Skipped(args *JunkArgs) int { return 0 }

type Other struct{}

// Echo replies with its argument.
func (o *Other) Echo(args *JunkArgs, reply *JunkArgs) {
	reply.X = args.X
}

// Carrier holds an interface value, to check registered types pass through.
type Carrier struct {
	V any
}

type Payload struct {
	A int
	B []string
}

// Reflect replies with its argument.
func (o *Other) Reflect(args *Carrier, reply *Carrier) {
	reply.V = args.V
}

// Keeper keeps the arguments it is given and replies with its own state.
type Keeper struct {
	kept  *Payload
	state []string
}

func (k *Keeper) Keep(args *Payload, reply *Payload) {
	k.kept = args
	reply.A = args.A
	reply.B = k.state
}

// WideArgs and WideReply are wire-compatible with JunkArgs and JunkReply.
type WideArgs struct {
	X     int64
	Extra string
}

type WideReply struct {
	X     string
	Other int
}

// setup returns a network with one enabled end "c" connected to server "s",
// which offers js and an Other. The network is cleaned up with the test.
func setup(t testing.TB, js *JunkServer) (*Network, *ClientEnd, *Server) {
	t.Helper()
	rn := MakeNetwork()
	t.Cleanup(rn.Cleanup)
	e := rn.MakeEnd("c")
	rs := MakeServer()
	rs.AddService(MakeService(js))
	rs.AddService(MakeService(&Other{}))
	rn.AddServer("s", rs)
	rn.Connect("c", "s")
	rn.Enable("c", true)
	return rn, e, rs
}

func callJunk(t *testing.T, e *ClientEnd, x int) bool {
	t.Helper()
	var reply JunkReply
	ok := e.Call("JunkServer.Handler4", &JunkArgs{X: x}, &reply)
	if ok && reply.X != fmt.Sprintf("pointer-%d", x) {
		t.Errorf("Handler4(%d) = %q", x, reply.X)
	}
	return ok
}

func TestBasic(t *testing.T) {
	js := &JunkServer{}
	_, e, _ := setup(t, js)

	var r2 string
	if !e.Call("JunkServer.Handler2", 111, &r2) || r2 != "handler2-111" {
		t.Fatalf("Handler2: got %q", r2)
	}
	var r1 int
	if !e.Call("JunkServer.Handler1", "9099", &r1) || r1 != 9099 {
		t.Fatalf("Handler1: got %d", r1)
	}
	if !callJunk(t, e, 7) {
		t.Fatal("Handler4 failed")
	}
	// Arguments passed by value encode the same as by pointer.
	var r4 JunkReply
	if !e.Call("JunkServer.Handler4", JunkArgs{X: 8}, &r4) || r4.X != "pointer-8" {
		t.Fatalf("Handler4 by value: got %q", r4.X)
	}
	js.mu.Lock()
	defer js.mu.Unlock()
	if len(js.log1) != 1 || js.log1[0] != "9099" || len(js.log2) != 1 || js.log2[0] != 111 {
		t.Fatalf("handler logs: %v %v", js.log1, js.log2)
	}
}

func TestTwoServices(t *testing.T) {
	js := &JunkServer{}
	_, e, _ := setup(t, js)

	var r JunkArgs
	if !e.Call("Other.Echo", &JunkArgs{X: 42}, &r) || r.X != 42 {
		t.Fatalf("Other.Echo: got %d", r.X)
	}
	if !callJunk(t, e, 3) {
		t.Fatal("JunkServer.Handler4 failed")
	}
}

func TestRegisteredTypes(t *testing.T) {
	labgob.Register(Payload{})
	_, e, _ := setup(t, &JunkServer{})

	in := Payload{A: 5, B: []string{"x", "y"}}
	var out Carrier
	if !e.Call("Other.Reflect", &Carrier{V: in}, &out) {
		t.Fatal("Other.Reflect failed")
	}
	p, ok := out.V.(Payload)
	if !ok || p.A != 5 || len(p.B) != 2 || p.B[1] != "y" {
		t.Fatalf("Other.Reflect: got %#v", out.V)
	}
}

func TestUnknownMethod(t *testing.T) {
	_, e, rs := setup(t, &JunkServer{})

	var r JunkReply
	for _, m := range []string{"JunkServer.Nope", "Nope.Handler4", "JunkServer.Skipped", "JunkServer.ByValue", "NoDot", ""} {
		if e.Call(m, &JunkArgs{}, &r) {
			t.Errorf("Call(%q) succeeded", m)
		}
	}
	if !callJunk(t, e, 1) {
		t.Fatal("server stopped working after bad calls")
	}
	if n := rs.GetCount(); n != 7 {
		t.Fatalf("server count = %d, want 7", n)
	}
}

func TestDisable(t *testing.T) {
	js := &JunkServer{}
	rn, e, rs := setup(t, js)

	rn.Enable("c", false)
	if callJunk(t, e, 1) {
		t.Fatal("call on disabled end succeeded")
	}
	if rs.GetCount() != 0 || js.calls.Load() != 0 {
		t.Fatal("disabled end reached the server")
	}
	rn.Enable("c", true)
	if !callJunk(t, e, 2) {
		t.Fatal("call on re-enabled end failed")
	}

	// An end that is not connected fails.
	u := rn.MakeEnd("u")
	rn.Enable("u", true)
	if callJunk(t, u, 3) {
		t.Fatal("call on unconnected end succeeded")
	}
	// Connecting to a server that does not exist fails too.
	rn.Connect("u", "missing")
	if callJunk(t, u, 4) {
		t.Fatal("call to missing server succeeded")
	}
	rn.Connect("u", "s")
	if !callJunk(t, u, 5) {
		t.Fatal("call on connected end failed")
	}
}

func TestDeleteServer(t *testing.T) {
	rn, e, _ := setup(t, &JunkServer{})

	if !callJunk(t, e, 1) {
		t.Fatal("call failed")
	}
	rn.DeleteServer("s")
	if callJunk(t, e, 2) {
		t.Fatal("call to deleted server succeeded")
	}
	if n := rn.GetCount("s"); n != 0 {
		t.Fatalf("GetCount of deleted server = %d, want 0", n)
	}
}

func TestReplaceServer(t *testing.T) {
	js1 := &JunkServer{block: make(chan struct{}), entry: make(chan struct{})}
	rn, e, rs1 := setup(t, js1)
	defer close(js1.block)

	res := make(chan bool)
	go func() {
		var r JunkReply
		res <- e.Call("JunkServer.Block", &JunkArgs{}, &r)
	}()
	<-js1.entry

	js2 := &JunkServer{}
	rs2 := MakeServer()
	rs2.AddService(MakeService(js2))
	rn.AddServer("s", rs2)

	select {
	case ok := <-res:
		if ok {
			t.Fatal("call to replaced server succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("call to replaced server did not return")
	}

	if !callJunk(t, e, 1) {
		t.Fatal("call to new server failed")
	}
	if rs1.GetCount() != 1 || rs2.GetCount() != 1 || js2.calls.Load() != 1 {
		t.Fatalf("counts: old %d, new %d", rs1.GetCount(), rs2.GetCount())
	}
}

func TestKilledHandler(t *testing.T) {
	js := &JunkServer{block: make(chan struct{}), entry: make(chan struct{})}
	rn, e, _ := setup(t, js)
	defer close(js.block)

	for _, kill := range []func(){
		func() { rn.DeleteServer("s") },
		func() { rn.Enable("c", false) },
		func() { rn.Connect("c", "elsewhere") },
	} {
		rs := MakeServer()
		rs.AddService(MakeService(js))
		rn.AddServer("s", rs)
		rn.Connect("c", "s")
		rn.Enable("c", true)

		res := make(chan bool)
		go func() {
			var r JunkReply
			res <- e.Call("JunkServer.Block", &JunkArgs{}, &r)
		}()
		<-js.entry
		kill()
		select {
		case ok := <-res:
			if ok {
				t.Fatal("call to killed server succeeded")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("call to killed server did not return while the handler was blocked")
		}
	}
}

// A handler that finishes after its server was deleted must not produce a reply.
func TestDeletedBeforeReturn(t *testing.T) {
	js := &JunkServer{block: make(chan struct{}), entry: make(chan struct{})}
	rn, e, _ := setup(t, js)

	res := make(chan bool)
	go func() {
		var r JunkReply
		res <- e.Call("JunkServer.Block", &JunkArgs{}, &r)
	}()
	<-js.entry
	rn.DeleteServer("s")
	close(js.block) // let the handler return at once
	if <-res {
		t.Fatal("reply delivered from deleted server")
	}
}

func TestCounts(t *testing.T) {
	rn := MakeNetwork()
	defer rn.Cleanup()

	rs := MakeServer()
	rs.AddService(MakeService(&JunkServer{}))
	rn.AddServer(99, rs)
	other := MakeServer()
	other.AddService(MakeService(&Other{}))
	rn.AddServer("o", other)

	e := rn.MakeEnd("end1-99")
	rn.Connect("end1-99", 99)
	rn.Enable("end1-99", true)
	o := rn.MakeEnd("o")
	rn.Connect("o", "o")
	rn.Enable("o", true)

	var last int64
	for i := 0; i < 17; i++ {
		if !callJunk(t, e, i) {
			t.Fatalf("call %d failed", i)
		}
		b := rn.GetTotalBytes()
		if b <= last {
			t.Fatalf("total bytes did not grow: %d then %d", last, b)
		}
		last = b
	}
	var r JunkArgs
	if !o.Call("Other.Echo", &JunkArgs{X: 1}, &r) {
		t.Fatal("Other.Echo failed")
	}

	if n := rn.GetCount(99); n != 17 {
		t.Fatalf("GetCount(99) = %d, want 17", n)
	}
	if n := rn.GetCount("o"); n != 1 {
		t.Fatalf("GetCount(o) = %d, want 1", n)
	}
	if n := rn.GetTotalCount(); n != 18 {
		t.Fatalf("GetTotalCount = %d, want 18", n)
	}

	// Failed calls count toward the total but not the server.
	rn.Enable("end1-99", false)
	callJunk(t, e, 0)
	if n := rn.GetTotalCount(); n != 19 {
		t.Fatalf("GetTotalCount = %d, want 19", n)
	}
	if n := rn.GetCount(99); n != 17 {
		t.Fatalf("GetCount(99) = %d, want 17", n)
	}
}

func TestConcurrentMany(t *testing.T) {
	rn := MakeNetwork()
	defer rn.Cleanup()

	js := &JunkServer{}
	rs := MakeServer()
	rs.AddService(MakeService(js))
	rn.AddServer(1000, rs)

	const clients, calls = 20, 30
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := rn.MakeEnd(i)
			rn.Connect(i, 1000)
			rn.Enable(i, true)
			for j := 0; j < calls; j++ {
				x := i*100 + j
				if !callJunk(t, e, x) {
					t.Errorf("call %d failed", x)
				}
			}
		}()
	}
	// Meanwhile, fiddle with settings of other ends.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for j := 0; j < 50; j++ {
			rn.Enable("nobody", j%2 == 0)
			rn.Reliable(true)
			_ = rn.GetTotalBytes()
		}
	}()
	wg.Wait()

	if n := rn.GetCount(1000); n != clients*calls {
		t.Fatalf("GetCount = %d, want %d", n, clients*calls)
	}
	if n := js.calls.Load(); n != clients*calls {
		t.Fatalf("handler ran %d times, want %d", n, clients*calls)
	}
}

func TestUnreliable(t *testing.T) {
	rn := MakeNetwork()
	defer rn.Cleanup()
	rn.Reliable(false)

	js := &JunkServer{}
	rs := MakeServer()
	rs.AddService(MakeService(js))
	rn.AddServer("s", rs)

	const clients, calls = 50, 10
	var ok atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := rn.MakeEnd(i)
			rn.Connect(i, "s")
			rn.Enable(i, true)
			for j := 0; j < calls; j++ {
				if callJunk(t, e, i*100+j) {
					ok.Add(1)
				}
			}
		}()
	}
	wg.Wait()

	const total = clients * calls
	succ, ran := int(ok.Load()), int(js.calls.Load())
	failed := total - succ
	t.Logf("%d of %d calls failed; handler ran %d times", failed, total, ran)
	if failed < total*5/100 || failed > total*40/100 {
		t.Fatalf("%d of %d calls failed, want 5%%..40%%", failed, total)
	}
	if ran < succ || ran > total {
		t.Fatalf("handler ran %d times for %d successes of %d calls", ran, succ, total)
	}
	if ran == total {
		t.Fatal("no request was dropped before the handler")
	}
}

func TestLongReordering(t *testing.T) {
	rn, _, _ := setup(t, &JunkServer{})
	rn.LongReordering(true)

	const n = 20
	var slow atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := rn.MakeEnd(i)
			rn.Connect(i, "s")
			rn.Enable(i, true)
			start := time.Now()
			if !callJunk(t, e, i) {
				t.Errorf("call %d failed on a reliable network", i)
			}
			if time.Since(start) >= 200*time.Millisecond {
				slow.Add(1)
			}
		}()
	}
	wg.Wait()
	// Each reply is held back with probability 2/3.
	if slow.Load() == 0 {
		t.Fatal("no reply was held back")
	}
}

func TestCleanup(t *testing.T) {
	js := &JunkServer{block: make(chan struct{}), entry: make(chan struct{})}
	rn, e, _ := setup(t, js)
	defer close(js.block)
	rn.LongDelays(true)

	// A call blocked in its handler.
	blocked := make(chan bool)
	go func() {
		var r JunkReply
		blocked <- e.Call("JunkServer.Block", &JunkArgs{}, &r)
	}()
	<-js.entry

	// A call on a disabled end, which would wait up to 7 s.
	d := rn.MakeEnd("d")
	delayed := make(chan bool)
	go func() { delayed <- callJunk(t, d, 1) }()

	rn.Cleanup()
	rn.Cleanup() // idempotent

	for name, ch := range map[string]chan bool{"blocked": blocked, "delayed": delayed} {
		select {
		case ok := <-ch:
			if ok {
				t.Fatalf("%s call succeeded after Cleanup", name)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s call did not return after Cleanup", name)
		}
	}

	start := time.Now()
	if callJunk(t, e, 2) {
		t.Fatal("call after Cleanup succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("call after Cleanup took %v", d)
	}
}

func TestMakeEndTwice(t *testing.T) {
	rn := MakeNetwork()
	defer rn.Cleanup()
	rn.MakeEnd("x")
	defer func() {
		if recover() == nil {
			t.Fatal("second MakeEnd(x) did not panic")
		}
	}()
	rn.MakeEnd("x")
}

// Neither side sees the other's later changes to arguments or replies.
func TestCallCopies(t *testing.T) {
	_, e, rs := setup(t, &JunkServer{})
	k := &Keeper{state: []string{"s0", "s1"}}
	rs.AddService(MakeService(k))

	args := &Payload{A: 1, B: []string{"a"}}
	var r Payload
	if !e.Call("Keeper.Keep", args, &r) {
		t.Fatal("Keeper.Keep failed")
	}
	if k.kept == args || r.A != 1 || len(r.B) != 2 || r.B[0] != "s0" {
		t.Fatalf("Keep: kept %p (args %p), reply %#v", k.kept, args, r)
	}
	args.A, args.B[0] = 2, "changed"
	if k.kept.A != 1 || k.kept.B[0] != "a" {
		t.Fatalf("server saw the caller change its args: %#v", *k.kept)
	}
	k.state[0] = "changed"
	r.B[1] = "changed"
	if r.B[0] != "s0" || k.state[1] != "s1" {
		t.Fatalf("caller and server share reply memory: %q %q", r.B, k.state)
	}
}

// Replies are stored as gob decodes them: into a non-zero reply, gob merges,
// leaving the fields the server left at zero (so they are not sent) alone.
func TestReplyMerge(t *testing.T) {
	_, e, _ := setup(t, &JunkServer{})

	r := JunkArgs{X: 42}
	if !e.Call("Other.Echo", &JunkArgs{X: 0}, &r) || r.X != 42 {
		t.Fatalf("Echo(0) into non-zero reply: got %d, want gob's 42", r.X)
	}
	r = JunkArgs{X: 42}
	if !e.Call("Other.Echo", &JunkArgs{X: 7}, &r) || r.X != 7 {
		t.Fatalf("Echo(7) into non-zero reply: got %d", r.X)
	}
	w := WideReply{X: "stale", Other: 3}
	if !e.Call("JunkServer.Handler4", &JunkArgs{X: 5}, &w) || w.X != "pointer-5" || w.Other != 3 {
		t.Fatalf("Handler4 into non-zero WideReply: got %#v", w)
	}
}

// Callers may use types other than the handler's, as far as gob allows.
func TestTypeMismatch(t *testing.T) {
	_, e, _ := setup(t, &JunkServer{})

	for i := 0; i < 3; i++ { // the first time and later ones
		var w WideReply
		if !e.Call("JunkServer.Handler4", &WideArgs{X: 9, Extra: "x"}, &w) || w.X != "pointer-9" || w.Other != 0 {
			t.Fatalf("Handler4 with wide types: got %#v", w)
		}
		var n int64
		if !e.Call("JunkServer.Handler1", "12", &n) || n != 12 {
			t.Fatalf("Handler1 into *int64: got %d", n)
		}
		var s string
		if e.Call("JunkServer.Handler2", "not an int", &s) {
			t.Fatal("Handler2 with string args succeeded")
		}
		// A nil reply discards the answer.
		if !e.Call("JunkServer.Handler4", JunkArgs{X: 1}, nil) {
			t.Fatal("Handler4 with nil reply failed")
		}
		if !callJunk(t, e, i) {
			t.Fatal("Handler4 failed after mismatched calls")
		}
	}
}

func TestEncodePanics(t *testing.T) {
	_, e, _ := setup(t, &JunkServer{})
	for _, args := range []any{nil, (*JunkArgs)(nil), make(chan int), struct{ x int }{1}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Call with args %#v did not panic", args)
				}
			}()
			var r JunkArgs
			e.Call("Other.Echo", args, &r)
		}()
		if !callJunk(t, e, 3) {
			t.Fatal("call after a panic failed")
		}
	}
}

// Calls of several types, some carrying interface values, at once.
func TestConcurrentTypes(t *testing.T) {
	labgob.Register(Payload{})
	rn, _, _ := setup(t, &JunkServer{})

	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := rn.MakeEnd(i)
			rn.Connect(i, "s")
			rn.Enable(i, true)
			for j := 0; j < 50; j++ {
				x := i*1000 + j
				switch (i + j) % 4 {
				case 0:
					callJunk(t, e, x)
				case 1:
					var out Carrier
					if !e.Call("Other.Reflect", &Carrier{V: Payload{A: x, B: []string{"b"}}}, &out) {
						t.Error("Reflect failed")
					} else if p, ok := out.V.(Payload); !ok || p.A != x || p.B[0] != "b" {
						t.Errorf("Reflect(%d): got %#v", x, out.V)
					}
				case 2:
					var s string
					if !e.Call("JunkServer.Handler2", x, &s) || s != fmt.Sprint("handler2-", x) {
						t.Errorf("Handler2(%d): got %q", x, s)
					}
				case 3:
					var out Carrier
					if !e.Call("Other.Reflect", &Carrier{V: fmt.Sprint(x)}, &out) || out.V != fmt.Sprint(x) {
						t.Errorf("Reflect(%q): got %#v", fmt.Sprint(x), out.V)
					}
				}
			}
		}()
	}
	wg.Wait()
}

func BenchmarkCall(b *testing.B) {
	_, e, _ := setup(b, &JunkServer{})

	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var r JunkReply
		if !e.Call("JunkServer.Handler4", &JunkArgs{X: i}, &r) {
			b.Fatal("call failed")
		}
	}
}

// Entry and EntriesArgs look like Raft's AppendEntries arguments.
type Entry struct {
	Term    int
	Command any
}

type EntriesArgs struct {
	Term, LeaderID, PrevIndex, PrevTerm, Commit int
	Entries                                     []Entry
}

// Append replies with the number of entries.
func (o *Other) Append(args *EntriesArgs, reply *JunkArgs) {
	reply.X = len(args.Entries)
}

// BenchmarkCallEntries sends AppendEntries-like arguments with 20 entries.
func BenchmarkCallEntries(b *testing.B) {
	_, e, _ := setup(b, &JunkServer{})

	args := EntriesArgs{Term: 3, LeaderID: 1, PrevIndex: 100, PrevTerm: 2, Commit: 99}
	for i := 0; i < 20; i++ {
		args.Entries = append(args.Entries, Entry{Term: 3, Command: fmt.Sprint("x=", i)})
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var r JunkArgs
		if !e.Call("Other.Append", &args, &r) || r.X != 20 {
			b.Fatal("call failed")
		}
	}
}
