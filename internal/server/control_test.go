package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/glasscast/glasscast/internal/api"
	"github.com/glasscast/glasscast/internal/auth"
	"github.com/glasscast/glasscast/internal/config"
	"github.com/glasscast/glasscast/internal/sim"
	"github.com/glasscast/glasscast/sdk"
)

// world is a glasscast with apps written on the Go SDK and simulated glasses.
type world struct {
	*harness
	apps map[string]*testApp
}

type testApp struct {
	pkg      string
	key      string
	srv      *sdk.AppServer
	sessions chan *sdk.Session
	stop     func()
}

// startWorld runs glasscast with the given apps declared in its
// configuration, and their Go app servers on loopback.
func startWorld(t *testing.T, pkgs []string, tweak func(*config.Config)) *world {
	t.Helper()
	w := &world{apps: map[string]*testApp{}}
	var lns []net.Listener
	var cfgApps []config.AppConfig
	for _, pkg := range pkgs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		key := "key-of-" + pkg + "-0123456789"
		cfgApps = append(cfgApps, config.AppConfig{PackageName: pkg, APIKey: key, PublicURL: "http://" + ln.Addr().String()})
	}
	w.harness = start(t, func(c *config.Config) {
		c.Apps = cfgApps
		c.ManagedStartTimeout = 15 * time.Second
		if tweak != nil {
			tweak(c)
		}
	})
	for i, pkg := range pkgs {
		w.apps[pkg] = serveApp(t, lns[i], pkg, cfgApps[i].APIKey)
	}
	return w
}

// serveApp runs a Go SDK app server on ln until the test ends (or its
// stop); its sessions come out of the app's channel.
func serveApp(t *testing.T, ln net.Listener, pkg, key string) *testApp {
	a := &testApp{pkg: pkg, key: key, sessions: make(chan *sdk.Session, 8)}
	a.srv = sdk.NewAppServer(sdk.Config{PackageName: pkg, APIKey: key})
	a.srv.OnSession(func(ctx context.Context, s *sdk.Session) error {
		a.sessions <- s
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.srv.Serve(ctx, ln) }()
	var once sync.Once
	a.stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(a.stop)
	return a
}

func (w *world) token(user string) string {
	w.t.Helper()
	tok, err := auth.Issue(w.srv.JWTSecret(), user, time.Hour)
	if err != nil {
		w.t.Fatal(err)
	}
	return tok
}

// glasses connects simulated glasses for a user and waits until they are
// connected.
func (w *world) glasses(user string, tweak func(*sim.Glasses)) (*sim.Glasses, chan sim.Event) {
	w.t.Helper()
	events := make(chan sim.Event, 256)
	g := &sim.Glasses{Server: w.base, Token: w.token(user), Events: events, StatsEvery: 500 * time.Millisecond, PhoneRetry: 200 * time.Millisecond}
	if tweak != nil {
		tweak(g)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	w.t.Cleanup(func() { cancel(); <-done })
	waitEvent(w.t, events, "connected", 10*time.Second)
	return g, events
}

func waitEvent(t testing.TB, events chan sim.Event, kind string, within time.Duration) sim.Event {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case e := <-events:
			if e.Kind == kind {
				return e
			}
		case <-deadline:
			t.Fatalf("the glasses saw no %q within %v", kind, within)
		}
	}
}

// startApp starts an app for a user through the phone's API and returns the
// app's new session.
func (w *world) startApp(user, pkg string) *sdk.Session {
	w.t.Helper()
	req, _ := http.NewRequest("POST", w.base+"/api/v1/me/apps/"+pkg+"/start", nil)
	req.Header.Set("Authorization", "Bearer "+w.token(user))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		w.t.Fatalf("start %s: %d", pkg, resp.StatusCode)
	}
	select {
	case s := <-w.apps[pkg].sessions:
		return s
	case <-time.After(10 * time.Second):
		w.t.Fatalf("%s got no session", pkg)
	}
	return nil
}

func (w *world) stopApp(user, pkg string) {
	w.t.Helper()
	req, _ := http.NewRequest("POST", w.base+"/api/v1/me/apps/"+pkg+"/stop", nil)
	req.Header.Set("Authorization", "Bearer "+w.token(user))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		w.t.Fatalf("stop %s: %d", pkg, resp.StatusCode)
	}
}

