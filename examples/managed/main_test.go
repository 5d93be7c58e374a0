package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/testenv"
)

func TestManagedExample(t *testing.T) {
	const pkg = "com.example.managedstreaming"
	env, err := testenv.Start(nil, pkg)
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	g, events, err := env.Glasses("ann@example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	app := env.Apps[pkg]
	srv := newApp(pkg, app.APIKey, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, app.Listener) }()
	defer func() { cancel(); <-served }()
	if err := env.StartApp("ann@example.com", pkg); err != nil {
		t.Fatal(err)
	}
	// The display follows the stream: starting, then live with its URL.
	for _, want := range []string{"Starting stream...", "Stream live!"} {
		for {
			e, err := testenv.WaitEvent(events, "display", 15*time.Second)
			if err != nil {
				t.Fatalf("waiting for %q: %v", want, err)
			}
			if strings.HasPrefix(e.Text, want) {
				break
			}
		}
	}
	// "stop stream" stops it, and the glasses stop pushing.
	g.SendTranscription("stop stream", true)
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case e := <-events:
			if e.Kind == "stopped" {
				return
			}
		case <-tick.C:
			g.SendTranscription("stop stream", true) // until the app has subscribed
		case <-deadline:
			t.Fatal("the voice command did not stop the stream")
		}
	}
}
