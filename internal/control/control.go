// Package control is glasscast's control plane: the MentraOS-compatible life
// of users, their glasses and their apps, and the streams apps ask for.
//
// Each user has one state, guarded by one mutex: the phone/glasses
// connection and the device state it reports, the apps the user runs and
// their sockets, and the camera, which holds at most one stream at a time:
// a managed stream (glasscast's own ingest, shared by every app that asks,
// viewer URLs from the media plane) or an unmanaged one (the owning app's
// RTMP server, exclusive). Sockets are Peers that queue what they are sent,
// so nothing here blocks on a network while holding a lock; timers and
// watchers take the user's lock and check they are still current.
//
// control speaks protocol messages; package api carries them over
// WebSockets and HTTP.
package control

import (
	"context"
	"errors"
	"github.com/glasscast/glasscast/internal/access"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/glasscast/glasscast/internal/live"
	"github.com/glasscast/glasscast/internal/store"
)

// Peer is one end of a socket: an app's or a phone's.
type Peer interface {
	// Send queues a message; it never blocks. A peer that cannot keep up is
	// disconnected by its transport.
	Send(msg any)
	// Close closes the socket with a WebSocket close code and reason.
	Close(code int, reason string)
}

// Webhooks delivers webhooks to app servers.
type Webhooks interface {
	// Post sends body as JSON to publicURL + "/webhook".
	Post(ctx context.Context, publicURL string, body any) error
}

// Apps finds registered apps.
type Apps interface {
	App(ctx context.Context, pkg string) (store.App, error)
}

// Users records who connected and which apps run for each user, so that
// they start again when the phone connects after a restart (optional).
type Users interface {
	TouchUser(ctx context.Context, id string) error
	SetRunning(ctx context.Context, userID, pkg string, running bool) error
	Running(ctx context.Context, userID string) ([]string, error)
}

// Config tunes the control plane. Zero durations take the real system's
// values (protocol reference §6.5).
type Config struct {
	KeepAliveInterval   time.Duration // 15 s
	AckTimeout          time.Duration // 10 s
	MaxMissedAcks       int           // 3
	ManagedStartTimeout time.Duration // 30 s: not playable by then is an error
	AppInitTimeout      time.Duration // 5 s from session_request to tpa_connection_init
	AppGrace            time.Duration // 5 s for an app's socket to come back
	UserGrace           time.Duration // 60 s for the phone's socket to come back
	WebhookTimeout      time.Duration // 40 s: the SDK answers only after onSession
	StopDrain           time.Duration // 5 s between asking the glasses to stop and ending the stream

	// Record records managed streams.
	Record bool
	// Outputs, when set, restreams managed streams to their
	// restreamDestinations and to outputs added at runtime; unset, a
	// request naming destinations is refused.
	Outputs Outputs
	// CheckURL checks an unmanaged stream's RTMP URL (required); its error
	// is what the app is told.
	CheckURL func(rawURL string) error
	// Clock is the plane's time (default: the real one).
	Clock Clock
	// Camera gives out camera leases (default: a LocalCamera).
	Camera Camera
	// Directory finds a managed stream's user (default: a LocalDirectory).
	Directory Directory
	// Sessions, when set, is told of each change of a user's session, for
	// the node that goes on with it if this one goes away.
	Sessions Sessions
	// PublicURL is the base of the playback URLs handed out.
	PublicURL string
	// Grant, when set, is the path element of a media stream's viewer
	// URLs granting right (a playback token); unset, the stream's id.
	Grant func(mediaID string, right access.Right) string
	// KeepGrant, when set, makes a playback token another node handed out
	// for a stream whose session moved here the one Grant hands out.
	KeepGrant func(grant string)
	// RTMPBase is rtmp://HOST:PORT/live/ as the glasses reach glasscast.
	RTMPBase string
	// AppWebSocketURL is the /app-ws URL put in session_request webhooks.
	AppWebSocketURL string
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.KeepAliveInterval, 15*time.Second)
	def(&c.AckTimeout, 10*time.Second)
	def(&c.ManagedStartTimeout, 30*time.Second)
	def(&c.AppInitTimeout, 5*time.Second)
	def(&c.AppGrace, 5*time.Second)
	def(&c.UserGrace, 60*time.Second)
	def(&c.WebhookTimeout, 40*time.Second)
	def(&c.StopDrain, 5*time.Second)
	if c.MaxMissedAcks <= 0 {
		c.MaxMissedAcks = 3
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.Camera == nil {
		c.Camera = NewLocalCamera()
	}
	if c.Directory == nil {
		c.Directory = NewLocalDirectory()
	}
	if c.CheckURL == nil {
		panic("control: Config.CheckURL is required")
	}
}

