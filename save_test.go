package raft

import (
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/raftkit/raft/core"
)

// gatedStorage records the Saves, in order; each waits until gate lets
// it through (a receive from gate), unless gate is nil.
type gatedStorage struct {
	Storage
	gate chan struct{}

	mu    sync.Mutex
	saves [][]Entry
}

func (s *gatedStorage) Save(hs HardState, ents []Entry) error {
	if s.gate != nil {
		<-s.gate
	}
	s.mu.Lock()
	s.saves = append(s.saves, ents)
	s.mu.Unlock()
	return nil
}

func (s *gatedStorage) saved() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.saves)
}

// newTestSaver returns a saver of a server whose loop is not running:
// what reaches the loop (the saved events) waits in rf.events, and what
// the saver releases to the applier in rf.apply.queue.
func newTestSaver(t *testing.T, store Storage) *saver {
	t.Helper()
	node, err := core.New(core.Config{ID: 1, Peers: []int{1, 2, 3}, ElectionTicks: 10, HeartbeatTicks: 1,
		AsyncSave: true, Rand: rand.New(rand.NewPCG(1, 2))})
	if err != nil {
		t.Fatal(err)
	}
	rf := &Raft{
		me: 1, store: store, node: node, metrics: newMetrics(),
		logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		events: make(chan event, maxBatch), done: make(chan struct{}),
		apply: &applier{wake: make(chan struct{}, 1)},
	}
	s := &saver{rf: rf, wake: make(chan struct{}, 1)}
	var wg sync.WaitGroup
	wg.Go(s.run)
	t.Cleanup(func() {
		rf.stop(nil)
		wg.Wait()
	})
	return s
}

// replyLog records the order in which replies are sent.
type replyLog struct {
	mu   sync.Mutex
	sent []int
}

// reply returns a pendingReply that records id when it is sent.
func (l *replyLog) reply(id int) pendingReply {
	return pendingReply{respond: func(core.Message) {
		l.mu.Lock()
		l.sent = append(l.sent, id)
		l.mu.Unlock()
	}, msg: core.Message{Body: &core.AppendEntriesReply{}}}
}

func (l *replyLog) get() []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]int(nil), l.sent...)
}

// A batch with nothing to save may skip the saver only when no batch is
// pending there: a commit, or a reply, never overtakes a save under way.
func TestSubmitKeepsOrderBehindPendingSave(t *testing.T) {
	store := &gatedStorage{gate: make(chan struct{})}
	s := newTestSaver(t, store)
	var log replyLog
	ent := core.Entry{Index: 1, Term: 1, Command: []byte("x")}
	// A leader's batch: saved by the saver goroutine, which blocks in Save.
	s.submit(saveBatch{mustSave: true, hs: core.HardState{Term: 1, Vote: core.None},
		ents: []core.Entry{ent}, replies: []pendingReply{log.reply(1)}}, false)
	// Nothing to save, but it must wait for the batch before it.
	s.submit(saveBatch{replies: []pendingReply{log.reply(2)}, commits: []core.Entry{ent}}, false)
	if got := log.get(); len(got) > 0 {
		t.Fatalf("replies %v sent while the save they follow was under way", got)
	}
	s.rf.apply.mu.Lock()
	queued := len(s.rf.apply.queue)
	s.rf.apply.mu.Unlock()
	if queued > 0 {
		t.Fatalf("%d entries handed to the applier while the save before them was under way", queued)
	}
	store.gate <- struct{}{}
	waitFor(t, "both replies", func() bool { return len(log.get()) == 2 })
	if got := log.get(); got[0] != 1 || got[1] != 2 {
		t.Fatalf("replies sent in the order %v, want [1 2]", got)
	}
	// With nothing pending, a batch with nothing to save is released by
	// the caller itself, before submit returns.
	s.submit(saveBatch{replies: []pendingReply{log.reply(3)}}, false)
	if got := log.get(); len(got) != 3 || got[2] != 3 {
		t.Fatalf("with the saver idle, submit returned before sending the reply (sent %v)", got)
	}
}

// A server that is not the leader, with nothing pending in the saver,
// saves in the caller (its loop) and only then replies; a leader leaves
// the save to the saver goroutine, so that its loop goes on meanwhile.
func TestSubmitSavesInlineOnlyWhenMayBlock(t *testing.T) {
	store := &gatedStorage{}
	s := newTestSaver(t, store)
	var log replyLog
	saved := func() int { return store.saved() }
	var savedAtReply []int
	var mu sync.Mutex
	reply := func(id int) pendingReply {
		r := log.reply(id)
		send := r.respond
		r.respond = func(m core.Message) {
			mu.Lock()
			savedAtReply = append(savedAtReply, saved())
			mu.Unlock()
			send(m)
		}
		return r
	}
	ent := core.Entry{Index: 1, Term: 1, Command: []byte("x")}
	s.submit(saveBatch{mustSave: true, hs: core.HardState{Term: 1, Vote: core.None},
		ents: []core.Entry{ent}, replies: []pendingReply{reply(1)}}, true)
	if store.saved() != 1 || len(log.get()) != 1 {
		t.Fatalf("mayBlock with the saver idle: %d saves and replies %v when submit returned, want 1 and [1]", store.saved(), log.get())
	}
	select {
	case ev := <-s.rf.events:
		t.Fatalf("the inline save posted %+v to the loop; the loop is the caller", ev)
	default:
	}
	// Not mayBlock: the saver goroutine saves; the reply follows it.
	store.gate = make(chan struct{})
	s.submit(saveBatch{mustSave: true, hs: core.HardState{Term: 1, Vote: core.None},
		ents: []core.Entry{{Index: 2, Term: 1}}, replies: []pendingReply{reply(2)}}, false)
	if got := log.get(); len(got) != 1 {
		t.Fatalf("the leader's submit replied before its save (replies %v)", got)
	}
	store.gate <- struct{}{}
	waitFor(t, "the leader's reply", func() bool { return len(log.get()) == 2 })
	mu.Lock()
	defer mu.Unlock()
	for i, n := range savedAtReply {
		if n < i+1 {
			t.Errorf("reply %d sent after %d saves, want at least %d", i+1, n, i+1)
		}
	}
}
