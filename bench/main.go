// Command bench compares this library's commit throughput, latency, CPU
// and memory cost with hashicorp/raft's (with raft-boltdb/v2), in the same
// harness: three servers in one process over TCP on 127.0.0.1, each with
// a durable log in a temporary folder, and C concurrent proposers on the
// leader, each waiting for its command to be applied there before it
// proposes the next. Rounds alternate between the two libraries, each on
// a fresh cluster; a table at the end sums them up. See
// docs/performance.md.
//
//	go run . -clients 1,16,64,256 -rounds 3 -duration 10s
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// options are the command line's.
type options struct {
	clients  []int
	rounds   int
	warmup   time.Duration
	duration time.Duration
	size     int
	sides    []side
	logCache int
	tls      bool
	floor    bool
}

func parseFlags(args []string, errOut io.Writer) (options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(errOut)
	clients := fs.String("clients", "1,16,64,256", "comma-separated numbers of concurrent proposers, one group of table lines each")
	rounds := fs.Int("rounds", 3, "rounds per side and client count, alternating ours/hashicorp")
	warmup := fs.Duration("warmup", 2*time.Second, "proposing before each round's measurement starts")
	duration := fs.Duration("duration", 10*time.Second, "measurement time of each round")
	size := fs.Int("size", 100, fmt.Sprintf("bytes per command (at least %d: a command starts with a tag naming its proposer and sequence number)", tagLen))
	only := fs.String("only", "", `run one side only: "ours" or "hashicorp"`)
	useTLS := fs.Bool("tls", false, "ours: run the transport over mutual TLS (default plain TCP)")
	logCache := fs.Int("logcache", 512, "hashicorp: entries of the LogCache in front of the bolt log store (0: none)")
	floor := fs.Bool("floor", false, "measure the disk's floor before and after the rounds: how long two of three concurrent append+fsyncs of -size bytes take (see floor.go)")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected argument %q: every setting is a flag (-h lists them)", fs.Arg(0))
	}
	o := options{rounds: *rounds, warmup: *warmup, duration: *duration, size: *size, logCache: *logCache, tls: *useTLS, floor: *floor}
	for f := range strings.SplitSeq(*clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return o, fmt.Errorf("-clients %q: %q is not a positive number; give a list such as 1,16,64", *clients, f)
		}
		o.clients = append(o.clients, n)
	}
	switch {
	case o.rounds < 1:
		return o, fmt.Errorf("-rounds %d: want at least 1", o.rounds)
	case o.warmup < 0:
		return o, fmt.Errorf("-warmup %v: want 0 or more", o.warmup)
	case o.duration <= 0:
		return o, fmt.Errorf("-duration %v: want a positive duration", o.duration)
	case o.size < tagLen:
		return o, fmt.Errorf("-size %d: want at least %d bytes (a command starts with a tag naming its proposer and sequence number)", o.size, tagLen)
	case o.logCache < 0:
		return o, fmt.Errorf("-logcache %d: want 0 (none) or more entries", o.logCache)
	}
	switch *only {
	case "":
		o.sides = []side{ours, theirs}
	case ours.name:
		o.sides = []side{ours}
	case theirs.name:
		o.sides = []side{theirs}
	default:
		return o, fmt.Errorf("-only %q: want %q or %q (or nothing, for both)", *only, ours.name, theirs.name)
	}
	return o, nil
}

func main() {
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if err == flag.ErrHelp {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	theirsLogCache = o.logCache
	oursTLS = o.tls
	fmt.Printf("go %s %s/%s, %d CPUs, GOMAXPROCS %d; %d-byte commands; %v warm-up + %v per round; %d rounds per side; hashicorp LogCache %d; ours over TLS %v\n",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), o.size, o.warmup, o.duration, o.rounds, o.logCache, o.tls)
	printFloor(o, "before the rounds")
	var rows []row
	for _, clients := range o.clients {
		r := row{clients: clients, results: map[string][]roundResult{}}
		cfg := roundConfig{clients: clients, size: o.size, warmup: o.warmup, duration: o.duration}
		for round := 1; round <= o.rounds; round++ {
			for _, s := range o.sides {
				res, err := runRound(s, cfg)
				if err != nil {
					fmt.Fprintf(os.Stderr, "bench: clients=%d round %d: %v\n", clients, round, err)
					os.Exit(1)
				}
				r.results[s.name] = append(r.results[s.name], res)
				fmt.Fprintf(os.Stderr, "clients=%-4d round %d/%d %-9s %s\n", clients, round, o.rounds, s.name, progress(res))
			}
		}
		rows = append(rows, r)
	}
	printFloor(o, "after the rounds")
	fmt.Println()
	printTable(os.Stdout, rows, o.sides)
}

// floorRounds is how many rounds of each kind -floor times.
const floorRounds = 1000

// printFloor measures and prints the disk's floor, with -floor.
func printFloor(o options, when string) {
	if !o.floor {
		return
	}
	f, err := diskFloor(floorRounds, o.size)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	fmt.Printf("%s, %s\n", f, when)
}

// progress describes one round in a line.
func progress(r roundResult) string {
	return fmt.Sprintf("%8.0f commits/s  p50 %6.2f ms  p99 %7.2f ms  max %7.2f ms  CPU %.3f s/1k  RSS %4.0f MiB  heap %5.1f MiB  %5.1f entries/fsync  %d commits, %d retries",
		r.opsPerSec(), ms(r.p50), ms(r.p99), ms(r.max), r.cpuPer1000(), mib(r.rss), mib(r.heap), r.entriesPerWrite(), r.ops, r.retries)
}
