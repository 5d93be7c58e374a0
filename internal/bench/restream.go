package bench

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/glasscast/glasscast/internal/sim"
)

// restreamPoint is the cost of one set of outputs of one stream.
type restreamPoint struct {
	Outputs          int     `json:"outputs"`
	Mode             string  `json:"mode"`
	CPUPercent       float64 `json:"cpuPercentOfOneCore"` // glasscast, all outputs
	PerOutputPercent float64 `json:"perOutputPercent"`
	FFmpegPercent    float64 `json:"ffmpegPercentPerOutput,omitempty"`
	BitrateKbps      float64 `json:"outputKbps"` // what each output sends
	RSSMB            float64 `json:"rssMB"`
}

type outputInfo struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	Mode    string `json:"mode"`
	Bytes   uint64 `json:"bytes"`
	Bitrate int64  `json:"bitrate"`
	Error   string `json:"error"`
}

func (s *server) addOutput(streamID string, body map[string]any) (*outputInfo, error) {
	var o outputInfo
	return &o, s.postJSON("/api/v1/streams/"+streamID+"/outputs", body, &o)
}

func (s *server) outputs(streamID string) ([]outputInfo, error) {
	var list struct {
		Outputs []outputInfo `json:"outputs"`
	}
	return list.Outputs, s.getJSON("/api/v1/streams/"+streamID+"/outputs", &list)
}

// restreamScenario measures what outputs cost glasscast: ten passthrough
// outputs to a second glasscast, then one output transcoded for YouTube's
// rules (audio only from the reference clip's 64 kbit/s AAC; video too from
// a 4 s GOP), each against the same stream without outputs.
func restreamScenario(o options, clip *sim.Clip) ([]restreamPoint, error) {
	fmt.Fprintf(o.out, "\n== restream: CPU per output of one %s stream (%v per point)\n", "2.5 Mbit/s", o.duration)
	var out []restreamPoint
	p, err := measureOutputs(o, clip, 10, "none")
	if err != nil {
		return nil, err
	}
	out = append(out, p)
	p, err = measureOutputs(o, clip, 1, "youtube")
	if err != nil {
		return nil, err
	}
	out = append(out, p)
	long, _, err := loadClip(o, 4*time.Second)
	if err != nil {
		return nil, err
	}
	p, err = measureOutputs(o, long, 1, "youtube")
	if err != nil {
		return nil, err
	}
	return append(out, p), nil
}

func measureOutputs(o options, clip *sim.Clip, n int, profile string) (restreamPoint, error) {
	p := restreamPoint{Outputs: n}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := startServer(ctx)
	if err != nil {
		return p, err
	}
	defer srv.stop()
	dst, err := startServer(ctx)
	if err != nil {
		return p, err
	}
	defer dst.stop()
	st, err := srv.createStream("source")
	if err != nil {
		return p, err
	}
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	publish(ctx, &wg, clip, st.Ingest.RTMPURL, errs)
	defer func() { cancel(); wg.Wait() }()
	if _, code, err := get(ctx, st.Playback.HLS); err != nil || code != http.StatusOK {
		return p, fmt.Errorf("stream did not start: %d %v", code, err)
	}
	base, _, _, err := srv.cpuWindow(o)
	if err != nil {
		return p, err
	}
	for i := range n {
		d, err := dst.createStream(fmt.Sprintf("mirror-%d", i))
		if err != nil {
			return p, err
		}
		if _, err := srv.addOutput(st.ID, map[string]any{"url": d.Ingest.RTMPURL, "profile": profile}); err != nil {
			return p, err
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		list, err := srv.outputs(st.ID)
		if err != nil {
			return p, err
		}
		active := 0
		for _, l := range list {
			if l.Status == "active" {
				active++
				p.Mode = l.Mode
			}
		}
		if active == n {
			break
		}
		if time.Now().After(deadline) {
			return p, fmt.Errorf("outputs not active after 60 s: %+v", list)
		}
		time.Sleep(200 * time.Millisecond) // polling the child's API
	}
	with, ff, rss, err := srv.cpuWindow(o)
	if err != nil {
		return p, err
	}
	list, _ := srv.outputs(st.ID)
	for _, l := range list {
		p.BitrateKbps += float64(l.Bitrate) / 1000 / float64(n)
	}
	p.CPUPercent = with - base
	p.PerOutputPercent = p.CPUPercent / float64(n)
	p.FFmpegPercent = ff / float64(n)
	p.RSSMB = rss
	select {
	case err := <-errs:
		return p, fmt.Errorf("the publisher failed: %w", err)
	default:
	}
	line := fmt.Sprintf("  %2d × %-22s glasscast %5.2f %% of a core per output", n, p.Mode, p.PerOutputPercent)
	if p.FFmpegPercent > 0 {
		line += fmt.Sprintf(" + ffmpeg %5.1f %%", p.FFmpegPercent)
	}
	fmt.Fprintf(o.out, "%s   %.0f kbit/s each   RSS %.1f MB\n", line, p.BitrateKbps, p.RSSMB)
	return p, nil
}

// abrScenario measures the bitrate ladder: one stream of the reference load
// with --abr, glasscast's CPU and the ladder's ffmpeg, once both rungs play.
func abrScenario(o options, clip *sim.Clip) (map[string]any, error) {
	fmt.Fprintf(o.out, "\n== abr: one stream with the 480p and 360p ladder (%v)\n", o.duration)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := startServer(ctx, "--abr")
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	st, err := srv.createStream("ladder")
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	publish(ctx, &wg, clip, st.Ingest.RTMPURL, errs)
	defer func() { cancel(); wg.Wait() }()
	t0 := time.Now()
	for {
		body, code, err := get(ctx, st.Playback.HLS)
		if err == nil && code == http.StatusOK && bytes.Count(body, []byte("#EXT-X-STREAM-INF")) == 3 {
			break
		}
		if time.Since(t0) > 60*time.Second {
			return nil, fmt.Errorf("no ladder after 60 s: %d %v %s", code, err, body)
		}
		time.Sleep(200 * time.Millisecond) // polling the child's playlist
	}
	ladder := time.Since(t0)
	g, f, _, err := srv.cpuWindow(o)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(o.out, "  ladder listed %.1f s after the first playlist; glasscast %.1f %% of a core (the stream and its two rungs), ffmpeg %.1f %%\n",
		ladder.Seconds(), g, f)
	return map[string]any{"ladderSeconds": ladder.Seconds(), "glasscastPercent": g, "ffmpegPercent": f}, nil
}
