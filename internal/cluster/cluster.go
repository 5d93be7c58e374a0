// Package cluster joins glasscast nodes into one cloud on NATS: each node
// runs an embedded nats-server clustered with its peers' (JetStream on, its
// store under --data), or connects to an existing NATS cluster. Nodes find
// each other through a JetStream key-value bucket of heartbeats: every node
// writes its own entry every Heartbeat and watches everyone's.
//
// A single node (no cluster flag) never starts any of this.
package cluster

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/glasscast/glasscast/internal/cmaf"
)

// Name is the cluster's name on the NATS routes.
const Name = "glasscast"

// nodesBucket holds one heartbeat entry per node.
const nodesBucket = "glasscast_nodes"

// Config says how a node joins.
type Config struct {
	// Node is this node's unique name.
	Node string
	// Listen is HOST:PORT of the embedded nats-server's cluster routes;
	// empty with URLs set.
	Listen string
	// Routes are the peers' route URLs (nats://H:P).
	Routes []string
	// URLs are an existing NATS cluster's servers; nothing is embedded.
	URLs []string
	// Dir is where the embedded server keeps JetStream's store.
	Dir string
	// TLS is this node's certificate and the cluster CA: the embedded
	// server's routes are mutual TLS against the CA (only nodes holding a
	// certificate from it are members); with URLs, the client connection
	// uses them.
	TLS TLSFiles
	// Creds (a NATS user credentials file) or Nkey (a file holding an nkey
	// seed) authenticate the node to an existing NATS cluster (URLs).
	Creds, Nkey string
	// Insecure lets the routes (or the connection to URLs) run without
	// TLS; each one not on loopback is warned of.
	Insecure bool
	// Secret, shared by every node, authenticates insecure routes to each
	// other (a password derived from it, sent in clear text); without it
	// such routes take anyone.
	Secret []byte
	// Public is this node's public URL; Version its version.
	Public, Version string
	// Heartbeat is how often the node says it is alive (default 2 s); a
	// node silent for three heartbeats is not alive.
	Heartbeat time.Duration
	// Stats, when set, is what the node says of itself in each heartbeat.
	Stats func() Stats
	// Generation, when set, is told of every stream's playback-token
	// generation recorded in the cluster (PutGeneration), from any node.
	// It runs on the watcher's goroutine and must not block for long.
	Generation func(streamID string, gen uint32)
}

// Stats are a node's figures in its heartbeat.
type Stats struct {
	Streams  int     `json:"streams"`
	Viewers  int     `json:"viewers"`
	Sessions int     `json:"sessions"`
	CPU      float64 `json:"cpu"` // percent of a core
	// Watched are this node's viewers by stream (a stream's renditions
	// counted with it), its own streams' and those it relays: every node
	// adds them up for a stream's count.
	Watched map[string]Viewers `json:"watched,omitempty"`
	// Positions are where the numbering of this node's streams stands:
	// a node that takes one over when this one dies numbers on after it.
	Positions map[string]cmaf.Position `json:"positions,omitempty"`
	// Draining says the node is stopping: it takes no new sockets or
	// publishes, and sends those it has to the other nodes.
	Draining bool `json:"draining,omitempty"`
}

// Viewers are a stream's viewers on one node, by protocol.
type Viewers struct {
	WebRTC int `json:"webrtc,omitempty"`
	LLHLS  int `json:"llhls,omitempty"`
	DASH   int `json:"dash,omitempty"`
}

// Node is one member as its last heartbeat described it.
type Node struct {
	Name      string    `json:"name"`
	Public    string    `json:"publicUrl"`
	Version   string    `json:"version"`
	Heartbeat time.Time `json:"lastHeartbeat"`
	Alive     bool      `json:"alive"`
	Format    int       `json:"v,omitempty"` // entryFormat of its build
	Stats
}

// routePassword is the routes' password: the same on every node that
// shares the secret, and telling nothing of it.
func routePassword(secret []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("glasscast nats routes"))
	return hex.EncodeToString(m.Sum(nil))
}

