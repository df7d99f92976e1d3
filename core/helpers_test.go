package core

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// Timing of every test node: a follower's election timeout is drawn from
// [electionTicks, 2*electionTicks).
const (
	electionTicks  = 10
	heartbeatTicks = 3
)

// ids returns the server IDs 1..size.
func ids(size int) []int {
	s := make([]int, size)
	for i := range s {
		s[i] = i + 1
	}
	return s
}

// config returns the configuration of server id of the cluster 1..size,
// with a fresh random source seeded with seed.
func config(id, size int, seed uint64) Config {
	return Config{
		ID:             id,
		Peers:          ids(size),
		ElectionTicks:  electionTicks,
		HeartbeatTicks: heartbeatTicks,
		Rand:           rand.New(rand.NewPCG(seed, seed)),
	}
}

// voters returns a configuration of the given voters.
func voters(ids ...int) Membership {
	var m Membership
	for _, id := range ids {
		m.Members = append(m.Members, Member{ID: id})
	}
	return m
}

// start returns a Node for cfg, failing the test if New refuses it.
func start(t testing.TB, cfg Config) *Node {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return n
}

// restore returns server id of the cluster 1..size restarted from the saved
// hard state and log.
func restore(t testing.TB, id, size int, hs HardState, log []Entry) *Node {
	t.Helper()
	cfg := config(id, size, 1)
	cfg.State, cfg.Log = hs, log
	return start(t, cfg)
}

// ents returns entries numbered from first on with the given terms; each
// command names its index and term.
func ents(first int, terms ...int) []Entry {
	es := make([]Entry, len(terms))
	for i, term := range terms {
		idx := first + i
		es[i] = Entry{Index: idx, Term: term, Command: []byte(fmt.Sprintf("%d.%d", idx, term))}
	}
	return es
}

// sameEntries reports whether a and b hold the same entries.
func sameEntries(a, b []Entry) bool {
	return slices.EqualFunc(a, b, func(x, y Entry) bool {
		return x.Index == y.Index && x.Term == y.Term && bytes.Equal(x.Command, y.Command)
	})
}

// fmtEntries renders entries as index/term pairs.
func fmtEntries(es []Entry) string {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, e := range es {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d/%d", e.Index, e.Term)
	}
	b.WriteByte(']')
	return b.String()
}

// logOf returns a copy of n's log, without the sentinel.
func logOf(n *Node) []Entry { return slices.Clone(n.log.ents[1:]) } // after the snapshot

// logTerms returns the terms of n's log, index 1 first.
func logTerms(n *Node) []int {
	var ts []int
	for _, e := range n.log.ents[1:] {
		ts = append(ts, e.Term)
	}
	return ts
}

// hardState returns n's current term and vote without taking a Ready.
func hardState(n *Node) HardState { return HardState{Term: n.term, Vote: n.vote} }

// ticksToCampaign ticks n until it starts an election (its term grows) and
// returns how many ticks that took.
func ticksToCampaign(t testing.TB, n *Node) int {
	t.Helper()
	term := n.Term()
	for i := 1; i <= 4*electionTicks; i++ {
		n.Tick()
		if n.Term() > term {
			return i
		}
	}
	t.Fatalf("S%d did not campaign within %d ticks", n.ID(), 4*electionTicks)
	return 0
}

// elect ticks n into an election, grants it the votes of as many other
// servers as it needs, and returns the Ready that follows its election
// (holding its first heartbeats).
func elect(t testing.TB, n *Node) Ready {
	t.Helper()
	ticksToCampaign(t, n)
	rd := n.Ready()
	for _, m := range sent(rd) {
		if n.Role() == Leader {
			break
		}
		if a, ok := m.Body.(*RequestVoteArgs); ok {
			n.Step(vote(m.To, n.ID(), a.Term, true))
		}
	}
	if n.Role() != Leader {
		t.Fatalf("S%d is %v after a majority of votes, want leader", n.ID(), n.Role())
	}
	return n.Ready()
}

