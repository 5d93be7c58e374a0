package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/api"
	"github.com/glasscast/glasscast/internal/config"
	"github.com/glasscast/glasscast/internal/live"
	"github.com/glasscast/glasscast/protocol"
)

type apiError struct {
	Error struct {
		Code    protocol.ErrorCode `json:"code"`
		Message string             `json:"message"`
	} `json:"error"`
}

func decodeError(t *testing.T, body []byte) apiError {
	t.Helper()
	var e apiError
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("not a JSON error: %s", body)
	}
	return e
}

func TestAPIAuth(t *testing.T) {
	parallel(t)
	h := start(t, nil)
	for _, auth := range []string{"", "Bearer", "Bearer wrong-token-wrong-token", "Basic " + testToken, testToken} {
		for _, path := range []string{"/api/v1/streams", "/api/v1/streams/anything", "/api/v1/nothing"} {
			req, _ := http.NewRequest("GET", h.base+path, nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("%s with %q: %d, want 401", path, auth, resp.StatusCode)
			}
			if e := decodeError(t, body); e.Error.Code != protocol.APIUnauthorized {
				t.Fatalf("code %q", e.Error.Code)
			}
		}
	}
}

func TestAPIStreamsLifecycle(t *testing.T) {
	parallel(t)
	h := start(t, nil)
	code, body := h.call("POST", "/api/v1/streams", "{}")
	if code != http.StatusCreated {
		t.Fatalf("POST {}: %d %s", code, body)
	}
	var s api.StreamJSON
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatal(err)
	}
	if s.ID == "" || s.Status != live.StatusIdle || s.CreatedAt.IsZero() {
		t.Fatalf("created: %+v", s)
	}
	if !strings.HasPrefix(s.Ingest.RTMPURL, "rtmp://127.0.0.1:") || !strings.Contains(s.Ingest.RTMPURL, "/live/") {
		t.Fatalf("ingest URL %q", s.Ingest.RTMPURL)
	}
	key := s.Ingest.RTMPURL[strings.LastIndex(s.Ingest.RTMPURL, "/")+1:]
	if len(key) < 32 {
		t.Fatalf("stream key %q is shorter than 128 bits of hex", key)
	}
	// Private by default: every viewer URL carries one token for the stream.
	tok := strings.TrimSuffix(strings.TrimPrefix(s.Playback.HLS, h.base+"/hls/"), "/index.m3u8")
	if !strings.HasPrefix(tok, s.ID+".") || s.Public || s.Playback.DASH != h.base+"/dash/"+tok+"/manifest.mpd" ||
		s.Playback.WebRTC != h.base+"/whep/"+tok || s.Playback.Thumbnail != h.base+"/thumb/"+tok+".jpg" {
		t.Fatalf("playback URLs %+v", s.Playback)
	}

	named := h.create("front door")
	if named.Name != "front door" {
		t.Fatalf("name %q", named.Name)
	}
	code, body = h.call("GET", "/api/v1/streams", nil)
	var list struct {
		Streams []api.StreamJSON `json:"streams"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &list) != nil || len(list.Streams) != 2 {
		t.Fatalf("list: %d %s", code, body)
	}
	if list.Streams[0].ID != named.ID {
		t.Fatalf("list is not newest first")
	}

	// Live stats once something publishes.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub := publishSim(ctx, s.Ingest.RTMPURL, nil)
	h.waitPlayable(s.Playback.HLS)
	got := h.get(s.ID)
	if got.Status != live.StatusLive || got.Width != 1280 || got.Height != 720 || got.VideoCodec != "avc1.4d401f" ||
		got.AudioCodec != "mp4a.40.2" || got.FramesIn == 0 || got.Readers < 1 || got.Uptime <= 0 || !got.Playable {
		t.Fatalf("live stream: %+v", got)
	}

	code, body = h.call("DELETE", "/api/v1/streams/"+s.ID, nil)
	if code != http.StatusOK {
		t.Fatalf("delete: %d %s", code, body)
	}
	<-pub
	if got := h.get(s.ID); got.Status != live.StatusEnded {
		t.Fatalf("after delete: %s", got.Status)
	}
	if code, _ := fetch(t, s.Playback.HLS); code != http.StatusNotFound {
		t.Fatalf("HLS after delete: %d", code)
	}
}

func TestAPIErrors(t *testing.T) {
	parallel(t)
	h := start(t, nil)
	cases := []struct {
		name, method, path string
		body               any
		status             int
		code               protocol.ErrorCode
	}{
		{"bad JSON", "POST", "/api/v1/streams", "{", 400, protocol.APIBadRequest},
		{"wrong type", "POST", "/api/v1/streams", `{"name": 7}`, 400, protocol.APIBadRequest},
		{"unknown field", "POST", "/api/v1/streams", `{"nmae": "x"}`, 400, protocol.APIBadRequest},
		{"trailing data", "POST", "/api/v1/streams", `{} {}`, 400, protocol.APIBadRequest},
		{"long name", "POST", "/api/v1/streams", map[string]string{"name": strings.Repeat("x", api.MaxNameLength+1)}, 400, protocol.APIBadRequest},
		{"control characters", "POST", "/api/v1/streams", map[string]string{"name": "a\x00b"}, 400, protocol.APIBadRequest},
		{"too large", "POST", "/api/v1/streams", `{"name":"` + strings.Repeat("x", api.MaxBodyBytes) + `"}`, 413, protocol.APITooLarge},
		{"unknown stream", "GET", "/api/v1/streams/nope", nil, 404, protocol.APINotFound},
		{"delete unknown", "DELETE", "/api/v1/streams/nope", nil, 404, protocol.APINotFound},
		{"unknown endpoint", "GET", "/api/v1/nothing", nil, 404, protocol.APINotFound},
		{"wrong method", "PUT", "/api/v1/streams", "{}", 405, protocol.APIMethodNotAllowed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := h.call(tc.method, tc.path, tc.body)
			if code != tc.status {
				t.Fatalf("%d %s, want %d", code, body, tc.status)
			}
			if e := decodeError(t, body); e.Error.Code != tc.code {
				t.Fatalf("code %q, want %q", e.Error.Code, tc.code)
			}
		})
	}
	// An empty body is the same as {}.
	if code, body := h.call("POST", "/api/v1/streams", nil); code != http.StatusCreated {
		t.Fatalf("POST without a body: %d %s", code, body)
	}
}

func TestMaxStreams(t *testing.T) {
	parallel(t)
	h := start(t, func(c *config.Config) { c.MaxStreams = 2 })
	h.create("a")
	b := h.create("b")
	if code, body := h.call("POST", "/api/v1/streams", "{}"); code != http.StatusTooManyRequests {
		t.Fatalf("third stream: %d %s", code, body)
	}
	h.call("DELETE", "/api/v1/streams/"+b.ID, nil)
	if code, body := h.call("POST", "/api/v1/streams", "{}"); code != http.StatusCreated {
		t.Fatalf("after deleting one: %d %s", code, body)
	}
}

func TestWatchPageAndStatus(t *testing.T) {
	parallel(t)
	h := start(t, nil)
	s := h.create("page")
	code, body := fetch(t, s.Playback.Watch)
	if code != http.StatusOK || !strings.Contains(string(body), strings.TrimPrefix(s.Playback.HLS, h.base)) || !strings.Contains(string(body), "hls.min.js") {
		t.Fatalf("watch page: %d\n%s", code, body)
	}
	code, body = fetch(t, h.base+"/assets/vendor/hls.js/hls.min.js")
	if code != http.StatusOK || len(body) < 100000 {
		t.Fatalf("hls.js: %d, %d bytes", code, len(body))
	}
	code, body = fetch(t, s.Playback.Watch+"/status")
	var st struct {
		Status string `json:"status"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &st) != nil || st.Status != "idle" {
		t.Fatalf("status: %d %s", code, body)
	}
	if strings.Contains(string(body), "live/") {
		t.Fatal("the public status leaks the ingest URL")
	}
}

