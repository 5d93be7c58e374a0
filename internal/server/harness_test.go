package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/glasscast/glasscast/internal/api"
	"github.com/glasscast/glasscast/internal/config"
	"github.com/glasscast/glasscast/internal/demo"
	"github.com/glasscast/glasscast/internal/live"
	"github.com/glasscast/glasscast/internal/server"
	"github.com/glasscast/glasscast/internal/sim"
)

const testToken = "test-admin-token-0123456789"

// leakChecked marks the tests whose goroutine-leak check is registered.
var leakChecked sync.Map

// parallelTests marks the tests that run beside others: their goroutines
// are checked once, when every test of the package has ended (TestMain),
// not at their own end, when others' still run.
var parallelTests sync.Map

// parallel runs the test beside the package's other parallel tests (how
// many at once: go test's -parallel). Most tests wait on the network and
// on media time far more than they compute; the few that read
// process-wide figures (the heap, the default HTTP transport, every
// goroutine at their end) do not call it.
func parallel(t *testing.T) {
	parallelTests.Store(t, true)
	t.Parallel()
}

// harness is a glasscast running in the test process on loopback.
type harness struct {
	t    testing.TB
	srv  *server.Server
	base string
	stop func()
	// log keeps the end of the server's log.
	log *logTail
}

// checkLeaks makes the test check for leaked goroutines once everything
// registered after this call has been cleaned up: once per test.
func checkLeaks(t testing.TB) {
	if _, bench := t.(*testing.B); bench {
		return // a benchmark's own goroutines are running
	}
	if _, beside := parallelTests.Load(t); beside {
		return // TestMain checks once every test has ended
	}
	if _, checked := leakChecked.LoadOrStore(t, true); !checked {
		t.Cleanup(func() { leakChecked.Delete(t); goleak.VerifyNone(t) })
	}
}

// start runs a server on 127.0.0.1:0 and stops it (checking for leaked
// goroutines) when the test ends.
// testConfig is a test server's configuration: every listener on a
// loopback port of its own, a data directory of its own, then tweak.
func testConfig(t testing.TB, tweak func(*config.Config)) config.Config {
	cfg := config.Default()
	cfg.HTTP, cfg.RTMP = "127.0.0.1:0", "127.0.0.1:0"
	cfg.WebRTCUDP, cfg.WebRTCTCP = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Data = t.TempDir()
	cfg.AdminToken = testToken
	cfg.ReconnectWindow = 5 * time.Second
	cfg.DrainTimeout = 5 * time.Second // a cluster test's nodes stop with their publishers gone
	if tweak != nil {
		tweak(&cfg)
	}
	return cfg
}

func start(t testing.TB, tweak func(*config.Config)) *harness {
	t.Helper()
	checkLeaks(t)
	cfg := testConfig(t, tweak)
	// Kept, and shown only if the test fails (or as it is written, with
	// GLASSCAST_TEST_LOG set).
	tail := &logTail{}
	var logOut io.Writer = tail
	if os.Getenv("GLASSCAST_TEST_LOG") != "" {
		logOut = io.MultiWriter(tail, os.Stderr)
	} else {
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("the server's log (last %d KiB):\n%s", logTailMax>>10, tail.String())
			}
		})
	}
	srv, err := server.New(cfg, slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	h := &harness{t: t, srv: srv, base: srv.Public(), log: tail}
	demoDone := make(chan struct{})
	if cfg.Demo { // beside the server, as the command runs it
		go func() {
			defer close(demoDone)
			demo.Run(ctx, srv, slog.New(slog.NewTextHandler(logOut, nil)).With("component", "demo"))
		}()
	} else {
		close(demoDone)
	}
	var once bool
	h.stop = func() {
		if once {
			return
		}
		once = true
		cancel()
		select {
		case err := <-done:
			<-demoDone
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the server did not shut down within 20 s")
		}
		http.DefaultClient.CloseIdleConnections()
	}
	t.Cleanup(h.stop)
	direct := *h // the node itself, not what its public URL points at
	if cfg.PublicURL != "" && strings.HasPrefix(h.base, "http:") {
		direct.base = "http://" + srv.HTTPAddr().String()
	}
	direct.waitHealthy()
	return h
}

// logTailMax bounds the log a test keeps.
const logTailMax = 256 << 10

// logTail keeps the last logTailMax bytes written to it.
type logTail struct {
	mu      sync.Mutex
	buf     []byte
	written chan struct{} // closed and replaced at every write
}

func (l *logTail) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	if over := len(l.buf) - logTailMax; over > 0 {
		l.buf = append(l.buf[:0], l.buf[over:]...)
	}
	if l.written != nil {
		close(l.written)
		l.written = nil
	}
	return len(p), nil
}

// waitCount waits until the log holds at least n lines containing s.
func (l *logTail) waitCount(t *testing.T, s string, n int, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		l.mu.Lock()
		got := bytes.Count(l.buf, []byte(s))
		if l.written == nil {
			l.written = make(chan struct{})
		}
		ch := l.written
		l.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("%d log lines with %q within %v, want %d", got, s, within, n)
		}
	}
}

func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.buf)
}

func (h *harness) waitHealthy() { h.waitHealth(false) }

// waitServing waits until the node's health check says it serves: a
// cluster node once it has joined.
func (h *harness) waitServing() { h.waitHealth(true) }

// waitHealth waits for the node's health check; one that says it is
// joining its cluster (which needs the other nodes up) is healthy unless
// joined.
func (h *harness) waitHealth(joined bool) {
	h.t.Helper()
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := http.Get(h.base + "/healthz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || !joined && strings.HasPrefix(string(b), "joining") {
				return
			}
		}
		select {
		case <-deadline:
			h.t.Fatal("the server never became healthy")
		case <-tick.C:
		}
	}
}

