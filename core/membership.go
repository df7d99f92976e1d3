package core

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Member is one server of a cluster's configuration.
type Member struct {
	ID int
	// Addr is where the other servers reach it. The core only carries it:
	// the driver's transport learns addresses from the configuration.
	Addr string
	// Learner marks a non-voting member: it receives the log but neither
	// votes nor counts in a majority, nor starts elections.
	Learner bool
}

// Membership is a configuration of the cluster (thesis chapter 4): its
// members, sorted by ID. A configuration lives in the log, in entries of
// type EntryConfig, and in snapshots; a server uses the latest one in its
// log, committed or not (thesis 4.1). A zero Membership is none: a server
// that has none yet (one that joins an existing cluster) neither votes
// nor starts elections until its log or a snapshot brings it one.
type Membership struct {
	Members []Member
}

// Empty reports whether m names no server.
func (m Membership) Empty() bool { return len(m.Members) == 0 }

// Find returns the member with ID id.
func (m Membership) Find(id int) (Member, bool) {
	for _, s := range m.Members {
		if s.ID == id {
			return s, true
		}
	}
	return Member{}, false
}

// IsVoter reports whether server id is a voting member of m.
func (m Membership) IsVoter(id int) bool {
	s, ok := m.Find(id)
	return ok && !s.Learner
}

// Voters returns the IDs of the voting members, in order.
func (m Membership) Voters() []int {
	var ids []int
	for _, s := range m.Members {
		if !s.Learner {
			ids = append(ids, s.ID)
		}
	}
	return ids
}

// majority reports whether the voters for which has is true are more than
// half of m's voters (5.2, 5.3: a majority of the configuration; thesis
// 4.1).
func (m Membership) majority(has func(id int) bool) bool {
	voters, yes := 0, 0
	for _, s := range m.Members {
		if s.Learner {
			continue
		}
		voters++
		if has(s.ID) {
			yes++
		}
	}
	return voters > 0 && yes > voters/2
}

// Equal reports whether m and o name the same members.
func (m Membership) Equal(o Membership) bool { return slices.Equal(m.Members, o.Members) }

func (m Membership) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, s := range m.Members {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d", s.ID)
		if s.Learner {
			b.WriteString("(learner)")
		}
	}
	b.WriteByte('}')
	return b.String()
}

// Clone returns a copy of m that shares no memory with it.
func (m Membership) Clone() Membership {
	return Membership{Members: slices.Clone(m.Members)}
}

// ChangeType says what a Change does.
type ChangeType uint8

// The changes of a configuration, one server at a time (thesis 4.1).
const (
	// AddLearner adds a server as a learner.
	AddLearner ChangeType = iota + 1
	// Promote makes a learner a voter.
	Promote
	// Remove removes a server, voter or learner.
	Remove
)

func (t ChangeType) String() string {
	switch t {
	case AddLearner:
		return "add-learner"
	case Promote:
		return "promote"
	case Remove:
		return "remove"
	}
	return fmt.Sprintf("ChangeType(%d)", uint8(t))
}

// Change is a change of one server of a configuration.
type Change struct {
	Type ChangeType
	ID   int
	Addr string // AddLearner: where the server listens
}

// Errors of a configuration change that the configuration refuses.
var (
	ErrMember    = errors.New("core: already a member")
	ErrNotMember = errors.New("core: not a member")
	ErrLastVoter = errors.New("core: cannot remove the last voter")
)

// apply returns m with c applied; m is unchanged.
func (m Membership) apply(c Change) (Membership, error) {
	if c.ID < 0 {
		return m, fmt.Errorf("core: server ID %d is negative", c.ID)
	}
	s, found := m.Find(c.ID)
	out := m.Clone()
	switch c.Type {
	case AddLearner:
		if found {
			return m, fmt.Errorf("server %d: %w", c.ID, ErrMember)
		}
		out.Members = append(out.Members, Member{ID: c.ID, Addr: c.Addr, Learner: true})
		slices.SortFunc(out.Members, func(a, b Member) int { return a.ID - b.ID })
	case Promote:
		if !found {
			return m, fmt.Errorf("server %d: %w", c.ID, ErrNotMember)
		}
		if !s.Learner {
			return m, fmt.Errorf("core: server %d is a voter already", c.ID)
		}
		for i := range out.Members {
			if out.Members[i].ID == c.ID {
				out.Members[i].Learner = false
			}
		}
	case Remove:
		if !found {
			return m, fmt.Errorf("server %d: %w", c.ID, ErrNotMember)
		}
		out.Members = slices.DeleteFunc(out.Members, func(x Member) bool { return x.ID == c.ID })
		if len(out.Voters()) == 0 {
			return m, ErrLastVoter
		}
	default:
		return m, fmt.Errorf("core: unknown change %v", c.Type)
	}
	return out, nil
}

