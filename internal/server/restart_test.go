package server_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/api"
	"github.com/glasscast/glasscast/internal/config"
	"github.com/glasscast/glasscast/internal/live"
	"github.com/glasscast/glasscast/internal/restream"
	"github.com/glasscast/glasscast/sdk"
)

// TestAdminTokenKept: a generated admin token is kept under --data and is
// the same after a restart.
func TestAdminTokenKept(t *testing.T) {
	parallel(t)
	data := t.TempDir()
	noToken := func(c *config.Config) { c.Data, c.AdminToken = data, "" }
	h := start(t, noToken)
	first := h.srv.AdminToken()
	if !h.srv.TokenGenerated() || len(first) < 32 {
		t.Fatalf("a generated admin token: %q (generated %v)", first, h.srv.TokenGenerated())
	}
	h.stop()
	h2 := start(t, noToken)
	if h2.srv.AdminToken() != first || h2.srv.TokenGenerated() {
		t.Fatalf("after a restart the admin token is %q (generated %v), was %q", h2.srv.AdminToken(), h2.srv.TokenGenerated(), first)
	}
	req, _ := http.NewRequest("GET", h2.base+"/api/v1/streams", nil)
	req.Header.Set("Authorization", "Bearer "+first)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the first run's admin token after a restart: %d", resp.StatusCode)
	}
}

