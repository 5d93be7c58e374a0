package member

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/glasscast/glasscast/internal/access"
	"github.com/glasscast/glasscast/internal/api"
	"github.com/glasscast/glasscast/internal/auth"
	"github.com/glasscast/glasscast/internal/cluster"
	"github.com/glasscast/glasscast/internal/cmaf"
	"github.com/glasscast/glasscast/internal/live"
	"github.com/glasscast/glasscast/internal/relay"
	"github.com/glasscast/glasscast/internal/stream"
	"github.com/glasscast/glasscast/internal/web"
)

// Start begins serving the cluster once the node's parts are built: the
// stream directory lists this node's streams, other nodes' play here
// through relays and this node's there; other nodes' requests, questions
// and bridged app sockets are answered.
func (m *Member) Start(p Parts) (err error) {
	m.parts.Store(&p)
	c := m.c
	dir := c.Streams()
	m.reg.Subscribe("directory", func(ev live.Event) {
		m.startOutputs(ev) // a stream taken over: kept here before its entry is written
		m.mediaBack(ev)
		m.announce(dir, ev)
	})
	rlog := m.log.With("component", "relay")
	if m.origin, err = relay.ServeOrigin(c.Conn(), c.Node(), m.reg.Packager, m.reg.Hub, rlog); err != nil {
		return err
	}
	m.undo.push(m.origin.Close)
	m.relays = relay.NewRelays(c.Conn(), c.Node(), func(ctx context.Context, id string) (string, error) {
		e, err := dir.Find(ctx, id)
		if errors.Is(err, cluster.ErrNoStream) {
			return "", relay.ErrNotHere
		}
		if err != nil {
			return "", err
		}
		if e.Status == live.StatusEnded.String() {
			return "", relay.ErrNotHere
		}
		return e.Origin, nil // this node, for a stream that came here while relayed
	}, rlog)
	m.undo.push(m.relays.Close)
	if err := m.relays.AnswerPositions(m.reg.Packager); err != nil {
		return err
	}
	// A stream that moves is followed by this node's relays as soon as the
	// directory says so.
	rctx, rcancel := context.WithCancel(context.Background())
	rdone := make(chan struct{})
	go func() {
		defer close(rdone)
		origins := map[string]string{}
		for {
			ch := c.Changed()
			moved := false
			for _, e := range dir.Entries() {
				if was, ok := origins[e.ID]; ok && was != e.Origin {
					moved = true
				}
				origins[e.ID] = e.Origin
			}
			if len(origins) > 2*len(dir.Entries())+64 {
				clear(origins)
			}
			if moved {
				m.relays.Recheck()
			}
			select {
			case <-ch:
			case <-rctx.Done():
				return
			}
		}
	}()
	m.stopMoves = sync.OnceFunc(func() { rcancel(); <-rdone })
	m.undo.push(m.stopMoves)

	tctx, tcancel := context.WithCancel(context.Background())
	tdone := make(chan struct{})
	go func() {
		defer close(tdone)
		m.tend(tctx)
	}()
	m.stopTend = sync.OnceFunc(func() { tcancel(); <-tdone })
	m.undo.push(m.stopTend)
	if err := m.serveStatus(); err != nil {
		return err
	}
	if err := m.serveDeletes(); err != nil {
		return err
	}
	if err := m.servePrewarm(); err != nil {
		return err
	}
	if err := m.sessionsAnywhere(p.Apps); err != nil {
		return err
	}
	return m.serveForwarded(m.memberRoutes(p.Handler)) // every route is in
}

