package transport

import (
	"bytes"
	"fmt"
	"math"
	"reflect"
	"sync"
	"testing"

	"github.com/raftkit/raft/core"
)

// echoHandler records every request it gets, in order, and answers with
// the reply its test gives for it.
type echoHandler struct {
	reply func(req any) any

	mu   sync.Mutex
	reqs []any
}

func (h *echoHandler) Serve(from int, req any, respond func(reply any, err error)) {
	h.mu.Lock()
	h.reqs = append(h.reqs, req)
	h.mu.Unlock()
	respond(h.reply(req), nil)
}

func (h *echoHandler) received() []any {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]any(nil), h.reqs...)
}

// roundTrip is a request and the reply its test has the handler give.
type roundTrip struct {
	name  string
	req   any
	reply any
}

// roundTrips returns a request and a reply of every type, with extreme
// and negative numbers, every flag, nil and empty slices, and entries of
// every size up to maxCmd.
func roundTrips(maxCmd int) []roundTrip {
	cmd := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*31 + n)
		}
		return b
	}
	rts := []roundTrip{
		{"vote", &core.RequestVoteArgs{Term: 5, CandidateID: 2, LastLogIndex: 9, LastLogTerm: 4},
			&core.RequestVoteReply{Term: 5, VoteGranted: true}},
		{"pre-vote", &core.RequestVoteArgs{Term: math.MaxInt64, CandidateID: math.MinInt64, LastLogIndex: -1, LastLogTerm: math.MinInt64, PreVote: true},
			&core.RequestVoteReply{Term: math.MinInt64, VoteGranted: true, PreVote: true}},
		{"vote refused", &core.RequestVoteArgs{Term: -7, CandidateID: core.None},
			&core.RequestVoteReply{Term: -1, PreVote: true}},
		{"heartbeat, nil entries", &core.AppendEntriesArgs{Term: 3, LeaderID: 1, PrevLogIndex: 10, PrevLogTerm: 2, LeaderCommit: 8},
			&core.AppendEntriesReply{Term: 3, Success: true, Index: 10}},
		{"heartbeat round", &core.AppendEntriesArgs{Term: 3, LeaderID: 1, PrevLogIndex: 10, PrevLogTerm: 2, LeaderCommit: 8, Round: 1 << 40},
			&core.AppendEntriesReply{Term: 3, Success: true, Index: 10, Round: math.MaxUint64}},
		{"heartbeat, empty entries", &core.AppendEntriesArgs{Term: 3, LeaderID: 1, PrevLogIndex: 10, PrevLogTerm: 2, Entries: []core.Entry{}, LeaderCommit: 8},
			&core.AppendEntriesReply{Term: 3, Success: false, Index: 10, ConflictTerm: 2, ConflictIndex: 7}},
		{"negative", &core.AppendEntriesArgs{Term: math.MinInt64, LeaderID: -3, PrevLogIndex: -3, PrevLogTerm: -9, LeaderCommit: math.MinInt64,
			Entries: []core.Entry{{Index: -2, Term: -1, Type: core.EntryNoOp}, {Index: -1, Term: math.MinInt64, Type: 255, Command: []byte{}}, {Index: 0, Term: 0, Command: []byte{0}}}},
			&core.AppendEntriesReply{Term: math.MinInt64, Index: math.MinInt64, ConflictTerm: -1, ConflictIndex: math.MaxInt64}},
		{"nil and empty commands", &core.AppendEntriesArgs{Term: 1, PrevLogIndex: 0,
			Entries: []core.Entry{{Index: 1, Term: 1, Command: nil}, {Index: 2, Term: 1, Command: []byte{}}, {Index: 3, Term: 1, Type: core.EntryNoOp}}},
			&core.AppendEntriesReply{Term: 1, Success: true, Index: 3}},
		{"transfer vote", &core.RequestVoteArgs{Term: 8, CandidateID: 2, LastLogIndex: 40, LastLogTerm: 7, Transfer: true},
			&core.RequestVoteReply{Term: 8, VoteGranted: true}},
		{"timeout now", &core.TimeoutNowArgs{Term: 7, LeaderID: 1},
			&core.TimeoutNowReply{Term: 8}},
		{"timeout now, negative", &core.TimeoutNowArgs{Term: math.MinInt64, LeaderID: -1},
			&core.TimeoutNowReply{Term: math.MaxInt64}},
		{"read index", &core.ReadIndexArgs{Term: 7, ID: 12},
			&core.ReadIndexReply{Term: 7, ID: 12, Index: 40}},
		{"read index, extremes", &core.ReadIndexArgs{Term: math.MinInt64, ID: math.MaxUint64},
			&core.ReadIndexReply{Term: math.MaxInt64, ID: math.MaxUint64, Index: math.MinInt64}},
		{"probe", &core.ProbeArgs{},
			&core.ProbeReply{Term: math.MaxInt64, LastIndex: math.MinInt64, Empty: true}},
		{"probe founder", &core.ProbeArgs{},
			&core.ProbeReply{Term: -1, LastIndex: 0, Founder: true}},
		{"chunk, nil data", &core.InstallSnapshotArgs{Term: 4, LeaderID: 1, LastIncludedIndex: 100, LastIncludedTerm: 3},
			&core.InstallSnapshotReply{Term: 4}},
		{"chunk, empty data", &core.InstallSnapshotArgs{Term: 4, LeaderID: 1, LastIncludedIndex: 100, LastIncludedTerm: 3, Offset: 77, Data: []byte{}, Done: true},
			&core.InstallSnapshotReply{Term: 4, Index: 100}},
		{"chunk, negative", &core.InstallSnapshotArgs{Term: -4, LeaderID: math.MinInt64, LastIncludedIndex: -100, LastIncludedTerm: -3, Offset: math.MinInt64, Data: cmd(1000)},
			&core.InstallSnapshotReply{Term: math.MinInt64, Index: -5}},
	}
	// Entries of every size that changes a length's encoding, up to
	// maxCmd.
	var sizes []int
	for _, n := range []int{0, 1, 2, 126, 127, 128, 129, 16382, 16383, 16384, 1 << 20, maxCmd - 1, maxCmd} {
		if n <= maxCmd {
			sizes = append(sizes, n)
		}
	}
	for _, n := range sizes {
		rts = append(rts, roundTrip{fmt.Sprintf("command of %d bytes", n),
			&core.AppendEntriesArgs{Term: 2, LeaderID: 1, PrevLogIndex: 41, PrevLogTerm: 2, LeaderCommit: 40,
				Entries: []core.Entry{{Index: 42, Term: 2, Command: cmd(n)}}},
			&core.AppendEntriesReply{Term: 2, Success: true, Index: 42}})
	}
	// Many small entries, of sizes 0 to 299.
	many := &core.AppendEntriesArgs{Term: 9, LeaderID: 1, PrevLogIndex: 999, PrevLogTerm: 8, LeaderCommit: 990}
	for i := range 300 {
		many.Entries = append(many.Entries, core.Entry{Index: 1000 + i, Term: 8 + i%2, Type: core.EntryType(i % 3), Command: cmd(i)})
	}
	rts = append(rts, roundTrip{"300 entries", many, &core.AppendEntriesReply{Term: 9, Success: true, Index: 1299}})
	return rts
}

