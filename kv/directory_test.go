package kv

// Tests of the directory of the servers' HTTP addresses: the addresses
// accepted, their record in the log and in snapshots, and their use by
// the HTTP API.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/core"
)

func TestCheckHTTPAddr(t *testing.T) {
	for _, a := range []string{
		"10.0.0.4:8001", "db4.example:8001", "[::1]:8001", "localhost:65535",
		"http://10.0.0.4:8001", "https://db4.example:8443", "https://db4.example", "https://db4.example:8443/", "http://[::1]:1",
		strings.Repeat("h", MaxHTTPAddrBytes-5) + ":8001",
	} {
		if err := CheckHTTPAddr(a); err != nil {
			t.Errorf("CheckHTTPAddr(%q): %v, want nil", a, err)
		}
	}
	for _, tc := range []struct{ addr, want string }{
		{"", "empty"},
		{strings.Repeat("h", MaxHTTPAddrBytes-4) + ":8001", "257 bytes, over the limit of 256"},
		{"db4.example", "want host:port"},
		{":8001", "no host"},
		{"db4.example:0", `port "0"`},
		{"db4.example:65536", `port "65536"`},
		{"db4.example:http", `port "http"`},
		{"db4.example:08001", `port "08001"`},
		{"db4 .example:8001", "byte 3 (0x20) is not printable ASCII"},
		{"db4.example:8001\n", "byte 16 (0x0a) is not printable ASCII"},
		{"dé.example:8001", "not printable ASCII"},
		{"ftp://db4.example:21", `scheme "ftp"`},
		{"https://user@db4.example:8443", "no user, path"},
		{"https://db4.example:8443/api", "no user, path"},
		{"https://db4.example:8443/?x=1", "no user, path"},
		{"https://db4.example:8443#top", "no user, path"},
		{"https://:8443", "no host"},
		{"https://db4.example:99999", `port "99999"`},
		{"https://[::1", "not a URL"},
	} {
		err := CheckHTTPAddr(tc.addr)
		if err == nil || !errors.Is(err, ErrBadHTTPAddr) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckHTTPAddr(%.40q): %v; want an error saying %q", tc.addr, err, tc.want)
		}
	}
}

// rawOp encodes an Op as MarshalBinary does, without its checks.
func rawOp(code byte, key, value string) []byte {
	b := []byte{opVersion, code, 0, 0, 0}
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	b = binary.AppendUvarint(b, uint64(len(value)))
	return append(b, value...)
}

// TestOpMemberHTTPMalformed: a record of an HTTP address with a bad
// server ID or address is neither encoded nor decoded.
func TestOpMemberHTTPMalformed(t *testing.T) {
	if b, err := memberHTTPOp(4, "10.0.0.4:8001").MarshalBinary(); err != nil || !bytes.Equal(b, rawOp(5, "4", "10.0.0.4:8001")) {
		t.Fatalf("encoding of a record: % x, %v; want % x", b, err, rawOp(5, "4", "10.0.0.4:8001"))
	}
	for _, tc := range []struct{ key, value, want string }{
		{"0", "10.0.0.4:8001", `server ID "0"`},
		{"-4", "10.0.0.4:8001", `server ID "-4"`},
		{"04", "10.0.0.4:8001", `server ID "04"`},
		{"+4", "10.0.0.4:8001", `server ID "+4"`},
		{"99999999999999999999", "10.0.0.4:8001", "server ID"},
		{"", "10.0.0.4:8001", `server ID ""`},
		{"4", "", "empty"},
		{"4", "10.0.0.4", "want host:port"},
		{"4", strings.Repeat("a", 300) + ":1", "over the limit"},
		{"4", "javascript://x:1", `scheme "javascript"`},
	} {
		op := Op{Kind: memberHTTP, Key: tc.key, Value: tc.value}
		if _, err := op.MarshalBinary(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("encode %q=%.40q: %v; want an error saying %q", tc.key, tc.value, err, tc.want)
		}
		got := Op{Kind: Get, Key: "untouched"}
		err := got.UnmarshalBinary(rawOp(5, tc.key, tc.value))
		if err == nil || !errors.Is(err, errBadOp) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "at byte 5 ") {
			t.Errorf("decode %q=%.40q: %v; want an error saying %q at byte 5", tc.key, tc.value, err, tc.want)
		}
		if got != (Op{Kind: Get, Key: "untouched"}) {
			t.Errorf("decode %q=%.40q: a refused decode changed the Op to %+v", tc.key, tc.value, got)
		}
	}
}

