package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/raftkit/raft"
)

// scrape gets url's /metrics and parses it.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := get(t, url+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET %s/metrics: status %d: %s", url, code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("GET %s/metrics: not the Prometheus text format: %v\n%s", url, err, body)
	}
	return fams
}

// value returns the value of the single series of a counter or gauge, and
// whether there is one.
func value(fams map[string]*dto.MetricFamily, name string) (float64, bool) {
	f := fams[name]
	if f == nil || len(f.Metric) != 1 {
		return 0, false
	}
	m := f.Metric[0]
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue(), true
	case m.Gauge != nil:
		return m.Gauge.GetValue(), true
	}
	return 0, false
}

// TestMetricsEndpoint scrapes the /metrics of a running cluster's replicas
// after some PUTs and checks the series against what was done.
func TestMetricsEndpoint(t *testing.T) {
	c := startInProc(t, 3)
	leader := c.waitLeader(t)
	const puts = 20
	for i := 0; i < puts; i++ {
		req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/kv/k%d", c.urls[leader], i), strings.NewReader(`{"value":"v"}`))
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("PUT k%d: %s", i, resp.Status)
		}
	}
	resp, err := httpClient.Get(c.urls[leader] + "/kv/k0") // a linearizable read, by ReadIndex
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET k0: %s", resp.Status)
	}

	// Followers learn of commits with the leader's next message: wait
	// for every replica to count the PUTs committed and applied.
	var fams map[int]map[string]*dto.MetricFamily
	var problems []string
	for deadline := time.Now().Add(20 * time.Second); ; {
		fams, problems = map[int]map[string]*dto.MetricFamily{}, nil
		leaders := 0.0
		for id, u := range c.urls {
			f := scrape(t, u)
			fams[id] = f
			for _, want := range []struct {
				name string
				min  float64
			}{{"raft_entries_committed_total", puts}, {"raft_entries_applied_total", puts}, {"raft_term", 1},
				{"raft_commit_index", puts}, {"raft_applied_index", puts}, {"raft_last_log_index", puts}, {"raftkv_keys", puts}} {
				if v, ok := value(f, want.name); !ok || v < want.min {
					problems = append(problems, fmt.Sprintf("replica %d: %s = %v (present: %v); want at least %v", id, want.name, v, ok, want.min))
				}
			}
			v, ok := value(f, "raft_is_leader")
			if !ok {
				problems = append(problems, fmt.Sprintf("replica %d: no raft_is_leader", id))
			}
			leaders += v
		}
		if leaders != 1 {
			problems = append(problems, fmt.Sprintf("%v replicas say they lead; want 1", leaders))
		}
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, p := range problems {
		t.Error(p)
	}

	f := fams[leader]
	if v, _ := value(f, "raft_is_leader"); v != 1 {
		t.Errorf("replica %d, the leader: raft_is_leader = %v", leader, v)
	}
	if v, _ := value(f, "raft_proposals_total"); v < puts {
		t.Errorf("leader: raft_proposals_total = %v; want at least %d", v, puts)
	}
	if v, _ := value(f, "raft_reads_round_total"); v < 1 {
		t.Errorf("leader: raft_reads_round_total = %v after a GET; want at least 1", v)
	}
	if v, _ := value(f, "raft_leader_id"); v != float64(leader) {
		t.Errorf("leader: raft_leader_id = %v; want %d", v, leader)
	}
	// The leader timed each PUT's commit.
	h := f["raft_commit_latency_seconds"]
	if h == nil || h.GetType() != dto.MetricType_HISTOGRAM || len(h.Metric) != 1 {
		t.Fatalf("leader: raft_commit_latency_seconds is %v; want one histogram", h)
	}
	hist := h.Metric[0].Histogram
	if hist.GetSampleCount() < puts || hist.GetSampleSum() <= 0 {
		t.Errorf("leader: raft_commit_latency_seconds has %d samples summing to %v; want at least %d, and a positive sum", hist.GetSampleCount(), hist.GetSampleSum(), puts)
	}
	if len(hist.Bucket) == 0 {
		t.Errorf("leader: raft_commit_latency_seconds has no buckets")
	}
	prev := uint64(0)
	for _, b := range hist.Bucket {
		if b.GetCumulativeCount() < prev || b.GetCumulativeCount() > hist.GetSampleCount() {
			t.Errorf("leader: raft_commit_latency_seconds bucket le=%v counts %d after %d, of %d: not cumulative", b.GetUpperBound(), b.GetCumulativeCount(), prev, hist.GetSampleCount())
		}
		prev = b.GetCumulativeCount()
	}

	// Every series of ours has help text and the right type; the Go and
	// process collectors are there.
	for name, fam := range f {
		if !strings.HasPrefix(name, "raft") {
			continue
		}
		if fam.GetHelp() == "" {
			t.Errorf("%s has no help text", name)
		}
		if strings.HasSuffix(name, "_total") != (fam.GetType() == dto.MetricType_COUNTER) {
			t.Errorf("%s is a %v", name, fam.GetType())
		}
	}
	for _, name := range []string{"raft_save_latency_seconds", "raft_save_batch_entries", "raft_snapshot_duration_seconds", "go_goroutines", "process_resident_memory_bytes", "raftkv_clients"} {
		if f[name] == nil {
			t.Errorf("leader: no %s", name)
		}
	}
}

// TestCumulative checks the conversion of the library's histograms to
// Prometheus's cumulative buckets.
func TestCumulative(t *testing.T) {
	count, buckets := cumulative(raft.Histogram{Bounds: []float64{0.1, 1}, Counts: []int64{2, 3, 4}, Count: 9, Sum: 12})
	if count != 9 || len(buckets) != 2 || buckets[0.1] != 2 || buckets[1] != 5 {
		t.Errorf("cumulative: count %d, buckets %v; want 9 and {0.1: 2, 1: 5}", count, buckets)
	}
}
