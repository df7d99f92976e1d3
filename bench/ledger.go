package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"sync"
)

// A command's tag (its first tagLen bytes) names the proposer and the
// proposer's sequence number: proposer<<seqBits | seq. A proposer proposes
// its commands in order, each once the previous one was applied, and
// proposes a command again, with the same tag, when its outcome is
// unknown (leadership moved), as a client of a real service would.
const seqBits = 40

func makeTag(proposer int, seq uint64) uint64 { return uint64(proposer)<<seqBits | seq }

func splitTag(tag uint64) (proposer int, seq uint64) {
	return int(tag >> seqBits), tag & (1<<seqBits - 1)
}

// ledger is the state machine of both sides. It applies each proposer's
// commands once and in order: a command proposed again after it was
// applied (its first proposal's outcome was unknown to the proposer, yet
// it committed) is skipped as a duplicate, as a real service would skip it
// (raft.ErrOutcomeUnknown, hashicorp's ErrLeadershipLost). A command that
// comes before its predecessor of the same proposer was applied means a
// command was lost or reordered: the ledger records the first such gap.
type ledger struct {
	mu      sync.Mutex
	applied uint64         // commands applied, duplicates not counted
	dups    uint64         // commands skipped as duplicates
	last    map[int]uint64 // by proposer: the sequence number of its last command applied
	gap     error          // the first command out of order, if any
}

func newLedger() *ledger { return &ledger{last: map[int]uint64{}} }

// apply applies cmd, a command of newCommand, and reports whether it was
// a duplicate.
func (l *ledger) apply(cmd []byte) (dup bool) {
	proposer, seq := splitTag(tagOf(cmd))
	l.mu.Lock()
	defer l.mu.Unlock()
	last := l.last[proposer]
	switch {
	case seq <= last:
		l.dups++
		return true
	case seq != last+1 && l.gap == nil:
		l.gap = fmt.Errorf("proposer %d's command %d applied after its command %d: commands in between lost", proposer, seq, last)
	}
	l.last[proposer] = seq
	l.applied++
	return false
}

// ledgerState is a copy of a ledger's state.
type ledgerState struct {
	applied, dups uint64
	last          map[int]uint64
	gap           error
}

func (l *ledger) state() ledgerState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return ledgerState{applied: l.applied, dups: l.dups, last: maps.Clone(l.last), gap: l.gap}
}

// marshal returns the ledger's state as a snapshot: applied, dups, the
// number of proposers, then each proposer and its last sequence number,
// all uint64 little-endian. A gap is not kept (the harness checks the
// servers' ledgers for one after each round).
func (l *ledger) marshal() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := binary.LittleEndian.AppendUint64(nil, l.applied)
	b = binary.LittleEndian.AppendUint64(b, l.dups)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(l.last)))
	for p, seq := range l.last {
		b = binary.LittleEndian.AppendUint64(b, uint64(p))
		b = binary.LittleEndian.AppendUint64(b, seq)
	}
	return b
}

// unmarshal replaces the ledger's state with a snapshot of marshal.
func (l *ledger) unmarshal(b []byte) error {
	if len(b) < 24 || (len(b)-24)%16 != 0 || binary.LittleEndian.Uint64(b[16:]) != uint64(len(b)-24)/16 {
		return errors.New("ledger snapshot: malformed (its length does not match its number of proposers)")
	}
	last := map[int]uint64{}
	for i := 24; i < len(b); i += 16 {
		last[int(binary.LittleEndian.Uint64(b[i:]))] = binary.LittleEndian.Uint64(b[i+8:])
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.applied, l.dups, l.last = binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:]), last
	return nil
}
