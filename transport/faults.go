package transport

import (
	"math/rand/v2"
	"sync"
	"time"
)

// defaultLostWait is how long, at most, a call whose message was lost to an
// injected fault waits before it returns false.
const defaultLostWait = 100 * time.Millisecond

// Faults injects network faults between servers: it cuts, drops and delays
// the messages (requests and replies alike) that go from one server to
// another. Its methods are safe for concurrent use, and one Faults may be
// shared by any number of transports: by the client and server sides of
// one TCP, or by all the transports of a test that runs in one process.
// The zero Faults injects nothing and is ready to use (its random source is
// seeded with 0); a nil *Faults in Config injects nothing either.
//
// Where each fault is applied:
//
//   - A cut link (Cut, Isolate) is honoured by both ends: the sender does
//     not send over it, and the receiver refuses a request that came over
//     it (or a reply, for the caller's side). So a partition between real
//     processes holds as soon as either process's Faults knows of it.
//   - Drops and delays of messages from a to b are applied by a, the
//     sender, only (a caller for its requests, a server for its replies), so
//     that a Faults shared by both ends does not apply them twice. Between
//     processes, set them in the sender's Faults.
//
// A call whose request or reply is lost returns false after a random wait
// of between half and all of the lost wait (SetLostWait; 100 ms by
// default), or at its deadline if that comes first: a lost message costs
// the caller some time, as on a real network, but not a whole call timeout.
type Faults struct {
	mu       sync.Mutex
	rng      *rand.Rand
	cut      map[pair]bool // links cut both ways, keyed by the sorted pair
	isolated map[int]bool
	drop     map[link]float64
	delay    map[link]time.Duration
	lostWait time.Duration
	hasLost  bool // lostWait was set
}

// link is the direction from one server to another.
type link struct{ from, to int }

// pair is an unordered pair of servers, a <= b.
type pair struct{ a, b int }

func sorted(a, b int) pair {
	if a > b {
		a, b = b, a
	}
	return pair{a, b}
}

// NewFaults returns a Faults that injects nothing yet, whose random drops
// are drawn from a source seeded with seed.
func NewFaults(seed uint64) *Faults {
	return &Faults{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// init sets up the maps and the random source of a zero Faults; f.mu is held.
func (f *Faults) init() {
	if f.rng == nil {
		f.rng = rand.New(rand.NewPCG(0, 0x9e3779b97f4a7c15))
	}
	if f.cut == nil {
		f.cut = make(map[pair]bool)
		f.isolated = make(map[int]bool)
		f.drop = make(map[link]float64)
		f.delay = make(map[link]time.Duration)
	}
}

// Cut cuts the link between servers a and b, both ways: every message
// between them is lost until Heal(a, b) or HealAll.
func (f *Faults) Cut(a, b int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	f.cut[sorted(a, b)] = true
}

// Heal undoes Cut(a, b). A link to an isolated server stays cut until the
// server Rejoins.
func (f *Faults) Heal(a, b int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	delete(f.cut, sorted(a, b))
}

// Isolate cuts every link of server id, both ways, until Rejoin(id) or
// HealAll.
func (f *Faults) Isolate(id int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	f.isolated[id] = true
}

// Rejoin undoes Isolate(id). Links cut one by one with Cut stay cut.
func (f *Faults) Rejoin(id int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	delete(f.isolated, id)
}

// HealAll undoes every Cut and Isolate. Drops and delays stay; Reset
// clears them too.
func (f *Faults) HealAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	clear(f.cut)
	clear(f.isolated)
}

// SetDrop makes each message from server from to server to lost with
// probability prob (clamped to [0, 1]); 0 stops the drops.
func (f *Faults) SetDrop(from, to int, prob float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	prob = min(max(prob, 0), 1)
	if prob == 0 {
		delete(f.drop, link{from, to})
		return
	}
	f.drop[link{from, to}] = prob
}

// SetDelay delays each message from server from to server to by d before
// it is sent; 0 (or less) stops the delay. A call whose messages are
// delayed past its deadline returns false.
func (f *Faults) SetDelay(from, to int, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	if d <= 0 {
		delete(f.delay, link{from, to})
		return
	}
	f.delay[link{from, to}] = d
}

// SetLostWait sets how long a call whose message was lost waits before it
// returns false: a random time between d/2 and d. 0 makes it return at
// once.
func (f *Faults) SetLostWait(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lostWait, f.hasLost = max(d, 0), true
}

// Reset undoes everything: cuts, isolations, drops, delays and the lost
// wait.
func (f *Faults) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	clear(f.cut)
	clear(f.isolated)
	clear(f.drop)
	clear(f.delay)
	f.lostWait, f.hasLost = 0, false
}

// Connected reports whether the link between a and b is up, that is
// neither cut nor through an isolated server. Drops and delays do not
// count.
func (f *Faults) Connected(a, b int) bool {
	return !f.isCut(a, b)
}

// isCut reports whether messages between a and b (either way) are cut. A
// nil Faults cuts nothing.
func (f *Faults) isCut(a, b int) bool {
	if f == nil {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cutLocked(a, b)
}

func (f *Faults) cutLocked(a, b int) bool {
	return f.cut[sorted(a, b)] || f.isolated[a] || f.isolated[b]
}

// fate decides what happens to one message from server from to server to:
// lost (cut or randomly dropped), or else sent after delay.
func (f *Faults) fate(from, to int) (lost bool, delay time.Duration) {
	if f == nil {
		return false, 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cutLocked(from, to) {
		return true, 0
	}
	if p := f.drop[link{from, to}]; p > 0 {
		f.init()
		if p >= 1 || f.rng.Float64() < p {
			return true, 0
		}
	}
	return false, f.delay[link{from, to}]
}

// lostDelay draws how long a call whose message was lost waits before it
// fails.
func (f *Faults) lostDelay() time.Duration {
	if f == nil {
		return 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	d := defaultLostWait
	if f.hasLost {
		d = f.lostWait
	}
	if d <= 0 {
		return 0
	}
	return d/2 + time.Duration(f.rng.Int64N(int64(d/2)+1))
}
