package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/glasscast/glasscast/internal/store"
	"github.com/glasscast/glasscast/protocol"
)

type appState int

const (
	appStarting appState = iota + 1 // session_request sent, socket not yet initialised
	appRunning                      // socket initialised
	appGrace                        // socket closed, waiting for the SDK to reconnect
	appEnded
)

// appSession is an app running for a user.
type appSession struct {
	u         *User
	pkg       string
	app       store.App
	sessionID string
	state     appState
	sock      *AppSocket
	subs      map[string]bool
	timer     Timer         // init timeout, then grace
	ready     chan struct{} // closed once the app's socket is initialised or the start failed
	startErr  error
	// graceOver is closed when a grace ends: the socket came back, or the
	// app was brought back in a new session or stopped. Set by Gone.
	graceOver chan struct{}
	// released: the app handed its session over (ownership_release) before
	// its socket closed; it is not brought back when the grace ends.
	released bool
	// badKeySeen: an init for this starting session came with a wrong API
	// key; the start, if it times out, says so.
	badKeySeen bool
	// restored: taken over with its session from another node; its
	// socket, when back, hears where the managed stream stands.
	restored bool
}

// endGraceLocked tells the starts waiting on a grace that it is over.
func (a *appSession) endGraceLocked() {
	if a.graceOver != nil {
		close(a.graceOver)
		a.graceOver = nil
	}
}

// failStartLocked ends a start that failed with err.
func (a *appSession) failStartLocked(err error) {
	a.startErr = err
	a.endLocked()
	if a.u.apps[a.pkg] == a {
		delete(a.u.apps, a.pkg)
	}
}

func (a *appSession) endLocked() {
	if a.state == appEnded {
		return
	}
	a.state = appEnded
	if a.timer != nil {
		a.timer.Stop()
	}
	a.endGraceLocked()
	select {
	case <-a.ready:
	default:
		if a.startErr == nil {
			a.startErr = errors.New("the app was stopped before it connected")
		}
		close(a.ready)
	}
}

// Errors of StartApp.
var (
	ErrAppDidNotConnect = errors.New("the app server did not open its session in time")
	ErrAppBadKey        = errors.New("the app server opened its session with an API key glasscast does not accept for it")
)