func randomToken() string {
	b := make([]byte, 24)
	rand.Read(b)
	return hex.EncodeToString(b)
}

var nodeName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// CheckNode refuses a node name NATS keys cannot carry.
func CheckNode(name string) error {
	if !nodeName.MatchString(name) {
		return fmt.Errorf("node name %q: use 1 to 64 letters, digits, - and _", name)
	}
	return nil
}

// Cluster is this node's membership.
type Cluster struct {
	cfg Config
	log *slog.Logger
	ns  *natsserver.Server // nil when external
	nc  *nats.Conn
	js  jetstream.JetStream

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	up      chan struct{}      // closed once the buckets are open
	nodesKV jetstream.KeyValue // the nodes' heartbeats; set before up is closed
	appsKV  jetstream.KeyValue // the apps; set before up is closed
	// streamsKV is the stream directory; set before up is closed.
	streamsKV jetstream.KeyValue
	// usersKV is the users' home nodes, managedKV the managed streams'
	// users; set before up is closed.
	usersKV, managedKV jetstream.KeyValue
	// cameraKV is the users' camera leases; set before up.
	cameraKV jetstream.KeyValue
	// sessionsKV is the users' sessions, sealed; set before up.
	sessionsKV jetstream.KeyValue
	// generationsKV is the playback tokens' generations; set before up.
	generationsKV jetstream.KeyValue
	// recordingsKV is the recordings' index; set before up.
	recordingsKV jetstream.KeyValue

	mu    sync.Mutex
	nodes map[string]Node
	heard map[string]heard     // when each node's newest heartbeat came, here
	left  map[string]time.Time // nodes that left (their entry deleted), when, here
	// mirrors are this node's copies of the users' homes, sessions and
	// camera leases and of the apps, kept by watching their buckets: what a read
	// answers while a bucket does not (its leader died and the others
	// are electing one).
	mirrors map[string]map[string]mirrored
	// loaded is closed once this node's copy of the stream directory has
	// every entry the bucket had when the node joined.
	loaded chan struct{}
	// moves are the users' sessions' moves other nodes told of.
	moves map[string]move
	// ttls are the mirrored buckets' age limits; unanswered is when a
	// read of each last went unanswered.
	ttls       map[string]time.Duration
	unanswered map[string]time.Time

	streams map[string]StreamEntry // this node's copy of the directory
	revs    map[string]uint64      // the revision of each of its entries
	// interims are directory writes told before the bucket took them.
	interims   map[string]interim
	interimSub *nats.Subscription
	// heartbeatSub hears the heartbeats told over plain NATS.
	heartbeatSub *nats.Subscription
	// later are this node's writes the bucket did not take yet, in order.
	laterMu sync.Mutex
	later   []laterWrite
	writing bool
	// missing are ids the directory did not have, when last asked.
	missing map[string]time.Time
	// recordings is this node's copy of the recordings' index.
	recordings map[string]RecordingEntry
	changed    chan struct{} // closed and replaced at every change
}

