package member

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/glasscast/glasscast/internal/api"
	"github.com/glasscast/glasscast/internal/cluster"
	"github.com/glasscast/glasscast/internal/control"
	"github.com/glasscast/glasscast/internal/event"
	"github.com/glasscast/glasscast/protocol"
)

// An app whose socket reaches a node that does not hold its user's session
// (a load balancer sent it there) is bridged to the node that does, the
// user's home: the app's messages go to the home as they came
// (glasscast.node.<home>.appsock, one subject per node), the home's to the
// app's node (glasscast.appsock.<node>.<conn>), sealed (cluster.Sealer: a
// stream request names the app's RTMP server or a platform's key). The
// app's API key stays on the node it connected to, which checked it; the
// home serves the socket as one of its own for the package that node
// names, through a peer that publishes; either node that goes away closes
// the bridge.

// Headers of a bridged socket's messages.
const (
	hdrConn   = "Glasscast-Conn"   // the bridge's id
	hdrApp    = "Glasscast-App"    // the package whose API key the app's node checked (with hdrOpen)
	hdrFrom   = "Glasscast-From"   // the app's node
	hdrOpen   = "Glasscast-Open"   // the first message
	hdrGone   = "Glasscast-Gone"   // the app's socket closed
	hdrClose  = "Glasscast-Close"  // close the app's socket with this code…
	hdrReason = "Glasscast-Reason" // …and reason
)

func appsockHome(node string) string      { return "glasscast.node." + node + ".appsock" }
func appsockApp(node, conn string) string { return "glasscast.appsock." + node + "." + conn }

// appBridge is the app's side of a bridge.
type appBridge struct {
	nc       *nats.Conn
	seal     *cluster.Sealer
	me, home string
	id       string
	sub      *nats.Subscription
	opened   bool
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
	// moved is closed when the user's session moves to another node.
	moved    chan struct{}
	moveOnce sync.Once
	forget   func()

	mu      sync.Mutex
	pending map[string]bool // stream requests sent to the home, not answered yet: their status types
}

// statusOf is the status message that answers a stream request.
var statusOf = map[string]string{
	protocol.TypeManagedStreamRequest: protocol.TypeManagedStreamStatus,
	protocol.TypeRTMPStreamRequest:    protocol.TypeRTMPStreamStatus,
}

// homeGone answers the app's stream requests the home had not answered
// when it went away: an error saying so, never silence (the app starts
// the stream again once it has reconnected).
func (b *appBridge) homeGone(peer control.Peer) {
	b.mu.Lock()
	pending := b.pending
	b.pending = nil
	b.mu.Unlock()
	const why = "the node that held the session is gone: connect again and start the stream again"
	for typ := range pending {
		switch typ {
		case protocol.TypeManagedStreamStatus:
			peer.Send(protocol.ManagedStreamStatus{Type: typ, Status: protocol.StreamError, Message: why, Code: protocol.CodeInternal,
				Timestamp: protocol.Now()})
		case protocol.TypeRTMPStreamStatus:
			peer.Send(protocol.RTMPStreamStatus{Type: typ, Status: protocol.StreamError, ErrorDetails: why, Code: protocol.CodeInternal,
				Timestamp: protocol.Now()})
		}
	}
}

// seen keeps track of the stream requests and their answers passing
// through the bridge (from the app: toHome).
func (b *appBridge) seen(raw []byte, toHome bool) {
	var m struct {
		Type   string `json:"type"`
		Status string `json:"status"`
	}
	if json.Unmarshal(raw, &m) != nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if toHome {
		if status, ok := statusOf[m.Type]; ok {
			if b.pending == nil {
				b.pending = map[string]bool{}
			}
			b.pending[status] = true
		}
		return
	}
	// An answer the app's start waits for: the stream is up, or is not.
	// (initializing and reconnecting are on the way there.)
	switch m.Status {
	case "active", "error", "stopped", "timeout":
		delete(b.pending, m.Type)
	}
}