// membershipVersion is the first byte of an encoded Membership.
const membershipVersion = 1

// maxMembers bounds the members a decoded Membership may have, so that a
// damaged count cannot make a decoder allocate much.
const maxMembers = 1 << 12

// AppendBinary appends the encoding of m to b:
//
//	version byte (1) | uvarint count | per member: uvarint ID, byte flags
//	(1: learner), uvarint address length, address bytes
func (m Membership) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, membershipVersion)
	b = binary.AppendUvarint(b, uint64(len(m.Members)))
	for _, s := range m.Members {
		if s.ID < 0 {
			return nil, fmt.Errorf("core: member ID %d is negative", s.ID)
		}
		b = binary.AppendUvarint(b, uint64(s.ID))
		var flags byte
		if s.Learner {
			flags = 1
		}
		b = append(b, flags)
		b = binary.AppendUvarint(b, uint64(len(s.Addr)))
		b = append(b, s.Addr...)
	}
	return b, nil
}

// check says what is wrong with m, or returns nil: it must be what
// DecodeMembership accepts (members in order of ID, each once, IDs not
// negative, a voter unless empty).
func (m Membership) check() error {
	b, err := m.AppendBinary(nil)
	if err == nil {
		_, err = DecodeMembership(b)
	}
	return err
}

// DecodeMembership decodes what AppendBinary encoded: all of b. It refuses
// members out of order or twice, unknown flags, and a configuration with
// members but no voter.
func DecodeMembership(b []byte) (Membership, error) {
	var m Membership
	if len(b) == 0 || b[0] != membershipVersion {
		return m, errors.New("core: configuration: no version byte or an unknown version")
	}
	b = b[1:]
	uv := func(what string) (uint64, error) {
		v, k := binary.Uvarint(b)
		if k <= 0 {
			return 0, fmt.Errorf("core: configuration: bad %s", what)
		}
		b = b[k:]
		return v, nil
	}
	count, err := uv("member count")
	if err != nil {
		return m, err
	}
	if count > maxMembers {
		return m, fmt.Errorf("core: configuration: %d members, over the maximum %d", count, maxMembers)
	}
	for i := uint64(0); i < count; i++ {
		id, err := uv("member ID")
		if err != nil {
			return Membership{}, err
		}
		if id > 1<<31-1 || (len(m.Members) > 0 && int(id) <= m.Members[len(m.Members)-1].ID) {
			return Membership{}, fmt.Errorf("core: configuration: member %d out of order or out of range", id)
		}
		if len(b) == 0 || b[0] > 1 {
			return Membership{}, fmt.Errorf("core: configuration: bad flags of member %d", id)
		}
		learner := b[0] == 1
		b = b[1:]
		n, err := uv("address length")
		if err != nil {
			return Membership{}, err
		}
		if n > uint64(len(b)) {
			return Membership{}, fmt.Errorf("core: configuration: address of member %d is cut short", id)
		}
		m.Members = append(m.Members, Member{ID: int(id), Addr: string(b[:n]), Learner: learner})
		b = b[n:]
	}
	if len(b) != 0 {
		return Membership{}, fmt.Errorf("core: configuration: %d stray bytes", len(b))
	}
	if len(m.Members) > 0 && len(m.Voters()) == 0 {
		return Membership{}, errors.New("core: configuration without a voter")
	}
	return m, nil
}

// confEntry is a configuration held by an entry of the log.
type confEntry struct {
	index int
	m     Membership
}

// conf returns the latest configuration in the log, committed or not
// (thesis 4.1: a server uses the latest configuration in its log).
func (n *Node) conf() Membership {
	if k := len(n.confs); k > 0 {
		return n.confs[k-1].m
	}
	return n.snapConf
}

// confIndex returns the index of the entry holding the latest
// configuration, or the snapshot's index when the configuration is the
// snapshot's (or the initial one).
func (n *Node) confIndex() int {
	if k := len(n.confs); k > 0 {
		return n.confs[k-1].index
	}
	return n.log.snapshot().Index
}

// confAt returns the configuration as of index i (at least the
// snapshot's index).
func (n *Node) confAt(i int) Membership {
	m := n.snapConf
	for _, c := range n.confs {
		if c.index > i {
			break
		}
		m = c.m
	}
	return m
}

