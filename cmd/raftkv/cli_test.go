package main

import (
	"bytes"
	"strings"
	"testing"
)

// runIn runs raftkv's run in the test's process.
func runIn(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

// TestCommandHelp: "raftkv CMD -h" prints CMD's usage and flags, not the
// others', on stdout, and exits 0.
func TestCommandHelp(t *testing.T) {
	cases := []struct {
		args      []string
		want, not []string
	}{
		{[]string{"serve", "-h"}, []string{"Usage: raftkv serve -id N", "-peers LIST", "-pprof", "-snapshot-bytes N"}, []string{"-base-http", "-clients LIST", "PUT    /kv/KEY"}},
		{[]string{"serve", "-id", "1", "--help"}, []string{"Usage: raftkv serve", "-max-inflight N"}, []string{"-base-http"}},
		{[]string{"local", "-h"}, []string{"Usage: raftkv [local] [flags]", "-base-http ADDR", "-pprof", "restarts it"}, []string{"-peers LIST", "-clients LIST"}},
		{[]string{"-n", "5", "-h"}, []string{"Usage: raftkv [local] [flags]", "-base-raft ADDR"}, []string{"-peers LIST"}},
		{[]string{"bench", "-h"}, []string{"Usage: raftkv bench [flags]", "-put-ratio F"}, []string{"-base-http", "-peers LIST"}},
		{[]string{"put", "-h"}, []string{"Usage: raftkv put [-addr URLS] [-timeout D] KEY VALUE", "-addr URLS"}, []string{"-base-http", "-peers LIST"}},
		{[]string{"get", "-help"}, []string{"Usage: raftkv get [-addr URLS] [-timeout D] KEY\n"}, []string{"-base-http"}},
		{[]string{"status", "-h"}, []string{"Usage: raftkv status [-addr URLS] [-timeout D]\n"}, []string{"-base-http"}},
		{[]string{"add-voter", "-h"}, []string{"Usage: raftkv add-voter [-addr URLS] [-timeout D] ID RAFTADDR [-http HTTPADDR]\n", "-http HTTPADDR", "-addr URLS"}, []string{"-base-http", "-peers LIST"}},
		{[]string{"-h"}, []string{"raftkv serve -id N", "-base-http", "-clients LIST", "GET    /metrics", "-pprof"}, nil},
	}
	for _, tc := range cases {
		code, stdout, stderr := runIn(tc.args...)
		if code != exitOK || stderr != "" {
			t.Errorf("raftkv %q: exit %d, stderr %q; want 0 and nothing", tc.args, code, stderr)
		}
		for _, w := range tc.want {
			if !strings.Contains(stdout, w) {
				t.Errorf("raftkv %q: the help lacks %q:\n%s", tc.args, w, stdout)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(stdout, n) {
				t.Errorf("raftkv %q: the help has %q, of another command:\n%s", tc.args, n, stdout)
			}
		}
	}
}

// TestUsageErrors: wrong arguments and flags are reported with the
// command, what it expects, in proper English, and a pointer to the
// command's help.
func TestUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string // all of stderr
	}{
		{[]string{"get"}, "raftkv get: missing KEY (want 1 argument: KEY)\nUsage: raftkv get [-addr URLS] [-timeout D] KEY\n"},
		{[]string{"get", "a", "b"}, "raftkv get: want 1 argument (KEY), got 2: [\"a\" \"b\"]\nUsage: raftkv get [-addr URLS] [-timeout D] KEY\n"},
		{[]string{"put", "k"}, "raftkv put: missing VALUE (want 2 arguments: KEY VALUE)\nUsage: raftkv put [-addr URLS] [-timeout D] KEY VALUE\n"},
		{[]string{"append"}, "raftkv append: missing KEY and VALUE (want 2 arguments: KEY VALUE)\nUsage: raftkv append [-addr URLS] [-timeout D] KEY VALUE\n"},
		{[]string{"status", "x"}, "raftkv status: takes no arguments, got 1 argument: [\"x\"]\nUsage: raftkv status [-addr URLS] [-timeout D]\n"},
		{[]string{"serve", "x", "y"}, "raftkv serve: takes no arguments, got 2 arguments: [\"x\" \"y\"]\nRun 'raftkv serve -h' for usage.\n"},
		{[]string{"-bogus"}, "raftkv local: flag provided but not defined: -bogus\nRun 'raftkv local -h' for usage.\n"},
		{[]string{"local", "-n", "x"}, "raftkv local: invalid value \"x\" for flag -n: parse error\nRun 'raftkv local -h' for usage.\n"},
		{[]string{"local", "-n", "0"}, "raftkv local: -n 0: want 1 to 99 replicas\nRun 'raftkv local -h' for usage.\n"},
		{[]string{"serve", "-bogus"}, "raftkv serve: flag provided but not defined: -bogus\nRun 'raftkv serve -h' for usage.\n"},
		{[]string{"get", "-bogus", "k"}, "raftkv get: flag provided but not defined: -bogus\nRun 'raftkv get -h' for usage.\n"},
		{[]string{"members", "x"}, "raftkv members: takes no arguments, got 1 argument: [\"x\"]\nUsage: raftkv members [-addr URLS] [-timeout D]\n"},
		{[]string{"add-voter", "4"}, "raftkv add-voter: want 2 arguments (ID RAFTADDR), got 1 argument: [\"4\"]\nUsage: raftkv add-voter [-addr URLS] [-timeout D] ID RAFTADDR [-http HTTPADDR]\n"},
		{[]string{"add-voter", "4", "h:1", "-http", "ftp://h:2"}, "raftkv add-voter: -http: kv: bad HTTP address \"ftp://h:2\": scheme \"ftp\": want http or https; give the new server's HTTP address, as its -http flag\n"},
		{[]string{"add-learner", "-http", ":8001", "4", "h:1"}, "raftkv add-learner: -http: kv: bad HTTP address \":8001\": no host: the other replicas dial this address, so give its host name or IP address; give the new server's HTTP address, as its -http flag\n"},
		{[]string{"promote", "4", "-http", "h:2"}, "raftkv promote: flag provided but not defined: -http\nRun 'raftkv promote -h' for usage.\n"},
		{[]string{"add-learner", "0", "h:1"}, "raftkv add-learner: server ID \"0\": want a positive integer\n"},
		{[]string{"add-voter", "4", "nohost"}, "raftkv add-voter: Raft address \"nohost\": want host:port, as the new server's -peers entry: address nohost: missing port in address\n"},
		{[]string{"remove"}, "raftkv remove: want 1 argument (ID), got 0 arguments: []\nUsage: raftkv remove [-addr URLS] [-timeout D] ID\n"},
		{[]string{"frob"}, "raftkv: unknown command \"frob\": the commands are local, serve, put, get, append, del, status, bench, transfer, members, add-voter, add-learner, promote, remove and certs\nRun 'raftkv -h' for usage.\n"},
	}
	for _, tc := range cases {
		code, stdout, stderr := runIn(tc.args...)
		if code != exitUsage || stdout != "" || stderr != tc.want {
			t.Errorf("raftkv %q: exit %d, stdout %q, stderr\n%q\nwant exit %d, stderr\n%q", tc.args, code, stdout, stderr, exitUsage, tc.want)
		}
	}
}
