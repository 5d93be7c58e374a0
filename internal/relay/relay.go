// Package relay plays a stream on a node that is not its origin: the
// origin's packager is mirrored over NATS, so every node answers a stream's
// playlists, manifests and parts with the origin's bytes.
//
// A relay node asks the origin for a snapshot of the stream's packager
// (request glasscast.relay.<origin>.<id>, answered in chunks) and follows
// its changes (subject glasscast.media.<id>), one subscription per stream
// per node however many viewers it has. It says it still watches every
// Watch; the origin publishes a stream's changes only while some node
// watches, and a relay nobody has asked for in Idle lets go.
package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/glasscast/glasscast/internal/cmaf"
	"github.com/glasscast/glasscast/internal/stream"
)

// Timings.
const (
	// Watch is how often a relay tells the origin it still watches.
	Watch = 2 * time.Second
	// Forget is how long an origin publishes a stream's changes after the
	// last relay said it watches.
	Forget = 3 * Watch
	// Idle is how long a relay lives without a request.
	Idle = 30 * time.Second
	// snapshotWait bounds the wait for the origin's snapshot.
	snapshotWait = 5 * time.Second
	// moveWait is how long a stream's new origin may answer that it does
	// not have it yet.
	moveWait = 2 * time.Second
)

// Request bodies.
const (
	askSnapshot = "snap"
	askWatch    = "watch"
)

// Headers of a snapshot's chunks.
const (
	hdrChunks = "Glasscast-Chunks"
	hdrError  = "Glasscast-Error"
	// hdrOrigin names the node a stream's change comes from: a relay
	// follows one origin at a time, and a stream that moves has two.
	hdrOrigin = "Glasscast-Origin"
)

func requestSubject(origin, id string) string { return "glasscast.relay." + origin + "." + id }
func mediaSubject(id string) string           { return "glasscast.media." + id }

// Origin answers the relays of this node's streams.
type Origin struct {
	nc     *nats.Conn
	node   string
	lookup cmaf.Lookup
	log    *slog.Logger
	sub    *nats.Subscription

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	feeds  map[string]*feed
	frames map[string]*framesFeed
	hubs   HubLookup
}

// feed publishes one stream's changes while someone watches.
type feed struct {
	id      string
	p       *cmaf.Packager
	out     chan []byte
	watched atomic.Int64 // unix nanoseconds of the last watch
}

// ServeOrigin answers requests for the streams lookup and hubs find, as
// node.
func ServeOrigin(nc *nats.Conn, node string, lookup cmaf.Lookup, hubs HubLookup, log *slog.Logger) (*Origin, error) {
	o := &Origin{nc: nc, node: node, lookup: lookup, hubs: hubs, log: log, feeds: map[string]*feed{}, frames: map[string]*framesFeed{}}
	o.ctx, o.cancel = context.WithCancel(context.Background())
	var err error
	if o.sub, err = nc.Subscribe(requestSubject(node, "*"), o.request); err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	nc.FlushTimeout(2 * time.Second) // the server knows of the subscription before the first request
	return o, nil
}

// Close stops answering and publishing.
func (o *Origin) Close() {
	o.sub.Unsubscribe()
	o.mu.Lock()
	o.cancel() // no feed starts after this
	o.mu.Unlock()
	o.wg.Wait()
}

func (o *Origin) request(m *nats.Msg) {
	id := lastToken(m.Subject)
	if node, ok := strings.CutPrefix(string(m.Data), askFrames); ok {
		if hub, found := o.hubs(id); found && CheckName(node) == nil {
			o.watchFrames(id, node, hub)
		}
		return
	}
	p, ok := o.lookup(id)
	if !ok {
		if m.Reply != "" {
			reply := nats.NewMsg(m.Reply)
			reply.Header.Set(hdrError, "no stream "+id+" here")
			o.nc.PublishMsg(reply)
		}
		return
	}
	f := o.watch(id, p)
	if f == nil || string(m.Data) != askSnapshot || m.Reply == "" {
		return
	}
	// The journal runs from before the snapshot: the relay gets every
	// change after it.
	b := cmaf.EncodeSnapshot(p.Snapshot())
	chunk := int(o.nc.MaxPayload()) - 4096
	n := (len(b) + chunk - 1) / chunk
	for i := 0; i < n; i++ {
		reply := nats.NewMsg(m.Reply)
		reply.Header.Set(hdrChunks, strconv.Itoa(n))
		reply.Data = b[i*chunk : min(len(b), (i+1)*chunk)]
		if err := o.nc.PublishMsg(reply); err != nil {
			o.log.Warn("relay: snapshot not sent", "stream", f.id, "err", err)
			return
		}
	}
}