// Start joins the cluster: it starts the embedded server (or connects to
// the external one) and begins heartbeating once JetStream answers.
func Start(cfg Config, log *slog.Logger) (*Cluster, error) {
	if err := CheckNode(cfg.Node); err != nil {
		return nil, err
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 2 * time.Second
	}
	c := &Cluster{cfg: cfg, log: log, loaded: make(chan struct{}), nodes: map[string]Node{}, mirrors: map[string]map[string]mirrored{}, ttls: map[string]time.Duration{}, unanswered: map[string]time.Time{}, moves: map[string]move{}, heard: map[string]heard{}, left: map[string]time.Time{}, streams: map[string]StreamEntry{}, revs: map[string]uint64{}, interims: map[string]interim{}, missing: map[string]time.Time{}, recordings: map[string]RecordingEntry{}, changed: make(chan struct{}), up: make(chan struct{})}
	if !cfg.TLS.On() && cfg.Insecure {
		for _, u := range append(append([]string{}, cfg.Routes...), cfg.URLs...) {
			if !onLoopback(u) {
				log.Warn("cluster: no TLS to this NATS peer: anyone on the path reads the cluster's traffic and can join it", "peer", redacted(u))
			}
		}
	}
	var err error
	if cfg.Listen != "" {
		token := randomToken()
		if c.ns, err = embed(cfg, token); err != nil {
			return nil, err
		}
		c.nc, err = nats.Connect("", nats.InProcessServer(c.ns), nats.Token(token), nats.Name(cfg.Node), nats.MaxReconnects(-1))
	} else {
		// The NATS servers may start after the node: it keeps trying.
		opts := []nats.Option{nats.Name(cfg.Node), nats.MaxReconnects(-1),
			nats.ReconnectWait(500 * time.Millisecond), nats.RetryOnFailedConnect(true)}
		more, oerr := clientOptions(cfg)
		if oerr != nil {
			return nil, oerr
		}
		c.nc, err = nats.Connect(strings.Join(cfg.URLs, ","), append(opts, more...)...)
	}
	if err != nil {
		c.shutdown()
		return nil, fmt.Errorf("nats: %w", err)
	}
	if c.js, err = jetstream.New(c.nc); err != nil {
		c.shutdown()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if err = c.listenInterims(); err == nil {
		err = c.listenHeartbeats()
	}
	if err != nil {
		c.shutdown()
		return nil, fmt.Errorf("nats: %w", err)
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.run()
	}()
	return c, nil
}

// embed starts the node's own nats-server: cluster routes on cfg.Listen,
// JetStream under cfg.Dir, clients only in-process with token.
func embed(cfg Config, token string) (*natsserver.Server, error) {
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("nats-listen: %w", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("nats-listen: %w", err)
	}
	opts := &natsserver.Options{
		ServerName: cfg.Node,
		// The node talks to its server in-process; the client port, which
		// the routes need to start, takes only a token never given out.
		Host:          "127.0.0.1",
		Port:          natsserver.RANDOM_PORT,
		Authorization: token,
		JetStream:     true,
		StoreDir:      filepath.Join(cfg.Dir, "nats"),
		Cluster:       natsserver.ClusterOpts{Name: Name, Host: host, Port: port},
		Routes:        natsserver.RoutesFromStr(strings.Join(cfg.Routes, ",")),
		NoSigs:        true,
		NoLog:         true,
	}
	if cfg.TLS.On() {
		// Mutual TLS: a peer is a member because it holds a certificate
		// from the cluster CA; it proves that before it can send a thing.
		tc, err := cfg.TLS.routeTLS()
		if err != nil {
			return nil, err
		}
		opts.Cluster.TLSConfig, opts.Cluster.TLSTimeout = tc, 2
	} else if len(cfg.Secret) > 0 {
		pass := routePassword(cfg.Secret)
		opts.Cluster.Username, opts.Cluster.Password = "glasscast", pass
		for _, r := range opts.Routes {
			r.User = url.UserPassword("glasscast", pass)
		}
	}
	ns, err := natsserver.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats-server: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, errors.New("nats-server: not ready within 10 s (is the route port taken?)")
	}
	return ns, nil
}

// clientOptions are the connection's TLS and credentials for an existing
// NATS cluster.
func clientOptions(cfg Config) ([]nats.Option, error) {
	var opts []nats.Option
	if cfg.TLS.CA != "" {
		if _, err := loadPool(cfg.TLS.CA); err != nil {
			return nil, err
		}
		opts = append(opts, nats.RootCAs(cfg.TLS.CA))
	}
	if cfg.TLS.Cert != "" {
		if _, err := tls.LoadX509KeyPair(cfg.TLS.Cert, cfg.TLS.Key); err != nil {
			return nil, fmt.Errorf("nats-tls-cert/key: %w", err)
		}
		opts = append(opts, nats.ClientCert(cfg.TLS.Cert, cfg.TLS.Key))
	}
	if cfg.TLS.On() {
		opts = append(opts, nats.Secure())
	}
	switch {
	case cfg.Creds != "":
		if _, err := os.Stat(cfg.Creds); err != nil {
			return nil, fmt.Errorf("nats-creds: %w", err)
		}
		opts = append(opts, nats.UserCredentials(cfg.Creds))
	case cfg.Nkey != "":
		o, err := nats.NkeyOptionFromSeed(cfg.Nkey)
		if err != nil {
			return nil, fmt.Errorf("nats-nkey: %w", err)
		}
		opts = append(opts, o)
	}
	return opts, nil
}

