package raft

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/raftkit/raft/core"
)

// ErrClusterExists is wrapped by the error of a server that started with
// no state under Config.Bootstrap and found that its cluster already has
// state: its own data was lost, and starting it empty under the same ID
// could lose acknowledged writes and let it vote twice in one term.
var ErrClusterExists = errors.New("raft: the cluster already has state, but this server has none")

// ErrIDInUse is the error of a server that started with no state under
// Config.Join and found its ID a voter of the cluster's configuration: a
// server of that ID may have acknowledged entries or voted, and a
// replacement holding none of its state must take a new ID.
var ErrIDInUse = errors.New("raft: this server's ID is a voter of the cluster already")

// ErrNoState is wrapped by the error of New when the storage holds nothing
// and Config.Bootstrap is not set.
var ErrNoState = errors.New("raft: storage holds no state")

// probeLogEvery is how often a server that waits for its peers before it
// founds a cluster says so.
const probeLogEvery = 5 * time.Second

// bootstrap is the first phase of a server that starts with no state under
// Config.Bootstrap. The server cannot tell a brand-new cluster from one
// that lost its data, and only the second is dangerous: it may have
// granted a vote or acknowledged entries that a majority counted on. So it
// asks every peer what it holds (Probe), and starts only once each has
// answered that it holds nothing, or that it founded the cluster after
// hearing this server held nothing and has heard nothing from it since
// (so this server never acknowledged anything). If a peer answers that it
// holds state and is not such a founder, the server stops with
// ErrClusterExists. Meanwhile it answers probes, and neither votes nor
// acknowledges entries.
type bootstrap struct {
	pending map[int]bool // peers yet to answer
	empty   []int        // peers that answered they hold nothing
	start   time.Time
	logged  time.Time
}

func newBootstrap(peers map[int]Peer) *bootstrap {
	b := &bootstrap{pending: map[int]bool{}, start: time.Now()}
	for id := range peers {
		b.pending[id] = true
	}
	b.logged = b.start
	return b
}

// waitingFor returns the peers that have not answered, in order.
func (b *bootstrap) waitingFor() []int {
	var ids []int
	for id := range b.pending {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// probe asks the peers that have not answered yet, and says every
// probeLogEvery whom the server waits for.
func (rf *Raft) probe() {
	b := rf.boot
	waiting := b.waitingFor()
	for _, id := range waiting {
		rf.send(core.Message{From: rf.me, To: id, Body: &core.ProbeArgs{}})
	}
	if now := time.Now(); now.Sub(b.logged) >= probeLogEvery {
		b.logged = now
		rf.logger.Warn("raft: this server has no state; waiting for every peer to answer before starting a new cluster, since until they do it cannot tell a new cluster from one that lost this server's data",
			"waiting_for", waiting, "waited", now.Sub(b.start).Round(time.Second))
	}
}

// probed handles a peer's answer to a probe. It stops the server if the
// peer shows that the cluster exists, and ends the bootstrap once every
// peer has answered.
func (rf *Raft) probed(from int, r *core.ProbeReply) {
	b := rf.boot
	if !b.pending[from] {
		return
	}
	if !r.Empty && !r.Founder {
		err := fmt.Errorf("%w: server %d has no data, but its peer %d is at term %d with %d log entries. "+
			"Its data directory was wiped, replaced or lost, and starting it empty under the same ID could lose acknowledged writes. "+
			"Restore its data, or replace it as a new member under a new ID (docs/operations.md, \"Replacing a lost disk\")",
			ErrClusterExists, rf.me, from, r.Term, r.LastIndex)
		rf.logger.Error(err.Error())
		rf.stop(err)
		return
	}
	delete(b.pending, from)
	if r.Empty {
		b.empty = append(b.empty, from)
	}
	if len(b.pending) > 0 {
		return
	}
	rf.boot = nil
	rf.founders = map[int]bool{}
	for _, id := range b.empty {
		rf.founders[id] = true
	}
	rf.logger.Info("raft: no peer holds state: starting a new cluster", "peers", rf.remotes.count()+1)
}

// probeReply tells server from what state this server holds.
func (rf *Raft) probeReply(from int) *core.ProbeReply {
	st := rf.node.Status()
	return &core.ProbeReply{
		Term:      st.Term,
		LastIndex: st.LastLog,
		Empty:     st.Term == 0 && st.LastLog == 0 && rf.node.Vote() == core.None,
		Founder:   rf.founders[from],
	}
}
