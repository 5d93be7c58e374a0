package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/api"
)

type playResult struct {
	Player     string   `json:"player"`
	Played     float64  `json:"played"`
	Width      int      `json:"width"`
	Height     int      `json:"height"`
	Audio      bool     `json:"audio"`
	Protocol   string   `json:"protocol"`
	LatencyMs  *float64 `json:"latencyMs"`
	Fallbacks  []string `json:"fallbacks"`
	Status     string   `json:"status"`
	Recording  string   `json:"recording"`
	Error      string   `json:"error"`
	PageErrors []string `json:"pageErrors"`
	// The dashboard's result.
	Rejected *string  `json:"rejected"`
	Row      []string `json:"row"`
	Summary  string   `json:"summary"`
}

// needBrowser fails the test unless Chromium and the browser scripts'
// packages are there.
func needBrowser(t testing.TB) {
	t.Helper()
	slow(t)
	needTool(t, "node")
	if _, err := os.Stat(filepath.Join(browserDir(t), "node_modules", "playwright-core")); err != nil {
		t.Fatal("the browser test's packages are missing: run scripts/test, which installs them")
	}
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("Chromium is required at %s: run scripts/test, which installs it", chromium)
	}
}

func browserDir(t testing.TB) string {
	dir, err := filepath.Abs("../../tests/browser")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// runBrowserScript runs one of tests/browser's scripts with the base URL,
// the stream, the screenshots' directory and the path element of the
// stream's watch page (its token), and returns its output (a JSON line per
// result) and its log.
func runBrowserScript(t testing.TB, ctx context.Context, script, base string, s api.StreamJSON, extra ...string) ([]byte, string) {
	t.Helper()
	artifacts, err := filepath.Abs("../../test-artifacts/browser")
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(artifacts, 0o755)
	runCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	_, watch, _ := strings.Cut(s.Playback.Watch, "/watch/") // the stream's page on base (any node's URL works)
	cmd := exec.CommandContext(runCtx, "node", append([]string{filepath.Join(browserDir(t), script), base, s.ID, artifacts, watch}, extra...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Env = append(os.Environ(), "GLASSCAST_TOKEN="+testToken)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, stderr.String())
	}
	return out, stderr.String()
}

// failoverPage is failover.mjs running: the watch page open over WebRTC,
// hls.js and dash.js, playing.
type failoverPage struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr *bytes.Buffer
}