// tend keeps the directory true. Once the node has joined, the entries
// naming it are its streams' (a node back from a crash drops what it no
// longer has, and lists the durable streams it brought back). Then, every
// heartbeat, the first live node by name tends the streams of nodes that
// are gone: reconnecting at once, ended once the reconnect window has
// passed (the window applies cluster-wide), and gone from the directory
// once ended streams are no longer listed.
func (m *Member) tend(ctx context.Context) {
	c := m.c
	if c.WaitReady(ctx) != nil {
		return
	}
	dir := c.Streams()
	if all, err := dir.List(ctx); err == nil {
		for _, e := range all {
			if st, err := m.reg.Get(e.ID); e.Origin == c.Node() && (err != nil || st.Status() == live.StatusEnded) {
				dir.Remove(ctx, e.ID, func(cur cluster.StreamEntry) bool { return cur.Origin == c.Node() })
			}
		}
	}
	for _, st := range m.reg.List() {
		if st.Status() != live.StatusEnded {
			m.announce(dir, live.Event{Kind: live.EventCreated, Stream: st, At: st.CreatedAt()})
		}
	}
	recs := m.indexRecordings(ctx, nil)
	renewed := time.Now()
	seen := map[string]entrySeen{}
	tick := time.NewTicker(c.Heartbeat())
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			m.sweep(ctx, dir, seen)
			m.shareOutputs(ctx, dir)
			m.handOver(ctx, nil)
			recs = m.indexRecordings(ctx, recs)
			if time.Since(renewed) > homeRenewal {
				// A user's home is recorded for a day: those whose phone
				// stays connected here are recorded again.
				for _, user := range m.p().Plane.Phones() {
					if err := c.Users().Claim(ctx, user); err != nil && c.Ready() {
						m.log.Warn("cluster: the user's home not renewed", "user", user, "err", err)
					}
				}
				renewed = time.Now()
			}
		}
	}
}

// homeRenewal is how often a node records again the home of the users whose
// phone is connected to it (the record lasts a day).
const homeRenewal = time.Hour

// entrySeen is when this node first saw a directory entry as it is now
// (its status, as of the Since written with it), by its own clock.
type entrySeen struct {
	status string
	since  time.Time // the entry's own, naming the state; never compared with a clock
	at     time.Time // this node's clock
}

// sweep ends this node's copies of streams another node took over, and
// tends the entries of nodes that are gone when this node is the first
// live one by name. How long an entry has been reconnecting or ended is
// measured from when this node first saw it so (seen, the tend
// goroutine's), never from the time another node wrote in it.
func (m *Member) sweep(ctx context.Context, dir *cluster.Streams, seen map[string]entrySeen) {
	for _, st := range m.reg.List() {
		if st.Status() == live.StatusEnded {
			continue
		}
		if e, ok := dir.Lookup(st.ID()); !ok || e.Origin == m.c.Node() {
			continue
		}
		if e, err := dir.Get(ctx, st.ID()); err == nil && e.Origin != m.c.Node() {
			m.log.Info("stream taken over by another node", "stream", st.ID(), "node", e.Origin)
			m.mediaMoved(st) // a managed stream here follows it there
			m.reg.Delete(st.ID())
		}
	}

	now := time.Now().UTC()
	entries := dir.Entries()
	present := map[string]bool{}
	for _, e := range entries {
		present[e.ID] = true
		if was, ok := seen[e.ID]; !ok || was.status != e.Status || !was.since.Equal(e.Since) {
			seen[e.ID] = entrySeen{status: e.Status, since: e.Since, at: now}
		}
	}
	for id := range seen {
		if !present[id] {
			delete(seen, id)
		}
	}

	alive := map[string]bool{}
	first := ""
	for _, n := range m.c.Nodes() {
		if n.Alive {
			alive[n.Name] = true
			if first == "" || n.Name < first {
				first = n.Name
			}
		}
	}
	if first != m.c.Node() {
		return
	}
	retention := m.reg.Config().EndedRetention
	ended, reconnecting := live.StatusEnded.String(), live.StatusReconnecting.String()
	// Every change is a compare-and-set on the entry as it is now: one
	// another node changed since this node's copy (a takeover) is left.
	for _, e := range entries {
		since := now.Sub(seen[e.ID].at)
		switch {
		case e.Status == ended && since > retention:
			dir.Remove(ctx, e.ID, func(cur cluster.StreamEntry) bool { return cur.Status == ended && cur.Since.Equal(e.Since) })
		case e.Status == ended || alive[e.Origin]:
		case e.Status != reconnecting:
			wrote, _ := dir.Change(ctx, e.ID, func(cur *cluster.StreamEntry, exists bool) bool {
				if !exists || cur.Origin != e.Origin || cur.Status != e.Status || alive[cur.Origin] {
					return false
				}
				cur.Status, cur.Since = reconnecting, now
				return true
			})
			if wrote {
				m.log.Info("stream reconnecting: its node is gone", "stream", e.ID, "node", e.Origin, "window", m.cfg.ReconnectWindow)
			}
		case since > m.cfg.ReconnectWindow:
			wrote, _ := dir.Change(ctx, e.ID, func(cur *cluster.StreamEntry, exists bool) bool {
				if !exists || cur.Origin != e.Origin || cur.Status != reconnecting || !cur.Since.Equal(e.Since) {
					return false
				}
				cur.Status, cur.Since = ended, now
				return true
			})
			if wrote {
				m.log.Info("stream ended: its node did not come back within the reconnect window", "stream", e.ID, "node", e.Origin)
			}
		}
	}
}

