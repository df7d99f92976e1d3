package main

import (
	"net/http"
	"strings"
	"testing"
)

// TestPprofFlag: serve -pprof serves net/http/pprof under /debug/pprof/;
// without the flag those paths are not found.
func TestPprofFlag(t *testing.T) {
	paths := []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/goroutine?debug=1", "/debug/pprof/heap"}
	on := startInProc(t, 1, "-pprof")
	for _, p := range paths {
		code, body := get(t, on.urls[1]+p)
		if code != http.StatusOK || body == "" {
			t.Errorf("with -pprof: GET %s: status %d, %d bytes; want 200 and a profile", p, code, len(body))
		}
	}
	if _, body := get(t, on.urls[1]+"/debug/pprof/"); !strings.Contains(body, "goroutine") {
		t.Errorf("with -pprof: the index lists no goroutine profile:\n%s", body)
	}

	off := startInProc(t, 1)
	for _, p := range paths {
		if code, body := get(t, off.urls[1]+p); code != http.StatusNotFound {
			t.Errorf("without -pprof: GET %s: status %d (%d bytes); want 404", p, code, len(body))
		}
	}
	// /metrics is there either way.
	if code, _ := get(t, off.urls[1]+"/metrics"); code != http.StatusOK {
		t.Errorf("without -pprof: GET /metrics: status %d; want 200", code)
	}
}
