package server_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2"
	"github.com/bluenviron/gohlslib/v2/pkg/codecs"

	"github.com/glasscast/glasscast/internal/api"
	"github.com/glasscast/glasscast/internal/config"
	"github.com/glasscast/glasscast/internal/hls"
	"github.com/glasscast/glasscast/internal/live"
	"github.com/glasscast/glasscast/internal/sei"
	"github.com/glasscast/glasscast/internal/sim"
)

// lastPart returns the newest part a media playlist lists.
func lastPart(t *testing.T, playlist string) (uint64, int) {
	t.Helper()
	msn, part := hls.LastPart(playlist)
	if part < 0 {
		t.Fatalf("no parts in playlist:\n%s", playlist)
	}
	return msn, part
}

var hintRE = regexp.MustCompile(`#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^"]+)"`)

// checkLLHLS asserts what a low-latency player needs from a stream's
// playlists, and that blocking reloads and preload hints work.
func checkLLHLS(t *testing.T, s api.StreamJSON, audio bool) {
	t.Helper()
	base := strings.TrimSuffix(s.Playback.HLS, "index.m3u8")
	code, body := fetch(t, base+"video.m3u8")
	if code != http.StatusOK {
		t.Fatalf("video playlist: %d", code)
	}
	pl := string(body)
	for _, tag := range []string{"#EXT-X-PART:", "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES", "#EXT-X-PRELOAD-HINT:TYPE=PART", "#EXT-X-PART-INF:PART-TARGET=", "#EXT-X-MAP:URI="} {
		if !strings.Contains(pl, tag) {
			t.Fatalf("video playlist lacks %s:\n%s", tag, pl)
		}
	}
	if audio {
		if code, _ := fetch(t, base+"audio.m3u8"); code != http.StatusOK {
			t.Fatalf("audio playlist: %d", code)
		}
	}

	// A blocking reload for the part after the newest one waits for it.
	msn, part := lastPart(t, pl)
	q := fmt.Sprintf("%svideo.m3u8?_HLS_msn=%d&_HLS_part=%d", base, msn, part+1)
	code, body = fetch(t, q)
	if code != http.StatusOK {
		t.Fatalf("blocking reload %s: %d %s", q, code, body)
	}
	if m2, p2 := lastPart(t, string(body)); m2 < msn || (m2 == msn && p2 <= part) {
		t.Fatalf("blocking reload for part %d.%d returned a playlist ending at %d.%d:\n%s", msn, part+1, m2, p2, body)
	}

	// The preload hint is answered with the part once it exists.
	m := hintRE.FindStringSubmatch(string(body))
	if m == nil {
		t.Fatalf("no preload hint:\n%s", body)
	}
	resp, err := http.Get(base + m[1])
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 8)
	n, _ := resp.Body.Read(data)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || n < 8 || string(data[4:8]) != "moof" {
		t.Fatalf("preload hint %s: %d %q", m[1], resp.StatusCode, data[:n])
	}
	if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "max-age") {
		t.Fatalf("part Cache-Control %q", cc)
	}
	if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatal("no CORS header on a part")
	}
}

// quietClient is gohlslib's client without its progress log.
func quietClient(t *testing.T, url string) *gohlslib.Client {
	return &gohlslib.Client{
		URI:                       url,
		OnDownloadPrimaryPlaylist: func(string) {},
		OnDownloadStreamPlaylist:  func(string) {},
		OnDownloadSegment:         func(string) {},
		OnDownloadPart:            func(string) {},
		OnDecodeError:             func(err error) { t.Logf("HLS client: %v", err) },
	}
}

// checkProbe asserts what ffprobe reads from the HLS and DASH URLs.
func checkProbe(t *testing.T, s api.StreamJSON, width, height, channels int) {
	t.Helper()
	for _, u := range []string{s.Playback.HLS, s.Playback.DASH} {
		streams := probe(t, u)
		v, a := findStream(streams, "video"), findStream(streams, "audio")
		if v == nil || v.CodecName != "h264" || v.Width != width || v.Height != height {
			t.Fatalf("%s: video %s, want h264 %dx%d", u, describe(streams), width, height)
		}
		if a == nil || a.CodecName != "aac" || a.Channels != channels {
			t.Fatalf("%s: audio %s, want aac with %d channel(s)", u, describe(streams), channels)
		}
	}
}

