package server_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/hls"
	"github.com/glasscast/glasscast/internal/sim"
)

// TestTimestampJumpsLive: a publisher whose RTMP clock wraps past 32 bits
// and then jumps an hour ahead keeps a live stream going (the playlist
// gains segments through both), and the recording's HLS and MP4 last as
// long as the stream did.
func TestTimestampJumpsLive(t *testing.T) {
	parallel(t)
	slow(t)
	h := start(t, nil)
	s := h.createRecorded("jumpy")
	const wrap = time.Duration(1<<32) * time.Millisecond
	src := &sim.Source{Stamp: func(_ bool, d time.Duration) time.Duration {
		d += wrap - 4*time.Second // RTMP's clock wraps 4 s in
		if d >= wrap+4*time.Second {
			d += time.Hour // and jumps an hour ahead 8 s in
		}
		return d
	}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	began := time.Now()
	done := make(chan error, 1)
	go func() { done <- src.Publish(ctx, s.Ingest.RTMPURL) }()
	h.waitPlayable(s.Playback.HLS)

	// Segments keep coming through both jumps: 12 s of stream want about
	// 11 more segments than the first one.
	base := strings.TrimSuffix(s.Playback.HLS, "index.m3u8")
	_, body := fetch(t, base+"video.m3u8")
	first, _ := hls.LastPart(string(body))
	deadline := time.Now().Add(30 * time.Second)
	for msn := first; msn < first+10; {
		if time.Now().After(deadline) {
			t.Fatalf("the live playlist stopped at segment %d (from %d) after %v", msn, first, time.Since(began))
		}
		code, body := fetch(t, fmt.Sprintf("%svideo.m3u8?_HLS_msn=%d", base, msn+1))
		if code != http.StatusOK {
			t.Fatalf("blocking reload for segment %d: %d %s", msn+1, code, body)
		}
		msn, _ = hls.LastPart(string(body))
	}
	if j := h.get(s.ID).TimestampJumps; j < 2 {
		t.Fatalf("%d timestamp jumps counted, want the wrap and the hour", j)
	}
	cancel()
	<-done
	lasted := time.Since(began).Seconds()
	if code, body := h.call("DELETE", "/api/v1/streams/"+s.ID, nil); code != http.StatusOK {
		t.Fatalf("DELETE stream: %d %s", code, body)
	}
	r := h.waitRecorded(s.ID)
	if r.Duration < lasted-2.5 || r.Duration > lasted+0.5 {
		t.Fatalf("the recording says %.1f s for %.1f s of stream", r.Duration, lasted)
	}
	hlsDur, _ := probeFormat(t, s.Recording.HLS)
	mp4Dur, _ := probeFormat(t, s.Recording.MP4)
	for name, d := range map[string]float64{"HLS": hlsDur, "MP4": mp4Dur} {
		if d < lasted-2.5 || d > lasted+0.5 {
			t.Fatalf("the recording's %s lasts %.1f s for %.1f s of stream", name, d, lasted)
		}
	}
}
