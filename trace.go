package raft

import (
	"fmt"
	"os"
	"time"
)

// Debug tracing is off unless the environment variable RAFT_DEBUG is set
// (to anything but "" or "0") when the process starts; then every protocol
// event prints one line to standard error: time, server, term, role, event.
var (
	traceOn    = os.Getenv("RAFT_DEBUG") != "" && os.Getenv("RAFT_DEBUG") != "0"
	traceStart = time.Now()
)

func traceLine(line string) {
	fmt.Fprintf(os.Stderr, "%9.3f %s\n", time.Since(traceStart).Seconds(), line)
}

// traceFunc returns what the core calls for each event, or nil when off.
func traceFunc() func(string) {
	if !traceOn {
		return nil
	}
	return traceLine
}

func (rf *Raft) tracef(format string, args ...any) {
	if traceOn {
		traceLine(fmt.Sprintf(format, args...))
	}
}
