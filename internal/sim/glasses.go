package sim

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/glasscast/glasscast/protocol"
)

// Glasses simulates a phone with Mentra Live glasses on /glasses-ws, as
// protocol reference §5 describes them: it reports the glasses connected on
// WiFi, answers pings, pushes the test source over RTMP when told to
// (reporting initializing, streaming, reconnecting…, with stats), acks
// keep-alives and stops on its own after 60 s without one, and reconnects
// both its socket and its RTMP push.
type Glasses struct {
	// Server is glasscast's base URL (http://host:port).
	Server string
	// Token is the user's core token.
	Token string
	// TLS configures https:// servers and rtmps:// pushes (nil: the
	// system's roots).
	TLS *tls.Config

	Model   string // "Mentra Live" by default
	Battery int    // percent; 100 by default
	NoWifi  bool

	Clip      *Clip // the built-in clip by default
	VideoOnly bool
	// IgnoreKeepAlive drops keep-alives instead of acking them.
	IgnoreKeepAlive bool
	// Stall accepts a start but never gets the RTMP push going.
	Stall bool
	// KeepAliveTimeout is the glasses' own limit without keep-alives (60 s).
	KeepAliveTimeout time.Duration
	// StatsEvery is how often a streaming status with stats goes out (5 s).
	StatsEvery time.Duration
	// RetryBase is the first RTMP reconnect delay (1 s), growing 1.5x.
	RetryBase time.Duration
	// MaxRetries bounds RTMP reconnects (10).
	MaxRetries int
	// PhoneRetry is the wait before the phone's socket reconnects (5 s).
	PhoneRetry time.Duration

	Log *slog.Logger
	// Events, when set, receives what happens, for tests and the CLI.
	Events chan<- Event

	mu       sync.Mutex
	conn     *websocket.Conn
	stream   *glassesStream
	downTill time.Time
	cancelWS context.CancelFunc
	out      chan any
	// awaitPong: the ping sent after the glasses' state is unanswered.
	awaitPong bool
}

// Event is something the simulated glasses did or were told.
type Event struct {
	Kind     string // connected, disconnected, start, streaming, stop, stopped, error, display, keepalive, reconnecting, reconnected
	StreamID string
	Text     string
}

func (g *Glasses) event(e Event) {
	if g.Events == nil {
		return
	}
	select {
	case g.Events <- e:
	default:
	}
}

func (g *Glasses) defaults() {
	if g.Model == "" {
		g.Model = "Mentra Live"
	}
	if g.Battery == 0 {
		g.Battery = 100
	}
	if g.KeepAliveTimeout <= 0 {
		g.KeepAliveTimeout = 60 * time.Second
	}
	if g.StatsEvery <= 0 {
		g.StatsEvery = 5 * time.Second
	}
	if g.RetryBase <= 0 {
		g.RetryBase = time.Second
	}
	if g.MaxRetries <= 0 {
		g.MaxRetries = 10
	}
	if g.PhoneRetry <= 0 {
		g.PhoneRetry = 5 * time.Second
	}
	if g.Log == nil {
		g.Log = slog.New(slog.DiscardHandler)
	}
}

func (g *Glasses) wsURL() (string, error) {
	u, err := url.Parse(g.Server)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("glasses: bad server URL %q", g.Server)
	}
	switch u.Scheme {
	case "http", "ws":
		u.Scheme = "ws"
	case "https", "wss":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("glasses: bad server URL %q", g.Server)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/glasses-ws"
	u.RawQuery = url.Values{"token": {g.Token}}.Encode()
	return u.String(), nil
}

// ErrRefused is returned when the server refuses the token.
var ErrRefused = errors.New("glasses: the server refused the core token")

// Run connects and serves until ctx ends, reconnecting the phone's socket
// when it drops. It returns ErrRefused at once for a bad token.
func (g *Glasses) Run(ctx context.Context) error {
	g.defaults()
	u, err := g.wsURL()
	if err != nil {
		return err
	}
	defer g.stopStream("", false)
	for {
		if wait := g.networkDownFor(); wait > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
		}
		err := g.session(ctx, u)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrRefused) {
			return err
		}
		g.Log.Info("glasses: socket closed; reconnecting", "err", err, "in", g.PhoneRetry)
		g.event(Event{Kind: "disconnected", Text: fmt.Sprint(err)})
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(g.PhoneRetry):
		}
	}
}

func (g *Glasses) networkDownFor() time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	return time.Until(g.downTill)
}

// DropNetwork cuts the glasses off for d: the phone's socket and the RTMP
// push both drop, and nothing reconnects until d has passed.
func (g *Glasses) DropNetwork(d time.Duration) {
	g.mu.Lock()
	g.downTill = time.Now().Add(d)
	cancel := g.cancelWS
	st := g.stream
	g.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if st != nil {
		st.cut()
	}
	g.event(Event{Kind: "network-down", Text: d.String()})
}