// Errors of the plane's entry points.
var (
	ErrUnknownApp   = errors.New("unknown app")
	ErrShuttingDown = errors.New("shutting down")
)

// Plane is the control plane.
type Plane struct {
	cfg      Config
	log      *slog.Logger
	media    *live.Registry
	apps     Apps
	users    Users
	webhooks Webhooks
	// webhookFailures counts webhooks an app server did not take.
	webhookFailures atomic.Uint64

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	byID   map[string]*User
}

// New makes a control plane over the media plane's registry.
func New(cfg Config, media *live.Registry, apps Apps, users Users, webhooks Webhooks, log *slog.Logger) *Plane {
	cfg.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Plane{cfg: cfg, log: log, media: media, apps: apps, users: users, webhooks: webhooks,
		ctx: ctx, cancel: cancel, byID: make(map[string]*User)}
}

// Config returns the plane's settings.
func (p *Plane) Config() Config { return p.cfg }

// go runs f in a goroutine the plane waits for at Close.
func (p *Plane) goTracked(f func()) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f()
	}()
}

// user returns the user's state, creating it when create is set.
func (p *Plane) user(id string, create bool) *User {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	u := p.byID[id]
	if u == nil && create {
		u = newUser(p, id)
		p.byID[id] = u
	}
	return u
}

func (p *Plane) forget(u *User) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byID[u.id] == u {
		delete(p.byID, u.id)
	}
}

// allUsers lists the users the plane holds now.
func (p *Plane) allUsers() []*User {
	p.mu.Lock()
	defer p.mu.Unlock()
	all := make([]*User, 0, len(p.byID))
	for _, u := range p.byID {
		all = append(all, u)
	}
	return all
}

// Counts says how many users, connected phones and app sockets the plane
// holds.
func (p *Plane) Counts() (users, phones, apps int) {
	for _, u := range p.allUsers() {
		u.mu.Lock()
		users++
		if u.glasses != nil {
			phones++
		}
		for _, a := range u.apps {
			if a.sock != nil {
				apps++
			}
		}
		u.mu.Unlock()
	}
	return
}

// Phones lists the users whose phone is connected here.
func (p *Plane) Phones() []string {
	var out []string
	for _, u := range p.allUsers() {
		u.mu.Lock()
		if u.glasses != nil {
			out = append(out, u.id)
		}
		u.mu.Unlock()
	}
	return out
}

// WebhookFailures counts the webhooks app servers did not take, so far.
func (p *Plane) WebhookFailures() uint64 { return p.webhookFailures.Load() }

// Close ends every user session: apps are told, streams end, glasses are
// told to stop. It waits for the plane's goroutines.
func (p *Plane) Close() {
	p.mu.Lock()
	p.closed = true
	all := make([]*User, 0, len(p.byID))
	for _, u := range p.byID {
		all = append(all, u)
	}
	p.mu.Unlock()
	for _, u := range all {
		u.mu.Lock()
		u.disposeLocked("Server shutting down")
		u.mu.Unlock()
	}
	p.cancel()
	p.wg.Wait()
}
