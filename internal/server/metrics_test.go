package server_test

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads /metrics as Prometheus would, with the admin token.
func (h *harness) scrape() map[string]*dto.MetricFamily {
	h.t.Helper()
	req, _ := http.NewRequest("GET", h.base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		h.t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		h.t.Fatalf("/metrics is not Prometheus's text format: %v", err)
	}
	return fams
}

// value is the metric's value for the label set given as name=value pairs.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.Label {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		}
	}
	return 0, false
}

// TestMetrics scrapes /metrics during a live stream with a viewer: it
// wants the admin token, and says what is live, who watches and what went
// in and out.
func TestMetrics(t *testing.T) {
	parallel(t)
	h := start(t, nil)
	if resp, err := http.Get(h.base + "/metrics"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/metrics without the admin token: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	s := h.createRecorded("metered")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	publishSim(ctx, s.Ingest.RTMPURL, nil)
	h.waitPlayable(s.Playback.HLS)
	// A player: the playlist and the part it lists last.
	base := strings.TrimSuffix(s.Playback.HLS, "index.m3u8")
	_, pl := fetch(t, base+"video.m3u8")
	m := partURI.FindAllStringSubmatch(string(pl), -1)
	if len(m) == 0 {
		t.Fatalf("no part in the playlist:\n%s", pl)
	}
	if code, _ := fetch(t, base+m[len(m)-1][1]); code != http.StatusOK {
		t.Fatalf("part: %d", code)
	}
	fams := h.scrape()
	for _, c := range []struct {
		name   string
		labels []string
		ok     func(float64) bool
		want   string
	}{
		{"glasscast_streams", []string{"status", "live"}, func(v float64) bool { return v == 1 }, "1"},
		{"glasscast_publishers", nil, func(v float64) bool { return v == 1 }, "1"},
		{"glasscast_viewers", []string{"protocol", "llhls"}, func(v float64) bool { return v >= 1 }, ">= 1"},
		{"glasscast_viewers", []string{"protocol", "webrtc"}, func(v float64) bool { return v == 0 }, "0"},
		{"glasscast_ingest_bytes_total", nil, func(v float64) bool { return v > 100_000 }, "> 100 kB"},
		{"glasscast_egress_bytes_total", []string{"protocol", "http"}, func(v float64) bool { return v > 1000 }, "> 1 kB"},
		{"glasscast_recordings", []string{"status", "recording"}, func(v float64) bool { return v >= 1 }, ">= 1"},
		{"glasscast_transcoders_max", nil, func(v float64) bool { return v >= 1 }, ">= 1"},
		{"glasscast_outputs", []string{"status", "active"}, func(v float64) bool { return v == 0 }, "0"},
		{"go_goroutines", nil, func(v float64) bool { return v > 0 }, "> 0"},
		{"process_resident_memory_bytes", nil, func(v float64) bool { return v > 0 }, "> 0"},
	} {
		v, found := value(fams, c.name, c.labels...)
		if !found || !c.ok(v) {
			t.Errorf("%s%v = %v (found %v), want %s", c.name, c.labels, v, found, c.want)
		}
	}
}

var partURI = regexp.MustCompile(`#EXT-X-PART:[^\n]*URI="([^"]+)"`)