// CheckName refuses a node name or stream id that is not one subject
// token.
func CheckName(s string) error {
	if s == "" || strings.ContainsAny(s, ". *>\t\r\n") {
		return fmt.Errorf("relay: %q is not a subject token", s)
	}
	return nil
}

func lastToken(subject string) string {
	for i := len(subject) - 1; i >= 0; i-- {
		if subject[i] == '.' {
			return subject[i+1:]
		}
	}
	return subject
}

// watch makes sure the stream's changes are published, for Forget more;
// nil once the origin is closing.
func (o *Origin) watch(id string, p *cmaf.Packager) *feed {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ctx.Err() != nil {
		return nil
	}
	f := o.feeds[id]
	if f != nil && f.p != p {
		f = nil // an older stream's packager by the same id; its feed is going
	}
	if f == nil {
		f = &feed{id: id, p: p, out: make(chan []byte, 512)}
		o.feeds[id] = f
		p.Journal(func(n uint64, op *cmaf.Op) {
			select {
			case f.out <- cmaf.EncodeOp(n, op):
			default: // NATS is not keeping up: the relays find the gap and ask again
			}
		})
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			o.publish(f)
		}()
	}
	f.watched.Store(time.Now().UnixNano())
	return f
}

// publish sends a stream's changes until nobody has watched for Forget.
func (o *Origin) publish(f *feed) {
	tick := time.NewTicker(Watch)
	defer tick.Stop()
	subject := mediaSubject(f.id)
	for {
		select {
		case b := <-f.out:
			m := nats.NewMsg(subject)
			m.Header.Set(hdrOrigin, o.node)
			m.Data = b
			if err := o.nc.PublishMsg(m); err != nil && o.ctx.Err() == nil {
				o.log.Debug("relay: a change not published", "stream", f.id, "err", err)
			}
		case <-tick.C:
			if time.Since(time.Unix(0, f.watched.Load())) < Forget {
				continue
			}
			o.mu.Lock()
			if o.feeds[f.id] == f {
				delete(o.feeds, f.id)
			}
			f.p.Journal(nil)
			o.mu.Unlock()
			return
		case <-o.ctx.Done():
			f.p.Journal(nil)
			return
		}
	}
}

// Locate says which node is a stream's origin; ErrNotHere when the
// stream is over or unknown (other errors are taken as passing).
type Locate func(ctx context.Context, id string) (origin string, err error)

// ErrNotHere is Packager's answer for a stream no other node has.
var ErrNotHere = errors.New("relay: no such stream")

// Relays are this node's relays of other nodes' streams.
type Relays struct {
	nc     *nats.Conn
	node   string
	locate Locate
	log    *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	relays map[string]*relay
	hubs   map[string]*hubRelay
	// moved is closed (and made again) by Recheck: every relay looks at
	// once where its stream is.
	moved  chan struct{}
	answer *nats.Subscription // positions asked of this node's mirrors
}

// relay is one stream's mirror on this node.
type relay struct {
	id string
	// parent is the stream a rendition (an ABR rung) belongs to: a rung is
	// not in the directory, it is where its stream is.
	parent string
	ready  chan struct{} // closed once p or err is set
	p      *cmaf.Packager
	err    error
	used   atomic.Int64 // unix nanoseconds of the last request
	rungs  []*relay     // the relays of the renditions p's view names
}

