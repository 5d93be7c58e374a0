package control_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/glasscast/glasscast/internal/control"
	"github.com/glasscast/glasscast/internal/live"
	"github.com/glasscast/glasscast/internal/rtmp"
	"github.com/glasscast/glasscast/internal/store"
	"github.com/glasscast/glasscast/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// ---- a clock the test moves ----

type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
	set    chan struct{} // a token per AfterFunc
}

type fakeTimer struct {
	c       *fakeClock
	at      time.Time
	f       func()
	stopped bool
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) control.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	select {
	case c.set <- struct{}{}:
	default:
	}
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.stopped
	t.stopped = true
	return was
}

// Advance moves the clock by d, running each timer that comes due, in
// order, on the caller's goroutine (timers set meanwhile count too).
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		sort.SliceStable(c.timers, func(i, j int) bool { return c.timers[i].at.Before(c.timers[j].at) })
		var due *fakeTimer
		for i, t := range c.timers {
			if t.stopped {
				continue
			}
			if !t.at.After(end) {
				due = t
				c.timers = append(c.timers[:i:i], c.timers[i+1:]...)
			}
			break
		}
		if due == nil {
			c.now = end
			c.mu.Unlock()
			return
		}
		c.now = due.at
		due.stopped = true
		c.mu.Unlock()
		due.f()
	}
}

// ---- sockets ----

// peer is one end of a socket: what the plane sends lands in msgs.
type peer struct {
	msgs   chan any
	closed chan string
}

func newPeer() *peer { return &peer{msgs: make(chan any, 4096), closed: make(chan string, 1)} }

func (p *peer) Send(msg any) { p.msgs <- msg }
func (p *peer) Close(code int, reason string) {
	select {
	case p.closed <- fmt.Sprintf("%d %s", code, reason):
	default:
	}
}

// next returns the next message that match accepts, skipping others.
func next[T any](t *testing.T, p *peer, match func(T) bool) T {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m := <-p.msgs:
			if v, ok := m.(T); ok && (match == nil || match(v)) {
				return v
			}
		case <-deadline:
			var zero T
			t.Fatalf("no %T within 10 s", zero)
			return zero
		}
	}
}

// none says no message of type T is waiting.
func none[T any](t *testing.T, p *peer) {
	t.Helper()
	for {
		select {
		case m := <-p.msgs:
			if v, ok := m.(T); ok {
				t.Fatalf("unexpected %T: %+v", v, v)
			}
		default:
			return
		}
	}
}

// ---- the world: a plane over a real registry, apps and phones faked ----

type apps map[string]store.App

func (a apps) App(_ context.Context, pkg string) (store.App, error) {
	if app, ok := a[pkg]; ok {
		return app, nil
	}
	return store.App{}, store.ErrNotFound
}

const apiKey = "the-key-of-every-test-app"

// webhooks connects the app's socket when glasscast posts a session
// request, as an app server would (unless silent), and keeps a log of what
// was posted.
type webhooks struct {
	w      *world
	silent bool

	mu     sync.Mutex
	posted []string      // "stop <session> <reason>" or "session <session>"
	gate   chan struct{} // when set, a session request waits for it to close
	seen   chan string   // what was posted, as it is
}

func (h *webhooks) Post(_ context.Context, url string, body any) error {
	h.mu.Lock()
	var line string
	switch b := body.(type) {
	case protocol.StopRequest:
		line = "stop " + b.SessionID + " " + b.Reason
	case protocol.SessionRequest:
		line = "session " + b.SessionID
	}
	h.posted = append(h.posted, line)
	gate, seen := h.gate, h.seen
	h.mu.Unlock()
	if seen != nil {
		seen <- line
	}
	req, ok := body.(protocol.SessionRequest)
	if h.silent || !ok {
		return nil
	}
	if gate != nil {
		<-gate
	}
	pkg := strings.TrimPrefix(url, "http://")
	p := newPeer()
	sock := h.w.p.ConnectApp(p)
	h.w.mu.Lock() // before the init: StartApp returns once it is taken
	h.w.sockets[req.SessionID] = p
	h.w.appSocks[req.SessionID] = sock
	h.w.mu.Unlock()
	sock.Receive(&protocol.AppConnectionInit{Type: protocol.TypeAppConnectionInit, SessionID: req.SessionID, PackageName: pkg, APIKey: apiKey})
	return nil
}