// statuses records an app's managed statuses in order.
type statuses struct {
	mu   sync.Mutex
	list []sdk.ManagedStreamStatus
	ch   chan sdk.ManagedStreamStatus
}

func recordManaged(s *sdk.Session) *statuses {
	st := &statuses{ch: make(chan sdk.ManagedStreamStatus, 64)}
	s.Camera.OnManagedStreamStatus(func(m sdk.ManagedStreamStatus) {
		st.mu.Lock()
		st.list = append(st.list, m)
		st.mu.Unlock()
		st.ch <- m
	})
	return st
}

func (st *statuses) wait(t *testing.T, status sdk.StreamStatus, within time.Duration) sdk.ManagedStreamStatus {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case m := <-st.ch:
			if m.Status == status {
				return m
			}
		case <-deadline:
			st.mu.Lock()
			defer st.mu.Unlock()
			t.Fatalf("no %q status within %v; got %+v", status, within, st.list)
		}
	}
}

func TestManagedStreamOneApp(t *testing.T) {
	parallel(t)
	w := startWorld(t, []string{"com.example.live"}, nil)
	_, events := w.glasses("ana@example.com", nil)
	s := w.startApp("ana@example.com", "com.example.live")
	rec := recordManaged(s)

	t0 := time.Now()
	res, err := s.Camera.StartManagedStream(context.Background(), sdk.ManagedStreamOptions{Quality: "720p"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Active || res.HLSURL == "" || res.DASHURL == "" || !strings.HasPrefix(res.StreamID, "m") {
		t.Fatalf("first answer: %+v", res)
	}
	waitEvent(t, events, "start", 5*time.Second)
	active, err := s.Camera.WaitManagedActive(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("managed_stream_request -> active: %v", time.Since(t0))
	if active.HLSURL != res.HLSURL || !active.Active {
		t.Fatalf("active: %+v", active)
	}
	// Active means playable: the URLs answer with media right away.
	checkProbe(t, toStream(active), 1280, 720, 1)
	if active.ThumbnailURL != strings.Replace(strings.Replace(active.HLSURL, "/hls/", "/thumb/", 1), "/index.m3u8", ".jpg", 1) {
		t.Fatalf("thumbnail URL %q", active.ThumbnailURL)
	}
	checkThumbnail(t, active.ThumbnailURL, 1280, 720)

	if err := s.Camera.StopManagedStream(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, sdk.StatusStopped, 5*time.Second)
	waitEvent(t, events, "stopped", 5*time.Second)
	if code, _ := fetch(t, active.HLSURL); code != http.StatusNotFound {
		t.Fatalf("HLS after the last app left: %d", code)
	}
	// Managed streams are recorded: what the glasses sent plays afterwards.
	// Its URL carries a token for the recording alone, of the same stream.
	grant := strings.Split(strings.TrimPrefix(active.RecordingURL, w.base+"/recordings/"), "/")[0]
	id, _, _ := strings.Cut(grant, ".")
	if !strings.HasPrefix(active.HLSURL, w.base+"/hls/"+id+".") || grant == strings.Split(strings.TrimPrefix(active.HLSURL, w.base+"/hls/"), "/")[0] {
		t.Fatalf("recording URL %q beside %q", active.RecordingURL, active.HLSURL)
	}
	if r := w.waitRecorded(id); r.Status != "complete" || r.Duration < 1 {
		t.Fatalf("the managed stream's recording: %+v", r)
	}
	if _, streams := probeFormat(t, active.RecordingURL); findStream(streams, "video") == nil {
		t.Fatalf("the managed stream's recording: %s", describe(streams))
	}
	order := []string{}
	rec.mu.Lock()
	for _, m := range rec.list {
		order = append(order, m.Status.String())
	}
	rec.mu.Unlock()
	if strings.Join(order, ",") != "initializing,active,stopped" {
		t.Fatalf("statuses in order: %v", order)
	}
}

func toStream(r sdk.ManagedStreamResult) api.StreamJSON {
	var s api.StreamJSON
	s.Playback.HLS, s.Playback.DASH = r.HLSURL, r.DASHURL
	return s
}

func TestUnmanagedExclusive(t *testing.T) {
	parallel(t)
	w := startWorld(t, []string{"com.example.a", "com.example.b"}, nil)
	_, events := w.glasses("bo@example.com", nil)
	a := w.startApp("bo@example.com", "com.example.a")
	b := w.startApp("bo@example.com", "com.example.b")

	// A real RTMP server of the app's: a stream of a second glasscast... here
	// the same glasscast's ingest, through the Streams API.
	target := w.create("a's own server")
	err := a.Camera.StartStream(context.Background(), sdk.RTMPStreamOptions{RTMPURL: target.Ingest.RTMPURL})
	if err != nil {
		t.Fatal(err)
	}
	waitEvent(t, events, "start", 5*time.Second)
	if err := a.Camera.WaitStreamActive(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.waitPlayable(target.Playback.HLS)

	_, err = b.Camera.StartManagedStream(context.Background(), sdk.ManagedStreamOptions{})
	if !errors.Is(err, sdk.ErrCameraBusy) || !strings.Contains(err.Error(), "Already streaming") {
		t.Fatalf("managed start while unmanaged runs: %v", err)
	}
	err = b.Camera.StartStream(context.Background(), sdk.RTMPStreamOptions{RTMPURL: "rtmp://127.0.0.1/live/x"})
	if !errors.Is(err, sdk.ErrCameraBusy) {
		t.Fatalf("unmanaged start while another runs: %v", err)
	}
	err = a.Camera.StopStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	waitEvent(t, events, "stopped", 5*time.Second)

}

// fast shortens the control plane's timers for tests.
func fast(c *config.Config) {
	c.KeepAliveInterval = 300 * time.Millisecond
	c.AckTimeout = 200 * time.Millisecond
	c.MaxMissedAcks = 3
	c.AppGrace = 500 * time.Millisecond
	c.ManagedStartTimeout = 6 * time.Second
}

func TestManagedSharedByTwoApps(t *testing.T) {
	parallel(t)
	w := startWorld(t, []string{"com.example.a", "com.example.b"}, nil)
	_, events := w.glasses("cy@example.com", nil)
	a := w.startApp("cy@example.com", "com.example.a")
	b := w.startApp("cy@example.com", "com.example.b")
	ra, rb := recordManaged(a), recordManaged(b)

	resA, err := a.Camera.StartManagedStream(context.Background(), sdk.ManagedStreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Camera.WaitManagedActive(context.Background()); err != nil {
		t.Fatal(err)
	}
	// B joins the live stream: same URLs, active at once, no second start
	// for the glasses.
	resB, err := b.Camera.StartManagedStream(context.Background(), sdk.ManagedStreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !resB.Active || resB.HLSURL != resA.HLSURL || resB.StreamID != resA.StreamID {
		t.Fatalf("B joined with %+v; A has %+v", resB, resA)
	}
	// A leaves: the stream goes on for B.
	a.Camera.StopManagedStream(context.Background())
	ra.wait(t, sdk.StatusStopped, 5*time.Second)
	if code, _ := fetch(t, resA.HLSURL); code != http.StatusOK {
		t.Fatalf("HLS after the first app left: %d", code)
	}
	select {
	case e := <-events:
		if e.Kind == "stop" || e.Kind == "stopped" {
			t.Fatalf("the glasses stopped while B still watches: %+v", e)
		}
	default:
	}
	// B, the last one, leaves: the glasses stop and the URLs go.
	b.Camera.StopManagedStream(context.Background())
	rb.wait(t, sdk.StatusStopped, 5*time.Second)
	waitEvent(t, events, "stopped", 5*time.Second)
	if code, _ := fetch(t, resA.HLSURL); code != http.StatusNotFound {
		t.Fatalf("HLS after the last app left: %d", code)
	}
}

func TestExclusivityInEveryOrder(t *testing.T) {
	parallel(t)
	w := startWorld(t, []string{"com.example.a", "com.example.b"}, nil)
	_, events := w.glasses("di@example.com", nil)
	a := w.startApp("di@example.com", "com.example.a")
	b := w.startApp("di@example.com", "com.example.b")
	ctx := context.Background()
	target := w.create("app server")

	// Managed first: an unmanaged start fails, from either app.
	if _, err := a.Camera.StartManagedStream(ctx, sdk.ManagedStreamOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*sdk.Session{a, b} {
		err := s.Camera.StartStream(ctx, sdk.RTMPStreamOptions{RTMPURL: target.Ingest.RTMPURL})
		if !errors.Is(err, sdk.ErrCameraBusy) || !strings.Contains(err.Error(), "managed stream active") {
			t.Fatalf("unmanaged start during a managed stream: %v", err)
		}
	}
	a.Camera.StopManagedStream(ctx)
	waitEvent(t, events, "stopped", 10*time.Second)

	// Unmanaged first: every other start fails; a second one by the owner
	// too.
	if err := a.Camera.StartStream(ctx, sdk.RTMPStreamOptions{RTMPURL: target.Ingest.RTMPURL}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Camera.StartManagedStream(ctx, sdk.ManagedStreamOptions{}); !errors.Is(err, sdk.ErrCameraBusy) || !strings.Contains(err.Error(), "Already streaming") {
		t.Fatalf("managed start during an unmanaged stream (other app): %v", err)
	}
	if _, err := a.Camera.StartManagedStream(ctx, sdk.ManagedStreamOptions{}); !errors.Is(err, sdk.ErrCameraBusy) {
		t.Fatalf("managed start during an unmanaged stream (owner): %v", err)
	}
	if err := b.Camera.StartStream(ctx, sdk.RTMPStreamOptions{RTMPURL: target.Ingest.RTMPURL}); !errors.Is(err, sdk.ErrCameraBusy) || !strings.Contains(err.Error(), "Already streaming") {
		t.Fatalf("unmanaged start by another app: %v", err)
	}
	if err := a.Camera.StartStream(ctx, sdk.RTMPStreamOptions{RTMPURL: target.Ingest.RTMPURL}); !errors.Is(err, sdk.ErrAlreadyStreaming) {
		t.Fatalf("second unmanaged start by the owner: %v", err)
	}
	// Only the owner may stop it.
	b.Camera.StopStream(ctx)
	if !a.Camera.IsCurrentlyStreaming() || w.srv.Plane() == nil {
		t.Fatal("another app's stop ended the owner's stream")
	}
	a.Camera.StopStream(ctx)
	waitEvent(t, events, "stopped", 10*time.Second)
	// The camera is free again.
	if _, err := b.Camera.StartManagedStream(ctx, sdk.ManagedStreamOptions{}); err != nil {
		t.Fatalf("managed start after the unmanaged stream stopped: %v", err)
	}
}

func TestInvalidRequests(t *testing.T) {
	parallel(t)
	w := startWorld(t, []string{"com.example.a"}, nil)
	w.glasses("ed@example.com", nil)
	a := w.startApp("ed@example.com", "com.example.a")
	ctx := context.Background()
	for _, u := range []string{"http://example.com/live/x", "rtmp://", "not a url", "rtmp://host", "rtmp://h/" + strings.Repeat("k", 3000)} {
		if err := a.Camera.StartStream(ctx, sdk.RTMPStreamOptions{RTMPURL: u}); !errors.Is(err, sdk.ErrInvalidURL) || !strings.Contains(err.Error(), "Invalid URL") {
			t.Fatalf("StartStream(%q): %v", u, err)
		}
	}
	_, err := a.Camera.StartManagedStream(ctx, sdk.ManagedStreamOptions{Video: &sdk.VideoConfig{Width: 4000, Height: 3000}})
	if !errors.Is(err, sdk.ErrInvalidOptions) {
		t.Fatalf("a 4000x3000 managed stream: %v", err)
	}
	_, err = a.Camera.StartManagedStream(ctx, sdk.ManagedStreamOptions{Quality: "4k"})
	if !errors.Is(err, sdk.ErrInvalidOptions) {
		t.Fatalf("quality 4k: %v", err)
	}
}

func TestKeepAliveLossTimesOut(t *testing.T) {
	parallel(t)
	w := startWorld(t, []string{"com.example.a"}, fast)
	_, events := w.glasses("fi@example.com", func(g *sim.Glasses) { g.IgnoreKeepAlive = true })
	a := w.startApp("fi@example.com", "com.example.a")
	rec := recordManaged(a)
	if _, err := a.Camera.StartManagedStream(context.Background(), sdk.ManagedStreamOptions{}); err != nil {
		t.Fatal(err)
	}
	m := rec.wait(t, sdk.StatusError, 10*time.Second)
	if !strings.Contains(m.Message, "keep-alive") || m.Code != "KEEP_ALIVE_TIMEOUT" {
		t.Fatalf("keep-alive loss reported as %+v", m)
	}
	waitEvent(t, events, "stopped", 5*time.Second)

	// Unmanaged: the owner hears timeout.
	target := w.create("app server")
	var got []string
	var mu sync.Mutex
	timedOut := make(chan struct{})
	a.Camera.OnStreamStatus(func(s sdk.RTMPStreamStatus) {
		mu.Lock()
		got = append(got, s.Status.String())
		mu.Unlock()
		if s.Status == sdk.StatusTimeout {
			close(timedOut)
		}
	})
	if err := a.Camera.StartStream(context.Background(), sdk.RTMPStreamOptions{RTMPURL: target.Ingest.RTMPURL}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-timedOut:
	case <-time.After(15 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("no timeout; statuses %v", got)
	}
	if a.Camera.IsCurrentlyStreaming() {
		t.Fatal("the SDK still thinks it streams after a timeout")
	}
}

func TestManagedStartTimeout(t *testing.T) {
	parallel(t)
	w := startWorld(t, []string{"com.example.a"}, func(c *config.Config) { c.ManagedStartTimeout = 2 * time.Second })
	_, events := w.glasses("gu@example.com", func(g *sim.Glasses) { g.Stall = true })
	a := w.startApp("gu@example.com", "com.example.a")
	if _, err := a.Camera.StartManagedStream(context.Background(), sdk.ManagedStreamOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := a.Camera.WaitManagedActive(context.Background())
	if !errors.Is(err, sdk.ErrTimeout) || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("a stream that never plays: %v", err)
	}
	waitEvent(t, events, "stop", 5*time.Second)
}

func TestGlassesRefuseWithLowBattery(t *testing.T) {
	parallel(t)
	w := startWorld(t, []string{"com.example.a"}, nil)
	w.glasses("hu@example.com", func(g *sim.Glasses) { g.Battery = 9 })
	a := w.startApp("hu@example.com", "com.example.a")
	// The refusal may already be what the start hears first.
	_, err := a.Camera.StartManagedStream(context.Background(), sdk.ManagedStreamOptions{})
	if err == nil {
		_, err = a.Camera.WaitManagedActive(context.Background())
	}
	if !errors.Is(err, sdk.ErrStreamFailed) || !strings.Contains(err.Error(), "Battery level too low (9%)") {
		t.Fatalf("low battery: %v", err)
	}
}

func TestGlassesReconnectKeepsStream(t *testing.T) {
	parallel(t)
	slow(t)
	w := startWorld(t, []string{"com.example.a"}, nil)
	g, events := w.glasses("io@example.com", func(g *sim.Glasses) { g.RetryBase = 200 * time.Millisecond })
	a := w.startApp("io@example.com", "com.example.a")
	rec := recordManaged(a)
	res, err := a.Camera.StartManagedStream(context.Background(), sdk.ManagedStreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Camera.WaitManagedActive(context.Background()); err != nil {
		t.Fatal(err)
	}
	g.DropNetwork(2 * time.Second)
	waitEvent(t, events, "reconnected", 20*time.Second)
	// The same URLs play on, and the app never heard of an end.
	base := strings.TrimSuffix(res.HLSURL, "index.m3u8")
	_, pl := fetch(t, base+"video.m3u8")
	msn, part := lastPart(t, string(pl))
	code, _ := fetch(t, fmt.Sprintf("%svideo.m3u8?_HLS_msn=%d&_HLS_part=%d", base, msn, part+1))
	if code != http.StatusOK {
		t.Fatalf("the stream does not move on after the reconnect: %d", code)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, m := range rec.list {
		if m.Status == sdk.StatusError || m.Status == sdk.StatusStopped {
			t.Fatalf("the app heard %+v", m)
		}
	}
}

func TestDeadAppLeavesItsStreams(t *testing.T) {
	parallel(t)
	w := startWorld(t, []string{"com.example.a", "com.example.b"}, fast)
	_, events := w.glasses("jo@example.com", nil)
	a := w.startApp("jo@example.com", "com.example.a")
	if _, err := a.Camera.StartManagedStream(context.Background(), sdk.ManagedStreamOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, events, "start", 5*time.Second)
	// The app's server dies: its socket drops and nothing reconnects.
	w.apps["com.example.a"].stop()
	waitEvent(t, events, "stopped", 10*time.Second)

	// An unmanaged stream's owner that is stopped by the user ends it too.
	b := w.startApp("jo@example.com", "com.example.b")
	target := w.create("app server")
	if err := b.Camera.StartStream(context.Background(), sdk.RTMPStreamOptions{RTMPURL: target.Ingest.RTMPURL}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, events, "start", 5*time.Second)
	w.stopApp("jo@example.com", "com.example.b")
	waitEvent(t, events, "stopped", 10*time.Second)
	select {
	case <-b.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the stopped app's session did not end")
	}
}

func TestStreamStatusCheckAndTranscription(t *testing.T) {
	parallel(t)
	w := startWorld(t, []string{"com.example.a"}, nil)
	g, events := w.glasses("ka@example.com", nil)
	a := w.startApp("ka@example.com", "com.example.a")
	ctx := context.Background()
	r, err := a.Camera.CheckExistingStream(ctx)
	if err != nil || r.HasActiveStream {
		t.Fatalf("check before any stream: %+v %v", r, err)
	}
	res, err := a.Camera.StartManagedStream(ctx, sdk.ManagedStreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r, err = a.Camera.CheckExistingStream(ctx)
	if err != nil || !r.HasActiveStream || r.StreamInfo.Type != "managed" || r.StreamInfo.HLSURL != res.HLSURL || r.StreamInfo.ActiveViewers != 1 {
		t.Fatalf("check during a managed stream: %+v %v", r, err)
	}

	// The voice command of the guide's examples.
	heard := make(chan string, 4)
	a.Events.OnTranscription(func(tr sdk.Transcription) {
		if tr.IsFinal {
			heard <- tr.Text
		}
	})
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for done := false; !done; {
		g.SendTranscription("stop stream", true) // repeated until the subscription is in place
		select {
		case text := <-heard:
			if text != "stop stream" {
				t.Fatalf("heard %q", text)
			}
			done = true
		case <-deadline:
			t.Fatal("the app heard no transcription")
		case <-tick.C:
		}
	}
	if err := a.Layouts.ShowTextWall("Stream stopped", 0); err != nil {
		t.Fatal(err)
	}
	if e := waitEvent(t, events, "display", 5*time.Second); e.Text != "Stream stopped" {
		t.Fatalf("the glasses showed %q", e.Text)
	}
}

// rawApp is an app socket driven by hand, for what the SDKs never send.
type rawApp struct {
	t *testing.T
	c *websocket.Conn
}

func dialApp(t *testing.T, base string) *rawApp {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, strings.Replace(base, "http://", "ws://", 1)+"/app-ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return &rawApp{t: t, c: c}
}

func (r *rawApp) send(v any) {
	r.t.Helper()
	b, _ := json.Marshal(v)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.c.Write(ctx, websocket.MessageText, b); err != nil {
		r.t.Fatal(err)
	}
}

// next reads the next message of the given type, skipping others.
func (r *rawApp) next(typ string) map[string]any {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, data, err := r.c.Read(ctx)
		if err != nil {
			r.t.Fatalf("waiting for %s: %v", typ, err)
		}
		var m map[string]any
		json.Unmarshal(data, &m)
		if m["type"] == typ {
			return m
		}
	}
}

// closed waits for the socket to close and returns its close status.
func (r *rawApp) closed() websocket.StatusCode {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if _, _, err := r.c.Read(ctx); err != nil {
			return websocket.CloseStatus(err)
		}
	}
}

func TestAuthFailures(t *testing.T) {
	parallel(t)
	w := startWorld(t, []string{"com.example.a", "com.example.b"}, nil)
	w.glasses("lu@example.com", nil)

	init := func(session, pkg, key string) map[string]any {
		return map[string]any{"type": "tpa_connection_init", "sessionId": session, "packageName": pkg, "apiKey": key, "timestamp": "t"}
	}
	cases := []struct {
		name, session, pkg, key, code string
	}{
		{"bad API key", "lu@example.com-com.example.a", "com.example.a", "wrong-key-wrong-key", "INVALID_API_KEY"},
		{"unknown app", "lu@example.com-com.example.zzz", "com.example.zzz", "whatever-whatever", "INVALID_API_KEY"},
		{"app not started", "lu@example.com-com.example.a", "com.example.a", w.apps["com.example.a"].key, "APP_NOT_STARTED"},
		{"no such user", "nobody@example.com-com.example.a", "com.example.a", w.apps["com.example.a"].key, "SESSION_NOT_FOUND"},
		{"bad session id", "garbage", "com.example.a", w.apps["com.example.a"].key, "INVALID_SESSION"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := dialApp(t, w.base)
			r.send(init(tc.session, tc.pkg, tc.key))
			m := r.next("tpa_connection_error")
			if m["code"] != tc.code {
				t.Fatalf("code %v, want %s (%v)", m["code"], tc.code, m["message"])
			}
			if st := r.closed(); st != websocket.StatusPolicyViolation {
				t.Fatalf("closed with %v, want 1008", st)
			}
		})
	}

	// Glasses with a bad or missing token are refused before the upgrade.
	for _, tok := range []string{"", "not-a-token", w.token("x@example.com") + "x"} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, resp, err := websocket.Dial(ctx, strings.Replace(w.base, "http://", "ws://", 1)+"/glasses-ws?token="+tok, nil)
		cancel()
		if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("glasses with token %q: %v", tok, err)
		}
	}
	req, _ := http.NewRequest("POST", w.base+"/api/v1/me/apps/com.example.a/start", nil)
	req.Header.Set("Authorization", "Bearer nope")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("starting an app with a bad token: %d", resp.StatusCode)
	}

	// Another app's stream id: its stop is refused, the stream runs on.
	a := w.startApp("lu@example.com", "com.example.a")
	w.startApp("lu@example.com", "com.example.b")
	target := w.create("app server")
	if err := a.Camera.StartStream(context.Background(), sdk.RTMPStreamOptions{RTMPURL: target.Ingest.RTMPURL}); err != nil {
		t.Fatal(err)
	}
	id := a.Camera.StreamStatus().StreamID
	// A second socket of app b's session replaces the SDK's; it stops a's stream.
	r := dialApp(t, w.base)
	r.send(init("lu@example.com-com.example.b", "com.example.b", w.apps["com.example.b"].key))
	r.next("tpa_connection_ack")
	r.send(map[string]any{"type": "rtmp_stream_stop", "packageName": "com.example.b", "streamId": id})
	m := r.next("tpa_connection_error")
	if m["code"] != "NOT_OWNER" || !strings.Contains(m["message"].(string), "cannot stop stream") {
		t.Fatalf("a foreign stop: %v", m)
	}
	if !a.Camera.IsCurrentlyStreaming() {
		t.Fatal("the owner's stream stopped")
	}
	// Errors leave the socket open: the same socket still works.
	r.send(map[string]any{"type": "stream_status_check", "packageName": "com.example.b", "sessionId": "unknown-session-id"})
	if m := r.next("stream_status_check_response"); m["hasActiveStream"] != true {
		t.Fatalf("status check after an error: %v", m)
	}
}

func TestUnmanagedToAnotherServer(t *testing.T) {
	parallel(t)
	w := startWorld(t, []string{"com.example.a"}, nil)
	other := start(t, nil) // the app's own RTMP server: another glasscast
	target := other.create("the app's server")
	_, events := w.glasses("mo@example.com", nil)
	a := w.startApp("mo@example.com", "com.example.a")
	var mu sync.Mutex
	var seen []sdk.RTMPStreamStatus
	stopped := make(chan struct{})
	a.Camera.OnStreamStatus(func(s sdk.RTMPStreamStatus) {
		mu.Lock()
		seen = append(seen, s)
		mu.Unlock()
		if s.Status == sdk.StatusStopped {
			close(stopped)
		}
	})
	if err := a.Camera.StartStream(context.Background(), sdk.RTMPStreamOptions{RTMPURL: target.Ingest.RTMPURL,
		Video: &sdk.VideoConfig{Width: 1280, Height: 720, Bitrate: 2_500_000, FrameRate: 30}}); err != nil {
		t.Fatal(err)
	}
	if a.Camera.CurrentStreamURL() != target.Ingest.RTMPURL {
		t.Fatalf("current URL %q", a.Camera.CurrentStreamURL())
	}
	if err := a.Camera.WaitStreamActive(context.Background()); err != nil {
		t.Fatal(err)
	}
	other.waitPlayable(target.Playback.HLS)
	checkProbe(t, target, 1280, 720, 1)
	// Statuses carry the glasses' stats.
	deadline := time.After(10 * time.Second)
	for {
		mu.Lock()
		var st *sdk.StreamStats
		if n := len(seen); n > 0 {
			st = seen[n-1].Stats
		}
		mu.Unlock()
		if st != nil && st.Bitrate > 0 && st.FPS > 0 && st.Duration > 0 {
			break
		}
		select {
		case <-deadline:
			t.Fatalf("no stats in the statuses: %+v", seen)
		case <-time.After(100 * time.Millisecond):
		}
	}
	a.Camera.StopStream(context.Background())
	waitEvent(t, events, "stopped", 5*time.Second)
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("the app heard no stopped status")
	}
	if a.Camera.IsCurrentlyStreaming() {
		t.Fatal("still streaming after the stop")
	}
}

// cutter is a TCP proxy in front of glasscast's HTTP port that can cut every
// connection through it, as a network hiccup does.
type cutter struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newCutter(t *testing.T, target string) *cutter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cutter{ln: ln}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); c.cut(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			c.mu.Lock()
			c.conns = append(c.conns, in, out)
			c.mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(out, in); out.Close() }()
			go func() { defer wg.Done(); io.Copy(in, out); in.Close() }()
		}
	}()
	return c
}

func (c *cutter) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = nil
}