// readHLS reads a stream with gohlslib's client until it has seen n video
// frames, checking that their timestamps increase, and returns how many
// carried our SEI send time and the latest latency seen.
func readHLS(t *testing.T, url string, n int, within time.Duration) (stamped int, latency time.Duration) {
	t.Helper()
	var mu sync.Mutex
	frames := 0
	var last int64 = -1 << 62
	var bad error
	done := make(chan struct{})
	c := quietClient(t, url)
	c.OnTracks = func(tracks []*gohlslib.Track) error {
		for _, tr := range tracks {
			if _, ok := tr.Codec.(*codecs.H264); ok {
				c.OnDataH26x(tr, func(pts, dts int64, au [][]byte) {
					mu.Lock()
					defer mu.Unlock()
					if frames >= n {
						return
					}
					if dts <= last && bad == nil {
						bad = fmt.Errorf("DTS went from %d to %d", last, dts)
					}
					last = dts
					if ts, ok := sei.Find(au); ok {
						stamped++
						latency = time.Since(ts)
					}
					frames++
					if frames == n {
						close(done)
					}
				})
			}
		}
		return nil
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() { ended <- c.Wait2() }()
	defer func() { c.Close(); <-ended }()
	select {
	case <-done:
	case err := <-ended:
		ended <- err
		t.Fatalf("HLS client ended: %v", err)
	case <-time.After(within):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("HLS client got %d of %d frames in %v", frames, n, within)
	}
	mu.Lock()
	defer mu.Unlock()
	if bad != nil {
		t.Fatal(bad)
	}
	return stamped, latency
}

func TestFFmpegToHLSAndDASH(t *testing.T) {
	parallel(t)
	h := start(t, nil)
	s := h.create("ffmpeg")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	publishFFmpeg(t, ctx, s.Ingest.RTMPURL)
	h.waitPlayable(s.Playback.HLS)

	got := h.get(s.ID)
	if got.Status != live.StatusLive || got.VideoCodec == "" || got.AudioCodec != "mp4a.40.2" || got.Width != 1280 || got.AudioChannels != 1 {
		t.Fatalf("stream after publish: %+v", got)
	}
	checkLLHLS(t, s, true)
	checkProbe(t, s, 1280, 720, 1)
	readHLS(t, s.Playback.HLS, 45, 20*time.Second)
}

func TestSimSourceToHLSAndDASH(t *testing.T) {
	parallel(t)
	h := start(t, nil)
	s := h.create("sim")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub := publishSim(ctx, s.Ingest.RTMPURL, nil)
	h.waitPlayable(s.Playback.HLS)

	checkLLHLS(t, s, true)
	checkProbe(t, s, 1280, 720, 1)
	stamped, lat := readHLS(t, s.Playback.HLS, 60, 20*time.Second)
	if stamped != 60 {
		t.Fatalf("%d of 60 frames read over HLS carry the source's send time", stamped)
	}
	t.Logf("SEI latency over LL-HLS via gohlslib's client (segments, not parts): %v", lat)

	// The DASH manifest describes what the source sends.
	code, mpd := fetch(t, s.Playback.DASH)
	if code != http.StatusOK {
		t.Fatalf("manifest: %d", code)
	}
	for _, want := range []string{`type="dynamic"`, `<SegmentTimeline>`, `media="video-$Number$.m4s"`, `value="1"`, `audioSamplingRate="44100"`, `width="1280"`} {
		if !strings.Contains(string(mpd), want) {
			t.Fatalf("manifest lacks %s:\n%s", want, mpd)
		}
	}
	checkLowLatencyDASH(t, s.Playback.DASH)
	cancel()
	<-pub
}

// checkLowLatencyDASH: a live manifest lists the video segment in progress,
// available early (availabilityTimeOffset); fetched at once it streams as
// it is made, and what streamed is the segment, byte for byte, as served
// once complete.
func checkLowLatencyDASH(t *testing.T, manifest string) {
	t.Helper()
	_, body := fetch(t, manifest)
	mpd := string(body)
	video := mpd[strings.Index(mpd, `contentType="video"`):]
	video = video[:strings.Index(video, "</AdaptationSet>")]
	if !strings.Contains(video, `availabilityTimeComplete="false"`) || !strings.Contains(video, `availabilityTimeOffset="`) {
		t.Fatalf("the live manifest does not offer the segment in progress:\n%s", mpd)
	}
	_, start, _ := strings.Cut(video, `startNumber="`)
	start, _, _ = strings.Cut(start, `"`)
	first, err := strconv.Atoi(start)
	if err != nil {
		t.Fatal(err)
	}
	last := first + strings.Count(video, "<S ") - 1
	url := manifest[:strings.LastIndexByte(manifest, '/')+1] + fmt.Sprintf("video-%d.m4s", last)
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	streamed, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the segment in progress: %d %v", resp.StatusCode, err)
	}
	code, whole := fetch(t, url)
	if code != http.StatusOK || !bytes.Equal(streamed, whole) || len(whole) < 16 || string(whole[4:8]) != "moof" {
		t.Fatalf("the segment in progress streamed %d bytes (content length %d); complete it is %d bytes (%d)",
			len(streamed), resp.ContentLength, len(whole), code)
	}
	t.Logf("segment %d streamed while made: %d bytes, content length %d (-1: chunked)", last, len(streamed), resp.ContentLength)
}

