// Package member is a node's view of the cluster it belongs to: where a
// stream, a recording or a user's session is (here, or on node N) and how
// to reach it there. A cluster node's view is a Member: it keeps the
// cluster's directory of streams true (announcing this node's, tending
// those of nodes that are gone, taking a stream over when its publisher
// comes here), relays other nodes' streams, answers other nodes' requests
// and forwards its own, bridges app sockets to their user's home and
// drains the node before it stops. A single node's is Alone: everything is
// here.
//
// The node asks its view through View alone, the same way whether it is
// in a cluster or not.
package member

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/glasscast/glasscast/internal/access"
	"github.com/glasscast/glasscast/internal/api"
	"github.com/glasscast/glasscast/internal/auth"
	"github.com/glasscast/glasscast/internal/cluster"
	"github.com/glasscast/glasscast/internal/cmaf"
	"github.com/glasscast/glasscast/internal/control"
	"github.com/glasscast/glasscast/internal/live"
	"github.com/glasscast/glasscast/internal/nodehttp"
	"github.com/glasscast/glasscast/internal/record"
	"github.com/glasscast/glasscast/internal/relay"
	"github.com/glasscast/glasscast/internal/restream"
	"github.com/glasscast/glasscast/internal/store"
	"github.com/glasscast/glasscast/internal/stream"
	"github.com/glasscast/glasscast/internal/web"
	rtc "github.com/glasscast/glasscast/internal/webrtc"
)

// View is what a node asks of the cluster's view. Every answer about
// another node's stream, recording or user is "none" on a single node.
type View interface {
	// Node is this node's name.
	Node() string
	// Cluster is the membership (nil alone).
	Cluster() *cluster.Cluster
	// Nodes lists the cluster's nodes, this one included.
	Nodes() []cluster.Node
	// Draining says the node is sending what it holds to the others.
	Draining() bool
	// Joining says the node has not joined its cluster yet, or does not
	// have the stream directory yet (a balancer sends no one here
	// meanwhile).
	Joining() bool

	// Adopt takes over another node's stream whose key a publisher
	// brought here (live.ErrUnknownKey: no stream has the key).
	Adopt(key string) (live.Kept, error)
	// Packager and Hub find another node's stream, relayed here.
	Packager(id string) (*cmaf.Packager, bool)
	Hub(id string) (*stream.Hub, bool)
	// Relays are the relays of other nodes' streams (nil alone).
	Relays() *relay.Relays
	// Knows says another node holds a stream or recording with the id;
	// Public that another node's stream plays without a token; Status
	// is another node's stream's public status.
	Knows(id string) bool
	Public(id string) bool
	Status(id, grant string) (web.Status, bool)
	// Watched adds to v the viewers other nodes (and this one, with
	// self) said at their last heartbeat they have of a stream.
	Watched(id string, v api.Viewers, self bool) api.Viewers
	// ShareRevocation records a stream's new playback-token generation
	// for every node, before this one applies it.
	ShareRevocation(ctx context.Context, id string, gen uint32) error

	// Directory and Camera are the control plane's managed streams and
	// camera leases (nil: the plane's own, in memory).
	Directory() control.Directory
	Camera() control.Camera
	// Sessions records users' sessions for the node that goes on with
	// them (nil alone).
	Sessions() control.Sessions
	// Elsewhere is the API's view of what other nodes hold (nil alone).
	Elsewhere() api.Elsewhere
	// WHEP and Recordings route the requests for a WebRTC session or a
	// recording another node holds there; the rest to next.
	WHEP(next http.Handler) http.Handler
	Recordings(next http.Handler) http.Handler

	// Start begins serving the cluster once the node's parts are built.
	Start(Parts) error
	// Drain sends the node's sockets and publishers to the others
	// (stopIngest stops taking publishers); Leave takes the node out.
	Drain(stopIngest func())
	Leave()
	// Close releases what Join made, for a node that never ran.
	Close()
}

