package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/config"
	"github.com/glasscast/glasscast/internal/testenv"
	"github.com/glasscast/glasscast/sdk"
)

// TestRestreamExample runs the app against glasscast with a second stream of
// the same server as the platform: the output shows active on the glasses,
// the platform's stream goes live, and "stop restream" takes it off.
func TestRestreamExample(t *testing.T) {
	const pkg = "com.example.restream"
	// The test's "platform" is a glasscast on loopback, which apps may reach only when allowed.
	env, err := testenv.Start(func(c *config.Config) { c.RestreamAllow = []string{"127.0.0.0/8"} }, pkg)
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	platform := createStream(t, env)

	g, events, err := env.Glasses("ida@example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	app := env.Apps[pkg]
	srv := newApp(pkg, app.APIKey, []sdk.RestreamDestination{{URL: platform.Ingest.RTMPURL, Name: "Platform"}}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, app.Listener) }()
	defer func() { cancel(); <-served }()
	if err := env.StartApp("ida@example.com", pkg); err != nil {
		t.Fatal(err)
	}
	for {
		e, err := testenv.WaitEvent(events, "display", 30*time.Second)
		if err != nil {
			t.Fatalf("waiting for the output to show active: %v", err)
		}
		if e.Text == "Platform: active" {
			break
		}
	}
	st, err := env.Server.Registry().Get(platform.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status().String() != "live" {
		t.Fatalf("the platform's stream is %s", st.Status())
	}
	// "stop restream": the output goes, the display says so.
	g.SendTranscription("stop restream", true)
	for {
		e, err := testenv.WaitEvent(events, "display", 15*time.Second)
		if err != nil {
			t.Fatalf("waiting for the restream to stop: %v", err)
		}
		if e.Text == "Not restreaming" {
			break
		}
	}
}

type stream struct {
	ID     string `json:"id"`
	Ingest struct {
		RTMPURL string `json:"rtmpUrl"`
	} `json:"ingest"`
}

func createStream(t *testing.T, env *testenv.Env) stream {
	t.Helper()
	req, _ := http.NewRequest("POST", env.Base+"/api/v1/streams", bytes.NewReader([]byte(`{"name":"platform"}`)))
	req.Header.Set("Authorization", "Bearer "+env.Server.AdminToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s stream
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil || !strings.HasPrefix(s.Ingest.RTMPURL, "rtmp://") {
		t.Fatalf("create: %v %+v", err, s)
	}
	return s
}
