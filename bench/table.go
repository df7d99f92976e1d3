package main

import (
	"fmt"
	"io"
	"slices"
	"time"
)

// row is the rounds of every side at one client count.
type row struct {
	clients int
	results map[string][]roundResult // by side name
}

// summary sums up one side's rounds of a row.
type summary struct {
	ok               bool // the side ran
	min, median, max float64
	p50, p99         time.Duration // over the commands of all rounds
	cpuPerOp         time.Duration // over all rounds
	retries, rounds  int
}

func summarize(rs []roundResult) summary {
	if len(rs) == 0 {
		return summary{}
	}
	s := summary{ok: true, rounds: len(rs)}
	var rates []float64
	var lat []time.Duration
	var cpu time.Duration
	ops := 0
	for _, r := range rs {
		rates = append(rates, r.opsPerSec())
		lat = append(lat, r.lat...)
		cpu += r.cpu
		ops += r.ops
		s.retries += r.retries
	}
	slices.Sort(rates)
	slices.Sort(lat)
	s.min, s.median, s.max = rates[0], median(rates), rates[len(rates)-1]
	s.p50, s.p99 = percentile(lat, 50), percentile(lat, 99)
	if ops > 0 {
		s.cpuPerOp = cpu / time.Duration(ops)
	}
	return s
}

// median of sorted values.
func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// printTable writes rows as a Markdown table.
func printTable(w io.Writer, rows []row) {
	fmt.Fprintln(w, "| clients | ours ops/s (min / median / max) | hashicorp ops/s (min / median / max) | ratio of medians (ours / hashicorp) | p50 ours / hashicorp | p99 ours / hashicorp | CPU µs per entry ours / hashicorp |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		o, t := summarize(r.results[ours.name]), summarize(r.results[theirs.name])
		rate := func(s summary) string {
			if !s.ok {
				return "-"
			}
			return fmt.Sprintf("%.0f / %.0f / %.0f", s.min, s.median, s.max)
		}
		ratio := "-"
		if o.ok && t.ok && t.median > 0 {
			ratio = fmt.Sprintf("%.2f", o.median/t.median)
		}
		pair := func(f func(summary) string) string {
			get := func(s summary) string {
				if !s.ok {
					return "-"
				}
				return f(s)
			}
			return get(o) + " / " + get(t)
		}
		fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s | %s |\n", r.clients, rate(o), rate(t), ratio,
			pair(func(s summary) string { return round(s.p50).String() }),
			pair(func(s summary) string { return round(s.p99).String() }),
			pair(func(s summary) string { return fmt.Sprintf("%.1f", micros(s.cpuPerOp)) }))
	}
	var retries []string
	for _, r := range rows {
		for _, name := range []string{ours.name, theirs.name} {
			if s := summarize(r.results[name]); s.retries > 0 {
				retries = append(retries, fmt.Sprintf("%s at %d clients: %d", name, r.clients, s.retries))
			}
		}
	}
	if len(retries) > 0 {
		fmt.Fprintf(w, "\nProposals retried after a leadership change: %v\n", retries)
	}
}

// round rounds a latency for display: three significant digits or so.
func round(d time.Duration) time.Duration {
	switch {
	case d >= 100*time.Millisecond:
		return d.Round(time.Millisecond)
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}

// micros is d in microseconds.
func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
