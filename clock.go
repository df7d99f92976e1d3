package raft

import "time"

// clock turns wall time into the core's ticks without waking the loop for
// ticks that only count: the loop sleeps until the tick at which the core's
// next timer fires (core.Node.TicksToEvent) and, when it wakes for any
// reason, gives the core the ticks that have passed.
//
// Ticks count while the loop waits, up to the planned wake-up. Like a
// time.Ticker, a loop that was busy, or woke late because the process was
// not scheduled, sees one tick for all the ticks it missed meanwhile: a
// follower whose leader's messages are already queued does not start an
// election because its own loop (or machine) was slow.
type clock struct {
	tick   time.Duration
	last   time.Time // the instant of the last tick accounted for
	idle   time.Time // when the loop started to wait
	target time.Time // the planned wake-up
	timer  *time.Timer
}

func newClock(tick time.Duration) *clock {
	now := time.Now()
	return &clock{tick: tick, last: now, idle: now, target: now, timer: time.NewTimer(tick)}
}

// sleep arms the timer for the tick that comes ticks after the last one
// and notes that the loop is about to wait.
func (c *clock) sleep(ticks int) {
	c.idle = time.Now()
	c.target = c.last.Add(time.Duration(ticks) * c.tick)
	c.timer.Reset(c.target.Sub(c.idle))
}

// elapsed returns how many ticks to give the core now that the loop is
// awake, and how many more passed that it does not give (core.Node.Skip).
func (c *clock) elapsed() (n, skipped int) {
	n, passed := countTicks(c.tick, c.last, c.idle, c.target, time.Now())
	c.last = c.last.Add(time.Duration(passed) * c.tick)
	return n, passed - n
}

// countTicks returns how many of the tick instants last+tick, last+2*tick,
// ... up to now have passed (passed), and how many of them the core is
// given (n): those from idle to target, plus one for any others.
func countTicks(tick time.Duration, last, idle, target, now time.Time) (n, passed int) {
	ticksTo := func(t time.Time) int { return max(0, int(t.Sub(last)/tick)) }
	passed = ticksTo(now)
	n = max(0, min(passed, ticksTo(target))-ticksTo(idle))
	if passed > n {
		n++
	}
	return n, passed
}
