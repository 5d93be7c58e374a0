package server_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	rtc "github.com/glasscast/glasscast/internal/webrtc"
)

func TestWHEPPlays(t *testing.T) {
	needTool(t, "ffmpeg") // for Opus
	h := start(t, nil)
	s := h.create("webrtc")
	if s.Playback.WebRTC != h.base+"/whep/"+s.ID {
		t.Fatalf("webrtc URL %q", s.Playback.WebRTC)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	publishSim(ctx, s.Ingest.RTMPURL, nil)
	h.waitPlayable(s.Playback.HLS)

	var mu sync.Mutex
	var frames []rtc.Frame
	var audio []rtc.AudioPacket
	gotFrames := make(chan struct{})
	joined := time.Now()
	c, err := rtc.Dial(ctx, s.Playback.WebRTC, func(f rtc.Frame) {
		mu.Lock()
		defer mu.Unlock()
		frames = append(frames, f)
		if len(frames) == 120 {
			close(gotFrames)
		}
	}, func(p rtc.AudioPacket) {
		mu.Lock()
		audio = append(audio, p)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-gotFrames:
	case <-time.After(20 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("%d frames over WebRTC in 20 s", len(frames))
	}
	mu.Lock()
	defer mu.Unlock()
	if !frames[0].Key {
		t.Fatal("the first frame is not a keyframe: the viewer had to wait for the next one")
	}
	stamped := 0
	for i, f := range frames {
		if !f.Sent.IsZero() {
			stamped++
		}
		// Once at the live edge (two seconds in), frames arrive within a
		// blink of being sent.
		if f.Received.Sub(joined) > 2500*time.Millisecond && !f.Sent.IsZero() && f.Received.Sub(f.Sent) > 500*time.Millisecond {
			t.Fatalf("frame %d arrives %v after it was sent, %v after joining", i, f.Received.Sub(f.Sent), f.Received.Sub(joined))
		}
	}
	if stamped != len(frames) {
		t.Fatalf("%d of %d frames carry the source's SEI stamp", stamped, len(frames))
	}
	if len(audio) < 50 {
		t.Fatalf("%d Opus packets with the video", len(audio))
	}
	t.Logf("first frame %v after joining; %d audio packets", frames[0].Received.Sub(joined), len(audio))
}

func TestWHEPErrors(t *testing.T) {
	h := start(t, nil)
	ctx := context.Background()
	_, err := rtc.Dial(ctx, h.base+"/whep/nope", nil, nil)
	var he *rtc.HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusNotFound {
		t.Fatalf("unknown stream: %v", err)
	}
	s := h.create("idle")
	_, err = rtc.Dial(ctx, s.Playback.WebRTC, nil, nil)
	if !errors.As(err, &he) || he.Status != http.StatusServiceUnavailable {
		t.Fatalf("a stream without media yet: %v", err)
	}
	resp, err := http.Post(s.Playback.WebRTC, "text/plain", strings.NewReader("v=0"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("a text offer: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodOptions, s.Playback.WebRTC, nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "Location") {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}

	// A session ends with DELETE.
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	publishSim(pctx, s.Ingest.RTMPURL, nil)
	h.waitPlayable(s.Playback.HLS)
	c, err := rtc.Dial(ctx, s.Playback.WebRTC, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	loc := c.Location()
	if !strings.HasPrefix(loc, s.Playback.WebRTC+"/") {
		t.Fatalf("Location %q", loc)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	req, _ = http.NewRequest(http.MethodDelete, loc, nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("a second DELETE: %d", resp.StatusCode)
	}
}