// redacted is a NATS URL fit for a log: a password in it is hidden.
func redacted(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(a URL that does not parse)"
	}
	return u.Redacted()
}

// onLoopback says a NATS URL names a loopback address.
func onLoopback(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	host := u.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// replicas is how many copies the shared buckets keep: three once the
// cluster has three servers.
func (c *Cluster) replicas() int {
	n := len(c.cfg.Routes) + 1
	if c.ns == nil {
		n = len(c.nc.Servers())
	}
	return max(1, min(3, n))
}

// run opens the shared buckets (JetStream may need a moment to elect its
// leader), then heartbeats and watches until Close.
func (c *Cluster) run() {
	for {
		err := c.open()
		if err == nil {
			break
		}
		c.log.Info("cluster: waiting for JetStream", "err", err)
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(c.cfg.Heartbeat / 2):
		}
	}
	close(c.up)
	c.wg.Add(4 + 4)
	go func() {
		defer c.wg.Done()
		c.watch()
	}()
	for kv, ttl := range map[jetstream.KeyValue]time.Duration{c.usersKV: usersTTL, c.sessionsKV: usersTTL, c.cameraKV: usersTTL, c.appsKV: 0} {
		go func() {
			defer c.wg.Done()
			c.mirror(kv, ttl)
		}()
	}
	go func() {
		defer c.wg.Done()
		c.watchStreams()
	}()
	go func() {
		defer c.wg.Done()
		c.watchGenerations()
	}()
	go func() {
		defer c.wg.Done()
		c.watchRecordings()
	}()
	tick := time.NewTicker(c.cfg.Heartbeat)
	defer tick.Stop()
	for {
		c.beat()
		select {
		case <-c.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// open creates (or finds) the shared buckets.
func (c *Cluster) open() error {
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	var err error
	c.nodesKV, err = c.bucket(ctx, bucketSpec{name: nodesBucket, ttl: 10 * c.cfg.Heartbeat, memory: true})
	if err != nil {
		return err
	}
	c.appsKV, err = c.bucket(ctx, bucketSpec{name: appsBucket, consistent: true})
	if err != nil {
		return err
	}
	c.streamsKV, err = c.bucket(ctx, bucketSpec{name: streamsBucket, memory: true, consistent: true})
	if err != nil {
		return err
	}
	c.usersKV, err = c.bucket(ctx, bucketSpec{name: usersBucket, memory: true, consistent: true, ttl: usersTTL})
	if err != nil {
		return err
	}
	c.managedKV, err = c.bucket(ctx, bucketSpec{name: managedBucket, memory: true, consistent: true, ttl: usersTTL})
	if err != nil {
		return err
	}
	c.cameraKV, err = c.bucket(ctx, bucketSpec{name: cameraBucket, memory: true, consistent: true, ttl: usersTTL})
	if err != nil {
		return err
	}
	c.sessionsKV, err = c.bucket(ctx, bucketSpec{name: sessionsBucket, memory: true, consistent: true, ttl: usersTTL})
	if err != nil {
		return err
	}
	c.generationsKV, err = c.bucket(ctx, bucketSpec{name: generationsBucket, consistent: true})
	if err != nil {
		return err
	}
	c.recordingsKV, err = c.bucket(ctx, bucketSpec{name: recordingsBucket})
	return err
}

// bucketSpec describes a shared bucket.
type bucketSpec struct {
	name   string
	ttl    time.Duration // entries older are dropped; 0 keeps them
	memory bool          // kept in memory, not on disk
	// consistent: a read sees every write acknowledged before it, on any
	// node. The replicas do not answer reads themselves then (they may be
	// behind the leader); the bucket's leader does.
	consistent bool
}

// maxEntry bounds what one entry of a shared bucket may hold.
const maxEntry = 64 << 10

// bucket creates (or finds, the same on every node) a key-value bucket: a
// JetStream stream laid out as the key-value API expects, one message per
// key, replicated on up to three servers.
func (c *Cluster) bucket(ctx context.Context, b bucketSpec) (jetstream.KeyValue, error) {
	storage := jetstream.FileStorage
	if b.memory {
		storage = jetstream.MemoryStorage
	}
	dup := 2 * time.Minute
	if b.ttl > 0 && b.ttl < dup {
		dup = b.ttl
	}
	cfg := jetstream.StreamConfig{
		Name:              "KV_" + b.name,
		Subjects:          []string{"$KV." + b.name + ".>"},
		MaxMsgsPerSubject: 1,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxConsumers:      -1,
		MaxAge:            b.ttl,
		MaxMsgSize:        maxEntry,
		Storage:           storage,
		Replicas:          c.replicas(),
		AllowRollup:       true,
		DenyDelete:        true,
		Duplicates:        dup,
		Discard:           jetstream.DiscardNew,
		AllowDirect:       !b.consistent,
	}
	// A bucket is created with as many copies as the servers up allow
	// (three at most), and gains copies when a later node finds more
	// servers; a node never takes copies away.
	existing, err := c.js.Stream(ctx, cfg.Name)
	switch {
	case err == nil && existing.CachedInfo().Config.Replicas >= cfg.Replicas:
	case err == nil:
		if _, err := c.js.UpdateStream(ctx, cfg); err != nil {
			c.log.Info("cluster: a bucket keeps fewer copies than wanted", "bucket", b.name,
				"copies", existing.CachedInfo().Config.Replicas, "wanted", cfg.Replicas, "err", err)
		}
	case errors.Is(err, jetstream.ErrStreamNotFound):
		for {
			_, err = c.js.CreateStream(ctx, cfg)
			if err == nil || cfg.Replicas == 1 || ctx.Err() != nil || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				break
			}
			cfg.Replicas-- // fewer servers up than configured
		}
		if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil, fmt.Errorf("bucket %s: %w", b.name, err)
		}
	default:
		return nil, fmt.Errorf("bucket %s: %w", b.name, err)
	}
	return c.js.KeyValue(ctx, b.name)
}

// WaitReady waits until the node has joined (the shared buckets are open),
// ctx ends or the node leaves.
func (c *Cluster) WaitReady(ctx context.Context) error {
	select {
	case <-c.up:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("cluster: not joined yet: %w", ctx.Err())
	case <-c.ctx.Done():
		return errors.New("cluster: the node has left")
	}
}

// beat writes this node's heartbeat.
func (c *Cluster) beat() {
	n := Node{Name: c.cfg.Node, Public: c.cfg.Public, Version: c.cfg.Version, Heartbeat: time.Now().UTC()}
	if c.cfg.Stats != nil {
		n.Stats = c.cfg.Stats()
	}
	b := heartbeat(n)
	// Told over plain NATS too: a bucket electing a new leader, or a watch
	// whose consumer was on a node that died, does not make the living
	// look dead.
	c.nc.Publish(heartbeatSubject, b)
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.Heartbeat)
	defer cancel()
	if _, err := c.nodesKV.Put(ctx, c.cfg.Node, b); err != nil && c.ctx.Err() == nil {
		c.log.Warn("cluster: heartbeat not written", "err", err)
	}
}