// located is the stream whose origin is the relay's.
func (rl *relay) located() string {
	if rl.parent != "" {
		return rl.parent
	}
	return rl.id
}

// NewRelays makes node's relays; locate finds origins.
func NewRelays(nc *nats.Conn, node string, locate Locate, log *slog.Logger) *Relays {
	r := &Relays{nc: nc, node: node, locate: locate, log: log, relays: map[string]*relay{}, hubs: map[string]*hubRelay{}, moved: make(chan struct{})}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r
}

// Close stops every relay.
func (r *Relays) Close() {
	if r.answer != nil {
		r.answer.Unsubscribe()
	}
	r.mu.Lock()
	r.cancel() // no relay starts after this
	r.mu.Unlock()
	r.wg.Wait()
}

// Packager returns the mirror of another node's stream, starting a relay
// for it on the first request: that request waits for the origin's
// snapshot (ctx bounds the wait).
func (r *Relays) Packager(ctx context.Context, id string) (*cmaf.Packager, error) {
	rl := r.start(id, "")
	if rl == nil {
		return nil, ErrNotHere
	}
	return rl.wait(ctx)
}

// start finds id's relay, or starts one (parent: the stream a rendition
// belongs to); nil once the node is leaving.
func (r *Relays) start(id, parent string) *relay {
	r.mu.Lock()
	defer r.mu.Unlock()
	rl := r.relays[id]
	if rl == nil {
		if r.ctx.Err() != nil {
			return nil
		}
		rl = &relay{id: id, parent: parent, ready: make(chan struct{})}
		r.relays[id] = rl
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.run(rl)
		}()
	}
	rl.used.Store(time.Now().UnixNano())
	return rl
}

// wait returns the relay's mirror once it has the origin's snapshot.
func (rl *relay) wait(ctx context.Context) (*cmaf.Packager, error) {
	select {
	case <-rl.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if rl.err != nil {
		return nil, rl.err
	}
	return rl.p, nil
}

// link gives the mirror the renditions its view names (an ABR ladder's
// rungs, each relayed in turn from the same origin), before it answers
// anyone: its multivariant playlist and manifest list what the origin's do.
func (r *Relays) link(rl *relay) {
	var ids, linked []string
	rl.p.View(func(v *cmaf.View) { ids = v.Variants })
	for _, rung := range rl.rungs {
		linked = append(linked, rung.id)
	}
	if slices.Equal(ids, linked) {
		return
	}
	ctx, cancel := context.WithTimeout(r.ctx, snapshotWait)
	defer cancel()
	var rungs []*relay
	var vs []cmaf.Variant
	for _, id := range ids {
		if CheckName(id) != nil || id == rl.id {
			continue
		}
		rung := r.start(id, rl.id)
		if rung == nil {
			return // leaving
		}
		p, err := rung.wait(ctx)
		if err != nil {
			r.log.Info("relay: a rendition not relayed", "stream", rl.id, "rendition", id, "err", err)
			continue
		}
		rungs = append(rungs, rung)
		vs = append(vs, cmaf.Variant{ID: id, P: p})
	}
	rl.rungs = rungs
	rl.p.LinkVariants(vs)
}

// Has says whether this node relays a stream (its media or its frames).
func (r *Relays) Has(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.relays[id] != nil || r.hubs[id] != nil
}

// Mirror returns the mirror of a stream this node relays now, without
// starting a relay: ErrNotHere when it has none ready.
func (r *Relays) Mirror(id string) (*cmaf.Packager, error) {
	r.mu.Lock()
	rl := r.relays[id]
	r.mu.Unlock()
	if rl == nil {
		return nil, ErrNotHere
	}
	select {
	case <-rl.ready:
	default:
		return nil, ErrNotHere
	}
	if rl.err != nil {
		return nil, rl.err
	}
	return rl.p, nil
}

// Streams lists the streams this node relays, with the hub of those whose
// frames it relays (nil for the others).
func (r *Relays) Streams() map[string]*stream.Hub {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]*stream.Hub{}
	for id := range r.relays {
		out[id] = nil
	}
	for id, hr := range r.hubs {
		out[id] = hr.hub
	}
	return out
}