// bridgeApp bridges an app's socket to its user's home node when that is
// another live node; nil: this node serves it.
func (m *Member) bridgeApp(init *protocol.AppConnectionInit, peer control.Peer) api.AppBridge {
	user, ok := strings.CutSuffix(init.SessionID, "-"+init.PackageName)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c := m.c
	home, err := c.Users().Home(ctx, user)
	if err == nil && home == "" {
		// Its home is gone: its phone is on its way to another node,
		// which goes on with the session.
		wctx, wcancel := context.WithTimeout(context.Background(), homeWait)
		home = m.waitHome(wctx, user)
		wcancel()
	}
	if err != nil || home == "" || home == c.Node() {
		return nil
	}
	id := make([]byte, 12)
	rand.Read(id)
	b := &appBridge{nc: c.Conn(), seal: m.seal, me: c.Node(), home: home, id: hex.EncodeToString(id), stop: make(chan struct{}), done: make(chan struct{}),
		moved: make(chan struct{})}
	m.bridges.add(user, b)
	b.forget = func() { m.bridges.remove(user, b) }
	mine := appsockApp(b.me, b.id)
	b.sub, err = b.nc.Subscribe(mine, func(msg *nats.Msg) {
		if code := msg.Header.Get(hdrClose); code != "" {
			n, _ := strconv.Atoi(code)
			peer.Close(n, msg.Header.Get(hdrReason))
			return
		}
		if plain, err := b.seal.Open(mine, msg.Data); err == nil {
			b.seen(plain, false)
			peer.Send(json.RawMessage(plain))
		}
	})
	if err != nil {
		b.forget()
		return nil
	}
	b.nc.FlushTimeout(2 * time.Second) // subscribed before the home answers
	go func() {                        // the home that goes away closes the app's socket
		defer close(b.done)
		tick := time.NewTicker(c.Heartbeat())
		defer tick.Stop()
		for {
			select {
			case <-b.stop:
				return
			case <-b.moved:
				b.homeGone(peer)
				peer.Close(int(drainClose), "The user's session moved to another node: reconnect")
				return
			case <-tick.C:
				if !c.Alive(home) {
					b.homeGone(peer)
					peer.Close(1012, "the node that held the session is gone: connect again")
					return
				}
			}
		}
	}()
	m.log.Info("app bridged to the node that holds its session", "app", init.PackageName, "user", user, "node", home)
	return b
}

// Receive sends a message from the app to the home.
func (b *appBridge) Receive(raw []byte) {
	msg := nats.NewMsg(appsockHome(b.home))
	msg.Header.Set(hdrConn, b.id)
	msg.Header.Set(hdrFrom, b.me)
	if !b.opened {
		// The init: its API key stays on this node, which checked it;
		// the home takes the socket for the package named here.
		var init map[string]json.RawMessage
		var pkg string
		if json.Unmarshal(raw, &init) != nil || json.Unmarshal(init["packageName"], &pkg) != nil || pkg == "" {
			return
		}
		delete(init, "apiKey")
		raw, _ = json.Marshal(init)
		msg.Header.Set(hdrOpen, "1")
		msg.Header.Set(hdrApp, pkg)
		b.opened = true
	}
	b.seen(raw, true)
	msg.Data = b.seal.Seal(msg.Subject, raw)
	b.nc.PublishMsg(msg)
}

// Gone tells the home the app's socket closed.
func (b *appBridge) Gone() {
	b.stopOnce.Do(func() {
		msg := nats.NewMsg(appsockHome(b.home))
		msg.Header.Set(hdrConn, b.id)
		msg.Header.Set(hdrFrom, b.me)
		msg.Header.Set(hdrGone, "1")
		b.nc.PublishMsg(msg)
		b.sub.Unsubscribe()
		close(b.stop)
		<-b.done
		b.forget()
	})
}

// remotePeer is, on the home node, an app socket on another node.
type remotePeer struct {
	nc      *nats.Conn
	seal    *cluster.Sealer
	subject string
}