// maxHeartbeat bounds a heartbeat: half what an entry may hold.
const maxHeartbeat = maxEntry / 2

// heartbeat encodes a node's heartbeat within maxHeartbeat: a node
// watched on (or holding) more streams than fit tells of its most watched
// ones only (a heartbeat too big to be written would make the node look
// dead).
func heartbeat(n Node) []byte {
	n.Format = writeFormat
	b, _ := json.Marshal(n)
	total := func(id string) int { v := n.Watched[id]; return v.WebRTC + v.LLHLS + v.DASH }
	// Viewer counts and positions alike (a stream taken over without its
	// position numbers on from a bound made of its age: wider gaps, as
	// safe).
	for len(b) > maxHeartbeat && len(n.Watched)+len(n.Positions) > 0 {
		n.Watched = mostWatched(n.Watched, total, len(n.Watched)*maxHeartbeat/len(b)*9/10)
		n.Positions = mostWatched(n.Positions, total, len(n.Positions)*maxHeartbeat/len(b)*9/10)
		b, _ = json.Marshal(n)
	}
	return b
}

// mostWatched keeps the keep streams of m with the most viewers (by id
// after that).
func mostWatched[V any](m map[string]V, total func(id string) int, keep int) map[string]V {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		if ti, tj := total(ids[i]), total(ids[j]); ti != tj {
			return ti > tj
		}
		return ids[i] < ids[j]
	})
	out := make(map[string]V, keep)
	for _, id := range ids[:keep] {
		out[id] = m[id]
	}
	return out
}