// Parts are the node's components the view works with once they are
// built (Start).
type Parts struct {
	Plane   *control.Plane
	RTC     *rtc.Server
	Outputs *restream.Manager
	Sockets *api.Sockets
	API     *api.Server
	Apps    *api.Apps
	// Handler answers the requests other nodes forward here: every
	// route of the node.
	Handler http.Handler
	// URLs makes a stream's viewer URLs.
	URLs api.URLs
	// LocalStatus is the public status of this node's own stream.
	LocalStatus func(id, grant string) (web.Status, bool)
	// Grants says whether a path element grants right over its stream.
	Grants func(grant string, right access.Right) bool
	// Ready says the node serves (false before and while it stops).
	Ready func() bool
}

// Config is what joining needs: the cluster's own configuration and the
// node's parts that exist before the rest.
type Config struct {
	Cluster cluster.Config
	// ReconnectWindow and DrainTimeout are the node's (config).
	ReconnectWindow time.Duration
	DrainTimeout    time.Duration
	Reg             *live.Registry
	Recs            *record.Store
	Access          *access.Signer
	Store           *store.Store
	// Throttle, when set, counts failed authentications cluster-wide.
	Throttle *auth.Throttle
	// Apps are the apps of the configuration file, put in the cluster's
	// once it has joined.
	Apps []store.App
}

// Member is a cluster node's view.
type Member struct {
	cfg    Config
	log    *slog.Logger
	c      *cluster.Cluster
	reg    *live.Registry
	seal   *cluster.Sealer     // what nodes tell each other
	nodes  *nodehttp.Transport // requests to the other nodes' handlers
	public string

	parts    atomic.Pointer[Parts] // once started
	origin   *relay.Origin         // this node's streams, for other nodes
	relays   *relay.Relays         // other nodes' streams, played here
	managed  *managedDirectory     // the managed streams' users
	leases   *clusterCamera        // the camera leases, recorded
	sessions *sessionStore         // the users' sessions, recorded
	bridges  bridgeSet             // this node's app sockets bridged to their home
	draining atomic.Bool           // stopping, its sockets and publishers sent to the others
	outputs  outputsShared
	left     atomic.Bool // Leave has begun: this node writes no more entries
	// startStopAtHome has the user's home node answer a start or stop of
	// an app (ok false: this node is the home).
	startStopAtHome func(ctx context.Context, user, pkg, action string) (int, []byte, bool)

	stopTend, stopMoves func()
	// stopSessions stops answering other nodes for this node's users.
	stopSessions func()
	undo         cleanups
}

// cleanups is a stack of releases.
type cleanups struct {
	mu sync.Mutex
	fs []func()
}

func (c *cleanups) push(f func()) {
	c.mu.Lock()
	c.fs = append(c.fs, f)
	c.mu.Unlock()
}

// run releases everything, last pushed first, once.
func (c *cleanups) run() {
	c.mu.Lock()
	fs := c.fs
	c.fs = nil
	c.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

var _ View = (*Member)(nil)

// Join makes the node a member of the cluster its configuration names.
// The apps are the cluster's from then on: once it has joined, the node
// moves the apps it kept on its own into the cluster and puts those of its
// configuration file there.
func Join(cfg Config, log *slog.Logger) (_ *Member, err error) {
	m := &Member{cfg: cfg, log: log, reg: cfg.Reg, public: cfg.Cluster.Public,
		outputs:      outputsShared{written: map[string]string{}, pending: map[string][]store.Output{}},
		stopSessions: func() {}, stopTend: func() {}, stopMoves: func() {}}
	defer func() {
		if err != nil {
			m.undo.run()
		}
	}()
	ccfg := cfg.Cluster
	ccfg.Generation = m.revokedElsewhere
	c, err := cluster.Start(ccfg, log)
	if err != nil {
		return nil, err
	}
	m.c = c
	m.undo.push(c.Close)
	if m.seal, err = cluster.NewSealer(ccfg.Secret); err != nil {
		return nil, err
	}
	m.nodes = m.nodeTransport()
	if err := m.shareFailures(cfg.Throttle); err != nil {
		return nil, err
	}
	apps := c.Apps()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if c.WaitReady(ctx) != nil {
			return
		}
		moved, err := apps.MoveApps(ctx, cfg.Store)
		if moved > 0 {
			log.Info("cluster: this node's own apps moved into the cluster", "apps", moved)
		}
		if err == nil {
			err = store.PutApps(ctx, apps, cfg.Apps)
		}
		if err != nil && ctx.Err() == nil {
			log.Error("cluster: apps not shared", "err", err)
		}
	}()
	m.undo.push(func() { cancel(); <-done })
	m.managed = m.newManagedDirectory()
	m.undo.push(m.managed.close)
	m.leases = m.newClusterCamera()
	m.undo.push(m.leases.close)
	m.sessions = m.newSessionStore()
	m.undo.push(m.sessions.close)
	return m, nil
}