// newEchoPair returns two transports on ephemeral ports, server 1 serving
// h, closed at the end of the test.
func newEchoPair(t *testing.T, h Handler, tune func(cfg *Config)) (*TCP, *TCP) {
	t.Helper()
	lns, peers, err := ListenLocal(0, 1)
	if err != nil {
		t.Fatal(err)
	}
	var trs [2]*TCP
	for id := range 2 {
		cfg := Config{Insecure: true, ID: id, Peers: peers, Listener: lns[id], Logger: new(logBuf).logger(), CallTimeout: waitBound}
		if tune != nil {
			tune(&cfg)
		}
		if trs[id], err = New(cfg); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, tr := range trs {
			tr.Close()
		}
		checkNoGoroutines(t)
	})
	trs[1].Serve(h)
	return trs[0], trs[1]
}

// methodOf returns the Call method and a new reply for a request.
func methodOf(req any) (string, any) {
	switch req.(type) {
	case *core.RequestVoteArgs:
		return methodRequestVote, new(core.RequestVoteReply)
	case *core.AppendEntriesArgs:
		return methodAppendEntries, new(core.AppendEntriesReply)
	case *core.InstallSnapshotArgs:
		return methodInstallSnapshot, new(core.InstallSnapshotReply)
	case *core.ProbeArgs:
		return methodProbe, new(core.ProbeReply)
	case *core.TimeoutNowArgs:
		return methodTimeoutNow, new(core.TimeoutNowReply)
	case *core.ReadIndexArgs:
		return methodReadIndex, new(core.ReadIndexReply)
	}
	panic(fmt.Sprintf("methodOf(%T)", req))
}