// openFailoverPages starts failover.mjs on base's watch page of s and waits
// until every player plays.
func openFailoverPages(t *testing.T, ctx context.Context, base string, s api.StreamJSON) *failoverPage {
	t.Helper()
	needBrowser(t)
	artifacts, _ := filepath.Abs("../../test-artifacts/browser")
	os.MkdirAll(artifacts, 0o755)
	_, watch, _ := strings.Cut(s.Playback.Watch, "/watch/")
	cmd := exec.CommandContext(ctx, "node", filepath.Join(browserDir(t), "failover.mjs"), base, s.ID, artifacts, watch)
	f := &failoverPage{cmd: cmd, lines: make(chan string, 16), stderr: &bytes.Buffer{}}
	cmd.Stderr = f.stderr
	var err error
	if f.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(f.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() { f.stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
	select {
	case line, ok := <-f.lines:
		if !ok || !strings.Contains(line, `"ready":true`) {
			cmd.Wait()
			t.Fatalf("failover.mjs: %q\n%s", line, f.stderr.String())
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("the players did not start within 90 s\n%s", f.stderr.String())
	}
	return f
}

// failoverResult is what one player saw after the node died.
type failoverResult struct {
	Player         string   `json:"player"`
	PlayedAfter    float64  `json:"playedAfter"`
	LongestStallMs float64  `json:"longestStallMs"`
	Reloaded       bool     `json:"reloaded"`
	Protocol       string   `json:"protocol"`
	Status         string   `json:"status"`
	PageErrors     []string `json:"pageErrors"`
	Console        []string `json:"console"` // the page's last errors and warnings
}

// killed tells the pages the node died now; results waits for what each
// player saw.
func (f *failoverPage) killed() { io.WriteString(f.stdin, "go\n") }

func (f *failoverPage) results(t *testing.T) map[string]failoverResult {
	t.Helper()
	got := map[string]failoverResult{}
	deadline := time.After(90 * time.Second)
	for len(got) < 3 {
		select {
		case line, ok := <-f.lines:
			if !ok {
				t.Fatalf("failover.mjs ended with %d results\n%s", len(got), f.stderr.String())
			}
			var r failoverResult
			if json.Unmarshal([]byte(line), &r) == nil && r.Player != "" {
				got[r.Player] = r
			}
		case <-deadline:
			t.Fatalf("failover.mjs gave no results within 90 s\n%s", f.stderr.String())
		}
	}
	return got
}

// checkPlayers reads play.mjs's results and checks that each player (the
// watch page over WebRTC, hls.js and dash.js) played the 1280x720 stream
// for 3 s, over its own protocol, with audio, a latency and "live" shown.
func checkPlayers(t *testing.T, out []byte, stderr string) map[string]playResult {
	t.Helper()
	got := map[string]playResult{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var r playResult
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.Player != "" {
			got[r.Player] = r
		}
	}
	want := map[string]string{"webrtc": "webrtc", "hlsjs": "ll-hls", "dashjs": "dash"}
	for _, player := range []string{"webrtc", "hlsjs", "dashjs"} {
		r, ok := got[player]
		if !ok {
			t.Fatalf("no result for %s:\n%s\n%s", player, out, stderr)
		}
		lat := -1.0
		if r.LatencyMs != nil {
			lat = *r.LatencyMs
		}
		t.Logf("%s: played %.1f s of %dx%d over %s, audio %v, page latency %.0f ms, status %s (screenshot in test-artifacts/browser)",
			player, r.Played, r.Width, r.Height, r.Protocol, r.Audio, lat, r.Status)
		if r.Played < 3 || r.Width != 1280 || r.Height != 720 || r.Error != "" || len(r.PageErrors) > 0 {
			t.Fatalf("%s did not play: %+v", player, r)
		}
		if r.Protocol != want[player] || len(r.Fallbacks) > 0 {
			t.Fatalf("%s played over %q after falling back from %v", player, r.Protocol, r.Fallbacks)
		}
		if !r.Audio {
			t.Errorf("%s played no audio", player)
		}
		if r.LatencyMs == nil || *r.LatencyMs <= 0 {
			t.Errorf("%s measured no latency", player)
		}
		if r.Status != "live" {
			t.Errorf("%s shows status %q", player, r.Status)
		}
	}
	return got
}

// TestBrowserPlays plays a stream from the Go test source on the watch page
// in headless Chromium: over WebRTC (its first choice), hls.js and dash.js;
// then the dashboard shows it live with its WebRTC viewer.
func TestBrowserPlays(t *testing.T) {
	parallel(t)
	needBrowser(t)
	h := start(t, nil)
	s := h.createRecorded("browser")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	publishSim(ctx, s.Ingest.RTMPURL, nil)
	h.waitPlayable(s.Playback.HLS)

	// An output to a destination that is down shows on the dashboard.
	h.addOutput(s.ID, map[string]any{"url": "rtmp://127.0.0.1:1/live/key", "name": "down"})
	out, stderr := runBrowserScript(t, ctx, "play.mjs", h.base, s)
	got := checkPlayers(t, out, stderr)
	for _, player := range []string{"webrtc", "hlsjs", "dashjs"} {
		r := got[player]
		// The page links the recording with its own token, which opens it.
		if !strings.HasPrefix(r.Recording, h.base+"/recordings/"+s.ID+".") {
			t.Errorf("%s's page links the recording at %q", player, r.Recording)
		} else if code, _ := fetch(t, r.Recording); code != http.StatusOK {
			t.Errorf("%s's page links the recording at %q, which answers %d", player, r.Recording, code)
		}
	}
	d, ok := got["dashboard"]
	if !ok {
		t.Fatalf("no result for the dashboard:\n%s\n%s", out, stderr)
	}
	t.Logf("dashboard: %q; row %q", d.Summary, d.Row)
	if d.Rejected == nil || *d.Rejected == "" {
		t.Errorf("the dashboard took a wrong token without a word")
	}
	if d.Row == nil || len(d.PageErrors) > 0 {
		t.Fatalf("the dashboard never showed the stream live with a WebRTC viewer: %+v", d)
	}
	if !strings.Contains(d.Row[0], "browser") || !strings.Contains(d.Row[2], "1280×720") || !strings.Contains(d.Row[4], "kbit/s") {
		t.Errorf("the dashboard's row is missing the stream's name, size or bitrate: %q", d.Row)
	}
	if len(d.Row) < 8 || !strings.Contains(d.Row[7], "down") || !strings.Contains(d.Row[7], "connecting") {
		t.Errorf("the dashboard's row does not show the output that is down: %q", d.Row)
	}

	// Once the stream has ended, its page shows that and the recording, and
	// asks for nothing more: no player, no WebRTC offers, no favicon.
	cancel()
	if code, body := h.call("DELETE", "/api/v1/streams/"+s.ID, nil); code != http.StatusOK {
		t.Fatalf("DELETE stream: %d %s", code, body)
	}
	h.waitRecorded(s.ID)
	out, stderr = runBrowserScript(t, context.Background(), "ended.mjs", h.base, s)
	var e struct {
		Status                      *string
		VideoHidden, ProtocolHidden bool
		Recording                   *string
		Requests, After, PageErrors []string
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), &e); err != nil {
		t.Fatalf("ended.mjs: %v\n%s\n%s", err, out, stderr)
	}
	t.Logf("the ended page asked for %q", e.Requests)
	if e.Status == nil || !e.VideoHidden || !e.ProtocolHidden || e.Recording == nil || len(e.PageErrors) > 0 {
		t.Fatalf("the ended stream's page: %+v", e)
	}
	for _, r := range e.Requests {
		if strings.Contains(r, "/whep/") || strings.Contains(r, "favicon") || strings.Contains(r, "/hls/") || strings.Contains(r, "/dash/") {
			t.Errorf("the ended stream's page asked for %s", r)
		}
	}
	if len(e.After) > 0 {
		t.Errorf("the ended stream's page kept asking: %q", e.After)
	}
}

// BenchmarkBrowserLatency measures how far behind live the watch page plays
// in headless Chromium over hls.js and dash.js (20 s each after a 5 s
// warm-up), and its stalls:
//
//	go test -run '^$' -bench BrowserLatency -benchtime 1x ./internal/server
func BenchmarkBrowserLatency(b *testing.B) {
	needBrowser(b)
	h := start(b, nil)
	s := h.create("latency")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	publishSim(ctx, s.Ingest.RTMPURL, nil)
	h.waitPlayable(s.Playback.HLS)
	for range b.N {
		out, stderr := runBrowserScript(b, ctx, "latency.mjs", h.base, s)
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			var r struct {
				Player                        string
				MinMs, MedianMs, P95Ms, MaxMs float64
				Stalls                        int
			}
			if json.Unmarshal(sc.Bytes(), &r) != nil || r.Player == "" {
				continue
			}
			b.Logf("%s: behind live min %.0f ms, median %.0f, p95 %.0f, max %.0f; %d stalls", r.Player, r.MinMs, r.MedianMs, r.P95Ms, r.MaxMs, r.Stalls)
			b.ReportMetric(r.MedianMs, r.Player+"-median-ms")
			b.ReportMetric(r.MaxMs, r.Player+"-max-ms")
			b.ReportMetric(float64(r.Stalls), r.Player+"-stalls")
		}
		if len(out) == 0 {
			b.Fatalf("latency.mjs printed nothing:\n%s", stderr)
		}
	}
}