// redactToken takes the core token out of a dial error, which quotes the
// URL that carries it.
func redactToken(err error, token string) error {
	if token == "" {
		return err
	}
	msg := err.Error()
	for _, t := range []string{token, url.QueryEscape(token)} {
		msg = strings.ReplaceAll(msg, t, "…")
	}
	if msg == err.Error() {
		return err
	}
	return errors.New(msg)
}

// session is one connection of the phone's socket.
func (g *Glasses) session(ctx context.Context, u string) error {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	var opts *websocket.DialOptions
	if g.TLS != nil {
		opts = &websocket.DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{TLSClientConfig: g.TLS}}}
	}
	c, resp, err := websocket.Dial(dctx, u, opts)
	cancel()
	if err != nil {
		if resp != nil && resp.StatusCode == 401 {
			return ErrRefused
		}
		return redactToken(err, g.Token)
	}
	c.SetReadLimit(protocol.MaxMessageBytes)
	sctx, scancel := context.WithCancel(ctx)
	out := make(chan any, 256)
	g.mu.Lock()
	g.conn, g.cancelWS, g.out = c, scancel, out
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		if g.conn == c {
			g.conn, g.cancelWS, g.out = nil, nil, nil
		}
		g.mu.Unlock()
		scancel()
		c.CloseNow()
	}()
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for {
			select {
			case <-sctx.Done():
				return
			case m := <-out:
				b, _ := json.Marshal(m)
				wctx, cancel := context.WithTimeout(sctx, 10*time.Second)
				err := c.Write(wctx, websocket.MessageText, b)
				cancel()
				if err != nil {
					scancel()
					return
				}
			}
		}
	}()
	defer func() { scancel(); <-writerDone }()

	for {
		_, data, err := c.Read(sctx)
		if err != nil {
			return err
		}
		msg, err := protocol.DecodeToGlasses(data)
		if err != nil {
			continue
		}
		g.handle(msg)
	}
}

// send queues a message on the phone's socket, if it is up.
func (g *Glasses) send(msg any) {
	g.mu.Lock()
	out := g.out
	g.mu.Unlock()
	if out == nil {
		return
	}
	select {
	case out <- msg:
	default:
	}
}

func nowMs() int64 { return time.Now().UnixMilli() }

func (g *Glasses) handle(msg any) {
	switch m := msg.(type) {
	case *protocol.ConnectionAck:
		g.Log.Info("glasses: connected", "user", m.SessionID)
		g.send(protocol.GlassesConnectionState{Type: protocol.TypeGlassesConnectionState, ModelName: g.Model, Status: "CONNECTED",
			Wifi: &protocol.WifiState{Connected: !g.NoWifi, SSID: "glasscast-sim"}, Timestamp: nowMs()})
		g.send(protocol.GlassesBatteryUpdate{Type: protocol.TypeGlassesBatteryUpdate, Level: g.Battery, Timestamp: nowMs()})
		// The server answers a ping after what came before it: its pong
		// says the glasses' state is known there, and only then are the
		// glasses "connected" for whoever waits on the event.
		g.mu.Lock()
		g.awaitPong = true
		g.mu.Unlock()
		g.send(protocol.Ping{Type: protocol.TypePing})
	case *protocol.Ping:
		switch m.Type {
		case protocol.TypePing:
			g.send(protocol.Ping{Type: protocol.TypePong})
		case protocol.TypePong:
			g.mu.Lock()
			first := g.awaitPong
			g.awaitPong = false
			g.mu.Unlock()
			if first {
				g.event(Event{Kind: "connected"})
			}
		}
	case *protocol.DisplayEvent:
		text := string(m.Layout)
		var tw protocol.TextWall
		if json.Unmarshal(m.Layout, &tw) == nil && tw.Text != "" {
			text = tw.Text
		}
		g.Log.Info("glasses: display", "app", m.PackageName, "text", text)
		g.event(Event{Kind: "display", Text: text})
	case *protocol.StartRTMPStream:
		g.start(m)
	case *protocol.StopRTMPStream:
		g.event(Event{Kind: "stop", StreamID: m.StreamID})
		if !g.stopStream("", true) {
			g.send(protocol.GlassesStreamStatus{Type: protocol.TypeRTMPStreamStatus, Status: "error", ErrorDetails: "not_streaming", Timestamp: nowMs()})
		}
	case *protocol.KeepRTMPStreamAlive:
		g.mu.Lock()
		st := g.stream
		g.mu.Unlock()
		if st == nil || st.id != m.StreamID {
			return
		}
		g.event(Event{Kind: "keepalive", StreamID: m.StreamID, Text: m.AckID})
		if g.IgnoreKeepAlive {
			return
		}
		st.alive()
		g.send(protocol.KeepAliveAck{Type: protocol.TypeKeepAliveAck, StreamID: m.StreamID, AckID: m.AckID, Timestamp: nowMs()})
	}
}