func TestVideoOnlyAndAudioOnly(t *testing.T) {
	parallel(t)
	h := start(t, nil)
	clip, err := sim.LoadClip(sim.DefaultClip)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	v := h.create("video only")
	publishSim(ctx, v.Ingest.RTMPURL, clip.WithoutAudio())
	pl := h.waitPlayable(v.Playback.HLS)
	if strings.Contains(pl, "audio") || strings.Contains(pl, "mp4a") {
		t.Fatalf("video-only multivariant mentions audio:\n%s", pl)
	}
	streams := probe(t, v.Playback.DASH)
	if findStream(streams, "audio") != nil || findStream(streams, "video") == nil {
		t.Fatalf("video-only DASH: %s", describe(streams))
	}

	a := h.create("audio only")
	publishSim(ctx, a.Ingest.RTMPURL, clip.WithoutVideo())
	pl = h.waitPlayable(a.Playback.HLS)
	if !strings.Contains(pl, "audio.m3u8") || strings.Contains(pl, "avc1") {
		t.Fatalf("audio-only multivariant:\n%s", pl)
	}
	for _, u := range []string{a.Playback.HLS, a.Playback.DASH} {
		streams := probe(t, u)
		if findStream(streams, "video") != nil || findStream(streams, "audio") == nil {
			t.Fatalf("audio-only %s: %s", u, describe(streams))
		}
	}
}