// watch keeps the local view of the nodes. A node is alive while this
// node keeps hearing new heartbeats of it, by this node's own clock: when
// each new revision of its entry arrived here, never the time written in
// it (nodes' clocks differ; one 30 s off is as alive as any). Its entry
// (last revision) seen again, as a watch that resumes gives it, is not
// news. The bucket's age limit removes a silent node's entry after ten
// heartbeats, by the NATS servers' own clock.
func (c *Cluster) watch() {
	c.followRevisions(c.nodesKV, func(key string, value []byte, deleted bool, rev uint64) {
		var n Node
		switch {
		case deleted:
			delete(c.nodes, key)
			delete(c.heard, key)
			c.left[key] = time.Now()
		case json.Unmarshal(value, &n) == nil && n.Name == key:
			delete(c.left, key) // back
			if h := c.heard[key]; rev > h.rev {
				c.heard[key] = heard{rev: rev, at: time.Now()}
			}
			n.Heartbeat = c.heard[key].at.UTC() // as heard here
			c.nodes[key] = n
		}
	})
}

// heartbeatSubject carries every node's heartbeat as it writes it.
const heartbeatSubject = "glasscast.heartbeat"

// listenHeartbeats hears the heartbeats told over plain NATS.
func (c *Cluster) listenHeartbeats() error {
	sub, err := c.nc.Subscribe(heartbeatSubject, func(m *nats.Msg) {
		var n Node
		if len(m.Data) > maxEntry || json.Unmarshal(m.Data, &n) != nil || CheckNode(n.Name) != nil || n.Name == c.cfg.Node {
			return
		}
		c.mu.Lock()
		if at, ok := c.left[n.Name]; ok && time.Since(at) < 3*c.cfg.Heartbeat {
			// Its last heartbeat, come this way after its leave came the
			// bucket's: it has left (one that starts again writes its
			// entry).
			c.mu.Unlock()
			return
		}
		h := c.heard[n.Name]
		h.at = time.Now()
		c.heard[n.Name] = h
		n.Heartbeat = h.at.UTC()
		c.nodes[n.Name] = n
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
	})
	if err != nil {
		return err
	}
	c.heartbeatSub = sub
	return nil
}

// heard is when this node heard a node's newest heartbeat (which revision
// of its entry), by its own clock.
type heard struct {
	rev uint64
	at  time.Time
}

// follow runs change, under c.mu, for every entry of kv and every change
// of it until the node leaves, and tells Changed's waiters.
func (c *Cluster) follow(kv jetstream.KeyValue, change func(key string, value []byte, deleted bool)) {
	c.followRevisions(kv, func(key string, value []byte, deleted bool, _ uint64) { change(key, value, deleted) })
}

// followRevisions is follow with each entry's revision; loaded, when
// set, is called once the entries the bucket had when it was first
// watched are all in.
func (c *Cluster) followRevisions(kv jetstream.KeyValue, change func(key string, value []byte, deleted bool, rev uint64), loaded ...func()) {
	c.followEntries(kv, func(e jetstream.KeyValueEntry) {
		change(e.Key(), e.Value(), e.Operation() != jetstream.KeyValuePut, e.Revision())
	}, loaded...)
}

