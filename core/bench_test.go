package core

import (
	"math/rand/v2"
	"testing"
)

// benchCluster is three Nodes wired directly together, with a leader.
type benchCluster struct {
	nodes map[int]*Node
}

func newBenchCluster(b *testing.B, trace func(string)) *benchCluster {
	c := &benchCluster{nodes: map[int]*Node{}}
	for id := 1; id <= 3; id++ {
		n, err := New(Config{ID: id, Peers: []int{1, 2, 3}, ElectionTicks: 10, HeartbeatTicks: 2,
			State: HardState{Vote: None}, Rand: rand.New(rand.NewPCG(uint64(id), 1)), Trace: trace})
		if err != nil {
			b.Fatal(err)
		}
		c.nodes[id] = n
	}
	for c.nodes[1].Role() != Leader {
		c.nodes[1].Tick()
		c.settle()
	}
	return c
}

// settle delivers messages until there are none.
func (c *benchCluster) settle() {
	for {
		var msgs []Message
		for _, n := range c.nodes {
			msgs = append(msgs, sent(n.Ready())...)
		}
		if len(msgs) == 0 {
			return
		}
		for _, m := range msgs {
			if r, ok := c.nodes[m.To].Step(m); ok {
				c.nodes[r.To].Step(r)
			}
		}
	}
}

// BenchmarkCommit measures the core's cost of committing one command on
// three servers: propose, replicate, acknowledge, commit, tell followers.
// Tracing is off, as by default: its cost must be nil.
func BenchmarkCommit(b *testing.B) {
	c := newBenchCluster(b, nil)
	cmd := make([]byte, 100)
	b.ReportAllocs()
	for b.Loop() {
		c.nodes[1].Propose(cmd)
		c.settle()
	}
}