// TestSetMemberHTTP: a record goes through the log and is applied
// there; the last record of an ID wins; a bad one is refused before the
// log.
func TestSetMemberHTTP(t *testing.T) {
	f := newFakeLog(t, true)
	s := newFakeServer(f, ServerOptions{})
	defer s.Stop()
	ctx := context.Background()
	for _, a := range []string{"10.0.0.4:8001", "https://db4.example:8443"} {
		if err := s.SetMemberHTTP(ctx, 4, a); err != nil {
			t.Fatalf("SetMemberHTTP(4, %q): %v", a, err)
		}
		if got := s.MemberHTTP(4); got != a {
			t.Fatalf("after SetMemberHTTP(4, %q): MemberHTTP(4) = %q", a, got)
		}
	}
	f.mu.Lock()
	n := len(f.log)
	f.mu.Unlock()
	if n != 2 {
		t.Fatalf("%d entries in the log after 2 records, want 2", n)
	}
	for _, tc := range []struct {
		id   int
		addr string
	}{{0, "10.0.0.4:8001"}, {4, "10.0.0.4"}, {4, strings.Repeat("a", 300) + ":1"}} {
		if err := s.SetMemberHTTP(ctx, tc.id, tc.addr); err == nil {
			t.Fatalf("SetMemberHTTP(%d, %.40q) succeeded", tc.id, tc.addr)
		}
	}
	f.mu.Lock()
	n = len(f.log)
	f.mu.Unlock()
	if n != 2 || s.MemberHTTP(4) != "https://db4.example:8443" || s.MemberHTTP(0) != "" {
		t.Fatalf("refused records reached the log (%d entries) or the directory (%q)", n, s.MemberHTTP(4))
	}
	// A record leaves the data, and no GET sees it.
	if res, err := s.Do(ctx, Op{Kind: Get, Key: "4"}); err != nil || res.Found {
		t.Fatalf("GET 4 after the records: %+v, %v; want not found", res, err)
	}
}

// TestSnapshotMemberHTTP: a snapshot carries the directory (version 2);
// a store with an empty directory writes version 1, which servers of
// before the directory read; a server reads version 1.
func TestSnapshotMemberHTTP(t *testing.T) {
	src := newFakeServer(&fakeLog{}, ServerOptions{})
	defer src.Stop()
	src.Apply(opCommand(1, Op{Kind: Put, Key: "a", Value: "1", ClientID: 5, Seq: 1, Time: 10}))
	v1 := snapshotOf(t, src)
	if v1[len(snapMagic)] != 1 {
		t.Fatalf("a store with no HTTP address wrote snapshot version %d, want 1", v1[len(snapMagic)])
	}
	src.Apply(opCommand(2, memberHTTPOp(7, "https://db7.example:8443")))
	src.Apply(opCommand(3, memberHTTPOp(4, "10.0.0.4:8001")))
	src.Apply(opCommand(4, memberHTTPOp(4, "10.0.0.4:8002"))) // the last wins
	v2 := snapshotOf(t, src)
	if v2[len(snapMagic)] != 2 {
		t.Fatalf("a store with HTTP addresses wrote snapshot version %d, want 2", v2[len(snapMagic)])
	}
	dst := newFakeServer(&fakeLog{}, ServerOptions{})
	defer dst.Stop()
	if err := dst.Restore(bytes.NewReader(v2)); err != nil {
		t.Fatalf("restore version 2: %v", err)
	}
	if a, b := src.state(), dst.state(); a != b || dst.MemberHTTP(4) != "10.0.0.4:8002" || dst.MemberHTTP(7) != "https://db7.example:8443" {
		t.Fatalf("restored from version 2:\n%s\nwant\n%s", b, a)
	}
	if !bytes.Equal(snapshotOf(t, dst), v2) {
		t.Fatal("the restored store's snapshot differs from the one it was restored from")
	}
	// Version 1, as a server of before the directory wrote it: no
	// directory, and a restore empties the one the server had.
	old := rawSnapshotV(1, uint64(9), int64(10), uint64(1), "k", "v", uint64(0))
	if err := dst.Restore(bytes.NewReader(old)); err != nil {
		t.Fatalf("restore version 1: %v", err)
	}
	if st := dst.state(); !strings.Contains(st, "applied 9,") || !strings.Contains(st, "data map[k:v] | http map[]") {
		t.Fatalf("restored from version 1: %s", st)
	}
	if err := dst.Restore(bytes.NewReader(v1)); err != nil {
		t.Fatalf("restore this server's version 1: %v", err)
	}
}