// followEntries is follow with each entry as the bucket gives it.
func (c *Cluster) followEntries(kv jetstream.KeyValue, change func(e jetstream.KeyValueEntry), loaded ...func()) {
	for c.ctx.Err() == nil {
		w, err := kv.WatchAll(c.ctx)
		if err != nil {
			select {
			case <-c.ctx.Done():
				return
			case <-time.After(c.cfg.Heartbeat):
			}
			continue
		}
		for e := range w.Updates() {
			if e == nil { // the initial values are all in
				for _, f := range loaded {
					f()
				}
				loaded = nil
				continue
			}
			c.mu.Lock()
			change(e)
			close(c.changed)
			c.changed = make(chan struct{})
			c.mu.Unlock()
		}
		w.Stop()
	}
}

// Nodes lists the members, this node first, then by name.
func (c *Cluster) Nodes() []Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	out := make([]Node, 0, len(c.nodes))
	for _, n := range c.nodes {
		n.Alive = now.Sub(n.Heartbeat) < 3*c.cfg.Heartbeat
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool {
		if (out[i].Name == c.cfg.Node) != (out[j].Name == c.cfg.Node) {
			return out[i].Name == c.cfg.Node
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Position is where a stream's numbering stood in node's last heartbeat,
// and when this node heard that heartbeat, by its own clock.
func (c *Cluster) Position(node, id string) (cmaf.Position, time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pos, ok := c.nodes[node].Positions[id]
	return pos, c.heard[node].at, ok
}

// Alive says whether a node is a member that has said so lately.
func (c *Cluster) Alive(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.nodes[name]
	return ok && time.Since(n.Heartbeat) < 3*c.cfg.Heartbeat
}

// Changed is closed at the next change of the nodes or the stream
// directory seen.
func (c *Cluster) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// Loaded says this node's copy of the stream directory has every entry
// the bucket had when the node joined: a publish here finds its stream
// wherever it was created.
func (c *Cluster) Loaded() bool {
	select {
	case <-c.loaded:
		return true
	default:
		return false
	}
}

// WaitLoaded waits until Loaded, or ctx ends.
func (c *Cluster) WaitLoaded(ctx context.Context) error {
	select {
	case <-c.loaded:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Ready says the node has joined (the shared buckets are open).
func (c *Cluster) Ready() bool {
	select {
	case <-c.up:
		return true
	default:
		return false
	}
}

// Node is this node's name.
func (c *Cluster) Node() string { return c.cfg.Node }

// Beat writes this node's heartbeat now (and tells it to the others),
// not at the next tick: what it says changed.
func (c *Cluster) Beat() {
	if c.Ready() {
		c.beat()
	}
}

// Routes is how many route connections the embedded NATS server has to
// its peers (several per peer; -1 when the node uses an external NATS
// cluster).
func (c *Cluster) Routes() int {
	if c.ns == nil {
		return -1
	}
	return c.ns.NumRoutes()
}

// Heartbeat is how often nodes say they are alive.
func (c *Cluster) Heartbeat() time.Duration { return c.cfg.Heartbeat }

// Conn is the node's connection to NATS, for the subjects nodes talk on.
func (c *Cluster) Conn() *nats.Conn { return c.nc }

// Close leaves the cluster: the node's entry is removed, the connection
// closed and the embedded server shut down.
func (c *Cluster) Close() {
	c.interimSub.Unsubscribe()
	c.heartbeatSub.Unsubscribe()
	c.cancel()
	c.wg.Wait()
	if c.Ready() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c.nodesKV.Delete(ctx, c.cfg.Node)
		cancel()
	}
	c.shutdown()
}

func (c *Cluster) shutdown() {
	if c.nc != nil {
		c.nc.Close()
	}
	if c.ns != nil {
		c.ns.Shutdown()
		c.ns.WaitForShutdown()
	}
}
