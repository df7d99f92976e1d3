package kv

import (
	"context"
	"testing"
	"time"
)

// TestStats counts keys, clients and waiting requests.
func TestStats(t *testing.T) {
	f := newFakeLog(t, false) // entries are applied only when the test says
	s := newFakeServer(f, ServerOptions{})
	if got := s.Stats(); got != (Stats{}) {
		t.Fatalf("empty server: %+v; want zeros", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 2)
	for i, key := range []string{"a", "b"} {
		go func() {
			_, err := s.Do(ctx, Op{Kind: Put, Key: key, Value: "v", ClientID: int64(i + 1), Seq: 1})
			done <- err
		}()
	}
	for s.Stats().Waiting < 2 {
		select {
		case <-ctx.Done():
			t.Fatalf("requests never waited: %+v", s.Stats())
		case <-time.After(time.Millisecond):
		}
	}
	if got := s.Stats(); got != (Stats{Waiting: 2}) {
		t.Fatalf("two requests proposed, none applied: %+v; want Waiting 2 only", got)
	}
	for i := 1; i <= 2; i++ {
		f.mu.Lock()
		c := f.command(i)
		f.mu.Unlock()
		s.Apply(c)
	}
	for i := 0; i < 2; i++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Stats(); got != (Stats{Keys: 2, Clients: 2}) {
		t.Errorf("after two puts by two clients: %+v; want 2 keys, 2 clients, none waiting", got)
	}
}