func (p remotePeer) Send(msg any) {
	b, err := json.Marshal(msg)
	if err == nil {
		p.nc.Publish(p.subject, p.seal.Seal(p.subject, b))
	}
}

func (p remotePeer) Close(code int, reason string) {
	msg := nats.NewMsg(p.subject)
	msg.Header.Set(hdrClose, strconv.Itoa(code))
	msg.Header.Set(hdrReason, reason)
	p.nc.PublishMsg(msg)
}

// bridged is, on the home node, a socket bridged from another node. Its
// messages are handled in order on a goroutine of its own, never in the
// NATS callback every bridged socket shares: an app whose request takes
// the plane a while (a camera start) holds up no other app.
type bridged struct {
	sock *control.AppSocket
	from string

	mu     sync.Mutex
	in     chan any
	closed bool
}

// bridgedQueue bounds the messages a bridged socket has waiting: an app
// that sends faster than the plane answers it is closed, as a socket whose
// reader fell behind would be.
const bridgedQueue = 64

func newBridged(sock *control.AppSocket, from string, wg *sync.WaitGroup) *bridged {
	b := &bridged{sock: sock, from: from, in: make(chan any, bridgedQueue)}
	wg.Go(func() {
		for msg := range b.in {
			b.sock.Receive(msg)
		}
		b.sock.Gone()
	})
	return b
}

// receive queues a message from the app; false: the socket ended (it was
// over its queue).
func (b *bridged) receive(msg any) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	select {
	case b.in <- msg:
		return true
	default:
		b.closed = true
		close(b.in)
		return false
	}
}

// end ends the socket once the messages it has queued are handled.
func (b *bridged) end() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.closed = true
		close(b.in)
	}
}

// serveBridges serves, as this node's own, the app sockets other nodes
// bridge here; a socket whose node is gone is gone.
func (m *Member) serveBridges() error {
	c := m.c
	var mu sync.Mutex
	var wg sync.WaitGroup // the bridged sockets' goroutines
	conns := map[string]*bridged{}
	home := appsockHome(c.Node())
	sub, err := c.Conn().Subscribe(home, func(msg *nats.Msg) {
		from, id := msg.Header.Get(hdrFrom), msg.Header.Get(hdrConn)
		if from == "" || id == "" || strings.ContainsAny(from+id, ". *>") {
			return
		}
		key := from + "/" + id
		mu.Lock()
		b := conns[key]
		switch {
		case msg.Header.Get(hdrGone) != "":
			delete(conns, key)
		case b == nil && msg.Header.Get(hdrOpen) != "" && msg.Header.Get(hdrApp) != "":
			sock := m.p().Plane.ConnectApp(remotePeer{nc: c.Conn(), seal: m.seal, subject: appsockApp(from, id)})
			sock.Verified = msg.Header.Get(hdrApp) // by the app's node, a member
			b = newBridged(sock, from, &wg)
			conns[key] = b
		}
		mu.Unlock()
		if b == nil {
			return
		}
		if msg.Header.Get(hdrGone) != "" {
			b.end()
			return
		}
		plain, err := m.seal.Open(home, msg.Data)
		if err != nil {
			return
		}
		decoded, err := protocol.DecodeFromApp(plain)
		if err != nil {
			return
		}
		if !b.receive(decoded) {
			mu.Lock()
			delete(conns, key)
			mu.Unlock()
			m.log.Warn("cluster: a bridged app socket sent more than the plane could take; closed", "node", from, "app", msg.Header.Get(hdrApp))
			remotePeer{nc: c.Conn(), seal: m.seal, subject: appsockApp(from, id)}.Close(1008, "too many messages at once")
		}
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(c.Heartbeat())
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			mu.Lock()
			for key, b := range conns {
				if !c.Alive(b.from) {
					b.end()
					delete(conns, key)
				}
			}
			mu.Unlock()
		}
	}()
	stop := sync.OnceFunc(func() {
		sub.Unsubscribe()
		cancel()
		<-done
		mu.Lock()
		for key, b := range conns {
			b.end()
			delete(conns, key)
		}
		mu.Unlock()
		wg.Wait()
	})
	prev := m.stopSessions
	m.stopSessions = func() { stop(); prev() }
	m.undo.push(stop)
	return nil
}