func (h *webhooks) log() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.posted)
}

type world struct {
	t     *testing.T
	clock *fakeClock
	reg   *live.Registry
	p     *control.Plane
	hooks *webhooks

	mu       sync.Mutex
	sockets  map[string]*peer // by session id (user-pkg)
	appSocks map[string]*control.AppSocket
}

func newWorld(t *testing.T, pkgs ...string) *world { return newWorldWith(t, nil, pkgs...) }

// newWorldWith is newWorld with the plane's configuration tweaked.
func newWorldWith(t *testing.T, tweak func(*control.Config), pkgs ...string) *world {
	w := &world{t: t, clock: &fakeClock{now: time.Unix(1_700_000_000, 0), set: make(chan struct{}, 1024)}, sockets: map[string]*peer{}, appSocks: map[string]*control.AppSocket{}}
	known := apps{}
	for _, pkg := range pkgs {
		known[pkg] = store.App{PackageName: pkg, PublicURL: "http://" + pkg, KeyHash: store.HashKey(apiKey), Permissions: []string{store.PermissionCamera}}
	}
	known["no.camera"] = store.App{PackageName: "no.camera", PublicURL: "http://no.camera", KeyHash: store.HashKey(apiKey)}
	w.reg = live.New(live.Config{}, quiet)
	w.hooks = &webhooks{w: w}
	cfg := control.Config{
		Clock:     w.clock,
		PublicURL: "http://glasscast.test",
		RTMPBase:  "rtmp://glasscast.test/live/",
		CheckURL:  func(raw string) error { _, err := rtmp.ParseURL(raw); return err },
	}
	if tweak != nil {
		tweak(&cfg)
	}
	w.p = control.New(cfg, w.reg, known, nil, w.hooks, quiet)
	t.Cleanup(func() {
		w.p.Close()
		w.reg.Close()
	})
	return w
}

// phone connects a user's phone with Mentra Live glasses on WiFi.
func (w *world) phone(user string) (*peer, *control.GlassesSocket) {
	w.t.Helper()
	p := newPeer()
	g, err := w.p.ConnectGlasses(user, p)
	if err != nil {
		w.t.Fatal(err)
	}
	g.Receive(&protocol.GlassesConnectionState{Type: protocol.TypeGlassesConnectionState, ModelName: "Mentra Live", Status: "CONNECTED",
		Wifi: &protocol.WifiState{Connected: true, SSID: "home"}})
	return p, g
}