// TestRoundTripEveryMessage checks that every request and reply arrives
// as it was sent, through Call and through Send: as reflect.DeepEqual sees
// it, so that nil and empty slices stay apart. (The handler gets the
// requests in order: the n-th one answers with the n-th reply.)
func TestRoundTripEveryMessage(t *testing.T) {
	rts := roundTrips(DefaultMaxMessageBytes - commandOverhead)
	h := &echoHandler{}
	h.reply = func(req any) any {
		h.mu.Lock()
		n := len(h.reqs) - 1
		h.mu.Unlock()
		return rts[n%len(rts)].reply
	}
	p0, _ := newEchoPair(t, h, nil)
	p, err := p0.Peer(1)
	if err != nil {
		t.Fatal(err)
	}
	// Through Call, one by one.
	for _, rt := range rts {
		method, reply := methodOf(rt.req)
		if err := p.call(method, rt.req, reply); err != nil {
			t.Fatalf("%s: Call: %v", rt.name, err)
		}
		if !reflect.DeepEqual(reply, rt.reply) {
			t.Errorf("%s: Call's reply %+v, want %+v", rt.name, reply, rt.reply)
		}
	}
	// Through Send, all at once.
	type result struct {
		reply any
		ok    bool
	}
	results := make([]chan result, len(rts))
	for i, rt := range rts {
		results[i] = make(chan result, 2)
		p.Send(rt.req, func(reply any, ok bool) { results[i] <- result{reply, ok} })
	}
	for i, rt := range rts {
		r := <-results[i]
		if !r.ok || !reflect.DeepEqual(r.reply, rt.reply) {
			t.Errorf("%s: Send's reply %+v, %v; want %+v", rt.name, r.reply, r.ok, rt.reply)
		}
	}
	got := h.received()
	if len(got) != 2*len(rts) {
		t.Fatalf("the handler got %d requests, want %d", len(got), 2*len(rts))
	}
	for i, req := range got {
		rt := rts[i%len(rts)]
		if !reflect.DeepEqual(req, rt.req) {
			t.Errorf("%s: request %d arrived as %+v", rt.name, i, summary(req))
		}
	}
}

// summary describes a request without its bytes.
func summary(req any) string {
	a, ok := req.(*core.AppendEntriesArgs)
	if !ok {
		return fmt.Sprintf("%+v", req)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "AppendEntries{Term %d, LeaderID %d, Prev %d/%d, Commit %d, %d entries (nil: %v):", a.Term, a.LeaderID, a.PrevLogIndex, a.PrevLogTerm, a.LeaderCommit, len(a.Entries), a.Entries == nil)
	for _, e := range a.Entries[:min(len(a.Entries), 5)] {
		fmt.Fprintf(&b, " {%d %d %v %d bytes, nil %v}", e.Index, e.Term, e.Type, len(e.Command), e.Command == nil)
	}
	return b.String() + "}"
}
