package raft

import (
	"fmt"
	"sync"

	"github.com/raftkit/raft/core"
)

// applier delivers committed entries on the apply channel from a goroutine
// of its own, so that a slow reader of the channel never stalls the
// protocol: entries wait in an unbounded queue.
type applier struct {
	mu    sync.Mutex
	queue []core.Entry
	wake  chan struct{}
	ch    chan ApplyMsg
	done  <-chan struct{}
	fail  func(error) // stops the server
}

func newApplier(ch chan ApplyMsg, done <-chan struct{}, fail func(error)) *applier {
	return &applier{wake: make(chan struct{}, 1), ch: ch, done: done, fail: fail}
}

// push queues committed entries, in log order.
func (a *applier) push(ents []core.Entry) {
	a.mu.Lock()
	a.queue = append(a.queue, ents...)
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

func (a *applier) run() {
	for {
		select {
		case <-a.wake:
		case <-a.done:
			return
		}
		a.mu.Lock()
		batch := a.queue
		a.queue = nil
		a.mu.Unlock()
		for _, e := range batch {
			if e.Type != core.EntryNormal {
				continue // no command for the service
			}
			cmd, err := decodeCommand(e.Command)
			if err != nil {
				// The service cannot skip a command, nor apply a later
				// one without it.
				a.fail(fmt.Errorf("raft: decode command at index %d: %w", e.Index, err))
				return
			}
			select {
			case a.ch <- ApplyMsg{CommandValid: true, Command: cmd, CommandIndex: e.Index}:
			case <-a.done:
				return
			}
		}
	}
}