// app starts an app for a user and returns its socket's peer and socket.
func (w *world) app(user, pkg string) (*peer, *control.AppSocket) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.p.StartApp(ctx, user, pkg); err != nil {
		w.t.Fatal(err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sockets[user+"-"+pkg], w.appSocks[user+"-"+pkg]
}

func managed(pkg string) *protocol.ManagedStreamRequest {
	return &protocol.ManagedStreamRequest{Type: protocol.TypeManagedStreamRequest, PackageName: pkg}
}

func unmanaged(pkg string) *protocol.RTMPStreamRequest {
	return &protocol.RTMPStreamRequest{Type: protocol.TypeRTMPStreamRequest, PackageName: pkg, RTMPURL: "rtmp://example.com/live/" + pkg}
}

// answer is the first word on a request: a status, or an error's code.
func answer(t *testing.T, p *peer, isManaged bool) string {
	t.Helper()
	if isManaged {
		m := next[protocol.ManagedStreamStatus](t, p, nil)
		if m.Code != "" {
			return string(m.Code)
		}
		return m.Status.String()
	}
	m := next[protocol.RTMPStreamStatus](t, p, nil)
	if m.Code != "" {
		return string(m.Code)
	}
	return m.Status.String()
}

// Every order of two apps' requests for the camera gets the answer the
// camera's rules give: an unmanaged stream holds it alone, the managed one
// is shared.
func TestCameraRules(t *testing.T) {
	type step struct {
		app     string // a or b
		managed bool
		stop    bool
		want    string
	}
	cases := []struct {
		name   string
		steps  []step
		starts int // start_rtmp_stream messages the glasses get
	}{
		{"unmanaged then unmanaged", []step{{"a", false, false, "initializing"}, {"b", false, false, "CAMERA_BUSY"}}, 1},
		{"unmanaged twice", []step{{"a", false, false, "initializing"}, {"a", false, false, "ALREADY_STREAMING"}}, 1},
		{"unmanaged then managed", []step{{"a", false, false, "initializing"}, {"b", true, false, "CAMERA_BUSY"}}, 1},
		{"managed then unmanaged", []step{{"a", true, false, "initializing"}, {"b", false, false, "CAMERA_BUSY"}}, 1},
		{"managed shared", []step{{"a", true, false, "initializing"}, {"b", true, false, "initializing"}}, 1},
		{"unmanaged stopped, then another", []step{{"a", false, false, "initializing"}, {"a", false, true, "stopped"}, {"b", false, false, "initializing"}}, 2},
		{"managed left by all, then unmanaged", []step{{"a", true, false, "initializing"}, {"b", true, false, "initializing"},
			{"a", true, true, "stopped"}, {"b", false, false, "CAMERA_BUSY"}, {"b", true, true, "stopped"}, {"b", false, false, "initializing"}}, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t, "a", "b")
			glasses, _ := w.phone("u")
			pa, sa := w.app("u", "a")
			pb, sb := w.app("u", "b")
			for i, s := range c.steps {
				p, sock := pa, sa
				if s.app == "b" {
					p, sock = pb, sb
				}
				switch {
				case s.stop && s.managed:
					sock.Receive(&protocol.ManagedStreamStop{Type: protocol.TypeManagedStreamStop, PackageName: s.app})
				case s.stop:
					sock.Receive(&protocol.RTMPStreamStop{Type: protocol.TypeRTMPStreamStop, PackageName: s.app})
				case s.managed:
					sock.Receive(managed(s.app))
				default:
					sock.Receive(unmanaged(s.app))
				}
				if got := answer(t, p, s.managed); got != s.want {
					t.Fatalf("step %d (%+v): %s", i, s, got)
				}
			}
			// The glasses were told to start one stream per start granted.
			starts := 0
			for {
				select {
				case m := <-glasses.msgs:
					if _, ok := m.(protocol.StartRTMPStream); ok {
						starts++
					}
					continue
				default:
				}
				break
			}
			if starts != c.starts {
				t.Fatalf("the glasses were told to start %d streams, want %d", starts, c.starts)
			}
		})
	}
}

// Many apps asking for the camera at once: exactly one gets it.
func TestRacingForTheCamera(t *testing.T) {
	const n = 8
	var pkgs []string
	for i := range n {
		pkgs = append(pkgs, fmt.Sprintf("app%d", i))
	}
	w := newWorld(t, pkgs...)
	w.phone("u")
	peers := make([]*peer, n)
	socks := make([]*control.AppSocket, n)
	for i, pkg := range pkgs {
		peers[i], socks[i] = w.app("u", pkg)
	}
	var wg sync.WaitGroup
	for i, pkg := range pkgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				socks[i].Receive(unmanaged(pkg))
			} else {
				socks[i].Receive(managed(pkg))
			}
		}()
	}
	wg.Wait()
	granted, managedGranted, busy := 0, 0, 0
	for i := range pkgs {
		switch got := answer(t, peers[i], i%2 == 1); got {
		case "initializing":
			granted++
			if i%2 == 1 {
				managedGranted++
			}
		case "CAMERA_BUSY":
			busy++
		default:
			t.Fatalf("%s: %s", pkgs[i], got)
		}
	}
	// One unmanaged stream alone, or the managed one shared by however many
	// managed requests got in before any unmanaged one.
	if granted == 0 || granted > 1 && managedGranted != granted || granted+busy != n {
		t.Fatalf("%d granted (%d managed), %d busy", granted, managedGranted, busy)
	}
}

