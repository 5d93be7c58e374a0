package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/config"
)

type abrResult struct {
	Player     string   `json:"player"`
	Levels     []int    `json:"levels"`
	Played     []int    `json:"played"`
	Switched   []int    `json:"switched"`
	HLSErrors  []string `json:"hlsErrors"`
	PageErrors []string `json:"pageErrors"`
}

// TestABRLadder turns the ladder on: the multivariant playlist and the
// manifest list the source and its 480p and 360p rungs, ffprobe plays a
// rung, hls.js in Chromium plays the lowest level and the source as it is
// switched between them, and dash.js plays the lowest representation.
func TestABRLadder(t *testing.T) {
	parallel(t)
	needBrowser(t)
	needTool(t, "ffmpeg")

	h := start(t, func(c *config.Config) { c.ABR = true })
	s := h.create("ladder")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	publishSim(ctx, s.Ingest.RTMPURL, nil)
	h.waitPlayable(s.Playback.HLS)

	base := strings.TrimSuffix(s.Playback.HLS, "index.m3u8")
	mv := waitLadder(t, s.Playback.HLS)
	for _, want := range []string{"RESOLUTION=1280x720", "RESOLUTION=854x480", "RESOLUTION=640x360"} {
		if !strings.Contains(mv, want) {
			t.Fatalf("multivariant playlist without %s:\n%s", want, mv)
		}
	}
	var rung string
	for _, line := range strings.Split(mv, "\n") {
		if strings.HasPrefix(line, "../") {
			rung = line
		}
	}
	streams := probe(t, base+rung)
	if v := findStream(streams, "video"); v == nil || v.Height != 360 {
		t.Fatalf("the 360p rung: %s", describe(streams))
	}
	_, mpd := fetch(t, s.Playback.DASH)
	if n := strings.Count(string(mpd), `<Representation id="video`); n != 3 {
		t.Fatalf("the manifest has %d video representations:\n%s", n, mpd)
	}

	out, stderr := runBrowserScript(t, ctx, "abr.mjs", h.base, s)
	got := map[string]abrResult{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var r abrResult
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.Player != "" {
			got[r.Player] = r
		}
	}
	hl := got["hlsjs"]
	t.Logf("hls.js: levels %v, played at %v, switched through %v, errors %v", hl.Levels, hl.Played, hl.Switched, hl.HLSErrors)
	if !slices.Contains(hl.Levels, 360) || !slices.Contains(hl.Levels, 480) || !slices.Contains(hl.Levels, 720) {
		t.Fatalf("hls.js levels: %+v\n%s", hl, stderr)
	}
	if !slices.Equal(hl.Played, []int{360, 720}) || len(hl.PageErrors) > 0 {
		t.Fatalf("hls.js did not play the lowest level and then the source: %+v", hl)
	}
	if !slices.Contains(hl.Switched, 360) || !slices.Contains(hl.Switched, 720) {
		t.Fatalf("hls.js never reported switching levels: %+v", hl)
	}
	dj := got["dashjs"]
	t.Logf("dash.js: representations %v, played at %v", dj.Levels, dj.Played)
	if len(dj.Levels) != 3 || !slices.Equal(dj.Played, []int{360}) || len(dj.PageErrors) > 0 {
		t.Fatalf("dash.js: %+v", dj)
	}
}

// waitLadder waits until the multivariant playlist at url lists the source
// and its two rungs, and returns it. The rungs come once their encoder has
// a segment: each blocking reload of the source's playlist is a chance to
// look again.
func waitLadder(t *testing.T, url string) string {
	t.Helper()
	base := url[:strings.LastIndex(url, "/")+1]
	deadline := time.Now().Add(40 * time.Second)
	for {
		_, b := fetch(t, url)
		if strings.Count(string(b), "#EXT-X-STREAM-INF") == 3 {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ladder in the multivariant playlist after 40 s:\n%s", b)
		}
		_, body := fetch(t, base+"video.m3u8")
		msn, part := lastPart(t, string(body))
		fetch(t, base+"video.m3u8?_HLS_msn="+itoa(msn)+"&_HLS_part="+itoa(uint64(part+1)))
	}
}
