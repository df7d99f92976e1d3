package raft

import (
	"testing"
	"time"
)

func TestCountTicks(t *testing.T) {
	const tick = 10 * time.Millisecond
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	cases := []struct {
		name              string
		idle, target, now int // ms after the last tick
		wantN, wantPassed int
	}{
		{"woken before a tick", 1, 50, 9, 0, 0},
		{"woken by an event mid-sleep", 1, 50, 32, 3, 3},
		{"woken on time", 1, 50, 50, 5, 5},
		{"woken a little late", 1, 50, 53, 5, 5},
		{"woken a tick late: one tick for the late ones", 1, 50, 61, 6, 6},
		{"process stalled: one tick for the late ones", 1, 50, 500, 6, 50},
		{"busy before waiting: one tick for the busy ones", 35, 50, 50, 3, 5},
		{"busy past the target", 70, 50, 71, 1, 7},
		{"busy, then stalled", 35, 50, 500, 3, 50},
	}
	for _, c := range cases {
		n, passed := countTicks(tick, t0, at(c.idle), at(c.target), at(c.now))
		if n != c.wantN || passed != c.wantPassed {
			t.Errorf("%s: countTicks = %d, %d; want %d, %d", c.name, n, passed, c.wantN, c.wantPassed)
		}
	}
}

// elapsed gives the core one tick for the late ones, and says how many it
// skipped (they count for a leader's lease: core.Node.Skip).
func TestClockElapsedSkipped(t *testing.T) {
	const tick = 10 * time.Millisecond
	now := time.Now()
	c := &clock{tick: tick, last: now.Add(-500 * time.Millisecond), idle: now.Add(-499 * time.Millisecond), target: now.Add(-450 * time.Millisecond)}
	n, skipped := c.elapsed()
	if n != 6 || skipped < 44 {
		t.Fatalf("a loop 45 ticks late: elapsed %d, skipped %d; want 6 given, at least 44 skipped", n, skipped)
	}
}