// A managed stream that never becomes playable is an error with "timeout"
// once ManagedStartTimeout passes, and the glasses are told to stop.
func TestManagedStartTimeout(t *testing.T) {
	w := newWorld(t, "a")
	glasses, _ := w.phone("u")
	pa, sa := w.app("u", "a")
	sa.Receive(managed("a"))
	if got := answer(t, pa, true); got != "initializing" {
		t.Fatal(got)
	}
	w.clock.Advance(29 * time.Second)
	none[protocol.ManagedStreamStatus](t, pa)
	w.clock.Advance(time.Second)
	m := next[protocol.ManagedStreamStatus](t, pa, nil)
	if m.Status != protocol.StreamError || m.Code != protocol.CodeTimeout || !strings.Contains(m.Message, "timeout") {
		t.Fatalf("after 30 s: %+v", m)
	}
	next[protocol.StopRTMPStream](t, glasses, nil)
	// The camera is free again.
	sa.Receive(unmanaged("a"))
	if got := answer(t, pa, false); got != "initializing" {
		t.Fatal(got)
	}
}

// An unmanaged stream's keep-alive: acked, it runs on; three misses in a
// row and it times out.
func TestKeepAlive(t *testing.T) {
	w := newWorld(t, "a")
	glasses, g := w.phone("u")
	pa, sa := w.app("u", "a")
	sa.Receive(unmanaged("a"))
	start := next[protocol.StartRTMPStream](t, glasses, nil)
	g.Receive(&protocol.GlassesStreamStatus{Type: protocol.TypeRTMPStreamStatus, StreamID: start.StreamID, Status: "streaming"})
	if got := answer(t, pa, false); got != "initializing" {
		t.Fatal(got)
	}
	if got := answer(t, pa, false); got != "active" {
		t.Fatal(got)
	}
	for range 5 { // acked: no timeout however long
		w.clock.Advance(15 * time.Second)
		ka := next[protocol.KeepRTMPStreamAlive](t, glasses, nil)
		g.Receive(&protocol.KeepAliveAck{Type: protocol.TypeKeepAliveAck, StreamID: ka.StreamID, AckID: ka.AckID})
	}
	w.clock.Advance(15 * time.Second)
	none[protocol.RTMPStreamStatus](t, pa)
	for range 3 { // not acked
		next[protocol.KeepRTMPStreamAlive](t, glasses, nil)
		w.clock.Advance(15 * time.Second)
	}
	m := next[protocol.RTMPStreamStatus](t, pa, nil)
	if m.Status != protocol.StreamTimeout || m.Code != protocol.CodeKeepAliveTimeout {
		t.Fatalf("after three missed acks: %+v", m)
	}
	next[protocol.StopRTMPStream](t, glasses, nil)
}

// A stream's duration limit stops it, and the glasses, at the limit.
func TestDurationLimit(t *testing.T) {
	w := newWorld(t, "a")
	glasses, _ := w.phone("u")
	pa, sa := w.app("u", "a")
	req := unmanaged("a")
	req.Stream = &protocol.StreamConfig{DurationLimit: 60}
	sa.Receive(req)
	answer(t, pa, false)
	w.clock.Advance(59 * time.Second)
	none[protocol.RTMPStreamStatus](t, pa)
	w.clock.Advance(time.Second)
	if m := next[protocol.RTMPStreamStatus](t, pa, nil); m.Status != protocol.StreamStopped || !strings.Contains(m.ErrorDetails, "duration limit") {
		t.Fatalf("at the limit: %+v", m)
	}
	next[protocol.StopRTMPStream](t, glasses, nil)
}

// An app server that never opens its socket fails the start once
// AppInitTimeout passes.
func TestAppInitTimeout(t *testing.T) {
	w := newWorld(t, "a")
	w.phone("u")
	w.hooks.silent = true
	done := make(chan error, 1)
	go func() { done <- w.p.StartApp(context.Background(), "u", "a") }()
	for len(w.clock.set) > 0 { // timers set before the start
		<-w.clock.set
	}
	select { // the start's own timer
	case <-w.clock.set:
	case err := <-done:
		t.Fatalf("the start ended before its timeout: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the start set no timer")
	}
	w.clock.Advance(5 * time.Second)
	if err := <-done; !errors.Is(err, control.ErrAppDidNotConnect) {
		t.Fatalf("start: %v", err)
	}
}