// noteEntries records the configurations among ents, which were just
// appended to the log after dropping every entry from ents[0].Index on.
// The entries have been checked by decodeConfs.
func (n *Node) noteEntries(ents []Entry) {
	if len(ents) == 0 {
		return
	}
	was := n.conf()
	n.confs = slices.DeleteFunc(n.confs, func(c confEntry) bool { return c.index >= ents[0].Index })
	for _, e := range ents {
		if e.Type == EntryConfig {
			m, _ := DecodeMembership(e.Command)
			n.confs = append(n.confs, confEntry{index: e.Index, m: m})
		}
	}
	if !n.conf().Equal(was) {
		n.confChanged()
	}
}

// restoreConfs takes the configurations after a snapshot installed from
// a leader: the snapshot's, then those of the entries kept after it.
func (n *Node) restoreConfs(snap SnapshotMeta) {
	was := n.conf()
	n.snapConf = snap.Membership
	if n.snapConf.Empty() {
		n.snapConf = n.initial // taken before configurations were kept, or with a fixed one
	}
	n.confs = slices.DeleteFunc(n.confs, func(c confEntry) bool { return c.index <= snap.Index || n.log.term(c.index) < 0 })
	if !n.conf().Equal(was) {
		n.confChanged()
	}
}

// decodeConfs checks that the configuration entries among ents decode.
func decodeConfs(ents []Entry) error {
	for _, e := range ents {
		if e.Type != EntryConfig {
			continue
		}
		m, err := DecodeMembership(e.Command)
		if err != nil {
			return fmt.Errorf("entry %d: %w", e.Index, err)
		}
		if m.Empty() {
			return fmt.Errorf("entry %d: core: empty configuration", e.Index)
		}
	}
	return nil
}

// confChanged brings the server in line with a new latest configuration:
// a leader starts or stops replicating to the servers added or removed; a
// candidate that is no longer a voter gives up.
func (n *Node) confChanged() {
	n.confNews = true
	if n.trace != nil {
		n.tracef("configuration %v", n.conf())
	}
	switch n.role {
	case Leader:
		n.syncProgress()
	case Candidate, PreCandidate:
		if !n.canCampaign() {
			n.becomeFollower(n.term, None)
		}
	}
}

// canCampaign reports whether the server may start an election: it is a
// voter of its latest configuration, or that configuration, which removes
// it, is not committed yet and it was a voter of the one before. (Such a
// server may hold the only log a majority of the new configuration can
// elect: a leader that appended its own removal and lost the leadership
// before committing it. It counts no vote of its own, and as leader hands
// over once its removal commits, thesis 4.2.2.) Learners and servers
// outside the configuration never do.
func (n *Node) canCampaign() bool {
	if n.conf().IsVoter(n.id) {
		return true
	}
	i := n.confIndex()
	return i > n.commit && n.confAt(i-1).IsVoter(n.id)
}

// syncProgress gives a leader a progress for each other member of the
// latest configuration. It keeps replicating to a server removed from it
// until the removal is committed, then sends it a last heartbeat, which
// tells it so (a removed server that misses it is told again when it asks
// for votes: tellRemoved), and drops it.
func (n *Node) syncProgress() {
	c, committed := n.conf(), n.confAt(n.commit)
	for _, id := range n.replicas() {
		_, inLatest := c.Find(id)
		_, inCommitted := committed.Find(id)
		if !inLatest && !inCommitted {
			n.sendAppend(id, n.progress[id], nil)
			delete(n.progress, id)
		}
	}
	for _, s := range c.Members {
		if s.ID != n.id && n.progress[s.ID] == nil {
			n.progress[s.ID] = &progress{next: n.log.lastIndex() + 1, probing: true, heartbeat: true}
		}
	}
}

// tellRemoved has a leader replicate to a server that asks for votes
// although the committed latest configuration leaves it out: it was down
// when its removal committed, and has never heard of it. It learns of it
// from its log, as the others did: once it holds the configuration that
// removes it, committed, it stops (the removed servers of thesis 4.2.3,
// which with PreVote cannot disrupt, but would otherwise never stop). Its
// votes and acknowledgements count for nothing, as for any non-member.
func (n *Node) tellRemoved(id int) {
	if n.role != Leader || id == n.id || n.progress[id] != nil || n.confIndex() > n.commit {
		return
	}
	if _, in := n.conf().Find(id); in {
		return
	}
	n.tracef("%d asks for votes but was removed: send it the log", id)
	n.progress[id] = &progress{next: n.log.lastIndex() + 1, probing: true, heartbeat: true}
}