// rv is a RequestVote from candidate from to to.
func rv(from, to, term, lastIndex, lastTerm int) Message {
	return Message{From: from, To: to, Body: &RequestVoteArgs{Term: term, CandidateID: from, LastLogIndex: lastIndex, LastLogTerm: lastTerm}}
}

// vote is a RequestVote reply from from to to.
func vote(from, to, term int, granted bool) Message {
	return Message{From: from, To: to, Body: &RequestVoteReply{Term: term, VoteGranted: granted}}
}

// ae is an AppendEntries from leader from to to.
func ae(from, to, term, prevIndex, prevTerm, commit int, entries []Entry) Message {
	return Message{From: from, To: to, Body: &AppendEntriesArgs{
		Term: term, LeaderID: from, PrevLogIndex: prevIndex, PrevLogTerm: prevTerm, Entries: entries, LeaderCommit: commit,
	}}
}

// aeOK is a successful AppendEntries reply: from's log matches up to index.
func aeOK(from, to, term, index int) Message {
	return Message{From: from, To: to, Body: &AppendEntriesReply{Term: term, Success: true, Index: index}}
}

// aeNo is a failed AppendEntries reply to an AppendEntries after index.
func aeNo(from, to, term, index, conflictTerm, conflictIndex int) Message {
	return Message{From: from, To: to, Body: &AppendEntriesReply{Term: term, Index: index, ConflictTerm: conflictTerm, ConflictIndex: conflictIndex}}
}

// call steps a request into n and returns n's reply body, failing the test
// if there is no reply of type R or it is not addressed back to the sender.
func call[R any](t testing.TB, n *Node, m Message) *R {
	t.Helper()
	reply, ok := n.Step(m)
	if !ok {
		t.Fatalf("S%d gave no reply to %T from %d", n.ID(), m.Body, m.From)
	}
	if reply.From != n.ID() || reply.To != m.From {
		t.Fatalf("reply goes from %d to %d, want from %d to %d", reply.From, reply.To, n.ID(), m.From)
	}
	r, ok := reply.Body.(*R)
	if !ok {
		t.Fatalf("reply body is %T, want %T", reply.Body, r)
	}
	return r
}

// appends returns the AppendEntries in rd by recipient, failing the test if
// a server gets more than one.
func appends(t testing.TB, rd Ready) map[int]*AppendEntriesArgs {
	t.Helper()
	out := map[int]*AppendEntriesArgs{}
	for _, m := range sent(rd) {
		if a, ok := m.Body.(*AppendEntriesArgs); ok {
			if out[m.To] != nil {
				t.Fatalf("two AppendEntries to %d in one Ready", m.To)
			}
			out[m.To] = a
		}
	}
	return out
}

// ackAll answers every AppendEntries of rd, sent by leader, with success.
func ackAll(t testing.TB, leader *Node, rd Ready) {
	t.Helper()
	for to, a := range appends(t, rd) {
		leader.Step(aeOK(to, leader.ID(), a.Term, a.PrevLogIndex+len(a.Entries)))
	}
}

// storage is what a caller saves from Readys.
type storage struct {
	hs  HardState
	log []Entry
}

// save handles the state to save of rd as Ready documents it.
func (s *storage) save(rd Ready) {
	if !rd.MustSave() {
		return
	}
	s.hs = rd.HardState
	if len(rd.Entries) > 0 {
		s.log = append(s.log[:rd.Entries[0].Index-1:rd.Entries[0].Index-1], rd.Entries...)
	}
}

// holds reports whether the saved log contains every entry of es.
func (s *storage) holds(es []Entry) bool {
	for _, e := range es {
		if e.Index < 1 || e.Index > len(s.log) || !sameEntries(s.log[e.Index-1:e.Index], []Entry{e}) {
			return false
		}
	}
	return true
}

// ptr returns a pointer to a copy of v.
func ptr[T any](v T) *T { return &v }

// sent returns every message of rd: those that may leave before the save,
// then those that wait for it.
func sent(rd Ready) []Message { return append(slices.Clone(rd.Messages), rd.AfterSave...) }
