//go:build unix

package main

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	t.Chdir("../..") // the default -dir, ./lab, is relative to the repository's root
	c, err := parseFlags([]string{"-run", "4A|4B", "-n", "100", "-p", "4", "-race",
		"-env", "RAFT_DEBUG=1", "-env", "X=a=b", "-timeout", "2m", "-args", "-test.short", "-test.cpu=2"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.run != "4A|4B" || c.n != 100 || c.p != 4 || !c.race || !c.verbose || c.dir != "./lab" || c.logs != "stress-logs" {
		t.Errorf("parseFlags: got %+v", c)
	}
	if want := []string{"RAFT_DEBUG=1", "X=a=b"}; !slices.Equal(c.env, want) {
		t.Errorf("env = %q, want %q", c.env, want)
	}
	want := []string{"-test.run=4A|4B", "-test.v", "-test.timeout=2m0s", "-test.short", "-test.cpu=2"}
	if got := testArgs(c); !slices.Equal(got, want) {
		t.Errorf("testArgs = %q, want %q", got, want)
	}

	// Defaults, -v=false, "--" pass-through and -p capped at -n.
	c, err = parseFlags([]string{"-v=false", "-n", "2", "-p", "8", "--", "-test.short"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.p != 2 {
		t.Errorf("p = %d, want 2 (capped at n)", c.p)
	}
	want = []string{"-test.timeout=10m0s", "-test.short"}
	if got := testArgs(c); !slices.Equal(got, want) {
		t.Errorf("testArgs = %q, want %q", got, want)
	}
}

func TestParseFlagsErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-n", "0"},
		{"-p", "0"},
		{"-timeout", "-1s"},
		{"-env", "NOEQUALS"},
		{"-env", "=x"},
		{"-dir", "/nonexistent/dir"},
		{"-dir", "main.go"},
		{"-bogus"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q): no error", args)
		}
	}
}

func TestBuildArgs(t *testing.T) {
	if got, want := buildArgs("/t/pkg.test", true), []string{"test", "-c", "-o", "/t/pkg.test", "-race", "."}; !slices.Equal(got, want) {
		t.Errorf("buildArgs = %q, want %q", got, want)
	}
	if got, want := buildArgs("/t/pkg.test", false), []string{"test", "-c", "-o", "/t/pkg.test", "."}; !slices.Equal(got, want) {
		t.Errorf("buildArgs = %q, want %q", got, want)
	}
}

func TestDurStats(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		in           []time.Duration
		lo, med, max time.Duration
	}{
		{[]time.Duration{5 * s}, 5 * s, 5 * s, 5 * s},
		{[]time.Duration{3 * s, 1 * s, 2 * s}, 1 * s, 2 * s, 3 * s},
		{[]time.Duration{4 * s, 1 * s, 2 * s, 10 * s}, 1 * s, 3 * s, 10 * s},
	} {
		lo, med, hi := durStats(tc.in)
		if lo != tc.lo || med != tc.med || hi != tc.max {
			t.Errorf("durStats(%v) = %v %v %v, want %v %v %v", tc.in, lo, med, hi, tc.lo, tc.med, tc.max)
		}
	}
}

func TestProgressLine(t *testing.T) {
	got := progressLine(37, 100, 36, 1, 4, 72*time.Second+400*time.Millisecond)
	if want := "[ 37/100] pass=36 fail=1 running=4 elapsed=1m12s"; got != want {
		t.Errorf("progressLine = %q, want %q", got, want)
	}
}

func TestSummary(t *testing.T) {
	res := []result{
		{status: passed, dur: 1234 * time.Millisecond},
		{status: failed, dur: 3 * time.Second, log: "stress-logs/run-2.log"},
		{status: passed, dur: 2 * time.Second},
	}
	want := "passed 2/3, failed 1\n" +
		"run time: min 1.23s, median 2s, max 3s\n" +
		"failed runs:\n" +
		"  run 2: stress-logs/run-2.log\n"
	if got := summary(res); got != want {
		t.Errorf("summary:\n%s\nwant:\n%s", got, want)
	}

	res = []result{{status: passed, dur: 500 * time.Millisecond}, {status: killed}, {}}
	got := summary(res)
	if !strings.HasPrefix(got, "passed 1/3, failed 0 (interrupted: 1 killed, 1 not started)\n") ||
		!strings.Contains(got, "median 500ms") || strings.Contains(got, "failed runs") {
		t.Errorf("summary of interrupted runs:\n%s", got)
	}
}
