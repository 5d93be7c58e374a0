package server_test

import (
	"bytes"
	"context"
	"image/jpeg"
	"net/http"
	"strings"
	"testing"
)

// checkThumbnail fetches a thumbnail and checks that it is a JPEG of the
// given size.
func checkThumbnail(t *testing.T, url string, width, height int) {
	t.Helper()
	needTool(t, "ffmpeg")
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/jpeg" {
		t.Fatalf("thumbnail %s: %d %s %s", url, resp.StatusCode, resp.Header.Get("Content-Type"), body.String())
	}
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(body.Bytes()))
	if err != nil {
		t.Fatalf("thumbnail %s is not a JPEG: %v", url, err)
	}
	if cfg.Width != width || cfg.Height != height {
		t.Fatalf("thumbnail %s is %dx%d, want %dx%d", url, cfg.Width, cfg.Height, width, height)
	}
	if _, err := jpeg.Decode(bytes.NewReader(body.Bytes())); err != nil {
		t.Fatalf("thumbnail %s does not decode: %v", url, err)
	}
}

func TestThumbnail(t *testing.T) {
	parallel(t)
	h := start(t, nil)
	s := h.create("thumb")
	if !strings.HasPrefix(s.Playback.Thumbnail, h.base+"/thumb/"+s.ID+".") || !strings.HasSuffix(s.Playback.Thumbnail, ".jpg") {
		t.Fatalf("thumbnail URL %q", s.Playback.Thumbnail)
	}
	code, body := fetch(t, s.Playback.Thumbnail)
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "no picture yet") {
		t.Fatalf("before the first keyframe: %d %s", code, body)
	}
	if code, _ := fetch(t, h.base+"/thumb/nope.jpg"); code != http.StatusUnauthorized {
		t.Fatalf("unknown stream: %d", code)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	publishSim(ctx, s.Ingest.RTMPURL, nil)
	h.waitPlayable(s.Playback.HLS)
	checkThumbnail(t, s.Playback.Thumbnail, 1280, 720)
	checkThumbnail(t, s.Playback.Thumbnail, 1280, 720) // from the cache

	h.call("DELETE", "/api/v1/streams/"+s.ID, nil)
	if code, _ := fetch(t, s.Playback.Thumbnail); code != http.StatusNotFound {
		t.Fatalf("after the stream ended: %d", code)
	}
}
