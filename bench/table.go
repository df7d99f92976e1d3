package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// row is the rounds of every side at one client count.
type row struct {
	clients int
	results map[string][]roundResult // by side name
}

// A measure is one column of the table: a number per round.
type measure struct {
	name   string
	format string // of a value; ratios have two decimals
	of     func(roundResult) float64
}

// measures are the table's columns. A value of 0 means unknown, and shows
// as "-".
var measures = []measure{
	{"commits/s", "%.0f", roundResult.opsPerSec},
	{"p50 ms", "%.2f", func(r roundResult) float64 { return ms(r.p50) }},
	{"p99 ms", "%.2f", func(r roundResult) float64 { return ms(r.p99) }},
	{"CPU s / 1,000 entries", "%.3f", roundResult.cpuPer1000},
	{"peak RSS MiB", "%.0f", func(r roundResult) float64 { return mib(r.rss) }},
	{"peak live heap MiB", "%.1f", func(r roundResult) float64 { return mib(r.heap) }},
	{"entries / fsync", "%.1f", roundResult.entriesPerWrite},
}

// spread is the min, median and max of a measure over rounds.
type spread struct{ min, median, max float64 }

func spreadOf(rs []roundResult, of func(roundResult) float64) spread {
	var v []float64
	for _, r := range rs {
		v = append(v, of(r))
	}
	slices.Sort(v)
	return spread{v[0], median(v), v[len(v)-1]}
}

// median of sorted values.
func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// cell shows s as "median (min–max)", or the one value of a single round.
func (s spread) cell(format string, rounds int) string {
	if s.median == 0 {
		return "-"
	}
	if rounds == 1 {
		return fmt.Sprintf(format, s.median)
	}
	return fmt.Sprintf(format+" ("+format+"–"+format+")", s.median, s.min, s.max)
}

// printTable writes rows as a Markdown table: per client count, a line
// per side with each measure's median and range over the rounds, and a
// line of the ratios of the medians, ours / hashicorp.
func printTable(w io.Writer, rows []row, sides []side) {
	head := []string{"clients", "side", "rounds"}
	for _, m := range measures {
		head = append(head, m.name)
	}
	fmt.Fprintf(w, "| %s |\n", strings.Join(head, " | "))
	fmt.Fprintf(w, "|---:|---|---:|%s\n", strings.Repeat("---:|", len(measures)))
	for _, r := range rows {
		for _, s := range sides {
			rs := r.results[s.name]
			if len(rs) == 0 {
				continue
			}
			cells := []string{fmt.Sprint(r.clients), s.name, fmt.Sprint(len(rs))}
			for _, m := range measures {
				cells = append(cells, spreadOf(rs, m.of).cell(m.format, len(rs)))
			}
			fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
		}
		o, t := r.results[ours.name], r.results[theirs.name]
		if len(o) == 0 || len(t) == 0 {
			continue
		}
		cells := []string{fmt.Sprint(r.clients), "**ours / hashicorp**", ""}
		for _, m := range measures {
			om, tm := spreadOf(o, m.of).median, spreadOf(t, m.of).median
			if om == 0 || tm == 0 {
				cells = append(cells, "-")
			} else {
				cells = append(cells, fmt.Sprintf("**%.2f**", om/tm))
			}
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	fmt.Fprintln(w, "\nCells: median (min–max) over the rounds. Ratios: of the medians, ours / hashicorp; above 1 is better for ours in commits/s and entries / fsync, below 1 in the others.")
	var retries []string
	for _, r := range rows {
		for _, s := range sides {
			n := 0
			for _, res := range r.results[s.name] {
				n += res.retries
			}
			if n > 0 {
				retries = append(retries, fmt.Sprintf("%s at %d clients: %d", s.name, r.clients, n))
			}
		}
	}
	if len(retries) > 0 {
		fmt.Fprintf(w, "Proposals made again after a leadership change, in the measurements: %s.\n", strings.Join(retries, "; "))
	}
}

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// mib is b in MiB.
func mib(b uint64) float64 { return float64(b) / (1 << 20) }