// call makes an API request with the admin token.
func (h *harness) call(method, path string, body any) (int, []byte) {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, h.base+path, rd)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func (h *harness) create(name string) api.StreamJSON {
	h.t.Helper()
	code, body := h.call("POST", "/api/v1/streams", map[string]any{"name": name})
	if code != http.StatusCreated {
		h.t.Fatalf("create: %d %s", code, body)
	}
	var s api.StreamJSON
	if err := json.Unmarshal(body, &s); err != nil {
		h.t.Fatal(err)
	}
	return s
}

func (h *harness) get(id string) api.StreamJSON {
	h.t.Helper()
	var s api.StreamJSON
	h.getJSON("/api/v1/streams/"+id, &s)
	return s
}

// getJSON reads an admin API resource, which must answer 200, into out.
func (h *harness) getJSON(path string, out any) {
	h.t.Helper()
	code, body := h.call("GET", path, nil)
	if code != http.StatusOK {
		h.t.Fatalf("GET %s: %d %s", path, code, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		h.t.Fatalf("GET %s: %v", path, err)
	}
}

// waitStatus waits, on the stream's change events, until it has status want.
func (h *harness) waitStatus(id string, want live.Status, within time.Duration) {
	h.t.Helper()
	st, err := h.srv.Registry().Get(id)
	if err != nil {
		h.t.Fatal(err)
	}
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		ch := st.Changed()
		if got := st.Status(); got == want {
			return
		}
		select {
		case <-ch:
		case <-timer.C:
			h.t.Fatalf("stream %s is %s after %v, want %s", id, st.Status(), within, want)
		}
	}
}

// waitPlayable holds a multivariant playlist request (the server answers it
// once the stream has a complete segment) and returns the playlist.
func (h *harness) waitPlayable(hlsURL string) string {
	h.t.Helper()
	code, body := fetch(h.t, hlsURL)
	if code != http.StatusOK {
		h.t.Fatalf("GET %s: %d %s", hlsURL, code, body)
	}
	return string(body)
}

func fetch(t testing.TB, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// publishSim pushes the Go test source until ctx ends.
func publishSim(ctx context.Context, url string, clip *sim.Clip) <-chan error {
	done := make(chan error, 1)
	go func() { done <- (&sim.Source{Clip: clip}).Publish(ctx, url) }()
	return done
}

// slow skips a test in the -short lane (go test -short: a developer's
// loop): clusters, child processes, Chromium, the @mentra/sdk apps, nginx,
// HAProxy and Pebble. ./scripts/test runs them all.
func slow(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("slow: runs without -short (./scripts/test runs it)")
	}
}

func needTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is required: run scripts/test, which installs it", name)
	}
}

// publishFFmpeg pushes testsrc2 + sine encoded by libx264 (2 s GOP) and AAC.
func publishFFmpeg(t testing.TB, ctx context.Context, url string, extra ...string) *exec.Cmd {
	t.Helper()
	needTool(t, "ffmpeg")
	cmd := exec.CommandContext(ctx, "ffmpeg", ffmpegPublish(url, extra...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

// ffmpegPublish is ffmpeg's command line publishing a test pattern and a
// tone, as an encoder would, to url.
func ffmpegPublish(url string, extra ...string) []string {
	args := []string{"-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
		"-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000",
		"-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "60", "-keyint_min", "60", "-pix_fmt", "yuv420p",
		"-c:a", "aac", "-ac", "1", "-b:a", "64k"}
	args = append(args, extra...)
	return append(args, "-f", "flv", url)
}

// publishSimLoop publishes the test source to first and, each time its
// connection ends (its server went away), again 200 ms later to then,
// until ctx ends: glasses in a reconnect loop. The test waits for it at
// its end.
func publishSimLoop(t *testing.T, ctx context.Context, first, then string) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for url := first; ctx.Err() == nil; url = then {
			(&sim.Source{}).Publish(ctx, url)
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { <-done })
}

type probeStream struct {
	CodecType  string `json:"codec_type"`
	CodecName  string `json:"codec_name"`
	Width      int    `json:"width"`
	Height     int    `json:"height"`
	Channels   int    `json:"channels"`
	SampleRate string `json:"sample_rate"`
}

// probe runs ffprobe on a URL and returns its streams.
func probe(t *testing.T, url string) []probeStream {
	t.Helper()
	needTool(t, "ffprobe")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-show_streams", "-of", "json", url).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("ffprobe %s: %v %s", url, err, stderr)
	}
	var res struct {
		Streams []probeStream `json:"streams"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatal(err)
	}
	return res.Streams
}

func findStream(streams []probeStream, kind string) *probeStream {
	for i := range streams {
		if streams[i].CodecType == kind {
			return &streams[i]
		}
	}
	return nil
}

func describe(streams []probeStream) string {
	var parts []string
	for _, s := range streams {
		parts = append(parts, fmt.Sprintf("%s/%s %dx%d ch=%d", s.CodecType, s.CodecName, s.Width, s.Height, s.Channels))
	}
	return strings.Join(parts, ", ")
}

// waitEnded waits until every ended stream has finished ending and the
// registry's subscribers have heard of it.
func (h *harness) waitEnded() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, st := range h.srv.Registry().List() {
		if st.Status() != live.StatusEnded {
			continue
		}
		select {
		case <-st.Done():
		case <-ctx.Done():
			h.t.Fatalf("stream %s has not finished ending", st.ID())
		}
	}
	if err := h.srv.Registry().Sync(ctx); err != nil {
		h.t.Fatalf("the registry's subscribers did not catch up: %v", err)
	}
}