// announce keeps this node's streams in the cluster's directory: listed
// from creation, with their status, until they end.
func (m *Member) announce(dir *cluster.Streams, ev live.Event) {
	st := ev.Stream
	if st.Internal() || ev.Shutdown || m.left.Load() {
		return // a node that leaves takes its entries out itself
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	status := map[live.EventKind]live.Status{live.EventCreated: live.StatusIdle, live.EventLive: live.StatusLive,
		live.EventReconnecting: live.StatusReconnecting, live.EventEnded: live.StatusEnded}[ev.Kind]
	if ev.Kind == live.EventCreated {
		status = st.Status() // a stream brought back by a restart may be waiting for its publisher
	}
	me := m.c.Node()
	var outputs string
	keepOutputs := false
	if st.Durable() && ev.Kind != live.EventEnded {
		var err error
		if _, outputs, err = m.outputsOf(ctx, st.ID()); err != nil {
			keepOutputs = true
			m.log.Warn("cluster: a stream's outputs not read; its entry keeps those it had", "stream", st.ID(), "err", err)
		}
	}
	_, err := dir.Change(ctx, st.ID(), func(cur *cluster.StreamEntry, exists bool) bool {
		if exists && cur.Origin != me {
			return false // another node took it over: its entry is that node's to write
		}
		if keepOutputs && exists {
			outputs = cur.Outputs
		}
		*cur = cluster.StreamEntry{ID: st.ID(), Name: st.Name(), Origin: me, Status: status.String(),
			Public: st.Public(), Record: st.Record(), CreatedAt: st.CreatedAt(), Since: ev.At.UTC(), KeyHash: cluster.KeyHash(st.Key()),
			Durable: st.Durable(), Outputs: outputs}
		return true
	})
	if err != nil && m.c.Ready() {
		m.log.Warn("cluster: the stream directory not updated", "stream", st.ID(), "event", ev.Kind, "err", err)
	}
}

// appsRequest is a user's start or stop sent to their home node.
type appsRequest struct {
	User   string `json:"user"`
	Pkg    string `json:"pkg"`
	Action string `json:"action"`
}

// appsReply is the home node's answer: what to answer the phone.
type appsReply struct {
	Status int             `json:"status"`
	Body   json.RawMessage `json:"body"`
}

// errHomeGone: the node that held a user's session went away before it
// answered.
var errHomeGone = errors.New("it went away before it answered; the glasses reconnect to another node: try again")

func appsSubject(node string) string { return "glasscast.node." + node + ".apps" }

// sessionsAnywhere makes a user's session live on one node, the one their
// phone connected to last (their home, recorded in the cluster), and lets
// the phone's start and stop of an app land on any node: a node that is
// not the user's home asks the home over NATS and answers what it says.
func (m *Member) sessionsAnywhere(apps *api.Apps) error {
	c := m.c
	users := c.Users()
	m.p().Sockets.Bridge = m.bridgeApp
	m.p().Sockets.GlassesConnected = m.glassesConnected
	wait := m.p().Plane.StartTimeout() + 10*time.Second
	m.startStopAtHome = func(ctx context.Context, user, pkg, action string) (int, []byte, bool) {
		home, err := users.Home(ctx, user)
		if err != nil || home == "" || home == c.Node() {
			return 0, nil, false
		}
		req, _ := json.Marshal(appsRequest{User: user, Pkg: pkg, Action: action})
		ctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		// A home that dies while the start waits is an answer at once: the
		// phone tries again, on the node its glasses reconnect to.
		ctx, gone := context.WithCancelCause(ctx)
		defer gone(nil)
		go func() {
			for ctx.Err() == nil {
				ch := c.Changed()
				if !c.Alive(home) {
					gone(errHomeGone)
					return
				}
				select {
				case <-ch:
				case <-time.After(c.Heartbeat()):
				case <-ctx.Done():
				}
			}
		}()
		msg, err := c.Conn().RequestWithContext(ctx, appsSubject(home), req)
		if context.Cause(ctx) == errHomeGone {
			err = errHomeGone
		}
		var rep appsReply
		if err == nil {
			err = json.Unmarshal(msg.Data, &rep)
		}
		if err != nil {
			var b struct {
				Error struct {
					Code    string `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			b.Error.Code, b.Error.Message = "home_unreachable", "the node that holds the user's session ("+home+") did not answer: "+err.Error()
			return http.StatusBadGateway, api.JSONBody(b), true
		}
		return rep.Status, rep.Body, true
	}
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	sub, err := c.Conn().Subscribe(appsSubject(c.Node()), func(msg *nats.Msg) {
		var req appsRequest
		if json.Unmarshal(msg.Data, &req) != nil || msg.Reply == "" {
			return
		}
		wg.Add(1)
		go func() { // a start waits for the app server
			defer wg.Done()
			status, body := apps.Act(ctx, req.User, req.Pkg, req.Action)
			b, _ := json.Marshal(appsReply{Status: status, Body: api.JSONBody(body)})
			msg.Respond(b)
		}()
	})
	if err != nil {
		cancel()
		return err
	}
	m.stopSessions = sync.OnceFunc(func() {
		sub.Unsubscribe()
		cancel()
		wg.Wait()
	})
	m.undo.push(m.stopSessions)
	if err := m.serveManagedWho(); err != nil {
		return err
	}
	if err := m.serveWHEPEnd(); err != nil {
		return err
	}
	if err := m.serveHandover(); err != nil {
		return err
	}
	return m.serveBridges()
}

// Leave takes this node out of the cluster: its relays stop, its streams
// leave the directory, and the others see it go.
func (m *Member) Leave() {
	m.left.Store(true)
	m.stopSessions()
	m.managed.close()
	m.leases.close()
	m.sessions.close()
	m.stopTend()
	m.stopMoves()
	if m.relays != nil {
		m.relays.Close()
		m.origin.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	dir := m.c.Streams()
	me := m.c.Node()
	for _, st := range m.reg.List() {
		if e, ok := dir.Lookup(st.ID()); ok && e.Origin == me {
			dir.Remove(ctx, st.ID(), func(cur cluster.StreamEntry) bool { return cur.Origin == me })
		}
	}
	m.c.Close()
}

// errTakenElsewhere refuses a publish whose stream another node took over
// at the same moment.
var errTakenElsewhere = errors.New("another node took the stream over a moment ago")

// Adopt takes over another node's stream whose key a publisher brought
// here: the directory names this node its origin from now on (the node
// that had it ends its copy), and the stream keeps its id and URLs.
func (m *Member) Adopt(key string) (live.Kept, error) {
	if m.relays == nil {
		return live.Kept{}, live.ErrUnknownKey // not started
	}
	dir := m.c.Streams()
	if !m.c.Loaded() {
		// Just joined: the stream may be one this node does not know of
		// yet.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		m.c.WaitLoaded(ctx)
		cancel()
	}
	e, ok := dir.ByKey(key)
	switch {
	case !ok:
		return live.Kept{}, live.ErrUnknownKey
	case e.Status == live.StatusEnded.String():
		return live.Kept{}, live.ErrEnded
	case e.Origin == m.c.Node():
		return live.Kept{}, live.ErrEnded // this node's, and over here
	}
	// What this node relayed of the stream, taken before the claim makes
	// its relay follow the stream here: the window the stream goes on
	// after.
	// A copy with no segment (the stream was idle) keeps nothing: the
	// stream starts here as it would have.
	// A copy whose last segment was cut before every track had media in
	// it keeps nothing either: finished, that track's segment would be
	// listed with no duration (players refuse such a playlist).
	var seed *cmaf.Snapshot
	if mr, err := m.relays.Mirror(e.ID); err == nil {
		if snap := mr.Snapshot(); len(snap.Segments) > 0 && everyTrackHasMedia(snap) {
			seed = snap
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	me := m.c.Node()
	err := dir.Claim(ctx, e.ID, func(cur *cluster.StreamEntry) error {
		if cur.KeyHash != e.KeyHash || cur.Status == live.StatusEnded.String() {
			return live.ErrEnded
		}
		// Another node took it over meanwhile (its publisher reached it
		// at the same moment): that node is its origin, and this publish
		// is refused (a publisher that tries again takes it from there).
		if cur.Origin != e.Origin && cur.Origin != me {
			return errTakenElsewhere
		}
		cur.Origin, cur.Status, cur.Since = me, live.StatusIdle.String(), time.Now().UTC()
		return nil
	})
	if err != nil {
		return live.Kept{}, err
	}
	pos := m.takeoverPosition(e) // this node's relay's included
	m.takeOutputs(e)
	m.log.Info("stream comes to this node: its publisher is here", "stream", e.ID, "from", e.Origin, "segment", pos.Seq, "window", seed != nil)
	return live.Kept{ID: e.ID, Key: key, Name: e.Name, Record: e.Record, Public: e.Public, CreatedAt: e.CreatedAt, Resume: &pos, Seed: seed,
		Durable: e.Durable}, nil
}

// everyTrackHasMedia says each track of a snapshot's last segment has
// media: a part, or a duration.
func everyTrackHasMedia(snap *cmaf.Snapshot) bool {
	last := snap.Segments[len(snap.Segments)-1]
	for _, t := range last.Tracks {
		if len(t.Parts) == 0 || t.Duration == 0 && !t.Complete {
			return false
		}
	}
	return len(last.Tracks) > 0
}

// takeoverMargin is how much more stream time than its relays a dead
// origin may have shown a player: a part (200 ms) and some.
const takeoverMargin = 300 * time.Millisecond

// takeoverPosition is where a stream taken over from another node numbers
// on. The relays of it (this node's, or another node's asked at once)
// had every change its origin published (the latest of them: one may be a
// part behind another): numbering on exactly from there,
// a player reading through a node that survived finds the part it was
// waiting for, made here. Without a relay, past what the origin's last
// heartbeat said, moved on by the time the origin may have gone on since
// (by this node's clock); without either, past a bound made of its age.
func (m *Member) takeoverPosition(e cluster.StreamEntry) cmaf.Position {
	now := time.Now()
	hb, heard, known := m.c.Position(e.Origin, e.ID)
	ctx, cancel := context.WithTimeout(context.Background(), relay.PositionWait)
	defer cancel()
	// Every other node answers at once, but the origin when it died (a
	// draining one answers, exactly).
	others, draining := 0, false
	for _, n := range m.c.Nodes() {
		if n.Name == e.Origin && n.Alive && n.Draining {
			draining = true
		}
		if n.Alive && n.Name != m.c.Node() && (n.Name != e.Origin || n.Draining) {
			others++
		}
	}
	if pos, ok := m.relays.Position(ctx, e.ID, others); ok {
		if known {
			pos = cmaf.Later(pos, hb)
		}
		if !draining {
			// A player reading from the origin itself (through a
			// balancer) may have had the part it finished as it died, not
			// relayed yet: stream time goes on past it. The numbers stay
			// the relays' own: the part a player on a surviving node waits
			// for is the first made here.
			pos.End += takeoverMargin
		}
		return pos
	}
	if known {
		return hb.Ahead(now.Sub(heard))
	}
	tracks := func() map[string]uint64 { return map[string]uint64{"video": 0, "audio": 0} }
	age := max(now.Sub(e.CreatedAt), 0)
	return cmaf.Position{TrackSeq: tracks(), Part: tracks(), Init: 1 + int(age/time.Second)}.Ahead(age)
}

// Packager finds another node's stream's packager: a relay of it,
// started on the first request.
func (m *Member) Packager(id string) (*cmaf.Packager, bool) {
	if m.relays == nil {
		return nil, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, err := m.relays.Packager(ctx, id)
	return p, err == nil
}

// Hub finds another node's stream's hub: a relay of its units, started
// on the first request.
func (m *Member) Hub(id string) (*stream.Hub, bool) {
	if m.relays == nil {
		return nil, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h, err := m.relays.Hub(ctx, id)
	return h, err == nil
}

// Elsewhere is the API's view of what the other nodes hold.
func (m *Member) Elsewhere() api.Elsewhere { return elsewhere{m} }

// WHEP passes a DELETE of a WebRTC session another node holds there.
func (m *Member) WHEP(next http.Handler) http.Handler { return m.whepAnywhere(next) }

// Recordings sends a player asking for another node's recording there.
func (m *Member) Recordings(next http.Handler) http.Handler { return m.recordingsAnywhere(next) }

// Knows says another node holds a stream or a recording with the id.
func (m *Member) Knows(id string) bool {
	if m.recordingHolder(id) != "" {
		return true
	}
	_, remote := m.remoteStream(context.Background(), id)
	return remote
}

// Watched adds to v the viewers of a stream the nodes said they have at
// their last heartbeat: the other nodes', and this one's too with self.
func (m *Member) Watched(id string, v api.Viewers, self bool) api.Viewers {
	for _, n := range m.c.Nodes() {
		if !n.Alive || n.Name == m.c.Node() && !self {
			continue
		}
		w := n.Watched[id]
		v.WebRTC, v.LLHLS, v.DASH = v.WebRTC+w.WebRTC, v.LLHLS+w.LLHLS, v.DASH+w.DASH
	}
	return v
}

// Drain sends what this node holds to the others before it stops.
func (m *Member) Drain(stopIngest func()) { m.drain(stopIngest) }

// elsewhere is the API's view of what the other nodes hold (api.Elsewhere).
type elsewhere struct{ m *Member }

func (e elsewhere) Stream(ctx context.Context, id string) (api.StreamJSON, bool) {
	return e.m.remoteStream(ctx, id)
}
func (e elsewhere) EndStream(ctx context.Context, id string) (api.StreamJSON, bool) {
	return e.m.remoteDelete(ctx, id)
}
func (e elsewhere) Streams() []api.StreamJSON       { return e.m.remoteList() }
func (e elsewhere) Recordings() []api.RecordingJSON { return e.m.remoteRecordings(e.m.p().API) }
func (e elsewhere) ServeRecording(w http.ResponseWriter, r *http.Request, id string) bool {
	return e.m.recordingElsewhere(w, r, id)
}
func (e elsewhere) ServeStream(w http.ResponseWriter, r *http.Request, id string) bool {
	return e.m.streamElsewhere(w, r, id)
}
func (e elsewhere) ServeManaged(w http.ResponseWriter, r *http.Request, streamID string) bool {
	return e.m.outputsElsewhere(w, r, streamID)
}
func (e elsewhere) StartStop(ctx context.Context, user, pkg, action string) (int, []byte, bool) {
	if e.m.startStopAtHome == nil {
		return 0, nil, false
	}
	return e.m.startStopAtHome(ctx, user, pkg, action)
}

// remoteStream describes another node's stream, as the directory has it.
func (m *Member) remoteStream(ctx context.Context, id string) (api.StreamJSON, bool) {
	e, err := m.c.Streams().Find(ctx, id)
	if err != nil {
		return api.StreamJSON{}, false
	}
	return m.entryJSON(e)
}

// entryJSON describes a directory entry of another node's stream.
func (m *Member) entryJSON(e cluster.StreamEntry) (api.StreamJSON, bool) {
	status, ok := m.entryStatus(e)
	if e.Origin == m.c.Node() || !ok {
		return api.StreamJSON{}, false
	}
	return api.StreamJSON{ID: e.ID, Name: e.Name, Status: status, Record: e.Record, Public: e.Public,
		Playback: api.StreamPlayback(m.p().URLs, e.ID, e.Record), CreatedAt: e.CreatedAt, Node: e.Origin,
		Playable: status == live.StatusLive, Viewers: m.Watched(e.ID, api.Viewers{}, true)}, true
}

// entryStatus is the status of another node's stream as this node sees
// it: its entry's, except that a stream whose node is gone is reconnecting
// (as the first live node will soon write) until the entry says it ended.
// A node's copy of the directory may skip a change when the cluster is
// shaken (a watch resumed gives the last value of each entry): what it
// says of a stream whose node died does not hang on the others' writes.
func (m *Member) entryStatus(e cluster.StreamEntry) (live.Status, bool) {
	var status live.Status
	if status.UnmarshalJSON([]byte(strconv.Quote(e.Status))) != nil {
		return status, false
	}
	if (status == live.StatusLive || status == live.StatusIdle) && !m.c.Alive(e.Origin) {
		status = live.StatusReconnecting
	}
	return status, true
}

// remoteList describes the streams of the other nodes, as this node's copy
// of the directory has them.
func (m *Member) remoteList() []api.StreamJSON {
	var out []api.StreamJSON
	for _, e := range m.c.Streams().Entries() {
		if st, ok := m.entryJSON(e); ok {
			out = append(out, st)
		}
	}
	return out
}

func deleteSubject(node string) string { return "glasscast.node." + node + ".delete" }

// remoteDelete ends another node's stream: its origin is asked to.
func (m *Member) remoteDelete(ctx context.Context, id string) (api.StreamJSON, bool) {
	out, ok := m.remoteStream(ctx, id)
	if !ok {
		return out, false
	}
	msg, err := m.c.Conn().RequestWithContext(ctx, deleteSubject(out.Node), []byte(id))
	if err != nil || string(msg.Data) != "ended" {
		return out, false
	}
	out.Status, out.Playable = live.StatusEnded, false
	return out, true
}

func statusSubject(node string) string { return "glasscast.node." + node + ".status" }

// statusRequest asks a stream's origin for its public status.
type statusRequest struct {
	ID    string `json:"id"`
	Grant string `json:"grant"`
}

// Status is the public status of another node's stream (its watch page
// here plays it through this node): as its origin tells it, or as the
// directory has it when the origin does not answer.
func (m *Member) Status(id, grant string) (web.Status, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	e, err := m.c.Streams().Find(ctx, id)
	if err != nil || e.Origin == m.c.Node() {
		return web.Status{}, false
	}
	out := web.Status{ID: e.ID, Name: e.Name, Status: e.Status}
	if st, ok := m.entryStatus(e); ok {
		out.Status = st.String()
	}
	req, _ := json.Marshal(statusRequest{ID: id, Grant: grant})
	if msg, err := m.c.Conn().RequestWithContext(ctx, statusSubject(e.Origin), req); err == nil {
		var st web.Status
		if json.Unmarshal(msg.Data, &st) == nil && st.ID == id {
			out = st
		}
	}
	out.Recording = ""
	if e.Record && m.p().Grants(grant, access.Recording) {
		out.Recording, _ = api.RecordingURLs(m.public, grant)
	}
	return out, true
}

// serveStatus answers other nodes' questions about the public status of
// this node's streams.
func (m *Member) serveStatus() error {
	sub, err := m.c.Conn().Subscribe(statusSubject(m.c.Node()), func(msg *nats.Msg) {
		var req statusRequest
		if json.Unmarshal(msg.Data, &req) != nil || msg.Reply == "" {
			return
		}
		if _, err := m.reg.Get(req.ID); err != nil {
			msg.Respond([]byte("{}"))
			return
		}
		st, _ := m.p().LocalStatus(req.ID, req.Grant)
		b, _ := json.Marshal(st)
		msg.Respond(b)
	})
	if err != nil {
		return err
	}
	m.undo.push(func() { sub.Unsubscribe() })
	return nil
}

// serveDeletes ends this node's streams other nodes' Streams API delete.
func (m *Member) serveDeletes() error {
	sub, err := m.c.Conn().Subscribe(deleteSubject(m.c.Node()), func(msg *nats.Msg) {
		answer := "ended"
		if m.reg.Delete(string(msg.Data)) != nil {
			answer = "no such stream"
		}
		msg.Respond([]byte(answer))
	})
	if err != nil {
		return err
	}
	m.undo.push(func() { sub.Unsubscribe() })
	return nil
}

// shareRevocation records a stream's new playback-token generation in the
// cluster, so that every node refuses the old tokens too, before this node
// does.
func (m *Member) ShareRevocation(ctx context.Context, id string, gen uint32) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := m.c.PutGeneration(ctx, id, gen); err != nil {
		m.log.Error("cluster: a revocation could not be recorded for the other nodes; nothing was revoked", "stream", id, "err", err)
		return err
	}
	return nil
}

// revokedElsewhere applies a playback-token generation recorded in the
// cluster: the old tokens stop working here, and their WebRTC sessions end.
func (m *Member) revokedElsewhere(id string, gen uint32) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if m.cfg.Access.Apply(ctx, id, gen) && m.ready() { // the parts are built
		m.p().RTC.CloseStream(id)
	}
}

// Public says whether another node's stream plays without a token.
func (m *Member) Public(id string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	e, err := m.c.Streams().Find(ctx, id)
	return err == nil && e.Public
}

// authFailSubject carries the client addresses that failed to
// authenticate on a node (a wrong admin token, API key, core token or
// stream key), for every node to count: a client's budget of failures is
// the cluster's, not each node's.
const authFailSubject = "glasscast.authfail"

// shareFailures tells the other nodes of this node's failed
// authentications, and counts theirs.
func (m *Member) shareFailures(throttle *auth.Throttle) error {
	if throttle == nil {
		return nil
	}
	nc, me := m.c.Conn(), m.c.Node()
	sub, err := nc.Subscribe(authFailSubject, func(msg *nats.Msg) {
		if msg.Header.Get(hdrFrom) != me && len(msg.Data) <= 64 {
			throttle.FailedElsewhere(string(msg.Data))
		}
	})
	if err != nil {
		return err
	}
	m.undo.push(func() { sub.Unsubscribe() })
	throttle.Share(func(addr string) {
		msg := nats.NewMsg(authFailSubject)
		msg.Header.Set(hdrFrom, me)
		msg.Data = []byte(addr)
		nc.PublishMsg(msg) // buffered by the client: never blocks
	})
	return nil
}
