package thumb

import (
	"bytes"
	"image/jpeg"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/glasscast/glasscast/internal/cmaf"
	"github.com/glasscast/glasscast/internal/cmaf/cmaftest"
	"github.com/glasscast/glasscast/internal/stream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// hubWithPicture is a hub whose publisher sent the clip's first frames.
func hubWithPicture(t *testing.T) *stream.Hub {
	t.Helper()
	src := cmaftest.New(t, cmaf.Config{})
	if err := src.Clip.Write(src.Pub, 0, 10, 0); err != nil {
		t.Fatal(err)
	}
	if src.Hub.LastKeyframe() == nil {
		t.Fatal("no keyframe in the clip's first frames")
	}
	return src.Hub
}

func serve(t *testing.T, s *Server) *httptest.Server {
	mux := http.NewServeMux()
	s.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestThumbnailCachedAndForgotten(t *testing.T) {
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Fatal("ffmpeg is required: run scripts/test, which installs it")
	}
	streams := map[string]*stream.Hub{"a": hubWithPicture(t), "empty": stream.New(stream.Config{})}
	s := New(ffmpeg, func(id string) (*stream.Hub, bool) { h, ok := streams[id]; return h, ok }, quiet)
	defer s.Close()
	srv := serve(t, s)

	code, first := get(t, srv.URL+"/thumb/a.jpg")
	if code != http.StatusOK {
		t.Fatalf("thumbnail: %d %s", code, first)
	}
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(first))
	if err != nil || cfg.Width != 1280 || cfg.Height != 720 {
		t.Fatalf("not a 1280x720 JPEG: %+v %v", cfg, err)
	}
	if _, again := get(t, srv.URL+"/thumb/a.jpg"); !bytes.Equal(again, first) || s.Cached() != 1 {
		t.Fatalf("the second ask was not answered from the cache (%d cached)", s.Cached())
	}
	if code, _ := get(t, srv.URL+"/thumb/empty.jpg"); code != http.StatusServiceUnavailable {
		t.Fatalf("a stream with no picture: %d", code)
	}
	if code, _ := get(t, srv.URL+"/thumb/a.png"); code != http.StatusNotFound {
		t.Fatalf("not a .jpg: %d", code)
	}
	s.Forget("a")
	if s.Cached() != 0 {
		t.Fatalf("%d cached after the stream ended", s.Cached())
	}
	// A stream gone from the lookup is answered 404 and not kept.
	get(t, srv.URL+"/thumb/a.jpg")
	delete(streams, "a")
	if code, _ := get(t, srv.URL+"/thumb/a.jpg"); code != http.StatusNotFound || s.Cached() != 0 {
		t.Fatalf("a stream that is gone: %d, %d cached", code, s.Cached())
	}
}

func TestThumbnailWithoutFFmpeg(t *testing.T) {
	h := hubWithPicture(t)
	s := New("", func(string) (*stream.Hub, bool) { return h, true }, quiet)
	defer s.Close()
	if code, _ := get(t, serve(t, s).URL+"/thumb/a.jpg"); code != http.StatusServiceUnavailable {
		t.Fatalf("without ffmpeg: %d", code)
	}
}

// Close stops an ffmpeg that hangs, and thumbnails asked for afterwards are
// refused.
func TestCloseStopsFFmpeg(t *testing.T) {
	// The stand-in ffmpeg says it started through a named pipe, then hangs.
	dir := t.TempDir()
	started := filepath.Join(dir, "started")
	if err := syscall.Mkfifo(started, 0o600); err != nil {
		t.Fatal(err)
	}
	hang := filepath.Join(dir, "ffmpeg")
	if err := os.WriteFile(hang, []byte("#!/bin/sh\necho up > "+started+"\nexec sleep 600\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	h := hubWithPicture(t)
	s := New(hang, func(string) (*stream.Hub, bool) { return h, true }, quiet)
	srv := serve(t, s)
	answered := make(chan int, 1)
	go func() {
		code, _ := get(t, srv.URL+"/thumb/a.jpg")
		answered <- code
	}()
	if _, err := os.ReadFile(started); err != nil { // blocks until ffmpeg runs
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() {
		s.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second): // ffmpeg's own limit is 10 s
		t.Fatal("Close did not stop the hanging ffmpeg")
	}
	if code := <-answered; code != http.StatusInternalServerError {
		t.Fatalf("the request whose ffmpeg was stopped: %d", code)
	}
	if code, _ := get(t, srv.URL+"/thumb/a.jpg"); code != http.StatusServiceUnavailable {
		t.Fatalf("after Close: %d", code)
	}
}