// managedDirectory is the control plane's directory of managed streams in a
// cluster: this node's in memory, as on a single node, and every node's in
// the cluster (written in order on a queue of its own: the plane never
// waits for NATS), so that an app's outputs call about a managed stream
// finds the node that holds it.
type managedDirectory struct {
	*control.LocalDirectory
	q *event.Queue[managedChange]
}

// managedChange is a managed stream's user, or its end (user "").
type managedChange struct{ id, user string }

func (m *Member) newManagedDirectory() *managedDirectory {
	users := m.c.Users()
	d := &managedDirectory{LocalDirectory: control.NewLocalDirectory()}
	d.q = event.NewQueue("managed-directory", nil, func(ch managedChange) {
		err := m.write(func(ctx context.Context) error {
			if ch.user == "" {
				return users.DeleteManaged(ctx, ch.id)
			}
			return users.PutManaged(ctx, ch.id, ch.user)
		})
		if err != nil && m.c.Ready() {
			m.log.Warn("cluster: the managed stream directory not updated", "stream", ch.id, "err", err)
		}
	})
	return d
}

func (d *managedDirectory) Put(streamID, user string) {
	d.LocalDirectory.Put(streamID, user)
	d.q.Push(managedChange{streamID, user})
}

func (d *managedDirectory) Delete(streamID string) {
	d.LocalDirectory.Delete(streamID)
	d.q.Push(managedChange{id: streamID})
}

// close writes out what is queued and stops.
func (d *managedDirectory) close() {
	d.q.Close()
	<-d.q.Done()
}

// clusterCamera gives out users' camera leases as on a single node (this
// node is their home: its per-user lock arbitrates) and records them in the
// cluster, in order on a queue of its own (a lease is given under the
// user's lock, which never waits for NATS), so that every node sees who
// holds each user's camera.
type clusterCamera struct {
	*control.LocalCamera
	q *event.Queue[cameraChange]
}

// cameraChange is a lease given (held) or given back.
type cameraChange struct {
	user  string
	lease control.Lease
	held  bool
	at    time.Time
}

func (m *Member) newClusterCamera() *clusterCamera {
	users := m.c.Users()
	c := &clusterCamera{LocalCamera: control.NewLocalCamera()}
	c.q = event.NewQueue("camera-leases", nil, func(ch cameraChange) {
		err := m.write(func(ctx context.Context) error {
			if ch.held {
				return users.PutLease(ctx, cluster.CameraLease{User: ch.user, Exclusive: ch.lease.Exclusive, Holder: ch.lease.Holder,
					StreamID: ch.lease.StreamID, Since: ch.at})
			}
			return users.DeleteLease(ctx, ch.user, ch.lease.StreamID)
		})
		if err != nil && m.c.Ready() {
			m.log.Warn("cluster: a camera lease not recorded", "user", ch.user, "err", err)
		}
	})
	return c
}

func (c *clusterCamera) Acquire(user string, l control.Lease) error {
	if held, ok := c.LocalCamera.Held(user); ok && held == l {
		return nil
	}
	if err := c.LocalCamera.Acquire(user, l); err != nil {
		return err
	}
	c.q.Push(cameraChange{user: user, lease: l, held: true, at: time.Now().UTC()})
	return nil
}

func (c *clusterCamera) Release(user string, l control.Lease) {
	if held, ok := c.LocalCamera.Held(user); !ok || held != l {
		return
	}
	c.LocalCamera.Release(user, l)
	c.q.Push(cameraChange{user: user, lease: l})
}

// Forget lets a lease go here without recording its end: the user's
// session, and the lease with it, went to another node.
func (c *clusterCamera) Forget(user string, l control.Lease) {
	c.LocalCamera.Release(user, l)
}

// close writes out what is queued and stops.
func (c *clusterCamera) close() {
	c.q.Close()
	<-c.q.Done()
}
