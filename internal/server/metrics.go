package server

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/glasscast/glasscast/internal/live"
	"github.com/glasscast/glasscast/internal/record"
	"github.com/glasscast/glasscast/internal/restream"
	"github.com/glasscast/glasscast/internal/stream"
)

// metrics is what /metrics shows, read from the server's parts at each
// scrape (nothing is kept twice): gauges of what is there now, counters of
// what happened since the process started.
type metrics struct {
	s *Server

	streams, publishers, viewers, connecting                 *prometheus.Desc
	ingestBytes, ingestFrames, dropped, publishes, egress    *prometheus.Desc
	users, glasses, apps, webhookFailures                    *prometheus.Desc
	outputs, recordings, recordingBytes, transcoders, maxTrx *prometheus.Desc
}

func newMetrics(s *Server) *metrics {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("glasscast_"+name, help, labels, nil)
	}
	return &metrics{s: s,
		streams:         d("streams", "Streams by status (ABR renditions aside).", "status"),
		publishers:      d("publishers", "Streams with a publisher connected."),
		viewers:         d("viewers", "Viewers by protocol (LL-HLS and DASH players seen in the last seconds, connected WebRTC sessions).", "protocol"),
		connecting:      d("webrtc_sessions_connecting", "WebRTC sessions offered and not connected yet."),
		ingestBytes:     d("ingest_bytes_total", "Media payload bytes taken in from publishers."),
		ingestFrames:    d("ingest_video_frames_total", "Video frames taken in from publishers."),
		dropped:         d("dropped_units_total", "Media units readers (packagers, viewers, outputs) lost to full queues."),
		publishes:       d("publisher_sessions_total", "Publisher sessions begun; each reconnect is one more."),
		egress:          d("egress_bytes_total", "Bytes sent to viewers: HTTP media and downloads, WebRTC media payload.", "protocol"),
		users:           d("users", "Users with a session."),
		glasses:         d("glasses_connections", "Phones (glasses) connected."),
		apps:            d("app_sessions", "App sessions with their socket open."),
		webhookFailures: d("webhook_failures_total", "Webhooks app servers did not take."),
		outputs:         d("outputs", "Restream outputs by status.", "status"),
		recordings:      d("recordings", "Recordings by status.", "status"),
		recordingBytes:  d("recordings_bytes", "Bytes the recordings take on disk."),
		transcoders:     d("transcoders_running", "ffmpeg encoders running (transcoded outputs, ABR ladders)."),
		maxTrx:          d("transcoders_max", "The most ffmpeg encoders that may run (--max-transcodes)."),
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.streams, m.publishers, m.viewers, m.connecting, m.ingestBytes, m.ingestFrames,
		m.dropped, m.publishes, m.egress, m.users, m.glasses, m.apps, m.webhookFailures, m.outputs, m.recordings,
		m.recordingBytes, m.transcoders, m.maxTrx} {
		ch <- d
	}
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	s := m.s
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	byStatus := map[live.Status]int{live.StatusIdle: 0, live.StatusLive: 0, live.StatusReconnecting: 0, live.StatusEnded: 0}
	var llhls, dash int
	for _, st := range s.reg.List() {
		if st.Internal() {
			continue
		}
		byStatus[st.Status()]++
		if st.Status() != live.StatusEnded {
			v := s.countViewers(st)
			llhls, dash = llhls+v.LLHLS, dash+v.DASH
		}
	}
	for status, n := range byStatus {
		gauge(m.streams, float64(n), status.String())
	}
	gauge(m.publishers, float64(byStatus[live.StatusLive]))
	webrtc, connecting := s.rtc.Counts()
	gauge(m.viewers, float64(llhls), "llhls")
	gauge(m.viewers, float64(dash), "dash")
	gauge(m.viewers, float64(webrtc), "webrtc")
	gauge(m.connecting, float64(connecting))
	t := stream.ProcessTotals()
	counter(m.ingestBytes, t.BytesIn)
	counter(m.ingestFrames, t.FramesIn)
	counter(m.dropped, t.Dropped)
	counter(m.publishes, t.Publishes)
	counter(m.egress, httpBytesOut.Load(), "http")
	counter(m.egress, s.rtc.BytesSent(), "webrtc")
	users, phones, apps := s.plane.Counts()
	gauge(m.users, float64(users))
	gauge(m.glasses, float64(phones))
	gauge(m.apps, float64(apps))
	counter(m.webhookFailures, s.plane.WebhookFailures())
	outs := s.outputs.CountByStatus()
	for _, status := range []restream.Status{restream.StatusConnecting, restream.StatusActive, restream.StatusReconnecting, restream.StatusError} {
		gauge(m.outputs, float64(outs[status]), status.String())
	}
	recs := map[string]int{record.StatusRecording: 0, record.StatusFailed: 0, record.StatusComplete: 0, record.StatusInterrupted: 0}
	for _, in := range s.recs.List() {
		recs[in.Status]++
	}
	for status, n := range recs {
		gauge(m.recordings, float64(n), status)
	}
	gauge(m.recordingBytes, float64(s.recs.Bytes()))
	gauge(m.transcoders, float64(s.transcoders.InUse()))
	gauge(m.maxTrx, float64(s.transcoders.Cap()))
}

// metricsHandler serves the server's metrics, with the Go runtime's and the
// process's, in Prometheus's text format.
func (s *Server) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newMetrics(s), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: nil})
}
