package core

// raftLog is a server's log. Slot 0 holds a sentinel entry (index 0, term 0)
// so that the entry before the first real one always exists.
//
// Slices handed out by slice stay valid: the log only ever writes past its
// current end, and truncation moves to a fresh array.
type raftLog struct {
	ents     []Entry
	unstable int // first index not yet handed to the caller to save
}

func newLog(saved []Entry) raftLog {
	ents := make([]Entry, 1, len(saved)+1)
	ents = append(ents, saved...)
	return raftLog{ents: ents, unstable: len(ents)}
}

func (l *raftLog) lastIndex() int { return len(l.ents) - 1 }

func (l *raftLog) lastTerm() int { return l.ents[len(l.ents)-1].Term }

// term returns the term of the entry at index i, or -1 if there is none.
func (l *raftLog) term(i int) int {
	if i < 0 || i > l.lastIndex() {
		return -1
	}
	return l.ents[i].Term
}

// slice returns the entries with indexes in [lo, hi).
func (l *raftLog) slice(lo, hi int) []Entry {
	return l.ents[lo:hi:hi]
}

// append adds e at the end of the log.
func (l *raftLog) append(e Entry) {
	l.ents = append(l.ents, e)
}

// truncateAndAppend drops the entries from ents[0].Index on, if any, and
// appends ents.
func (l *raftLog) truncateAndAppend(ents []Entry) {
	at := ents[0].Index
	if at == len(l.ents) {
		l.ents = append(l.ents, ents...)
		return
	}
	l.ents = append(l.ents[:at:at], ents...) // a fresh array: handed-out slices keep their entries
	l.unstable = min(l.unstable, at)
}

// upToDate reports whether a log ending with (lastTerm, lastIndex) is at
// least as up-to-date as this one (5.4.1).
func (l *raftLog) upToDate(lastIndex, lastTerm int) bool {
	return lastTerm > l.lastTerm() || (lastTerm == l.lastTerm() && lastIndex >= l.lastIndex())
}

// firstOfTerm returns the first index, going back from i, whose entry has
// the same term as entry i.
func (l *raftLog) firstOfTerm(i int) int {
	t := l.ents[i].Term
	for i > 1 && l.ents[i-1].Term == t {
		i--
	}
	return i
}

// lastOfTerm returns the index of the last entry of term t, or 0 if the log
// holds no entry of term t.
func (l *raftLog) lastOfTerm(t int) int {
	for i := l.lastIndex(); i > 0; i-- {
		switch tt := l.ents[i].Term; {
		case tt == t:
			return i
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
	ents := l.slice(l.unstable, len(l.ents))
	l.unstable = len(l.ents)
	return ents
}