// doneTelling drops the progress of a server outside the latest
// configuration once it holds that configuration, committed (every
// AppendEntries carries the leader's commit index, which was past it).
func (n *Node) doneTelling(id int) {
	p := n.progress[id]
	if _, in := n.conf().Find(id); in || p == nil || p.match < n.confIndex() || n.confIndex() > n.commit {
		return
	}
	n.tracef("%d holds its removal at %d", id, n.confIndex())
	delete(n.progress, id)
}

// replicas returns the IDs of the servers a leader replicates to, in
// order.
func (n *Node) replicas() []int {
	ids := make([]int, 0, len(n.progress))
	for id := range n.progress {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// otherVoters returns the IDs of the other voters of the latest
// configuration, in order.
func (n *Node) otherVoters() []int {
	var ids []int
	for _, s := range n.conf().Members {
		if s.ID != n.id && !s.Learner {
			ids = append(ids, s.ID)
		}
	}
	return ids
}

// voteTargets returns the IDs of the servers a candidate asks for votes,
// in order: the other members of every configuration its log holds, not
// only the voters whose votes count. A server removed while it was down
// may not know who leads now; asking the members of the configurations it
// knows reaches the leader if it is one of them, which then tells it of
// its removal (tellRemoved). Only the latest configuration's voters'
// votes count (hasVotes).
func (n *Node) voteTargets() []int {
	var ids []int
	for _, c := range append([]confEntry{{m: n.snapConf}}, n.confs...) {
		for _, s := range c.m.Members {
			if s.ID != n.id {
				ids = append(ids, s.ID)
			}
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// Membership returns the latest configuration in the server's log and
// the index of the entry that holds it (the snapshot's index if the
// snapshot's configuration, or the initial one, is the latest), and
// whether that entry is committed.
func (n *Node) Membership() (m Membership, index int, committed bool) {
	return n.conf().Clone(), n.confIndex(), n.confIndex() <= n.commit
}

// Errors of ProposeChange.
var (
	// ErrChangeInProgress: the latest configuration is not committed yet;
	// only one change at a time may be under way (thesis 4.1).
	ErrChangeInProgress = errors.New("core: a configuration change is in progress")
	// ErrLeaderNotReady: the leader has not yet committed an entry of its
	// term, and may not change the configuration before (thesis 4.1, the
	// fix to single-server changes).
	ErrLeaderNotReady = errors.New("core: the leader has not committed an entry of its term yet")
	// ErrNotCaughtUp: a learner to promote does not hold the leader's
	// committed log yet.
	ErrNotCaughtUp = errors.New("core: the learner has not caught up with the leader's log")
	// ErrTransferring: the leader is handing the leadership over.
	ErrTransferring = errors.New("core: a leadership transfer is in progress")
)

// ProposeChange appends an entry of type EntryConfig that changes the
// latest configuration by c, on the leader, and returns its index and
// term. The new configuration takes effect at once, before it commits
// (thesis 4.1). It refuses a change while another is under way, before
// the leader has committed an entry of its term, and the promotion of a
// learner whose log does not yet hold the leader's commit index.
func (n *Node) ProposeChange(c Change) (index, term int, err error) {
	switch {
	case n.role != Leader:
		return 0, n.term, ErrNotLeader
	case n.transferee != None:
		return 0, n.term, ErrTransferring
	case n.confIndex() > n.commit:
		return 0, n.term, ErrChangeInProgress
	case n.log.term(n.commit) != n.term:
		return 0, n.term, ErrLeaderNotReady
	}
	next, err := n.conf().apply(c)
	if err != nil {
		return 0, n.term, err
	}
	if c.Type == Promote {
		if p := n.progress[c.ID]; p == nil || p.match < n.commit {
			return 0, n.term, fmt.Errorf("server %d: %w", c.ID, ErrNotCaughtUp)
		}
	}
	b, err := next.AppendBinary(nil)
	if err != nil {
		return 0, n.term, err
	}
	index = n.log.lastIndex() + 1
	e := Entry{Index: index, Term: n.term, Type: EntryConfig, Command: b}
	n.log.append(e)
	n.noteEntries([]Entry{e})
	n.tracef("propose %v %d: configuration %v at %d", c.Type, c.ID, next, index)
	n.maybeCommit()
	return index, n.term, nil
}