// StartApp starts an app for a user, as the phone does: the app server gets
// a session_request webhook and must open its socket within the init
// timeout. StartApp returns once it has (or has not). An app whose socket
// dropped is in its grace: StartApp waits for the grace's end, when the
// socket is back or the app is brought back in a new session, and answers
// for that session: it never says an app runs that has no live session.
func (p *Plane) StartApp(ctx context.Context, userID, pkg string) error {
	app, err := p.apps.App(ctx, pkg)
	if errors.Is(err, store.ErrNotFound) {
		return ErrUnknownApp
	}
	if err != nil {
		return err
	}
	u := p.user(userID, true)
	if u == nil {
		return ErrShuttingDown
	}
	for {
		u.mu.Lock()
		if u.disposed {
			u.mu.Unlock()
			return ErrShuttingDown
		}
		a := u.apps[pkg]
		if a != nil && a.state == appGrace && a.graceOver != nil {
			over := a.graceOver
			u.mu.Unlock()
			select {
			case <-over:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if a != nil && a.state != appEnded {
			ready := a.ready
			u.mu.Unlock()
			return waitReady(ctx, ready, a)
		}
		a = u.beginAppLocked(app, nil)
		ready := a.ready
		u.mu.Unlock()
		if err := waitReady(ctx, ready, a); err != nil {
			return err
		}
		u.saveRunning(pkg)
		return nil
	}
}

// stopWebhookTimeout bounds the stop_request sent before an app is brought
// back in a new session.
const stopWebhookTimeout = 5 * time.Second

// StartTimeout is the longest StartApp takes to answer: an app in its grace
// is waited for, then brought back (a stop webhook, then a session request
// and its socket's init).
func (p *Plane) StartTimeout() time.Duration {
	return p.cfg.AppGrace + stopWebhookTimeout + p.cfg.AppInitTimeout
}

// beginAppLocked makes a new session of an app for the user and sends its
// session_request webhook; stop, when set, is a stop_request sent (and
// answered) first, for an app brought back in a new session. The session
// is ready once the app's socket is initialised.
func (u *User) beginAppLocked(app store.App, stop *protocol.StopRequest) *appSession {
	p, userID, pkg := u.p, u.id, app.PackageName
	a := &appSession{u: u, pkg: pkg, app: app, sessionID: userID + "-" + pkg, state: appStarting,
		subs: map[string]bool{}, ready: make(chan struct{})}
	u.apps[pkg] = a
	u.savedLocked()
	armInit := func() {
		a.timer = u.after(p.cfg.AppInitTimeout, func() {
			switch {
			case a.state != appStarting:
			case a.badKeySeen:
				p.log.Warn("app did not connect in time: its server's API key was refused", "user", userID, "app", pkg, "timeout", p.cfg.AppInitTimeout)
				a.failStartLocked(ErrAppBadKey)
			default:
				p.log.Warn("app did not connect in time", "user", userID, "app", pkg, "timeout", p.cfg.AppInitTimeout)
				a.failStartLocked(ErrAppDidNotConnect)
			}
		})
	}
	if stop == nil {
		armInit()
	}
	body := protocol.SessionRequest{
		Type: protocol.WebhookSessionRequest, SessionID: a.sessionID, UserID: userID, Timestamp: protocol.Now(),
		AugmentOSWebsocketURL: p.cfg.AppWebSocketURL, MentraOSWebsocketURL: p.cfg.AppWebSocketURL,
	}
	p.goTracked(func() {
		if stop != nil {
			// The SDKs take a session_request for a session they still
			// hold as a replacement, and a stop_request after it would end
			// the new one: the stop is answered first.
			ctx, cancel := context.WithTimeout(p.ctx, stopWebhookTimeout)
			if err := p.webhooks.Post(ctx, app.PublicURL, *stop); err != nil {
				p.webhookFailures.Add(1)
				p.log.Debug("stop webhook failed", "app", pkg, "err", err)
			}
			cancel()
			u.mu.Lock()
			started := a.state == appStarting
			if started && a.timer == nil {
				armInit()
			}
			u.mu.Unlock()
			if !started {
				return
			}
		}
		// The 2.1.29 SDK answers only after onSession returns, which may wait
		// for a stream: the socket's init, not this reply, says the app runs.
		ctx, cancel := context.WithTimeout(p.ctx, p.cfg.WebhookTimeout)
		defer cancel()
		if err := p.webhooks.Post(ctx, app.PublicURL, body); err != nil {
			p.webhookFailures.Add(1)
			u.mu.Lock()
			defer u.mu.Unlock()
			switch {
			case a.state != appStarting:
			case a.badKeySeen:
				// Its server failed to open the session, and the only init
				// seen had a wrong key: that is why.
				p.log.Warn("session webhook failed after a refused API key", "user", userID, "app", pkg, "err", err)
				a.failStartLocked(ErrAppBadKey)
			default:
				p.log.Warn("session webhook failed", "user", userID, "app", pkg, "err", err)
				a.failStartLocked(fmt.Errorf("session webhook: %w", err))
			}
		}
	})
	p.log.Info("app starting", "user", userID, "app", pkg)
	return a
}

// saveRunning remembers whether an app runs for the user as it does now;
// the saves of one user are in order, so the last one stands.
func (u *User) saveRunning(pkg string) {
	p := u.p
	if p.users == nil {
		return
	}
	u.keepMu.Lock()
	defer u.keepMu.Unlock()
	u.mu.Lock()
	a := u.apps[pkg]
	running := a != nil && a.state != appEnded
	u.mu.Unlock()
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	if err := p.users.SetRunning(ctx, u.id, pkg, running); err != nil {
		p.log.Warn("running apps not saved", "user", u.id, "app", pkg, "err", err)
	}
}

// restartApps starts the apps that ran for a user and do not run now (the
// server restarted, or the user's session ended while the phone was away),
// as the MentraOS cloud does when the phone connects.
func (p *Plane) restartApps(u *User) {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	pkgs, err := p.users.Running(ctx, u.id)
	cancel()
	if err != nil {
		p.log.Warn("running apps not read", "user", u.id, "err", err)
		return
	}
	for _, pkg := range pkgs {
		u.mu.Lock()
		a := u.apps[pkg]
		running := a != nil && a.state != appEnded
		u.mu.Unlock()
		if running {
			continue
		}
		p.goTracked(func() {
			ctx, cancel := context.WithTimeout(p.ctx, p.cfg.AppInitTimeout+p.cfg.WebhookTimeout)
			defer cancel()
			err := p.StartApp(ctx, u.id, pkg)
			switch {
			case err == nil:
				p.log.Info("app started again for the returning phone", "user", u.id, "app", pkg)
			case errors.Is(err, ErrUnknownApp):
				u.saveRunning(pkg) // the app was removed: forgotten
			default:
				p.log.Warn("app not started again for the returning phone", "user", u.id, "app", pkg, "err", err)
			}
		})
	}
}

func waitReady(ctx context.Context, ready chan struct{}, a *appSession) error {
	select {
	case <-ready:
		a.u.mu.Lock()
		defer a.u.mu.Unlock()
		return a.startErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// StopApp stops an app for a user: it leaves its streams, its server gets a
// stop_request webhook, and its socket gets app_stopped and is closed.
func (p *Plane) StopApp(ctx context.Context, userID, pkg string) error {
	u := p.user(userID, false)
	if u == nil {
		return ErrUnknownApp
	}
	u.mu.Lock()
	a := u.apps[pkg]
	if a == nil || a.state == appEnded {
		u.mu.Unlock()
		return ErrUnknownApp
	}
	u.stopAppLocked(a, "user_disabled")
	u.mu.Unlock()
	u.saveRunning(pkg)
	return nil
}

// stopAppLocked ends an app session for good; its server gets a
// stop_request webhook.
func (u *User) stopAppLocked(a *appSession, reason string) {
	p := u.p
	body := u.endAppLocked(a, reason)
	publicURL := a.app.PublicURL
	p.goTracked(func() {
		ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
		defer cancel()
		if err := p.webhooks.Post(ctx, publicURL, body); err != nil {
			p.webhookFailures.Add(1)
			p.log.Debug("stop webhook failed", "app", a.pkg, "err", err)
		}
	})
	p.log.Info("app stopped", "user", u.id, "app", a.pkg, "reason", reason)
}

// endAppLocked ends an app session: it leaves its streams, its socket (if
// any) is told and closed. It returns the stop_request its server is owed.
func (u *User) endAppLocked(a *appSession, reason string) protocol.StopRequest {
	u.leaveStreamsLocked(a, "The app stopped")
	a.endLocked()
	if u.apps[a.pkg] == a {
		delete(u.apps, a.pkg)
	}
	u.savedLocked()
	if a.sock != nil {
		a.sock.peer.Send(protocol.AppStopped{Type: protocol.TypeAppStopped, Reason: reason, Timestamp: protocol.Now()})
		a.sock.peer.Close(1000, "App stopped")
		a.sock = nil
	}
	return protocol.StopRequest{Type: protocol.WebhookStopRequest, SessionID: a.sessionID, UserID: u.id, Reason: reason, Timestamp: protocol.Now()}
}

// leaveStreamsLocked takes an app out of every stream: it stops viewing the
// managed stream, and its unmanaged stream ends.
func (u *User) leaveStreamsLocked(a *appSession, why string) {
	if ms := u.managed; ms != nil && ms.viewers[a.pkg] {
		ms.leaveLocked(a.pkg, why)
	}
	if us := u.unmanaged; us != nil && us.owner == a.pkg {
		us.endLocked(protocol.StreamStopped, "", why, true)
	}
}

// AppSocket is an app server's connection on /app-ws.
type AppSocket struct {
	p       *Plane
	peer    Peer
	sess    *appSession // set by tpa_connection_init
	refused bool
	// Verified, when set, is the package whose API key the node the app
	// connected to has checked (a socket bridged from another node): its
	// init carries no key and is taken for that package alone.
	Verified string
	// OnBadKey, when set, is told of a wrong API key (or an unknown app)
	// before the refusal is sent: a failed authentication.
	OnBadKey func()
}

// ConnectApp accepts a new app socket; its first message must be
// tpa_connection_init.
func (p *Plane) ConnectApp(peer Peer) *AppSocket {
	return &AppSocket{p: p, peer: peer}
}

func (s *AppSocket) refuse(code protocol.ErrorCode, message string) {
	s.refused = true
	s.peer.Send(protocol.AppConnectionError{Type: protocol.TypeAppConnectionError, Code: code, Message: message, Timestamp: protocol.Now()})
	s.peer.Close(1008, message)
}

// mentraosSettings are the user settings the SDK expects in the ack.
var mentraosSettings = map[string]any{
	"metricSystemEnabled": false, "contextualDashboard": true, "headUpAngle": 45, "brightness": 50,
	"autoBrightness": true, "sensingEnabled": true, "alwaysOnStatusBar": false, "bypassVad": false,
	"bypassAudioEncoding": false, "preferredMic": "auto", "useOnboardMic": false, "userTimezone": nil,
}

// mentraLiveCapabilities describe the glasses glasscast's apps stream from.
var mentraLiveCapabilities = json.RawMessage(`{"modelName":"Mentra Live","hasCamera":true,"camera":{"resolution":{"width":1280,"height":720},"hasHDR":false,"hasFocus":true,"video":{"canRecord":true,"canStream":true,"supportedStreamTypes":["rtmp"],"supportedResolutions":[{"width":1280,"height":720},{"width":1920,"height":1080}]}},"hasDisplay":false,"display":null,"hasMicrophone":true,"microphone":{"count":1,"hasVAD":false},"hasSpeaker":true,"speaker":{"count":1,"isPrivate":false},"hasIMU":true,"imu":{"axisCount":6,"hasAccelerometer":true,"hasCompass":false,"hasGyroscope":true},"hasButton":true,"button":{"count":1,"buttons":[{"type":"press","events":["press","long_press"],"isCapacitive":false}]},"hasLight":true,"light":{"count":1,"lights":[{"id":"privacy","purpose":"privacy","isFullColor":false,"color":"white"}]},"hasWifi":true}`)

// Receive handles a message from the app. It is called by one goroutine,
// the socket's reader.
func (s *AppSocket) Receive(msg any) {
	if s.refused {
		return
	}
	if init, ok := msg.(*protocol.AppConnectionInit); ok {
		s.init(init)
		return
	}
	a := s.sess
	if a == nil {
		s.refuse(protocol.CodeInvalidSession, "The first message must be tpa_connection_init")
		return
	}
	u := a.u
	u.mu.Lock()
	defer u.mu.Unlock()
	if a.sock != s || a.state != appRunning {
		return
	}
	switch m := msg.(type) {
	case *protocol.SubscriptionUpdate:
		a.subs = map[string]bool{}
		for _, st := range m.Streams() {
			if len(a.subs) < 256 && len(st) <= 256 {
				a.subs[st] = true
			}
		}
	case *protocol.ManagedStreamRequest:
		u.managedRequestLocked(a, m)
	case *protocol.ManagedStreamStop:
		u.managedStopLocked(a)
	case *protocol.RTMPStreamRequest:
		u.unmanagedRequestLocked(a, m)
	case *protocol.RTMPStreamStop:
		u.unmanagedStopLocked(a, m.StreamID)
	case *protocol.StreamStatusCheck:
		s.peer.Send(u.statusCheckLocked())
	case *protocol.OwnershipRelease:
		a.released = true
	case *protocol.DisplayEvent:
		m.PackageName = a.pkg
		if m.Timestamp == "" {
			m.Timestamp = protocol.Now()
		}
		u.sendGlassesLocked(m)
	}
}

// init authenticates the socket and binds it to its app session.
func (s *AppSocket) init(m *protocol.AppConnectionInit) {
	p := s.p
	userID, ok := strings.CutSuffix(m.SessionID, "-"+m.PackageName)
	if !ok || userID == "" || m.PackageName == "" {
		s.refuse(protocol.CodeInvalidSession, "Invalid session ID format")
		return
	}
	if !s.keyOK(m) {
		if s.OnBadKey != nil {
			s.OnBadKey()
		}
		p.log.Warn("app refused: bad API key", "app", m.PackageName)
		// A start waiting for this app says why if it times out. Only this
		// connection fails: anyone can send an init naming the session,
		// and the app's own may still come.
		if u := p.user(userID, false); u != nil {
			u.mu.Lock()
			if a := u.apps[m.PackageName]; a != nil && a.state == appStarting {
				a.badKeySeen = true
			}
			u.mu.Unlock()
		}
		s.refuse(protocol.CodeInvalidAPIKey, "Invalid API key")
		return
	}
	u := p.user(userID, false)
	if u == nil {
		s.refuse(protocol.CodeSessionNotFound, "Session not found")
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	a := u.apps[m.PackageName]
	if a == nil || a.state == appEnded || u.disposed {
		s.refuse(protocol.CodeAppNotStarted, "App not started for this session")
		return
	}
	if old := a.sock; old != nil && old != s {
		old.peer.Close(1008, "Replaced by a new connection")
	}
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
	a.sock, a.state = s, appRunning
	a.released = false
	a.endGraceLocked()
	s.sess = a
	select {
	case <-a.ready:
	default:
		close(a.ready)
	}
	s.peer.Send(protocol.AppConnectionAck{
		Type: protocol.TypeAppConnectionAck, SessionID: m.SessionID, Settings: []any{},
		MentraOSSettings: mentraosSettings, Capabilities: mentraLiveCapabilities, Timestamp: protocol.Now(),
	})
	s.peer.Send(protocol.DeviceStateUpdate{Type: protocol.TypeDeviceStateUpdate, State: u.deviceSnapshotLocked(), FullSnapshot: true, Timestamp: protocol.Now()})
	if a.restored {
		// Its session moved here from a node that went away: the stream
		// it shares is where it was, at the same URLs.
		a.restored = false
		if ms := u.managed; ms != nil && ms.viewers[a.pkg] {
			ms.sendLocked(a.pkg, ms.statusMsg(ms.status, "The stream goes on: its session moved to another node"))
		}
	}
	p.log.Info("app connected", "user", userID, "app", m.PackageName)
}

// keyOK checks an init's API key, or that another node checked it.
func (s *AppSocket) keyOK(m *protocol.AppConnectionInit) bool {
	if s.Verified != "" {
		return m.PackageName == s.Verified
	}
	return s.p.AppKeyOK(m.PackageName, m.APIKey)
}

// AppKeyOK says key is pkg's API key.
func (p *Plane) AppKeyOK(pkg, key string) bool {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	app, err := p.apps.App(ctx, pkg)
	return err == nil && app.CheckKey(key)
}

// Gone is called when the app's socket closes. The SDK reconnects within a
// few seconds. An app that does not is brought back as the MentraOS cloud
// does, while the user's phone is connected: its server gets a stop_request
// then a new session_request (a restarted app server has lost its
// sessions). Without the phone, or after the app handed its session over,
// it is stopped; it starts again when the phone comes back.
func (s *AppSocket) Gone() {
	a := s.sess
	if a == nil {
		return
	}
	u := a.u
	u.mu.Lock()
	defer u.mu.Unlock()
	if a.sock != s || a.state != appRunning {
		return
	}
	u.graceLocked(a, u.p.cfg.AppGrace)
}

// graceLocked waits grace for the app's socket to come back.
func (u *User) graceLocked(a *appSession, grace time.Duration) {
	a.sock, a.state = nil, appGrace
	a.graceOver = make(chan struct{})
	a.timer = u.after(grace, func() {
		if a.state != appGrace || u.apps[a.pkg] != a {
			return
		}
		if u.glasses == nil || u.disposed || a.released {
			u.p.log.Info("app gone for good", "user", u.id, "app", a.pkg, "grace", grace)
			u.stopAppLocked(a, "error")
			return
		}
		u.p.log.Info("app did not come back: starting it in a new session", "user", u.id, "app", a.pkg, "grace", grace)
		stop := u.endAppLocked(a, "error")
		u.beginAppLocked(a.app, &stop)
	})
}
