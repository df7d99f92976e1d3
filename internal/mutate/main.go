package main

import (
	"context"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// A mutation is a bug planted by replacing text in one file of core/; each
// old text must occur exactly once.
type mutation struct {
	name  string
	what  string
	file  string
	edits [][2]string // old, new
}

var mutations = []mutation{
	{"two-changes-at-once", "a leader changes the configuration again before the last change committed (thesis 4.1)",
		"membership.go", [][2]string{{"	case n.confIndex() > n.commit:\n		return 0, n.term, ErrChangeInProgress\n", ""}}},
	{"learners-count", "learners count in majorities like voters",
		"membership.go", [][2]string{{"		if s.Learner {\n			continue\n		}\n		voters++", "		voters++"}}},
	{"truncation-keeps-config", "a follower keeps the configuration of an entry that a new leader replaced",
		"membership.go", [][2]string{{"	n.confs = slices.DeleteFunc(n.confs, func(c confEntry) bool { return c.index >= ents[0].Index })\n", ""}}},
	{"change-before-own-commit", "a new leader changes the configuration before it committed an entry of its term (thesis 4.1's fix)",
		"membership.go", [][2]string{{"	case n.log.term(n.commit) != n.term:\n		return 0, n.term, ErrLeaderNotReady\n", ""}}},
	{"figure8-count-replicas", "a leader commits an entry of an earlier term by counting replicas (5.4.2)",
		"replication.go", [][2]string{{"if N > n.commit && n.log.term(N) == n.term {", "if N > n.commit {"}}},
	{"vote-without-up-to-date-check", "a server grants its vote whatever the candidate's log (5.4.1)",
		"election.go", [][2]string{{"	case !n.log.upToDate(a.LastLogIndex, a.LastLogTerm):\n		// 2. Candidate's log is not at least as up-to-date (5.4.1).\n", ""}}},
	{"stale-append-truncates", "a stale, shorter AppendEntries truncates acknowledged entries that match",
		"replication.go", [][2]string{{"		if n.log.term(e.Index) != e.Term {", "		if n.log.term(e.Index) != e.Term || e.Index > n.commit {"}}},
	{"longer-log-more-up-to-date", "the longer log counts as more up-to-date, whatever the last terms",
		"log.go", [][2]string{{"return lastTerm > l.lastTerm() || (lastTerm == l.lastTerm() && lastIndex >= l.lastIndex())",
			"return lastIndex > l.lastIndex() || (lastIndex == l.lastIndex() && lastTerm >= l.lastTerm())"}}},
	{"count-old-term-votes", "a candidate counts votes granted in an earlier term",
		"election.go", [][2]string{{"n.role != Candidate || r.Term < n.term || !r.VoteGranted", "n.role != Candidate || !r.VoteGranted"}}},
	{"quorum-off-by-one", "a majority is one server fewer than it is",
		"membership.go", [][2]string{{"return voters > 0 && yes > voters/2", "return voters > 0 && yes >= voters/2"}}},
	{"forget-vote-on-restart", "a restarted server forgets whom it voted for",
		"node.go", [][2]string{{"		vote: cfg.State.Vote,", "		vote: None,"}}},
	{"vote-not-saved", "a vote granted without a change of term is not saved (MustSave compares the term only)",
		"node.go", [][2]string{{"stateChanged: hs != n.saved,", "stateChanged: hs.Term != n.saved.Term,"}}},
	{"count-old-term-acks", "a leader counts AppendEntries successes from an earlier term",
		"replication.go", [][2]string{{"if n.stepDownIfNewer(r.Term) || n.role != Leader || r.Term < n.term {", "if n.stepDownIfNewer(r.Term) || n.role != Leader {"}}},
	{"follower-commits-own-last", "a follower commits up to its own last index, not the last new entry",
		"replication.go", [][2]string{{"if c := min(a.LeaderCommit, lastNew); c > n.commit {", "if c := min(a.LeaderCommit, n.log.lastIndex()); c > n.commit {"}}},
	{"install-old-snapshot", "a follower installs a snapshot it already has past (its commit index is further)",
		"replication.go", [][2]string{{"	if snap.Index <= n.commit {\n", "	if snap.Index < 0 {\n"}}},
	{"snapshot-keeps-conflicting-log", "installing a snapshot keeps the entries after it even if the log's entry at its index differs (Figure 13, rule 6)",
		"log.go", [][2]string{{"	if l.term(snap.Index) == snap.Term {\n", "	if l.term(snap.Index) >= 0 || snap.Index < l.lastIndex() {\n"}}},
	{"leader-counts-unsaved-log", "a leader counts its own entries towards a commit before they are saved (thesis 10.2.1)",
		"replication.go", [][2]string{{"matches = append(matches, min(n.durable, n.log.lastIndex()))", "matches = append(matches, n.log.lastIndex())"}}},
	{"vote-request-before-save", "a candidate asks for votes before its new term and vote are saved",
		"node.go", [][2]string{{"if a, ok := body.(*RequestVoteArgs); (ok && !a.PreVote) || n.unsavedTerm {", "if a, ok := body.(*RequestVoteArgs); (ok && a.PreVote) || n.unsavedTerm {"}}},
	{"newer-term-keeps-vote", "adopting a newer term does not clear the vote",
		"node.go", [][2]string{
			{"		n.term, n.vote, n.lead = term, None, None", "		n.term, n.lead = term, None"},
			{"		n.term, n.vote = term, None", "		n.term = term"},
		}},
	{"transfer-vote-skips-log-check", "a voter trusts a leadership transfer's RequestVote and grants it whatever the candidate's log (thesis 3.10)",
		"election.go", [][2]string{{"	case !n.log.upToDate(a.LastLogIndex, a.LastLogTerm):", "	case !a.Transfer && !n.log.upToDate(a.LastLogIndex, a.LastLogTerm):"}}},
	{"read-without-quorum", "a leader serves a ReadIndex without a majority acknowledging its heartbeat round (thesis 6.4)",
		"read.go", [][2]string{{"return id == n.id || (p != nil && p.round >= r)", "return id == n.id || p != nil"}}},
	{"read-before-own-term-commit", "a new leader serves a ReadIndex before it has committed an entry of its term (thesis 6.4)",
		"read.go", [][2]string{{"if len(n.reads) == 0 || n.log.term(n.commit) != n.term {", "if len(n.reads) == 0 {"}}},
	{"lease-from-ack-time", "a leader's lease runs from when a majority acknowledged a heartbeat round, not from when the round was sent (thesis 6.4.1)",
		"read.go", [][2]string{{"	if r <= p.round {\n		return\n	}\n	p.round = r\n	if at, ok := n.roundStart(r); ok {",
			"	p.round = max(p.round, r)\n	if at, ok := n.now, true; ok {"}}},
	{"lease-through-transfer", "a leader keeps using its lease after sending TimeoutNow, whose target voters elect despite leader stickiness",
		"read.go", [][2]string{{"func (n *Node) endLease() { n.transferTerm = n.term }", "func (n *Node) endLease() {}"}}},
	{"lease-forgets-restart", "a restarted server grants votes at once, forgetting it may have acknowledged a leader's lease just before it stopped",
		"node.go", [][2]string{{"		lead:       None,\n", "		lead:       None,\n		leaderAt:   -cfg.ElectionTicks,\n"}}},
	{"follower-read-own-commit", "a follower serves a read once the leader answers, at its own commit index, before it has applied through the leader's read index",
		"read.go", [][2]string{
			{"if a.index > 0 && a.index <= n.commit {", "if a.index > 0 {"},
			{"ReadState{ID: a.id, Index: a.index}", "ReadState{ID: a.id, Index: min(a.index, n.commit)}"},
		}},
	{"removed-never-told", "a leader ignores the pre-votes of a server that was down while its removal committed, which never learns of it",
		"election.go", [][2]string{{"\tn.tellRemoved(from)\n", ""}}},
}

func main() {
	seeds := flag.Int("seeds", 20000, "most seeds to run per bug (CI runs 20,000)")
	only := flag.String("only", "", "run only the bugs whose name contains this")
	list := flag.Bool("list", false, "list the bugs and their patches, and exit")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up on one bug after this long")
	flag.Parse()
	if *list {
		for _, m := range mutations {
			fmt.Printf("%s: %s\n  core/%s:\n", m.name, m.what, m.file)
			for _, e := range m.edits {
				fmt.Printf("    - %q\n    + %q\n", e[0], e[1])
			}
		}
		return
	}
	root, err := moduleRoot()
	if err != nil {
		fatalf("%v", err)
	}
	caught, total := 0, 0
	fmt.Printf("%-30s %-8s %-14s %s\n", "bug", "caught", "seed (n-th)", "time")
	for _, m := range mutations {
		if !strings.Contains(m.name, *only) {
			continue
		}
		total++
		res, err := try(root, m, *seeds, *timeout)
		if err != nil {
			fatalf("%s: %v", m.name, err)
		}
		if res.caught {
			caught++
		}
		fmt.Printf("%-30s %-8v %-14s %v\n", m.name, res.caught, res.seed, res.took.Round(10*time.Millisecond))
		if res.caught && res.why != "" {
			fmt.Printf("    %s\n", res.why)
		}
	}
	fmt.Printf("%d of %d bugs caught by the simulation alone\n", caught, total)
	if caught < total {
		os.Exit(1)
	}
}

type result struct {
	caught bool
	seed   string
	why    string
	took   time.Duration
}

var (
	blanks = regexp.MustCompile(`[ \t]+`)
	seedRe = regexp.MustCompile(`seed (\d+): (.*)`)
	baseRe = regexp.MustCompile(`-sim\.base (\d+)`)
)

// plant returns src, the source of core/m.file, with m's edits made.
func (m mutation) plant(src []byte) ([]byte, error) {
	for _, e := range m.edits {
		// Runs of spaces and tabs match any such run: gofmt realigns.
		re := regexp.MustCompile(blanks.ReplaceAllString(regexp.QuoteMeta(e[0]), `[ \t]+`))
		if n := len(re.FindAllIndex(src, -1)); n != 1 {
			return nil, fmt.Errorf("the text to replace occurs %d times in core/%s (want once): %q", n, m.file, e[0])
		}
		loc := re.FindIndex(src)
		src = append(src[:loc[0]:loc[0]], append([]byte(e[1]), src[loc[1]:]...)...)
	}
	return src, nil
}

// try plants m in a copy of the module and runs the simulation over it.
func try(root string, m mutation, seeds int, timeout time.Duration) (result, error) {
	dir, err := os.MkdirTemp("", "mutate-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	if err := copyTree(root, dir); err != nil {
		return result{}, err
	}
	path := filepath.Join(dir, "core", m.file)
	src, err := os.ReadFile(path)
	if err != nil {
		return result{}, err
	}
	if src, err = m.plant(src); err != nil {
		return result{}, err
	}
	if err := os.WriteFile(path, src, 0o644); err != nil {
		return result{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "test", "./core", "-count=1", "-run", "TestSimulation$", "-v",
		"-sim.seeds", fmt.Sprint(seeds), "-timeout", "0")
	cmd.Dir = dir
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	if ctx.Err() != nil {
		return result{}, fmt.Errorf("timed out after %v", timeout)
	}
	if err == nil {
		return result{took: took}, nil
	}
	if strings.Contains(string(out), "[build failed]") || strings.Contains(string(out), "[setup failed]") {
		return result{}, fmt.Errorf("the mutated core does not build:\n%s", out)
	}
	r := result{caught: true, took: took}
	base := baseRe.FindSubmatch(out)
	if s := seedRe.FindSubmatch(out); s != nil {
		r.seed, r.why = string(s[1]), string(s[2])
		if base != nil {
			var b, n uint64
			fmt.Sscan(string(base[1]), &b)
			fmt.Sscan(r.seed, &n)
			r.seed = fmt.Sprintf("%d (%d)", n, n-b+1)
		}
	}
	if len(r.why) > 160 {
		r.why = r.why[:160] + "..."
	}
	return r, nil
}

// moduleRoot returns the directory of the go.mod above the working
// directory.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module")
	}
	return filepath.Dir(mod), nil
}

// copyTree copies the Go sources and module files under src to dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && rel != "." || d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !strings.HasSuffix(path, ".go") && d.Name() != "go.mod" && d.Name() != "go.sum" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "mutate: "+format+"\n", a...)
	os.Exit(2)
}