// Parent is the stream a relayed rendition belongs to; "" for a stream.
func (r *Relays) Parent(id string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rl := r.relays[id]; rl != nil {
		return rl.parent
	}
	return ""
}

// Count is how many streams this node relays (a stream's renditions are
// the stream's).
func (r *Relays) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rl := range r.relays {
		if rl.parent == "" {
			n++
		}
	}
	for id := range r.hubs {
		if r.relays[id] == nil {
			n++
		}
	}
	return n
}

// run follows one stream until it ends at the origin, nobody asks for it
// for Idle, or the node shuts down.
func (r *Relays) run(rl *relay) {
	defer func() {
		r.mu.Lock()
		if r.relays[rl.id] == rl {
			delete(r.relays, rl.id)
		}
		r.mu.Unlock()
	}()
	fail := func(err error) {
		rl.err = err
		close(rl.ready)
	}
	ctx, cancel := context.WithTimeout(r.ctx, snapshotWait)
	origin, err := r.locate(ctx, rl.located())
	cancel()
	if err != nil {
		fail(err)
		return
	}
	// Subscribed before the snapshot is asked for: no change falls between.
	msgs := make(chan *nats.Msg, 1024)
	sub, err := r.nc.ChanSubscribe(mediaSubject(rl.id), msgs)
	if err != nil {
		fail(fmt.Errorf("relay: %w", err))
		return
	}
	defer sub.Unsubscribe()
	snap, err := r.snapshot(origin, rl.id, rl.located())
	// An origin that does not answer may be one that died while its stream
	// moves to another node: where the directory says it is now is asked.
	for tries := 0; err != nil && tries < 3; tries++ {
		ctx, cancel := context.WithTimeout(r.ctx, snapshotWait)
		now, lerr := r.locate(ctx, rl.located())
		cancel()
		if lerr != nil || now == origin {
			break
		}
		origin = now
		snap, err = r.snapshot(origin, rl.id, rl.located())
	}
	if err != nil {
		fail(err)
		return
	}
	if rl.p, err = cmaf.NewMirror(snap); err != nil {
		fail(err)
		return
	}
	r.link(rl)
	close(rl.ready)
	r.log.Debug("relay: following", "stream", rl.id, "origin", origin)

	watch := time.NewTicker(Watch)
	defer watch.Stop()
	for {
		r.mu.Lock()
		moved := r.moved
		r.mu.Unlock()
		select {
		case <-moved:
			// The directory changed: a stream that moved is followed to its
			// new origin now, not at the next watch.
			if now, err := r.still(rl.located(), origin); err == nil && now != origin {
				if !r.follow(rl, now) {
					return
				}
				origin = now
			}
		case m := <-msgs:
			if m.Header.Get(hdrOrigin) != origin {
				continue // from the node the stream left
			}
			n, op, err := cmaf.DecodeOp(m.Data)
			if err == nil && (op.Kind == cmaf.OpEnded || op.Kind == cmaf.OpRelease) {
				// Over at the origin, or gone from it to another node?
				if now, serr := r.still(rl.located(), origin); serr == nil && now != origin {
					if !r.follow(rl, now) {
						return
					}
					origin = now
					continue
				}
			}
			if err == nil {
				err = rl.p.Apply(n, op)
			}
			if err != nil {
				// A change went missing: start again from a new snapshot.
				r.log.Debug("relay: resync", "stream", rl.id, "err", err)
				if !r.follow(rl, origin) {
					return
				}
				continue
			}
			if op.Kind == cmaf.OpRelease {
				return // over at the origin
			}
			if op.Kind == cmaf.OpVariants {
				r.link(rl)
			}
		case <-watch.C:
			if time.Since(time.Unix(0, rl.used.Load())) > Idle {
				return
			}
			for _, rung := range rl.rungs {
				rung.used.Store(time.Now().UnixNano()) // listed: kept while the stream is
			}
			now, err := r.still(rl.located(), origin)
			if err != nil {
				r.log.Info("relay: the stream is over", "stream", rl.id, "origin", origin, "why", err)
				rl.p.Close() // its viewers see the end
				return
			}
			if now != origin {
				// Its publisher went to another node: follow it there, in
				// place, so that viewers waiting here carry on.
				if !r.follow(rl, now) {
					return
				}
				origin = now
				continue
			}
			r.nc.Publish(requestSubject(origin, rl.id), []byte(askWatch))
		case <-r.ctx.Done():
			return
		}
	}
}