// SendTranscription sends speech as the phone's local transcription.
func (g *Glasses) SendTranscription(text string, final bool) {
	now := nowMs()
	g.send(protocol.LocalTranscription{Type: protocol.TypeLocalTranscription, Text: text, IsFinal: final,
		StartTime: now - 800, EndTime: now, TranscribeLanguage: "en-US", Provider: "glasscast-simulator"})
}

// SetBattery changes the battery level reported and checked at start.
func (g *Glasses) SetBattery(level int) {
	g.mu.Lock()
	g.Battery = level
	g.mu.Unlock()
	g.send(protocol.GlassesBatteryUpdate{Type: protocol.TypeGlassesBatteryUpdate, Level: level, Timestamp: nowMs()})
}

func (g *Glasses) refuse(details string) {
	g.Log.Info("glasses: refusing a stream", "reason", details)
	g.event(Event{Kind: "error", Text: details})
	g.send(protocol.GlassesStreamStatus{Type: protocol.TypeRTMPStreamStatus, Status: "error", ErrorDetails: details, Timestamp: nowMs()})
}

func (g *Glasses) start(m *protocol.StartRTMPStream) {
	g.mu.Lock()
	battery := g.Battery
	g.mu.Unlock()
	switch {
	case m.RTMPURL == "":
		g.refuse("missing_rtmp_url")
		return
	case battery < 15:
		g.refuse(fmt.Sprintf("Battery level too low (%d%%) - minimum 15%% required", battery))
		return
	case g.NoWifi:
		g.refuse("no_wifi_connection")
		return
	}
	g.mu.Lock()
	cur := g.stream
	g.mu.Unlock()
	if cur != nil && cur.id == m.StreamID && cur.url == m.RTMPURL {
		// Told again to stream what they are streaming (or reconnecting
		// to): a phone that came back. They carry on.
		g.Log.Info("glasses: already streaming it", "stream", m.StreamID)
		return
	}
	if g.stopStream("", false) {
		time.Sleep(500 * time.Millisecond) // as the glasses do before restarting
	}
	clip := g.Clip
	if clip == nil {
		var err error
		if clip, err = LoadClip(DefaultClip); err != nil {
			g.refuse(err.Error())
			return
		}
	}
	if g.VideoOnly {
		clip = clip.WithoutAudio()
	}
	st := &glassesStream{g: g, id: m.StreamID, url: m.RTMPURL, clip: clip, started: time.Now(), done: make(chan struct{})}
	st.ctx, st.cancel = context.WithCancel(context.Background())
	g.mu.Lock()
	g.stream = st
	g.mu.Unlock()
	g.Log.Info("glasses: streaming", "stream", m.StreamID, "app", m.AppID)
	g.event(Event{Kind: "start", StreamID: m.StreamID, Text: m.RTMPURL})
	if g.Stall {
		go func() {
			defer close(st.done)
			st.status("initializing", nil)
			<-st.ctx.Done()
		}()
		return
	}
	go st.run()
}

// stopStream stops the current stream, reporting stopping and stopped when
// report is set. It reports whether there was one.
func (g *Glasses) stopStream(reason string, report bool) bool {
	g.mu.Lock()
	st := g.stream
	g.stream = nil
	g.mu.Unlock()
	if st == nil {
		return false
	}
	if report {
		g.send(protocol.GlassesStreamStatus{Type: protocol.TypeRTMPStreamStatus, Status: "stopping", Timestamp: nowMs()})
	}
	st.stop(reason)
	if report {
		g.send(protocol.GlassesStreamStatus{Type: protocol.TypeRTMPStreamStatus, Status: "stopped", StreamID: st.id, Timestamp: nowMs()})
	}
	g.event(Event{Kind: "stopped", StreamID: st.id})
	return true
}

// Streaming returns the id of the stream being pushed, if any.
func (g *Glasses) Streaming() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stream == nil {
		return ""
	}
	return g.stream.id
}

// glassesStream is one push of the glasses.
type glassesStream struct {
	g       *Glasses
	id      string
	url     string
	clip    *Clip
	started time.Time
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}

	mu       sync.Mutex
	lastKA   time.Time
	pushStop context.CancelFunc
	src      *Source
	frames   uint64
	dropped  int64
}

func (s *glassesStream) alive() {
	s.mu.Lock()
	s.lastKA = time.Now()
	s.mu.Unlock()
}

