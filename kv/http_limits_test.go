package kv

// Tests of the HTTP API's limits: body read deadline, Content-Length
// checked before reading, bounded requests in progress.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingBody is a request body of n bytes that counts what is read of it.
type countingBody struct {
	n    int64
	read atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	left := b.n - b.read.Load()
	if left <= 0 {
		return 0, io.EOF
	}
	k := min(int64(len(p)), left)
	for i := range p[:k] {
		p[i] = 'v'
	}
	b.read.Add(k)
	return int(k), nil
}

// serveDirect calls replica id's handler in-process with a request whose
// body is body, declared as contentLength bytes, and returns the answer.
func (c *htCluster) serveDirect(id int, method, path string, body io.Reader, contentLength int64) (*httptest.ResponseRecorder, map[string]any) {
	req := httptest.NewRequest(method, path, body)
	req.ContentLength = contentLength
	rec := httptest.NewRecorder()
	c.nodes[id].h.ServeHTTP(rec, req)
	var m map[string]any
	json.Unmarshal(rec.Body.Bytes(), &m)
	return rec, m
}

// rawRequest opens a connection to addr and sends the request line and
// headers of a PUT of key with the given Content-Length, then prefix of
// its body; it returns the connection, for the caller to go on (or not).
func rawRequest(t *testing.T, url, key string, contentLength int64, prefix string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "PUT /kv/%s HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", key, contentLength, prefix)
	return conn
}