// TestShutdownReleasesEverything stops a server while a publisher pushes,
// a player holds a blocking playlist request and another waits for a part:
// Run returns, every request is answered, and no goroutine is left (the
// harness checks with goleak).
func TestShutdownReleasesEverything(t *testing.T) {
	h := start(t, nil)
	s := h.create("shutdown")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub := publishSim(ctx, s.Ingest.RTMPURL, nil)
	h.waitPlayable(s.Playback.HLS)
	base := strings.TrimSuffix(s.Playback.HLS, "index.m3u8")
	_, pl := fetch(t, base+"video.m3u8")
	msn, _ := lastPart(t, string(pl))
	hint := hintRE.FindStringSubmatch(string(pl))
	if hint == nil {
		t.Fatalf("no preload hint:\n%s", pl)
	}

	answered := make(chan int, 2)
	for _, u := range []string{
		base + "video.m3u8?_HLS_msn=" + itoa(msn+1) + "&_HLS_part=5",
		base + hint[1],
	} {
		go func() {
			resp, err := http.Get(u)
			if err != nil {
				answered <- -1
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			answered <- resp.StatusCode
		}()
	}
	h.stop()
	for range 2 {
		select {
		case <-answered:
		case <-time.After(5 * time.Second):
			t.Fatal("a held request was not answered at shutdown")
		}
	}
	select {
	case <-pub:
	case <-time.After(5 * time.Second):
		t.Fatal("the publisher was not disconnected at shutdown")
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// TestEventsStream reads the dashboard's event stream: refused without the
// admin token; with it, snapshots that follow a stream from idle to live.
func TestEventsStream(t *testing.T) {
	parallel(t)
	h := start(t, nil)
	resp, err := http.Get(h.base + "/api/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("events without a token: %d", resp.StatusCode)
	}

	s := h.create("events")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", h.base+"/api/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	statuses := []string{}
	published := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var snap api.Snapshot
		if err := json.Unmarshal([]byte(line), &snap); err != nil {
			t.Fatalf("snapshot %q: %v", line, err)
		}
		if len(snap.Streams) != 1 || snap.Streams[0].ID != s.ID {
			t.Fatalf("snapshot streams: %+v", snap.Streams)
		}
		st := snap.Streams[0]
		if len(statuses) == 0 || statuses[len(statuses)-1] != st.Status.String() {
			statuses = append(statuses, st.Status.String())
		}
		if !published {
			published = true
			publishSim(ctx, s.Ingest.RTMPURL, nil)
		}
		if st.Status == live.StatusLive && st.Width == 1280 && st.Bitrate > 0 {
			t.Logf("statuses seen: %v", statuses)
			return
		}
	}
	t.Fatalf("the event stream ended (%v) before the stream showed live; statuses %v", sc.Err(), statuses)
}

// TestDemoStream runs glasscast as a newcomer would, with the demo: the
// dashboard links the demo stream once it plays, and it plays in ffprobe.
func TestDemoStream(t *testing.T) {
	parallel(t)
	h := start(t, func(c *config.Config) { c.Demo = true })
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var grant string
	for grant == "" {
		resp, err := http.Get(h.base + "/")
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if _, rest, ok := strings.Cut(string(page), `href="/watch/`); ok {
			grant, _, _ = strings.Cut(rest, `"`)
			break
		}
		select {
		case <-deadline:
			t.Fatalf("the dashboard never linked the demo stream:\n%s", page)
		case <-tick.C:
		}
	}
	// The link carries the demo's playback token, and it plays.
	id, _, _ := strings.Cut(grant, ".")
	s := h.get(id)
	if s.Status != live.StatusLive {
		t.Fatalf("the demo stream is %s", s.Status)
	}
	streams := probe(t, h.base+"/hls/"+grant+"/index.m3u8")
	v, a := findStream(streams, "video"), findStream(streams, "audio")
	if v == nil || a == nil || v.Width == 0 {
		t.Fatalf("the demo stream plays %s", describe(streams))
	}
	t.Logf("demo stream %s: %s", id, describe(streams))
}

// TestViewerCounts: a client that fetched a stream's LL-HLS or DASH media
// in the last seconds is a viewer of it; playlists alone are not.
func TestViewerCounts(t *testing.T) {
	parallel(t)
	h := start(t, nil)
	s := h.create("viewers")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	publishSim(ctx, s.Ingest.RTMPURL, nil)
	h.waitPlayable(s.Playback.HLS)
	if v := h.get(s.ID).Viewers; v != (api.Viewers{}) {
		t.Fatalf("viewers before anyone watched: %+v", v)
	}
	probe(t, s.Playback.HLS)
	if v := h.get(s.ID).Viewers; v.LLHLS != 1 || v.DASH != 0 || v.WebRTC != 0 {
		t.Fatalf("after ffprobe read the LL-HLS: %+v", v)
	}
	probe(t, s.Playback.DASH)
	if v := h.get(s.ID).Viewers; v.LLHLS != 1 || v.DASH != 1 {
		t.Fatalf("after ffprobe read the DASH: %+v", v)
	}
	resp, err := http.Get(s.Playback.Watch + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct{ Viewers int }
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || st.Viewers != 2 {
		t.Fatalf("the watch page's status: %+v %v", st, err)
	}
}

// TestViewerSessionsBehindOneAddress: players behind one address (an
// office, a CDN) with the same User-Agent count as the players they are:
// each LL-HLS player gets a session in its media playlist URIs, each DASH
// player one in its manifest's Location; a player that stops leaves the
// count after the window.
func TestViewerSessionsBehindOneAddress(t *testing.T) {
	parallel(t)
	slow(t)
	h := start(t, nil)
	s := h.create("an office")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	publishSim(ctx, s.Ingest.RTMPURL, nil)
	h.waitPlayable(s.Playback.HLS)

	const hlsPlayers, dashPlayers = 12, 3
	var wg sync.WaitGroup
	defer wg.Wait()
	pctx, stopPlayers := context.WithCancel(ctx)
	defer stopPlayers()
	for range hlsPlayers {
		c := quietClient(t, s.Playback.HLS)
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-pctx.Done()
			c.Close()
			c.Wait2()
		}()
	}
	// A DASH player as dash.js is one: it refreshes the manifest every
	// minimumUpdatePeriod (1 s), at the manifest's Location.
	for range dashPlayers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url := s.Playback.DASH
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				req, _ := http.NewRequestWithContext(pctx, "GET", url, nil)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if _, loc, ok := strings.Cut(string(body), "<Location>"); ok {
					loc, _, _ = strings.Cut(loc, "</Location>")
					base := url[:strings.LastIndexByte(url, '/')+1]
					url = base + loc
				}
				select {
				case <-pctx.Done():
					return
				case <-tick.C:
				}
			}
		}()
	}
	snap := h.waitSnapshot(30*time.Second, func(snap api.Snapshot) bool {
		v := snap.Streams[0].Viewers
		return v.LLHLS == hlsPlayers && v.DASH == dashPlayers
	})
	t.Logf("viewers from 127.0.0.1: %+v", snap.Streams[0].Viewers)
	stopPlayers()
	wg.Wait()
	h.waitSnapshot(20*time.Second, func(snap api.Snapshot) bool {
		return snap.Streams[0].Viewers == api.Viewers{}
	})
}