// Requests the glasses cannot take are refused with the right code.
func TestRefusals(t *testing.T) {
	w := newWorld(t, "a")
	w.phone("u")
	pa, sa := w.app("u", "a")
	bad := unmanaged("a")
	bad.RTMPURL = "https://example.com/live/x"
	sa.Receive(bad)
	if got := answer(t, pa, false); got != "INVALID_URL" {
		t.Fatal(got)
	}
	big := managed("a")
	big.Video = &protocol.VideoConfig{Width: 4096}
	sa.Receive(big)
	if got := answer(t, pa, true); got != "INVALID_CONFIG" {
		t.Fatal(got)
	}
	dest := managed("a")
	dest.RestreamDestinations = []protocol.RestreamDestination{{URL: "rtmp://x/live/k"}}
	sa.Receive(dest) // this plane has no outputs
	if got := answer(t, pa, true); got != "INVALID_CONFIG" {
		t.Fatal(got)
	}
	pn, sn := w.app("u", "no.camera")
	sn.Receive(managed("no.camera"))
	if got := answer(t, pn, true); got != "PERMISSION_DENIED" {
		t.Fatal(got)
	}
	// No phone: the glasses are not connected.
	w2 := newWorld(t, "a")
	pa2, sa2 := w2.app("v", "a")
	sa2.Receive(unmanaged("a"))
	if got := answer(t, pa2, false); got != "GLASSES_NOT_CONNECTED" {
		t.Fatal(got)
	}
}

// Phones lists the users whose phone is connected, and not one whose phone
// has gone.
func TestPhones(t *testing.T) {
	w := newWorld(t)
	w.phone("ann@example.com")
	_, bob := w.phone("bob@example.com")
	got := w.p.Phones()
	slices.Sort(got)
	if !slices.Equal(got, []string{"ann@example.com", "bob@example.com"}) {
		t.Fatalf("phones %v", got)
	}
	bob.Gone()
	if got := w.p.Phones(); !slices.Equal(got, []string{"ann@example.com"}) {
		t.Fatalf("phones after bob's went: %v", got)
	}
}

// drainTimers forgets the timers set so far.
func (w *world) drainTimers() {
	for len(w.clock.set) > 0 {
		<-w.clock.set
	}
}

// waitTimer waits for the next timer to be set.
func (w *world) waitTimer() {
	w.t.Helper()
	select {
	case <-w.clock.set:
	case <-time.After(10 * time.Second):
		w.t.Fatal("no timer was set")
	}
}

// An app server that restarted (its socket gone and not back within the
// grace, the phone connected) is brought back as the MentraOS cloud does:
// a stop webhook, then a new session request. A start from the phone
// during the grace answers for the new session, once it is open, never
// before.
func TestAppBroughtBack(t *testing.T) {
	w := newWorld(t, "a")
	w.phone("u")
	oldPeer, sa := w.app("u", "a")
	sa.Receive(managed("a"))
	if got := answer(t, oldPeer, true); got != "initializing" {
		t.Fatal(got)
	}
	gate := make(chan struct{})
	seen := make(chan string, 16)
	w.hooks.mu.Lock()
	w.hooks.gate, w.hooks.seen, w.hooks.posted = gate, seen, nil
	w.hooks.mu.Unlock()

	w.drainTimers()
	sa.Gone()
	w.waitTimer() // the grace
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- w.p.StartApp(ctx, "u", "a")
	}()
	w.clock.Advance(5 * time.Second)
	for _, want := range []string{"stop u-a error", "session u-a"} {
		select {
		case got := <-seen:
			if got != want {
				t.Fatalf("posted %q, want %q (all: %v)", got, want, w.hooks.log())
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %q posted; posted %v", want, w.hooks.log())
		}
	}
	select {
	case err := <-done:
		t.Fatalf("the start answered (%v) before the new session opened", err)
	default:
	}
	close(gate)
	if err := <-done; err != nil {
		t.Fatalf("start: %v", err)
	}
	w.mu.Lock()
	newPeer, sock := w.sockets["u-a"], w.appSocks["u-a"]
	w.mu.Unlock()
	if newPeer == oldPeer {
		t.Fatal("no new socket was opened")
	}
	// The new session can start the managed stream again.
	sock.Receive(managed("a"))
	if got := answer(t, newPeer, true); got != "initializing" {
		t.Fatalf("managed start in the new session: %s", got)
	}
}

