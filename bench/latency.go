package main

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// subBits sets the precision of a latencies histogram: each power of two
// is split into 1<<subBits buckets, so a bucket is at most 1/64 (1.6 %)
// of its value wide.
const subBits = 6

// latencies is a histogram of durations that many goroutines can add to
// at once, in a fixed 32 KiB however many it counts: the proposers'
// memory stays out of the heap the harness measures.
type latencies struct {
	counts [64 << subBits]atomic.Int64
}

// bucketOf returns the bucket of d: exact below 1<<subBits ns, then the
// top subBits+1 bits of d.
func bucketOf(d time.Duration) int {
	v := uint64(max(d, 0))
	if v < 1<<subBits {
		return int(v)
	}
	shift := bits.Len64(v) - 1 - subBits
	return (shift+1)<<subBits + int(v>>shift) - 1<<subBits
}

// valueOf returns the middle of bucket b.
func valueOf(b int) time.Duration {
	if b < 1<<subBits {
		return time.Duration(b)
	}
	shift := b>>subBits - 1
	low := uint64(b&(1<<subBits-1)+1<<subBits) << shift
	return time.Duration(low + (uint64(1)<<shift)/2)
}

func (l *latencies) add(d time.Duration) { l.counts[bucketOf(d)].Add(1) }

// count returns how many durations were added.
func (l *latencies) count() int {
	n := int64(0)
	for i := range l.counts {
		n += l.counts[i].Load()
	}
	return int(n)
}

// percentile returns the p-th percentile (0 < p <= 100) of the durations
// added, by the nearest-rank method, to the bucket's precision; 0 if none
// were.
func (l *latencies) percentile(p float64) time.Duration {
	n := l.count()
	if n == 0 {
		return 0
	}
	rank := int64(max(1, math.Ceil(p/100*float64(n))))
	seen := int64(0)
	for i := range l.counts {
		if seen += l.counts[i].Load(); seen >= rank {
			return valueOf(i)
		}
	}
	return valueOf(len(l.counts) - 1) // added to meanwhile
}