// TestRestoreMalformedMembers: Restore refuses a damaged directory, with
// an error that says what is wrong, and leaves the store as it was.
func TestRestoreMalformedMembers(t *testing.T) {
	head := []any{uint64(1), int64(0), uint64(0), uint64(0)} // applied, now, no keys, no clients
	snap := func(parts ...any) []byte { return rawSnapshot(append(head, parts...)...) }
	cases := []struct {
		name string
		in   []byte
		want string
	}{
		{"no member count", snap(), "malformed snapshot"}, // the checksum read as members
		{"member ID 0", snap(uint64(1), uint64(0), "10.0.0.4:8001"), "member ID 0 out of range at byte 13"},
		{"member ID over int", snap(uint64(1), uint64(1)<<63, "10.0.0.4:8001"), "out of range"},
		{"member twice", snap(uint64(2), uint64(4), "10.0.0.4:8001", uint64(4), "10.0.0.4:8002"), "member 4 after member 4: not in increasing order"},
		{"members out of order", snap(uint64(2), uint64(5), "10.0.0.5:8001", uint64(4), "10.0.0.4:8001"), "member 4 after member 5"},
		{"address too long", snap(uint64(1), uint64(4), uint64(1)<<40), "HTTP address of 1099511627776 bytes, over the limit of 256 at byte 14"},
		{"bad address", snap(uint64(1), uint64(4), "10.0.0.4"), "member 4: kv: bad HTTP address"},
		{"address cut", snap(uint64(1), uint64(4), uint64(13), []byte("10.0")), "the snapshot ends early"},
		{"huge member count", snap(uint64(1) << 62), "malformed snapshot"},
	}
	dst := newFakeServer(&fakeLog{}, ServerOptions{})
	defer dst.Stop()
	dst.Apply(opCommand(1, memberHTTPOp(2, "10.0.0.2:8001")))
	before := dst.state()
	for _, tc := range cases {
		err := dst.Restore(bytes.NewReader(tc.in))
		if err == nil || !errors.Is(err, errBadSnapshot) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: restore: %v; want an error saying %q", tc.name, err, tc.want)
		}
		if after := dst.state(); after != before {
			t.Fatalf("%s: a refused restore changed the store to\n%s", tc.name, after)
		}
	}
	good := snap(uint64(2), uint64(4), "10.0.0.4:8001", uint64(5), "https://db5.example")
	if err := dst.Restore(bytes.NewReader(good)); err != nil || dst.MemberHTTP(5) != "https://db5.example" || dst.MemberHTTP(2) != "" {
		t.Fatalf("restore of a good directory: %v; server 5 at %q, server 2 at %q", err, dst.MemberHTTP(5), dst.MemberHTTP(2))
	}
}

func TestHTTPPeers(t *testing.T) {
	s := NewServer(ServerOptions{})
	s.Apply(opCommand(1, memberHTTPOp(2, "10.0.0.2:8001")))
	s.Apply(opCommand(2, memberHTTPOp(4, "10.0.0.4:8001")))
	s.Apply(opCommand(3, memberHTTPOp(5, "http://10.0.0.5:8001")))
	s.Apply(opCommand(4, memberHTTPOp(9, "10.0.0.9:8001"))) // removed since
	p := HTTPPeers{Local: map[int]string{1: "https://10.0.0.1:8001", 2: "https://local2:8001"}, Store: s, Scheme: "https"}
	for id, want := range map[int]string{
		1: "https://10.0.0.1:8001", // Local only
		2: "https://local2:8001",   // Local wins over the directory
		4: "https://10.0.0.4:8001", // the directory's, with the scheme
		5: "http://10.0.0.5:8001",  // a URL keeps its own
		6: "",                      // known to neither
	} {
		if got := p.Addr(id); got != want {
			t.Errorf("Addr(%d) = %q, want %q", id, got, want)
		}
	}
	if got := (HTTPPeers{Store: s}).Addr(4); got != "http://10.0.0.4:8001" {
		t.Errorf("Addr(4) with no scheme: %q, want http", got)
	}
	m := core.Membership{Members: []core.Member{{ID: 1}, {ID: 2}, {ID: 4}, {ID: 6}}}
	all := p.All(m)
	want := map[int]string{1: "https://10.0.0.1:8001", 2: "https://local2:8001", 4: "https://10.0.0.4:8001"}
	if len(all) != len(want) {
		t.Fatalf("All = %v, want %v (not 9: not in the configuration)", all, want)
	}
	for id, a := range want {
		if all[id] != a {
			t.Fatalf("All = %v, want %v", all, want)
		}
	}
}

// fixedStatus is a StatusProvider with a fixed status.
type fixedStatus struct{ st raft.Status }

func (f fixedStatus) Status() (raft.Status, bool) { return f.st, true }

// TestHTTPForwardToDirectory: a replica not given the leader's HTTP
// address forwards to the one the directory holds, and names it in
// /status.
func TestHTTPForwardToDirectory(t *testing.T) {
	var forwardedBy string
	leader := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		forwardedBy = r.Header.Get(HeaderForwarded)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"key":"k","value":"from 4"}` + "\n"))
	}))
	defer leader.Close()
	s := NewServer(ServerOptions{Logger: quietLogger()}) // no Raft server: Do says ErrWrongLeader
	defer s.Stop()
	s.Apply(opCommand(1, memberHTTPOp(4, strings.TrimPrefix(leader.URL, "http://"))))
	var st raft.Status
	st.Leader = 4
	st.Membership = core.Membership{Members: []core.Member{{ID: 1}, {ID: 2}, {ID: 4}}}
	h := NewHTTPHandler(s, fixedStatus{st}, 1, map[int]string{1: "127.0.0.1:1", 2: "127.0.0.1:2"}, HTTPOptions{Logger: quietLogger()})

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/kv/k", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "from 4") || forwardedBy != "1" {
		t.Fatalf("GET through replica 1, leader 4 in the directory only: %d %s (forwarded by %q)", rec.Code, rec.Body, forwardedBy)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/status", nil))
	if !strings.Contains(rec.Body.String(), `"leaderHTTP":"`+leader.URL+`"`) || !strings.Contains(rec.Body.String(), `"4":"`+leader.URL+`"`) {
		t.Fatalf("/status names leader 4 at %s nowhere: %s", leader.URL, rec.Body)
	}
}