// Apps are the cluster's apps.
func (m *Member) Apps() store.Apps { return m.c.Apps() }

func (m *Member) Node() string              { return m.c.Node() }
func (m *Member) Cluster() *cluster.Cluster { return m.c }
func (m *Member) Draining() bool            { return m.draining.Load() }
func (m *Member) Joining() bool             { return !m.c.Loaded() }
func (m *Member) Relays() *relay.Relays     { return m.relays }
func (m *Member) Directory() control.Directory {
	return m.managed
}
func (m *Member) Camera() control.Camera     { return m.leases }
func (m *Member) Sessions() control.Sessions { return m.sessions }

// Nodes lists the cluster's nodes.
func (m *Member) Nodes() []cluster.Node { return m.c.Nodes() }

// Close releases what Join and Start made, for a node that never ran.
func (m *Member) Close() { m.undo.run() }

// ready says the node serves.
func (m *Member) ready() bool {
	p := m.parts.Load()
	return p != nil && p.Ready()
}

// Alone is a single node's view: everything it holds is here, nothing is
// anywhere else.
type Alone struct {
	Name string
	URL  string // its public URL
	// Version and Stats describe the node in Nodes.
	Version string
	Stats   func() cluster.Stats
}

var _ View = Alone{}

func (a Alone) Node() string              { return a.Name }
func (a Alone) Cluster() *cluster.Cluster { return nil }
func (a Alone) Nodes() []cluster.Node {
	return []cluster.Node{{Name: a.Name, Public: a.URL, Version: a.Version, Heartbeat: time.Now().UTC(),
		Alive: true, Stats: a.Stats()}}
}
func (Alone) Draining() bool                                      { return false }
func (Alone) Joining() bool                                       { return false }
func (Alone) Adopt(string) (live.Kept, error)                     { return live.Kept{}, live.ErrUnknownKey }
func (Alone) Packager(string) (*cmaf.Packager, bool)              { return nil, false }
func (Alone) Hub(string) (*stream.Hub, bool)                      { return nil, false }
func (Alone) Relays() *relay.Relays                               { return nil }
func (Alone) Knows(string) bool                                   { return false }
func (Alone) Public(string) bool                                  { return false }
func (Alone) Status(string, string) (web.Status, bool)            { return web.Status{}, false }
func (Alone) Watched(_ string, v api.Viewers, _ bool) api.Viewers { return v }
func (Alone) ShareRevocation(context.Context, string, uint32) error {
	return nil // nobody else to tell
}
func (Alone) Directory() control.Directory              { return nil }
func (Alone) Camera() control.Camera                    { return nil }
func (Alone) Sessions() control.Sessions                { return nil }
func (Alone) Elsewhere() api.Elsewhere                  { return nil }
func (Alone) WHEP(next http.Handler) http.Handler       { return next }
func (Alone) Recordings(next http.Handler) http.Handler { return next }
func (Alone) Start(Parts) error                         { return nil }
func (Alone) Drain(func())                              {}
func (Alone) Leave()                                    {}
func (Alone) Close()                                    {}

// p is the node's parts (Start).
func (m *Member) p() *Parts { return m.parts.Load() }