func TestSDKReconnectsAndKeepsItsStream(t *testing.T) {
	parallel(t)
	// Everything glasscast hands out (the app's WebSocket URL included) goes
	// through the cutter.
	var cut *cutter
	w := startWorld(t, []string{"com.example.a"}, func(c *config.Config) {
		c.AppGrace = 5 * time.Second
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		c.HTTP = ln.Addr().String()
		ln.Close()
		cut = newCutter(t, c.HTTP)
		c.PublicURL = "http://" + cut.ln.Addr().String()
	})
	_, events := w.glasses("ru@example.com", nil)
	a := w.startApp("ru@example.com", "com.example.a")
	rec := recordManaged(a)
	if _, err := a.Camera.StartManagedStream(context.Background(), sdk.ManagedStreamOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Camera.WaitManagedActive(context.Background()); err != nil {
		t.Fatal(err)
	}
	cut.cut() // the app's socket drops abnormally
	// The SDK reconnects within its first retry (1 s), inside the 5 s grace:
	// the stream carries on and the session still works.
	deadline := time.After(10 * time.Second)
	for a.Connections() < 2 {
		select {
		case <-a.Done():
			t.Fatalf("the session ended: %s", a.Reason())
		case <-deadline:
			t.Fatal("the SDK did not reconnect")
		case <-time.After(50 * time.Millisecond):
		}
	}
	r, err := a.Camera.CheckExistingStream(context.Background())
	if err != nil || !r.HasActiveStream || r.StreamInfo.Status != sdk.StatusActive {
		t.Fatalf("after the reconnect: %+v %v", r, err)
	}
	select {
	case e := <-events:
		if e.Kind == "stop" || e.Kind == "stopped" {
			t.Fatalf("the glasses were stopped during the app's hiccup: %+v", e)
		}
	default:
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, m := range rec.list {
		if m.Status == sdk.StatusStopped || m.Status == sdk.StatusError {
			t.Fatalf("the app heard %+v", m)
		}
	}
}
