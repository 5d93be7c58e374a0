package abr

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/glasscast/glasscast/internal/live"
	"github.com/glasscast/glasscast/internal/sim"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// standIn is an ffmpeg that says its arguments through a named pipe, then
// reads its input until it ends or it is killed.
func standIn(t *testing.T) (path, started string) {
	dir := t.TempDir()
	started = filepath.Join(dir, "started")
	if err := syscall.Mkfifo(started, 0o600); err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, "ffmpeg")
	script := "#!/bin/sh\necho \"$@\" > " + started + "\nexec cat > /dev/null\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, started
}

// publishClip publishes one pass of the test clip (720p) into st.
func publishClip(t *testing.T, st *live.Stream) {
	c, err := sim.LoadClip(sim.DefaultClip)
	if err != nil {
		t.Fatal(err)
	}
	tracks, err := c.Tracks()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := st.Publish(tracks)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Write(pub, 0, len(c.Frames), 0); err != nil {
		t.Fatal(err)
	}
}

// A stream that goes live gets its ladder: a rung stream per step below
// its height, encoded by one ffmpeg publishing to the rungs' keys. It stops when the stream ends (the rungs end with it),
// and Close stops a ladder still running.
func TestLadderFollowsItsStream(t *testing.T) {
	ffmpeg, started := standIn(t)
	reg := live.New(live.Config{ReconnectWindow: time.Hour}, quiet)
	defer reg.Close()
	rungs := make(chan live.Event, 16)
	reg.Subscribe("test", func(ev live.Event) {
		if ev.Stream.Internal() {
			rungs <- ev
		}
	})
	m := New(Config{FFmpeg: ffmpeg, Ingest: "rtmp://127.0.0.1:1/live/"}, reg, quiet)
	closed := false
	defer func() {
		if !closed {
			m.Close()
		}
	}()
	wait := func(kind live.EventKind) *live.Stream {
		t.Helper()
		select {
		case ev := <-rungs:
			if ev.Kind != kind {
				t.Fatalf("a rung's %v, want %v", ev.Kind, kind)
			}
			return ev.Stream
		case <-time.After(10 * time.Second):
			t.Fatalf("no rung %v within 10 s", kind)
		}
		return nil
	}

	src, err := reg.Create(live.CreateOptions{Name: "source"})
	if err != nil {
		t.Fatal(err)
	}
	publishClip(t, src)
	r1, r2 := wait(live.EventCreated), wait(live.EventCreated)
	args, err := os.ReadFile(started)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"scale=-2:480", "scale=-2:360", "rtmp://127.0.0.1:1/live/" + r1.Key(), "rtmp://127.0.0.1:1/live/" + r2.Key()} {
		if !strings.Contains(string(args), want) {
			t.Fatalf("ffmpeg's arguments lack %q: %s", want, args)
		}
	}
	if m.Ladders() != 1 { // (the rungs are listed as variants once they play)
		t.Fatalf("%d ladders", m.Ladders())
	}

	reg.Delete(src.ID())
	ended := map[string]bool{wait(live.EventEnded).ID(): true, wait(live.EventEnded).ID(): true}
	if !ended[r1.ID()] || !ended[r2.ID()] {
		t.Fatalf("rungs ended: %v, want %s and %s", ended, r1.ID(), r2.ID())
	}

	// Another stream's ladder is running (its ffmpeg hangs on its input)
	// when the manager closes: Close stops it.
	other, err := reg.Create(live.CreateOptions{Name: "other"})
	if err != nil {
		t.Fatal(err)
	}
	publishClip(t, other)
	wait(live.EventCreated)
	wait(live.EventCreated)
	if _, err := os.ReadFile(started); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		m.Close()
		close(done)
	}()
	select {
	case <-done:
		closed = true
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not stop a running ladder")
	}
	if m.Ladders() != 0 {
		t.Fatalf("%d ladders after Close", m.Ladders())
	}
}