// readStatus reads the status of the answer on conn, waiting up to wait;
// it returns 0 if the connection closed or the wait ended first.
func readStatus(conn net.Conn, wait time.Duration) (int, error) {
	conn.SetReadDeadline(time.Now().Add(wait))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestHTTPSlowBodyCutOff: clients that send their bodies a byte at a time
// are answered 408 and cut off once BodyTimeout has passed, rather than
// holding a connection (and a request slot) for as long as they like;
// meanwhile other requests are served.
func TestHTTPSlowBodyCutOff(t *testing.T) {
	const bodyTimeout = 500 * time.Millisecond
	c := newHTCluster(t, HTTPOptions{BodyTimeout: bodyTimeout})
	l := c.leader()

	const slow = 20
	stop := make(chan struct{})
	var trickling sync.WaitGroup
	defer func() { close(stop); trickling.Wait() }()
	conns := make([]net.Conn, slow)
	for i := range conns {
		conn := rawRequest(t, c.urls[l], fmt.Sprintf("slow%d", i), 1000, `{"value":"`)
		conns[i] = conn
		trickling.Go(func() { // a byte every 100 ms, until cut off
			for {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				if _, err := conn.Write([]byte("x")); err != nil {
					return
				}
			}
		})
	}
	for i := range 5 {
		if code, _, m := htDoSettled(t, "PUT", c.urls[l]+fmt.Sprintf("/kv/fast%d", i), `{"value":"ok"}`, nil); code != 200 {
			t.Fatalf("PUT while %d clients trickle their bodies: %d %v", slow, code, m)
		}
	}
	for i, conn := range conns {
		// Well past BodyTimeout; without a deadline they would trickle on.
		code, err := readStatus(conn, 10*time.Second)
		if code != http.StatusRequestTimeout {
			t.Fatalf("slow client %d: status %d (%v); want 408 within 10 s, its body taking over %v", i, code, err, bodyTimeout)
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := conn.Read(make([]byte, 1)); err == nil {
			t.Fatalf("slow client %d: the connection stays open after the 408 (read %d bytes)", i, n)
		}
	}
	if code, _, m := htDoSettled(t, "GET", c.urls[l]+"/kv/slow0", "", nil); code != 404 {
		t.Fatalf("GET slow0: %d %v; want 404: a request cut off took effect", code, m)
	}
	c.mustGet(c.urls[l], "fast4", "ok")
}

// TestHTTPContentLengthOverLimit: a body whose Content-Length is over
// MaxBodyBytes is refused with 413 without a byte of it being read.
func TestHTTPContentLengthOverLimit(t *testing.T) {
	c := newHTCluster(t, HTTPOptions{MaxValueBytes: 1000})
	l := c.leader()
	f := c.followers(l)[0]
	for _, id := range []int{l, f} {
		body := &countingBody{n: 100 << 20}
		rec, m := c.serveDirect(id, "PUT", "/kv/big", body, body.n)
		if rec.Code != 413 || m["code"] != CodeTooLarge || !strings.Contains(fmt.Sprint(m["error"]), "Content-Length") {
			t.Fatalf("PUT of 100 MB at %d: %d %v; want 413 too_large from the Content-Length", id, rec.Code, m)
		}
		if n := body.read.Load(); n != 0 {
			t.Fatalf("PUT of 100 MB at %d: the handler read %d bytes of the body before refusing it", id, n)
		}
	}
	// Over a connection: the answer comes though the body never does.
	conn := rawRequest(t, c.urls[l], "big", 100<<20, "")
	if code, err := readStatus(conn, 10*time.Second); code != 413 {
		t.Fatalf("PUT of 100 MB, headers only: status %d (%v); want 413 at once", code, err)
	}
	if code, _, m := htDoSettled(t, "GET", c.urls[l]+"/kv/big", "", nil); code != 404 {
		t.Fatalf("GET big: %d %v; want 404", code, m)
	}
}

// inFlight returns the number of requests replica id serves.
func (c *htCluster) inFlight(id int) int {
	return len(c.nodes[id].h.(*httpHandler).slots)
}

// waitInFlight waits until replica id serves n requests.
func (c *htCluster) waitInFlight(id, n int) {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for c.inFlight(id) != n {
		if time.Now().After(deadline) {
			c.t.Fatalf("replica %d serves %d requests after 10 s; want %d", id, c.inFlight(id), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestHTTPOverloaded: beyond MaxInFlight requests in progress, a request
// gets 503 overloaded with a Retry-After at once, its body unread; once
// the requests in progress end, requests are served again.
func TestHTTPOverloaded(t *testing.T) {
	c := newHTCluster(t, HTTPOptions{MaxInFlight: 2, BodyTimeout: time.Minute})
	l := c.leader()
	c.waitInFlight(l, 0)
	// Two requests in progress: their bodies do not come.
	busy := []net.Conn{rawRequest(t, c.urls[l], "busy1", 100, "{"), rawRequest(t, c.urls[l], "busy2", 100, "{")}
	c.waitInFlight(l, 2)

	body := &countingBody{n: 20}
	rec, m := c.serveDirect(l, "PUT", "/kv/third", body, body.n)
	if rec.Code != 503 || m["code"] != CodeOverloaded || rec.Header().Get("Retry-After") == "" || m["outcomeUnknown"] == true {
		t.Fatalf("a third request: %d %v (Retry-After %q); want 503 overloaded with a Retry-After, outcome known", rec.Code, m, rec.Header().Get("Retry-After"))
	}
	if n := body.read.Load(); n != 0 {
		t.Fatalf("the refused request had %d bytes of its body read", n)
	}
	code, hdr, m := htDo(t, "GET", c.urls[l]+"/kv/_probe", "", nil)
	if code != 503 || m["code"] != CodeOverloaded || hdr.Get("Retry-After") == "" {
		t.Fatalf("a GET over the limit: %d %v (Retry-After %q); want 503 overloaded", code, m, hdr.Get("Retry-After"))
	}
	// The Clerk's Conn takes it as "not done, try again".
	_, _, err := (&HTTPConn{Addr: c.urls[l]}).Do(t.Context(), Op{Kind: Get, Key: "_probe"})
	if !errors.Is(err, ErrOverloaded) {
		t.Fatalf("HTTPConn over the limit: %v; want ErrOverloaded", err)
	}

	for _, conn := range busy {
		conn.Close()
	}
	c.waitInFlight(l, 0)
	c.mustGet(c.urls[l], "_probe", "x")
}
