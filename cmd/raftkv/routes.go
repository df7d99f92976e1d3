package main

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"strings"
)

// routes puts the replica's extra endpoints in front of its key/value API:
// GET /metrics, POST /admin/transfer and GET and POST /admin/members always, /debug/pprof/ with serve -pprof, POST /debug/faults
// with serve -faults-api (tests only). Paths are matched exactly, with no
// http.ServeMux, which would clean (redirect) the API's key paths.
//
// The API authenticates its requests itself (kv.HTTPOptions.Auth); the
// extra endpoints are behind the same authentication (r.guard.auth).
func (r *replica) routes(api http.Handler) http.Handler {
	metrics := metricsHandler(r.rf, r.kv, r.log)
	var extra http.Handler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch p := req.URL.Path; {
		case p == "/metrics":
			metrics.ServeHTTP(w, req)
		case strings.HasPrefix(p, "/debug/pprof/"):
			servePprof(w, req)
		case p == "/admin/transfer":
			r.serveTransfer(w, req)
		case p == "/admin/members":
			r.serveMembers(w, req)
		default:
			r.serveFaults(w, req)
		}
	})
	if r.guard.auth != nil {
		extra = r.guard.auth.Wrap(extra)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		p := req.URL.Path
		switch {
		case p == "/metrics", p == "/admin/transfer", p == "/admin/members",
			r.cfg.pprof && strings.HasPrefix(p, "/debug/pprof/"),
			r.cfg.faultsAPI && p == "/debug/faults":
			extra.ServeHTTP(w, req)
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

// writeJSON answers with status code and v in JSON.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// postOnly answers 405 to a request that is not a POST, and reports
// whether it is one.
func postOnly(w http.ResponseWriter, req *http.Request) bool {
	if req.Method == http.MethodPost {
		return true
	}
	w.Header().Set("Allow", "POST")
	writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "use POST", "code": "bad_method"})
	return false
}