func TestReconnectWindow(t *testing.T) {
	parallel(t)
	slow(t)
	h := start(t, func(c *config.Config) { c.ReconnectWindow = 3 * time.Second })
	s := h.create("glasses")
	first, cancelFirst := context.WithCancel(context.Background())
	pub := publishSim(first, s.Ingest.RTMPURL, nil)
	h.waitPlayable(s.Playback.HLS)

	// A reader follows the stream across the drop.
	var mu sync.Mutex
	frames, epochFrames := 0, 0
	reconnected := false
	c := quietClient(t, s.Playback.HLS)
	c.OnTracks = func(tracks []*gohlslib.Track) error {
		for _, tr := range tracks {
			if _, ok := tr.Codec.(*codecs.H264); ok {
				c.OnDataH26x(tr, func(_, _ int64, _ [][]byte) {
					mu.Lock()
					defer mu.Unlock()
					frames++
					if reconnected {
						epochFrames++
					}
				})
			}
		}
		return nil
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	clientEnded := make(chan error, 1)
	go func() { clientEnded <- c.Wait2() }()
	defer func() { c.Close(); <-clientEnded }()

	cancelFirst()
	<-pub
	h.waitStatus(s.ID, live.StatusReconnecting, 10*time.Second)
	if code, _ := fetch(t, s.Playback.HLS); code != http.StatusOK {
		t.Fatalf("HLS during the reconnect window: %d", code)
	}
	if code, _ := fetch(t, s.Playback.DASH); code != http.StatusOK {
		t.Fatalf("DASH during the reconnect window: %d", code)
	}
	mu.Lock()
	reconnected = true
	mu.Unlock()

	second, cancelSecond := context.WithCancel(context.Background())
	pub = publishSim(second, s.Ingest.RTMPURL, nil)
	h.waitStatus(s.ID, live.StatusLive, 10*time.Second)
	if got := h.get(s.ID); got.Playback != s.Playback || got.Ingest != s.Ingest {
		t.Fatalf("URLs changed across the reconnect: %+v", got)
	}

	// The playlist marks the discontinuity, and the reader keeps going.
	// Each blocking reload returns when the next part exists.
	base := strings.TrimSuffix(s.Playback.HLS, "index.m3u8")
	deadline := time.Now().Add(20 * time.Second)
	_, body := fetch(t, base+"video.m3u8")
	for {
		mu.Lock()
		n := epochFrames
		mu.Unlock()
		if strings.Contains(string(body), "#EXT-X-DISCONTINUITY\n") && n >= 30 {
			break
		}
		select {
		case err := <-clientEnded:
			clientEnded <- err
			t.Fatalf("the HLS reader ended: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			_, now := fetch(t, base+"video.m3u8")
			t.Fatalf("after the reconnect the reader got %d frames; playlist:\n%s\nnow:\n%s", n, body, now)
		}
		msn, part := lastPart(t, string(body))
		var code int
		code, body = fetch(t, fmt.Sprintf("%svideo.m3u8?_HLS_msn=%d&_HLS_part=%d", base, msn, part+1))
		if code != http.StatusOK {
			t.Logf("blocking reload for %d.%d: %d %s", msn, part+1, code, body)
		}
	}

	// DASH keeps one timeline across the drop: once the first segment after
	// it is complete, it says where it starts (an explicit t).
	for {
		i := strings.Index(string(body), "#EXT-X-DISCONTINUITY\n")
		if i < 0 {
			t.Fatalf("the discontinuity left the playlist:\n%s", body)
		}
		if strings.Contains(string(body)[i:], "#EXTINF") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no complete segment after the reconnect:\n%s", body)
		}
		msn, part := lastPart(t, string(body))
		_, body = fetch(t, fmt.Sprintf("%svideo.m3u8?_HLS_msn=%d&_HLS_part=%d", base, msn, part+1))
	}
	code, mpd := fetch(t, s.Playback.DASH)
	if code != http.StatusOK {
		t.Fatalf("manifest after the reconnect: %d", code)
	}
	if video := string(mpd)[strings.Index(string(mpd), `contentType="video"`):]; strings.Count(video[:strings.Index(video, "</AdaptationSet>")], `<S t="`) < 2 {
		t.Fatalf("the manifest does not mark the gap of the reconnect:\n%s", mpd)
	}
	streams := probe(t, s.Playback.DASH)
	if findStream(streams, "video") == nil || findStream(streams, "audio") == nil {
		t.Fatalf("DASH after the reconnect: %s", describe(streams))
	}

	// Dropped for longer than the window: the stream ends and its URLs go.
	cancelSecond()
	<-pub
	h.waitStatus(s.ID, live.StatusReconnecting, 10*time.Second)
	h.waitStatus(s.ID, live.StatusEnded, 10*time.Second)
	for _, u := range []string{s.Playback.HLS, s.Playback.DASH, strings.TrimSuffix(s.Playback.HLS, "index.m3u8") + "video-init-1.mp4"} {
		if code, _ := fetch(t, u); code != http.StatusNotFound {
			t.Fatalf("%s after the window: %d, want 404", u, code)
		}
	}
	if err := (&sim.Source{Loops: 1}).Publish(context.Background(), s.Ingest.RTMPURL); err == nil {
		t.Fatal("publishing to an ended stream's key succeeded")
	}
}

func TestDeleteEndsStream(t *testing.T) {
	parallel(t)
	h := start(t, nil)
	s := h.create("to delete")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub := publishSim(ctx, s.Ingest.RTMPURL, nil)
	h.waitPlayable(s.Playback.HLS)

	code, body := h.call("DELETE", "/api/v1/streams/"+s.ID, nil)
	if code != http.StatusOK {
		t.Fatalf("delete: %d %s", code, body)
	}
	select {
	case err := <-pub:
		if err == nil {
			t.Fatal("the publisher ended cleanly; want it cut off")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the publisher was not disconnected")
	}
	if got := h.get(s.ID); got.Status != live.StatusEnded {
		t.Fatalf("status after delete: %s", got.Status)
	}
	for _, u := range []string{s.Playback.HLS, s.Playback.DASH} {
		if code, _ := fetch(t, u); code != http.StatusNotFound {
			t.Fatalf("%s after delete: %d", u, code)
		}
	}
}

func TestSecondPublisherReplacesFirst(t *testing.T) {
	parallel(t)
	h := start(t, nil)
	s := h.create("takeover")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := publishSim(ctx, s.Ingest.RTMPURL, nil)
	h.waitPlayable(s.Playback.HLS)
	second := publishSim(ctx, s.Ingest.RTMPURL, nil)
	select {
	case err := <-first:
		if err == nil {
			t.Fatal("first publisher ended cleanly")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the first publisher was not replaced")
	}
	if got := h.get(s.ID); got.Status != live.StatusLive {
		t.Fatalf("status after the takeover: %s", got.Status)
	}
	readHLS(t, s.Playback.HLS, 30, 20*time.Second)
	cancel()
	<-second
}

func TestWrongKeyRefused(t *testing.T) {
	parallel(t)
	h := start(t, nil)
	s := h.create("x")
	bad := s.Ingest.RTMPURL[:strings.LastIndex(s.Ingest.RTMPURL, "/")+1] + "0123456789abcdef0123456789abcdef01234567"
	err := (&sim.Source{Loops: 1}).Publish(context.Background(), bad)
	if err == nil || !strings.Contains(err.Error(), "unknown or ended stream key") {
		t.Fatalf("publish with a wrong key: %v", err)
	}
	if got := h.get(s.ID); got.Status != live.StatusIdle {
		t.Fatalf("the stream changed: %s", got.Status)
	}
}

func TestUnknownStreamAndFile404(t *testing.T) {
	parallel(t)
	h := start(t, nil)
	pub := start(t, func(c *config.Config) { c.PublicPlayback = true })
	for _, p := range []string{"/hls/nope/index.m3u8", "/dash/nope/manifest.mpd", "/watch/nope", "/thumb/nope.jpg", "/recordings/nope.mp4"} {
		// Private playback asks for a token whether the stream exists or not;
		// with playback public, an unknown stream is just not there.
		if code, _ := fetch(t, h.base+p); code != http.StatusUnauthorized {
			t.Fatalf("%s: %d", p, code)
		}
		if code, _ := fetch(t, pub.base+p); code != http.StatusNotFound {
			t.Fatalf("%s on a public server: %d", p, code)
		}
	}
	s := h.create("files")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	publishSim(ctx, s.Ingest.RTMPURL, nil)
	h.waitPlayable(s.Playback.HLS)
	base := strings.TrimSuffix(s.Playback.HLS, "index.m3u8")
	for _, f := range []string{"video-999999.m4s", "video-init-7.mp4", "nothing.txt", "video-p999999.m4s", "subtitles.m3u8"} {
		if code, _ := fetch(t, base+f); code != http.StatusNotFound {
			t.Fatalf("%s: %d, want 404", f, code)
		}
	}
	resp, err := http.Get(s.Playback.HLS)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "no-cache") {
		t.Fatalf("playlist Cache-Control %q", cc)
	}
}

func TestRefusedCodecShowsInStatus(t *testing.T) {
	parallel(t)
	h := start(t, nil)
	s := h.create("mp3")
	needTool(t, "ffmpeg")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "sine", "-c:a", "libmp3lame", "-ar", "44100", "-t", "5", "-f", "flv", s.Ingest.RTMPURL)
	if err := cmd.Run(); err == nil {
		t.Fatal("ffmpeg published MP3 without an error")
	}
	got := h.get(s.ID)
	if got.Status != live.StatusIdle || !strings.Contains(got.LastError, "MP3") || !strings.Contains(got.LastError, "AAC") {
		t.Fatalf("after an MP3 publish: status %s, lastError %q", got.Status, got.LastError)
	}
}
