package core

// raftLog is a server's log after its snapshot (section 7). Slot 0 holds a
// sentinel: the last entry the snapshot covers (index and term only), or
// index 0 term 0 without a snapshot, so that the entry before the first
// one kept always has a known term. Entry i sits at ents[i-ents[0].Index].
//
// Slices handed out by slice stay valid: the log only ever writes past its
// current end, and truncation and compaction move to a fresh array.
type raftLog struct {
	ents     []Entry
	unstable int // first index not yet handed to the caller to save
	bytes    int // the commands' bytes in the entries after the sentinel
}

func newLog(snap SnapshotMeta, saved []Entry) raftLog {
	ents := make([]Entry, 1, len(saved)+1)
	ents[0] = Entry{Index: snap.Index, Term: snap.Term}
	ents = append(ents, saved...)
	return raftLog{ents: ents, unstable: snap.Index + len(ents), bytes: commandBytes(saved)}
}

// commandBytes returns the bytes of the commands in ents.
func commandBytes(ents []Entry) int {
	n := 0
	for _, e := range ents {
		n += len(e.Command)
	}
	return n
}

// snapshot returns what the snapshot before the log covers.
func (l *raftLog) snapshot() SnapshotMeta {
	return SnapshotMeta{Index: l.ents[0].Index, Term: l.ents[0].Term}
}

func (l *raftLog) lastIndex() int { return l.ents[0].Index + len(l.ents) - 1 }

func (l *raftLog) lastTerm() int { return l.ents[len(l.ents)-1].Term }

// term returns the term of the entry at index i, or -1 if the log does not
// know it: i is past its end, or before its snapshot.
func (l *raftLog) term(i int) int {
	k := i - l.ents[0].Index
	if k < 0 || k >= len(l.ents) {
		return -1
	}
	return l.ents[k].Term
}

// entry returns the entry at index i, which must be after the snapshot and
// at most lastIndex.
func (l *raftLog) entry(i int) *Entry { return &l.ents[i-l.ents[0].Index] }

// slice returns the entries with indexes in [lo, hi), which must be after
// the snapshot and at most lastIndex+1.
func (l *raftLog) slice(lo, hi int) []Entry {
	off := l.ents[0].Index
	return l.ents[lo-off : hi-off : hi-off]
}

// append adds e at the end of the log.
func (l *raftLog) append(e Entry) {
	l.ents = append(l.ents, e)
	l.bytes += len(e.Command)
}

// truncateAndAppend drops the entries from ents[0].Index on, if any, and
// appends ents. ents[0].Index must be after the snapshot.
func (l *raftLog) truncateAndAppend(ents []Entry) {
	at := ents[0].Index - l.ents[0].Index
	l.bytes += commandBytes(ents) - commandBytes(l.ents[at:])
	if at == len(l.ents) {
		l.ents = append(l.ents, ents...)
		return
	}
	l.ents = append(l.ents[:at:at], ents...) // a fresh array: handed-out slices keep their entries
	l.unstable = min(l.unstable, ents[0].Index)
}

// compact discards the entries up to index i, which the service's snapshot
// now covers (section 7). i must be after the snapshot and at most
// lastIndex.
func (l *raftLog) compact(i int) {
	k := i - l.ents[0].Index
	l.bytes -= commandBytes(l.ents[1 : k+1])
	ents := make([]Entry, 1, len(l.ents)-k)
	ents[0] = Entry{Index: i, Term: l.ents[k].Term}
	l.ents = append(ents, l.ents[k+1:]...)
	l.unstable = max(l.unstable, i+1)
}

// restore replaces the log by a snapshot received from a leader, keeping
// the entries after it if the log holds the snapshot's last entry
// (Figure 13, rules 6 and 7). Every entry kept is handed out to save
// again, since the saved log is replaced.
func (l *raftLog) restore(snap SnapshotMeta) {
	var kept []Entry
	if l.term(snap.Index) == snap.Term {
		kept = l.slice(snap.Index+1, l.lastIndex()+1)
	}
	*l = newLog(snap, kept)
	l.unstable = snap.Index + 1
}

// upToDate reports whether a log ending with (lastTerm, lastIndex) is at
// least as up-to-date as this one (5.4.1).
func (l *raftLog) upToDate(lastIndex, lastTerm int) bool {
	return lastTerm > l.lastTerm() || (lastTerm == l.lastTerm() && lastIndex >= l.lastIndex())
}

// firstOfTerm returns the first index, going back from i (after the
// snapshot), whose entry has the same term as entry i, as far as the log
// knows: not before the first entry after the snapshot.
func (l *raftLog) firstOfTerm(i int) int {
	t := l.term(i)
	for i > l.ents[0].Index+1 && l.term(i-1) == t {
		i--
	}
	return i
}

// lastOfTerm returns the index of the last entry of term t (the
// snapshot's last entry included), or 0 if the log holds no entry of term
// t.
func (l *raftLog) lastOfTerm(t int) int {
	for k := len(l.ents) - 1; k >= 0; k-- {
		switch tt := l.ents[k].Term; {
		case tt == t && (k > 0 || l.ents[0].Index > 0):
			return l.ents[k].Index
		case tt < t:
			return 0
		}
	}
	return 0
}

// takeUnstable returns the entries not yet handed out for saving, and
// counts them as handed out.
func (l *raftLog) takeUnstable() []Entry {
	if l.unstable > l.lastIndex() {
		return nil
	}
	ents := l.slice(l.unstable, l.lastIndex()+1)
	l.unstable = l.lastIndex() + 1
	return ents
}
