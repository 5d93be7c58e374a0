package server_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

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
		a := &testApp{pkg: pkg, key: cfgApps[i].APIKey, sessions: make(chan *sdk.Session, 8)}
		a.srv = sdk.NewAppServer(sdk.Config{PackageName: pkg, APIKey: a.key})
		a.srv.OnSession(func(ctx context.Context, s *sdk.Session) error {
			a.sessions <- s
			return nil
		})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		ln := lns[i]
		go func() { done <- a.srv.Serve(ctx, ln) }()
		a.stop = func() { cancel(); <-done }
		t.Cleanup(a.stop)
		w.apps[pkg] = a
	}
	return w
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

func waitEvent(t *testing.T, events chan sim.Event, kind string, within time.Duration) sim.Event {
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

func (st *statuses) wait(t *testing.T, status string, within time.Duration) sdk.ManagedStreamStatus {
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

	if err := s.Camera.StopManagedStream(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, "stopped", 5*time.Second)
	waitEvent(t, events, "stopped", 5*time.Second)
	if code, _ := fetch(t, active.HLSURL); code != http.StatusNotFound {
		t.Fatalf("HLS after the last app left: %d", code)
	}
	order := []string{}
	rec.mu.Lock()
	for _, m := range rec.list {
		order = append(order, m.Status)
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