// An app whose socket comes back within the grace keeps its session: no
// webhook, and a start during the grace answers once it is back.
func TestAppBackWithinGrace(t *testing.T) {
	w := newWorld(t, "a")
	w.phone("u")
	_, sa := w.app("u", "a")
	w.hooks.mu.Lock()
	w.hooks.posted = nil
	w.hooks.mu.Unlock()
	w.drainTimers()
	sa.Gone()
	w.waitTimer()
	done := make(chan error, 1)
	go func() { done <- w.p.StartApp(context.Background(), "u", "a") }()
	p := newPeer()
	back := w.p.ConnectApp(p)
	back.Receive(&protocol.AppConnectionInit{Type: protocol.TypeAppConnectionInit, SessionID: "u-a", PackageName: "a", APIKey: apiKey})
	next[protocol.AppConnectionAck](t, p, nil)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the start did not answer once the socket was back")
	}
	w.clock.Advance(5 * time.Second)
	if got := w.hooks.log(); len(got) != 0 {
		t.Fatalf("posted %v to an app that came back", got)
	}
}

// Without the phone, an app that does not come back is stopped, not
// brought back; it starts again when the phone returns.
func TestAppGoneWithoutPhone(t *testing.T) {
	w := newWorld(t, "a")
	_, g := w.phone("u")
	_, sa := w.app("u", "a")
	seen := make(chan string, 16)
	w.hooks.mu.Lock()
	w.hooks.posted, w.hooks.seen = nil, seen
	w.hooks.mu.Unlock()
	g.Gone()
	w.drainTimers()
	sa.Gone()
	w.waitTimer()
	w.clock.Advance(5 * time.Second)
	select {
	case got := <-seen:
		if got != "stop u-a error" {
			t.Fatalf("posted %q, want the stop", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no stop webhook")
	}
	w.p.Close() // waits for every webhook it sent
	if got := w.hooks.log(); !slices.Equal(got, []string{"stop u-a error"}) {
		t.Fatalf("posted %v, want one stop", got)
	}
}

// An init with a wrong key fails only its own connection: a pending start
// goes on, and the app's own init (with its key) opens the session; a
// start that only ever saw wrong keys says so when it times out.
func TestWrongKeyFailsOnlyItsConnection(t *testing.T) {
	w := newWorld(t, "a")
	w.phone("u")
	w.hooks.silent = true
	init := func(key string) *peer {
		p := newPeer()
		w.p.ConnectApp(p).Receive(&protocol.AppConnectionInit{Type: protocol.TypeAppConnectionInit, SessionID: "u-a", PackageName: "a", APIKey: key})
		return p
	}
	w.drainTimers()
	done := make(chan error, 1)
	go func() { done <- w.p.StartApp(context.Background(), "u", "a") }()
	w.waitTimer() // the start's
	stranger := init("not-the-key")
	if e := next[protocol.AppConnectionError](t, stranger, nil); e.Code != protocol.CodeInvalidAPIKey {
		t.Fatalf("the stranger got %+v", e)
	}
	next[protocol.AppConnectionAck](t, init(apiKey), nil)
	if err := <-done; err != nil {
		t.Fatalf("the start: %v, want the app's session", err)
	}

	if err := w.p.StopApp(context.Background(), "u", "a"); err != nil {
		t.Fatal(err)
	}
	w.drainTimers()
	go func() { done <- w.p.StartApp(context.Background(), "u", "a") }()
	w.waitTimer()
	next[protocol.AppConnectionError](t, init("still-not-the-key"), nil)
	w.clock.Advance(5 * time.Second)
	if err := <-done; !errors.Is(err, control.ErrAppBadKey) {
		t.Fatalf("a start that saw only a wrong key: %v", err)
	}
}
