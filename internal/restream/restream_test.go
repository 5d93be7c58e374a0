package restream

import (
	"strings"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/sim"
	"github.com/glasscast/glasscast/internal/stream"
)

func TestProfileFor(t *testing.T) {
	for url, want := range map[string]string{
		"rtmp://a.rtmp.youtube.com/live2/KEY":                     "youtube",
		"rtmps://a.rtmps.youtube.com:443/live2/KEY":               "youtube",
		"rtmp://live.twitch.tv/app/KEY":                           "twitch",
		"rtmps://ingest.global-contribute.live-video.net/app/KEY": "twitch",
		"rtmps://live-api-s.facebook.com:443/rtmp/KEY":            "facebook",
		"rtmp://va.pscp.tv:80/x/KEY":                              "x",
		"rtmp://example.com/live/KEY":                             "",
		"rtmp://notyoutube.com/live/KEY":                          "",
	} {
		p, err := ProfileFor("", url)
		if err != nil || profName(p) != want {
			t.Errorf("%s: %q %v, want %q", url, profName(p), err, want)
		}
	}
	if p, _ := ProfileFor("none", "rtmp://a.rtmp.youtube.com/live2/KEY"); p != nil {
		t.Error("profile none still checks")
	}
	if _, err := ProfileFor("myspace", "rtmp://h/a/k"); err == nil {
		t.Error("an unknown profile was taken")
	}
}

func TestCheck(t *testing.T) {
	v := testTracks(t).Video
	good := stream.Stats{Tracks: &stream.Tracks{Video: v}, Bitrate: 2_628_000, AudioBitrate: 128_000,
		KeyInterval: 2 * time.Second, FrameDurMin: 33 * time.Millisecond, FrameDurMax: 34 * time.Millisecond}
	if got := Profiles["youtube"].Check(good); len(got) != 0 {
		t.Fatalf("a good source breaks %v", got)
	}
	bad := good
	bad.KeyInterval = 4 * time.Second
	bad.FrameDurMax = 60 * time.Millisecond
	bad.Bitrate = 7_128_000
	got := Profiles["twitch"].Check(bad)
	if len(got) != 3 {
		t.Fatalf("keyframes every 4 s, variable frame rate and 7 Mbit/s on Twitch: %v", got)
	}
	for _, g := range got {
		if g.Track != "video" {
			t.Fatalf("violation on %s: %v", g.Track, g)
		}
	}
}

func TestRedactAndSameURL(t *testing.T) {
	if got := Redact("rtmp://a.rtmp.youtube.com/live2/secret-key"); got != "rtmp://a.rtmp.youtube.com/live2/…" || strings.Contains(got, "secret") {
		t.Fatalf("redact: %q", got)
	}
	if !sameURL("RTMP://Host.example/app/key/", "rtmp://host.example/app/key") {
		t.Fatal("the same destination twice is not the same")
	}
	if sameURL("rtmp://h/app/KEY", "rtmp://h/app/key") {
		t.Fatal("stream keys differing in case are one destination")
	}
}

// testTracks are the test clip's tracks (H.264 and AAC-LC).
func testTracks(t testing.TB) *stream.Tracks {
	tracks, err := sim.DefaultTracks()
	if err != nil {
		t.Fatal(err)
	}
	return tracks
}