// TestStreamsSurviveRestart: Streams API streams, their keys, their outputs
// and their recordings outlive a restart. A stream that was live waits for
// its publisher within the reconnect window, counted from the restart, and
// carries on with the same URLs when it comes back; its output to another
// server carries on; its recording goes on as one, with a gap.
func TestStreamsSurviveRestart(t *testing.T) {
	parallel(t)
	data := t.TempDir()
	httpPort, rtmpPort := freePort(t), freePort(t)
	same := func(c *config.Config) {
		c.Data = data
		c.HTTP, c.RTMP = fmt.Sprintf("127.0.0.1:%d", httpPort), fmt.Sprintf("127.0.0.1:%d", rtmpPort)
		c.ReconnectWindow = 30 * time.Second
	}
	dst := start(t, nil)
	mirror := dst.create("mirror")
	h := start(t, same)
	recorded := h.createRecorded("kept and recorded")
	idle := h.create("never published")
	gone := h.create("deleted")
	if code, body := h.call("DELETE", "/api/v1/streams/"+gone.ID, nil); code != http.StatusOK {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	out := h.addOutput(recorded.ID, map[string]any{"url": mirror.Ingest.RTMPURL, "name": "mirror"})

	ctx, cancel := context.WithCancel(context.Background())
	published := publishSim(ctx, recorded.Ingest.RTMPURL, nil)
	h.waitPlayable(recorded.Playback.HLS)
	dst.waitStatus(mirror.ID, live.StatusLive, 20*time.Second)
	firstPart := h.recording(recorded.ID)
	h.stop()
	cancel()
	<-published
	dst.waitStatus(mirror.ID, live.StatusReconnecting, 20*time.Second)

	restarted := time.Now()
	h2 := start(t, same)
	got := h2.get(recorded.ID)
	if got.Status != live.StatusReconnecting || got.Ingest.RTMPURL != recorded.Ingest.RTMPURL || !got.Record ||
		got.Recording == nil || len(got.Outputs) != 1 || got.Outputs[0].ID != out.ID || got.Outputs[0].Name != "mirror" {
		t.Fatalf("the live stream after a restart:\n%+v\nwas\n%+v", got, recorded)
	}
	if g := h2.get(idle.ID); g.Status != live.StatusIdle || g.Ingest.RTMPURL != idle.Ingest.RTMPURL || g.Name != idle.Name {
		t.Fatalf("the idle stream after a restart: %+v", g)
	}
	if g := h2.get(gone.ID); g.Status != live.StatusEnded {
		t.Fatalf("the deleted stream after a restart: %+v", g)
	}
	var list struct {
		Streams []api.StreamJSON `json:"streams"`
	}
	h2.getJSON("/api/v1/streams", &list)
	if len(list.Streams) != 3 {
		t.Fatalf("after a restart the server lists %d streams, want 3", len(list.Streams))
	}

	// The publisher comes back to the same URL and everything carries on.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	published = publishSim(ctx, recorded.Ingest.RTMPURL, nil)
	h2.waitStatus(recorded.ID, live.StatusLive, 20*time.Second)
	if waited := time.Since(restarted); waited > 30*time.Second {
		t.Fatalf("the test took %v to come back: longer than the window", waited)
	}
	h2.waitPlayable(recorded.Playback.HLS)
	h2.waitOutput(recorded.ID, out.ID, restream.StatusActive, 20*time.Second)
	dst.waitStatus(mirror.ID, live.StatusLive, 20*time.Second)
	if r := h2.recording(recorded.ID); r.Status != "recording" || r.Segments < firstPart.Segments {
		t.Fatalf("the recording after a restart: %+v (before it: %+v)", r, firstPart)
	}
	// The idle stream's key works too.
	ctx2, cancel2 := context.WithCancel(context.Background())
	published2 := publishSim(ctx2, idle.Ingest.RTMPURL, nil)
	h2.waitStatus(idle.ID, live.StatusLive, 20*time.Second)
	cancel2()
	<-published2

	cancel()
	<-published
	if code, body := h2.call("DELETE", "/api/v1/streams/"+recorded.ID, nil); code != http.StatusOK {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	rec := h2.waitRecorded(recorded.ID)
	if rec.Status != "complete" || rec.Gaps < 1 || rec.Duration <= firstPart.Duration {
		t.Fatalf("the finished recording: %+v (its part before the restart: %+v)", rec, firstPart)
	}
	streams := probe(t, rec.MP4)
	if findStream(streams, "video") == nil {
		t.Fatalf("the recording's MP4: %s", describe(streams))
	}
}

// TestRunningAppsAfterRestart: the apps running for a user are remembered;
// when the phone connects to the restarted server they get a new session,
// and carry on (here: a managed stream that plays). An app the user
// stopped is not started again.
func TestRunningAppsAfterRestart(t *testing.T) {
	parallel(t)
	data := t.TempDir()
	httpPort, rtmpPort := freePort(t), freePort(t)
	var apps []config.AppConfig
	same := func(c *config.Config) {
		c.Data = data
		c.HTTP, c.RTMP = fmt.Sprintf("127.0.0.1:%d", httpPort), fmt.Sprintf("127.0.0.1:%d", rtmpPort)
		apps = c.Apps
	}
	w := startWorld(t, []string{"com.example.a", "com.example.b"}, same)
	const user = "eve@example.com"
	_, events := w.glasses(user, nil)
	w.startApp(user, "com.example.a")
	w.startApp(user, "com.example.b")
	w.stopApp(user, "com.example.b")

	w.harness.stop()
	w.harness = start(t, func(c *config.Config) {
		c.Apps = apps
		c.ManagedStartTimeout = 15 * time.Second
		same(c)
	})
	// The simulator's phone reconnects by itself; the app is started again.
	waitEvent(t, events, "connected", 20*time.Second)
	var s *sdk.Session
	select {
	case s = <-w.apps["com.example.a"].sessions:
	case <-time.After(20 * time.Second):
		t.Fatal("the running app got no new session after the restart")
	}
	if _, err := s.Camera.StartManagedStream(context.Background(), sdk.ManagedStreamOptions{}); err != nil {
		t.Fatal(err)
	}
	active, err := s.Camera.WaitManagedActive(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	w.waitPlayable(active.HLSURL)
	w.log.waitCount(t, "app started again for the returning phone", 1, 5*time.Second)
	select {
	case <-w.apps["com.example.b"].sessions:
		t.Fatal("the app the user stopped was started again")
	default:
	}
	if n := strings.Count(w.log.String(), "app started again"); n != 1 {
		t.Fatalf("%d apps started again, want 1", n)
	}
}