// follow puts a relay in the state of origin's packager, in place: after a
// lost change, or when the stream moved to origin. False when origin does
// not answer: the relay is closed, its viewers see the end.
func (r *Relays) follow(rl *relay, origin string) bool {
	snap, err := r.snapshot(origin, rl.id, rl.located())
	// A stream that just moved is in the directory a moment before its new
	// origin has it: ask again for a little while.
	for deadline := time.Now().Add(moveWait); errors.Is(err, ErrNotHere) && time.Now().Before(deadline); {
		select {
		case <-r.ctx.Done():
			return false
		case <-time.After(50 * time.Millisecond):
		}
		snap, err = r.snapshot(origin, rl.id, rl.located())
	}
	if err == nil {
		err = rl.p.Restore(snap)
	}
	if err != nil {
		r.log.Info("relay: lost the origin", "stream", rl.id, "origin", origin, "err", err)
		rl.p.Close()
		return false
	}
	r.link(rl)
	r.log.Debug("relay: following", "stream", rl.id, "origin", origin, "from change", snap.N)
	return true
}

// still says where a relayed stream is now, or why it is over.
func (r *Relays) still(id, origin string) (string, error) {
	ctx, cancel := context.WithTimeout(r.ctx, snapshotWait)
	defer cancel()
	now, err := r.locate(ctx, id)
	switch {
	case r.ctx.Err() != nil:
		return origin, nil // leaving anyway
	case err != nil && !errors.Is(err, ErrNotHere):
		return origin, nil // no answer now (the directory electing a leader, say): ask again later
	}
	return now, err
}

// snapshot asks the origin for the stream's packager as it is (located: the
// stream whose origin it is, for a rendition its stream).
func (r *Relays) snapshot(origin, id, located string) (*cmaf.Snapshot, error) {
	inbox := nats.NewInbox()
	sub, err := r.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	defer sub.Unsubscribe()
	ask := func() error { return r.nc.PublishRequest(requestSubject(origin, id), inbox, []byte(askSnapshot)) }
	if err := ask(); err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	ctx, cancel := context.WithTimeout(r.ctx, snapshotWait)
	defer cancel()
	var chunks [][]byte
	for total := -1; total < 0 || len(chunks) < total; {
		m, err := sub.NextMsgWithContext(ctx)
		if errors.Is(err, nats.ErrNoResponders) && len(chunks) == 0 {
			// The origin's interest has not reached this node's server
			// yet (a node that just joined), or the origin died and its
			// stream is moving (the directory names another node now):
			// ask again shortly, or give up for the new origin.
			if now, lerr := r.locate(ctx, located); lerr == nil && now != origin {
				return nil, fmt.Errorf("relay: stream %s moved from %s to %s: %w", id, origin, now, err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
				if err = ask(); err == nil {
					continue
				}
			}
		}
		if err != nil {
			return nil, fmt.Errorf("relay: stream %s's snapshot from %s: %w", id, origin, err)
		}
		if e := m.Header.Get(hdrError); e != "" {
			return nil, fmt.Errorf("%w: %s", ErrNotHere, e)
		}
		if total, err = strconv.Atoi(m.Header.Get(hdrChunks)); err != nil || total < 1 || total > 4096 {
			return nil, fmt.Errorf("relay: stream %s's snapshot from %s: a bad chunk", id, origin)
		}
		chunks = append(chunks, m.Data)
	}
	return cmaf.DecodeSnapshot(bytes.Join(chunks, nil))
}
