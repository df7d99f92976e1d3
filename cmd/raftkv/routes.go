package main

import (
	"net/http"
	"net/http/pprof"
	"strings"
)

// routes puts the replica's extra endpoints in front of its key/value API:
// GET /metrics always, /debug/pprof/ with serve -pprof, POST /debug/faults
// with serve -faults-api (tests only). Paths are matched exactly, with no
// http.ServeMux, which would clean (redirect) the API's key paths.
func (r *replica) routes(api http.Handler) http.Handler {
	metrics := metricsHandler(r.rf, r.kv, r.log)
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		p := req.URL.Path
		switch {
		case p == "/metrics":
			metrics.ServeHTTP(w, req)
		case r.cfg.pprof && strings.HasPrefix(p, "/debug/pprof/"):
			servePprof(w, req)
		case r.cfg.faultsAPI && p == "/debug/faults":
			r.serveFaults(w, req)
		default:
			api.ServeHTTP(w, req)
		}
	})
}

// servePprof serves net/http/pprof's handlers under /debug/pprof/.
func servePprof(w http.ResponseWriter, req *http.Request) {
	switch strings.TrimPrefix(req.URL.Path, "/debug/pprof/") {
	case "cmdline":
		pprof.Cmdline(w, req)
	case "profile":
		pprof.Profile(w, req)
	case "symbol":
		pprof.Symbol(w, req)
	case "trace":
		pprof.Trace(w, req)
	default: // the index, and the runtime's profiles by name (heap, goroutine, ...)
		pprof.Index(w, req)
	}
}