// cut drops the RTMP connection (the network went away).
func (s *glassesStream) cut() {
	s.mu.Lock()
	stop := s.pushStop
	s.mu.Unlock()
	if stop != nil {
		stop()
	}
}

func (s *glassesStream) stop(string) {
	s.cancel()
	<-s.done
}

func (s *glassesStream) status(status string, extra func(*protocol.GlassesStreamStatus)) {
	m := protocol.GlassesStreamStatus{Type: protocol.TypeRTMPStreamStatus, Status: status, StreamID: s.id, Timestamp: nowMs()}
	if extra != nil {
		extra(&m)
	}
	s.g.send(m)
}

func (s *glassesStream) stats() *protocol.StreamStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := time.Since(s.started).Seconds()
	st := &protocol.StreamStats{Duration: d, DroppedFrames: s.dropped}
	if s.src != nil && d > 0 {
		st.Bitrate = int64(float64(s.src.BytesSent()*8) / d)
		st.FPS = float64(s.src.FramesSent()) / d
	}
	return st
}

// run pushes the stream, reconnecting as the glasses do, until stopped, out
// of retries, or without keep-alives for too long.
func (s *glassesStream) run() {
	defer close(s.done)
	g := s.g
	s.status("initializing", nil)
	connected := make(chan struct{}, 1)
	attempt := 0
	everStreamed := false
	var pushErr chan error
	startPush := func() {
		pctx, stop := context.WithCancel(s.ctx)
		src := &Source{Clip: s.clip, TLS: s.g.TLS, OnConnected: func() { connected <- struct{}{} }}
		s.mu.Lock()
		s.pushStop, s.src = stop, src
		s.mu.Unlock()
		pushErr = make(chan error, 1)
		go func() {
			if wait := g.networkDownFor(); wait > 0 {
				stop()
				pushErr <- errors.New("network unreachable")
				return
			}
			pushErr <- src.Publish(pctx, s.url)
		}()
	}
	startPush()
	statsT := time.NewTicker(g.StatsEvery)
	defer statsT.Stop()
	kaT := time.NewTicker(time.Second)
	defer kaT.Stop()
	var retry <-chan time.Time
	for {
		select {
		case <-s.ctx.Done():
			s.cut()
			if pushErr != nil {
				<-pushErr
			}
			return
		case <-connected:
			if !everStreamed || attempt > 0 {
				if attempt > 0 {
					s.status("reconnected", nil)
					g.event(Event{Kind: "reconnected", StreamID: s.id})
				} else {
					s.status("streaming", func(m *protocol.GlassesStreamStatus) { m.Stats = s.stats() })
					g.event(Event{Kind: "streaming", StreamID: s.id})
				}
			}
			everStreamed, attempt = true, 0
			s.alive() // the keep-alive limit runs from the connection
		case err := <-pushErr:
			pushErr = nil
			if s.ctx.Err() != nil {
				return
			}
			attempt++
			if attempt > g.MaxRetries {
				s.status("reconnect_failed", func(m *protocol.GlassesStreamStatus) { m.MaxAttempts = g.MaxRetries })
				g.event(Event{Kind: "error", StreamID: s.id, Text: "reconnect_failed"})
				s.detach()
				return
			}
			delay := time.Duration(float64(g.RetryBase) * pow15(attempt-1) * (1 + 0.3*rand.Float64()))
			reason := "connection lost"
			if err != nil {
				reason = err.Error()
			}
			s.status("reconnecting", func(m *protocol.GlassesStreamStatus) {
				m.Attempt, m.MaxAttempts, m.Reason = attempt, g.MaxRetries, reason
			})
			g.event(Event{Kind: "reconnecting", StreamID: s.id, Text: reason})
			retry = time.After(delay)
		case <-retry:
			retry = nil
			startPush()
		case <-statsT.C:
			if everStreamed && pushErr != nil {
				s.status("streaming", func(m *protocol.GlassesStreamStatus) { m.Stats = s.stats() })
			}
		case <-kaT.C:
			s.mu.Lock()
			last := s.lastKA
			s.mu.Unlock()
			if everStreamed && time.Since(last) > g.KeepAliveTimeout {
				s.status("error", func(m *protocol.GlassesStreamStatus) { m.ErrorDetails = "Stream timed out - no keep-alive from cloud" })
				g.event(Event{Kind: "error", StreamID: s.id, Text: "no keep-alive"})
				s.cut()
				if pushErr != nil {
					<-pushErr
				}
				s.detach()
				return
			}
		}
	}
}

// detach forgets the stream after it ended on its own.
func (s *glassesStream) detach() {
	g := s.g
	g.mu.Lock()
	if g.stream == s {
		g.stream = nil
	}
	g.mu.Unlock()
}

func pow15(n int) float64 {
	f := 1.0
	for range n {
		f *= 1.5
	}
	return f
}
