// Command stress runs a package's tests many times, several at once, to
// shake out rare failures (flaky tests, data races, deadlocks):
//
//	go run ./cmd/stress -run '4A|4B' -n 100 -p 4 -race -dir ./lab -logs stress-logs
//
// Flags: -run PATTERN (passed as -test.run), -n runs (default 20), -p runs at
// once (default: number of CPUs), -race, -dir of the package (default "."),
// -logs DIR (default "stress-logs"), -timeout per run (default 10m, passed
// as -test.timeout), -v (pass -test.v, default true; -v=false to turn off),
// -env KEY=VAL (repeatable, e.g. -env RAFT_DEBUG=1). Everything after -args
// or "--" goes unchanged to the test binary, e.g. -args -test.short.
//
// The test binary is built once with "go test -c", then run N times, at most
// P at a time, each in DIR (so tests can read testdata). A run fails if it
// exits non-zero: a failed test, a -test.timeout panic or a race report (a
// run still alive a minute past its timeout is killed). Passing runs' output
// is discarded; that of failed run i goes to LOGS/run-<i>.log (LOGS is
// relative to the current directory). Progress goes to stderr, one line per
// finished run, then a summary with min/median/max run time.
//
// On Ctrl-C or SIGTERM no new runs start, running ones are killed (each is
// in its own process group) and the summary so far is printed; a second
// Ctrl-C kills stress at once. Exit status: 0 if every run passed, 1 if any
// failed, 2 on misuse or build failure, 130 if interrupted with no failure.
package main
