package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/live"
	"github.com/glasscast/glasscast/internal/sim"
	"github.com/glasscast/glasscast/internal/testenv"
	"github.com/glasscast/glasscast/sdk"
)

func TestDropRate(t *testing.T) {
	if r := dropRate(&sdk.StreamStats{FPS: 30, Duration: 10, DroppedFrames: 30}); r != 10 {
		t.Fatalf("drop rate %v", r)
	}
	if r := dropRate(nil); r != 0 {
		t.Fatalf("drop rate of nothing %v", r)
	}
}

func TestUnmanagedExample(t *testing.T) {
	const pkg = "com.example.unmanagedstreaming"
	env, err := testenv.Start(nil, pkg)
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	// The app's own RTMP server: a stream of the same glasscast.
	st, err := env.Server.Registry().Create(live.CreateOptions{Name: "app server"})
	if err != nil {
		t.Fatal(err)
	}
	g, events, err := env.Glasses("bea@example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	app := env.Apps[pkg]
	srv := newApp(pkg, app.APIKey, env.Server.RTMPBase()+st.Key(), 200*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, app.Listener) }()
	defer func() { cancel(); <-served }()
	if err := env.StartApp("bea@example.com", pkg); err != nil {
		t.Fatal(err)
	}
	waitDisplay(t, g, "", events, "Stream is live!")
	waitDisplay(t, g, "stream status", events, "Stream status: active")
	waitDisplay(t, g, "stop stream", events, "Stream stopped")
}

// waitDisplay waits for the glasses to show text starting with prefix,
// saying say (when set) until they do: the app may not have subscribed yet.
func waitDisplay(t *testing.T, g *sim.Glasses, say string, events <-chan sim.Event, prefix string) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	if say != "" {
		g.SendTranscription(say, true)
	}
	for {
		select {
		case e := <-events:
			if e.Kind == "display" && strings.HasPrefix(e.Text, prefix) {
				return
			}
		case <-tick.C:
			if say != "" {
				g.SendTranscription(say, true)
			}
		case <-deadline:
			t.Fatalf("the glasses never showed %q", prefix)
		}
	}
}
