package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Exit statuses.
const (
	exitOK     = 0
	exitError  = 1 // start-up failure; get of a missing key; status without a leader
	exitUsage  = 2
	exitFailed = 3 // a client request failed
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") && !isHelp(args[0]) {
		return runLocal(args, stdout, stderr)
	}
	switch cmd := args[0]; cmd {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	case "local":
		return runLocal(args[1:], stdout, stderr)
	case "serve":
		return runServe(args[1:], stdout, stderr)
	case "put", "get", "append", "del", "delete", "status":
		return runClient(cmd, args[1:], stdout, stderr)
	case "bench":
		return runBenchCmd(args[1:], stdout, stderr)
	case "certs":
		return runCerts(args[1:], stdout, stderr)
	case "transfer":
		return runTransfer(args[1:], stdout, stderr)
	case "members", "add-voter", "add-learner", "promote", "remove":
		return runMembers(cmd, args[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "raftkv: unknown command %q: the commands are local, serve, put, get, append, del, status, bench, transfer, members, add-voter, add-learner, promote, remove and certs\nRun 'raftkv -h' for usage.\n", cmd)
		return exitUsage
	}
}

func isHelp(a string) bool {
	return a == "-h" || a == "-help" || a == "--help"
}

// newFlagSet returns a flag set that reports errors briefly, pointing at
// the usage, instead of printing its own defaults (some flags are for
// tests only).
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseFlags parses args, flags and positional arguments mixed, up to a
// "--" after which everything is positional. It prints errors, and the
// help of the command the flag set is named for if -h was asked for; ok is
// false if it did, and code the exit status then (0 for -h).
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (pos []string, code int, ok bool) {
	var rest []string
	for i, a := range args {
		if a == "--" {
			args, rest = args[:i], args[i+1:]
			break
		}
	}
	for {
		if err := fs.Parse(args); err != nil {
			if err == flag.ErrHelp {
				fmt.Fprint(stdout, commandHelp(fs.Name()))
				return nil, exitOK, false
			}
			fmt.Fprintf(stderr, "raftkv %s: %v\n%s\n", fs.Name(), err, usageHint(fs.Name()))
			return nil, exitUsage, false
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return append(pos, rest...), 0, true
}

// parseIDList parses "1=host:port,2=host:port".
func parseIDList(s string) (map[int]string, error) {
	m := make(map[int]string)
	if strings.TrimSpace(s) == "" {
		return m, nil
	}
	for _, p := range strings.Split(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(p), "=")
		n, err := strconv.Atoi(id)
		if !ok || err != nil || addr == "" {
			return nil, fmt.Errorf("bad entry %q: want ID=host:port", p)
		}
		if _, dup := m[n]; dup {
			return nil, fmt.Errorf("replica %d listed twice", n)
		}
		m[n] = addr
	}
	return m, nil
}
