package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/glasscast/glasscast/internal/access"
	"github.com/glasscast/glasscast/internal/api"
	"github.com/glasscast/glasscast/internal/auth"
	"github.com/glasscast/glasscast/internal/cluster"
	"github.com/glasscast/glasscast/internal/cmaf"
	"github.com/glasscast/glasscast/internal/live"
	"github.com/glasscast/glasscast/internal/relay"
	"github.com/glasscast/glasscast/internal/store"
	"github.com/glasscast/glasscast/internal/stream"
	"github.com/glasscast/glasscast/internal/web"
)

// joinCluster makes this node part of the cluster its configuration names.
// The apps are the cluster's from then on: once it has joined, the node
// moves the apps it kept on its own into the cluster and puts those of its
// configuration file there.
func (s *Server) joinCluster(cfgApps []store.App, throttle *auth.Throttle) error {
	c, err := cluster.Start(cluster.Config{
		Node: s.cfg.NodeName(), Listen: s.cfg.NATSListen, Routes: s.cfg.NATSRoutes, URLs: s.cfg.NATS,
		TLS:   cluster.TLSFiles{Cert: s.cfg.NATSTLSCert, Key: s.cfg.NATSTLSKey, CA: s.cfg.NATSTLSCA},
		Creds: s.cfg.NATSCreds, Nkey: s.cfg.NATSNkey, Insecure: s.cfg.NATSInsecure,
		Dir: s.cfg.Data, Secret: s.secret, Public: s.public, Version: Version(), Stats: s.nodeStats,
		Generation: s.revokedElsewhere,
	}, s.log.With("component", "cluster"))
	if err != nil {
		return err
	}
	s.cluster = c
	s.undo.push(c.Close)
	if s.seal, err = cluster.NewSealer(s.secret); err != nil {
		return err
	}
	s.nodes = s.nodeTransport()
	if err := s.shareFailures(throttle); err != nil {
		return err
	}
	apps := c.Apps()
	s.apps = apps
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if c.WaitReady(ctx) != nil {
			return
		}
		moved, err := apps.MoveApps(ctx, s.store)
		if moved > 0 {
			s.log.Info("cluster: this node's own apps moved into the cluster", "apps", moved)
		}
		if err == nil {
			err = s.putApps(ctx, cfgApps)
		}
		if err != nil && ctx.Err() == nil {
			s.log.Error("cluster: apps not shared", "err", err)
		}
	}()
	s.undo.push(func() { cancel(); <-done })

	// The stream directory lists this node's streams; other nodes' play
	// here through relays, this node's there.
	dir := c.Streams()
	s.reg.Subscribe("directory", func(ev live.Event) { s.announce(dir, ev) })
	rlog := s.log.With("component", "relay")
	origin, err := relay.ServeOrigin(c.Conn(), c.Node(), s.reg.Packager, s.reg.Hub, rlog)
	if err != nil {
		return err
	}
	s.origin = origin
	s.undo.push(origin.Close)
	s.relays = relay.NewRelays(c.Conn(), c.Node(), func(ctx context.Context, id string) (string, error) {
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
	s.undo.push(s.relays.Close)
	if err := s.relays.AnswerPositions(s.reg.Packager); err != nil {
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
				s.relays.Recheck()
			}
			select {
			case <-ch:
			case <-rctx.Done():
				return
			}
		}
	}()
	s.stopMoves = sync.OnceFunc(func() { rcancel(); <-rdone })
	s.undo.push(s.stopMoves)

	tctx, tcancel := context.WithCancel(context.Background())
	tdone := make(chan struct{})
	go func() {
		defer close(tdone)
		s.tend(tctx)
	}()
	s.stopTend = sync.OnceFunc(func() { tcancel(); <-tdone })
	s.undo.push(s.stopTend)
	if err := s.serveStatus(); err != nil {
		return err
	}
	return s.serveDeletes()
}

// tend keeps the directory true. Once the node has joined, the entries
// naming it are its streams' (a node back from a crash drops what it no
// longer has, and lists the durable streams it brought back). Then, every
// heartbeat, the first live node by name tends the streams of nodes that
// are gone: reconnecting at once, ended once the reconnect window has
// passed (the window applies cluster-wide), and gone from the directory
// once ended streams are no longer listed.
func (s *Server) tend(ctx context.Context) {
	c := s.cluster
	if c.WaitReady(ctx) != nil {
		return
	}
	dir := c.Streams()
	if all, err := dir.List(ctx); err == nil {
		for _, e := range all {
			if st, err := s.reg.Get(e.ID); e.Origin == c.Node() && (err != nil || st.Status() == live.StatusEnded) {
				dir.Remove(ctx, e.ID, func(cur cluster.StreamEntry) bool { return cur.Origin == c.Node() })
			}
		}
	}
	for _, st := range s.reg.List() {
		if st.Status() != live.StatusEnded {
			s.announce(dir, live.Event{Kind: live.EventCreated, Stream: st, At: st.CreatedAt()})
		}
	}
	recs := s.indexRecordings(ctx, nil)
	renewed := time.Now()
	seen := map[string]entrySeen{}
	tick := time.NewTicker(c.Heartbeat())
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.sweep(ctx, dir, seen)
			recs = s.indexRecordings(ctx, recs)
			if time.Since(renewed) > homeRenewal {
				// A user's home is recorded for a day: those whose phone
				// stays connected here are recorded again.
				for _, user := range s.plane.Phones() {
					if err := c.Users().Claim(ctx, user); err != nil && c.Ready() {
						s.log.Warn("cluster: the user's home not renewed", "user", user, "err", err)
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
func (s *Server) sweep(ctx context.Context, dir *cluster.Streams, seen map[string]entrySeen) {
	for _, st := range s.reg.List() {
		if st.Status() == live.StatusEnded {
			continue
		}
		if e, ok := dir.Lookup(st.ID()); !ok || e.Origin == s.cluster.Node() {
			continue
		}
		if e, err := dir.Get(ctx, st.ID()); err == nil && e.Origin != s.cluster.Node() {
			s.log.Info("stream taken over by another node", "stream", st.ID(), "node", e.Origin)
			s.reg.Delete(st.ID())
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
	for _, n := range s.cluster.Nodes() {
		if n.Alive {
			alive[n.Name] = true
			if first == "" || n.Name < first {
				first = n.Name
			}
		}
	}
	if first != s.cluster.Node() {
		return
	}
	retention := s.reg.Config().EndedRetention
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
				s.log.Info("stream reconnecting: its node is gone", "stream", e.ID, "node", e.Origin, "window", s.cfg.ReconnectWindow)
			}
		case since > s.cfg.ReconnectWindow:
			wrote, _ := dir.Change(ctx, e.ID, func(cur *cluster.StreamEntry, exists bool) bool {
				if !exists || cur.Origin != e.Origin || cur.Status != reconnecting || !cur.Since.Equal(e.Since) {
					return false
				}
				cur.Status, cur.Since = ended, now
				return true
			})
			if wrote {
				s.log.Info("stream ended: its node did not come back within the reconnect window", "stream", e.ID, "node", e.Origin)
			}
		}
	}
}

// announce keeps this node's streams in the cluster's directory: listed
// from creation, with their status, until they end.
func (s *Server) announce(dir *cluster.Streams, ev live.Event) {
	st := ev.Stream
	if st.Internal() || ev.Shutdown {
		return // a node that leaves takes its entries out itself
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	status := map[live.EventKind]live.Status{live.EventCreated: live.StatusIdle, live.EventLive: live.StatusLive,
		live.EventReconnecting: live.StatusReconnecting, live.EventEnded: live.StatusEnded}[ev.Kind]
	if ev.Kind == live.EventCreated {
		status = st.Status() // a stream brought back by a restart may be waiting for its publisher
	}
	me := s.cluster.Node()
	_, err := dir.Change(ctx, st.ID(), func(cur *cluster.StreamEntry, exists bool) bool {
		if exists && cur.Origin != me {
			return false // another node took it over: its entry is that node's to write
		}
		*cur = cluster.StreamEntry{ID: st.ID(), Name: st.Name(), Origin: me, Status: status.String(),
			Public: st.Public(), Record: st.Record(), CreatedAt: st.CreatedAt(), Since: ev.At.UTC(), KeyHash: cluster.KeyHash(st.Key())}
		return true
	})
	if err != nil && s.cluster.Ready() {
		s.log.Warn("cluster: the stream directory not updated", "stream", st.ID(), "event", ev.Kind, "err", err)
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

func appsSubject(node string) string { return "glasscast.node." + node + ".apps" }

// sessionsAnywhere makes a user's session live on one node, the one their
// phone connected to last (their home, recorded in the cluster), and lets
// the phone's start and stop of an app land on any node: a node that is
// not the user's home asks the home over NATS and answers what it says.
func (s *Server) sessionsAnywhere(apps *api.Apps) error {
	c := s.cluster
	users := c.Users()
	s.sockets.Bridge = s.bridgeApp
	s.sockets.GlassesConnected = func(user string) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := users.Claim(ctx, user); err != nil && c.Ready() {
			s.log.Warn("cluster: this node is not recorded as the user's home", "user", user, "err", err)
		}
	}
	wait := s.plane.StartTimeout() + 10*time.Second
	s.startStopAtHome = func(ctx context.Context, user, pkg, action string) (int, []byte, bool) {
		home, err := users.Home(ctx, user)
		if err != nil || home == "" || home == c.Node() {
			return 0, nil, false
		}
		req, _ := json.Marshal(appsRequest{User: user, Pkg: pkg, Action: action})
		ctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		msg, err := c.Conn().RequestWithContext(ctx, appsSubject(home), req)
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
	sub, err := c.Conn().Subscribe(appsSubject(c.Node()), func(m *nats.Msg) {
		var req appsRequest
		if json.Unmarshal(m.Data, &req) != nil || m.Reply == "" {
			return
		}
		wg.Add(1)
		go func() { // a start waits for the app server
			defer wg.Done()
			status, body := apps.Act(ctx, req.User, req.Pkg, req.Action)
			b, _ := json.Marshal(appsReply{Status: status, Body: api.JSONBody(body)})
			m.Respond(b)
		}()
	})
	if err != nil {
		cancel()
		return err
	}
	s.stopSessions = sync.OnceFunc(func() {
		sub.Unsubscribe()
		cancel()
		wg.Wait()
	})
	s.undo.push(s.stopSessions)
	if err := s.serveManagedWho(); err != nil {
		return err
	}
	if err := s.serveWHEPEnd(); err != nil {
		return err
	}
	return s.serveBridges()
}

// leaveCluster takes this node out of the cluster: its relays stop, its
// streams leave the directory, and the others see it go.
func (s *Server) leaveCluster() {
	s.stopSessions()
	s.managed.close()
	s.leases.close()
	s.stopTend()
	s.stopMoves()
	s.relays.Close()
	s.origin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	dir := s.cluster.Streams()
	me := s.cluster.Node()
	for _, st := range s.reg.List() {
		if e, ok := dir.Lookup(st.ID()); ok && e.Origin == me {
			dir.Remove(ctx, st.ID(), func(cur cluster.StreamEntry) bool { return cur.Origin == me })
		}
	}
	s.cluster.Close()
}

// adopt takes over another node's stream whose key a publisher brought
// here: the directory names this node its origin from now on (the node
// that had it ends its copy), and the stream keeps its id and URLs.
func (s *Server) adopt(key string) (live.Kept, error) {
	if s.cluster == nil {
		return live.Kept{}, live.ErrUnknownKey
	}
	dir := s.cluster.Streams()
	e, ok := dir.ByKey(key)
	switch {
	case !ok:
		return live.Kept{}, live.ErrUnknownKey
	case e.Status == live.StatusEnded.String():
		return live.Kept{}, live.ErrEnded
	case e.Origin == s.cluster.Node():
		return live.Kept{}, live.ErrEnded // this node's, and over here
	}
	// What this node relayed of the stream, taken before the claim makes
	// its relay follow the stream here: the window the stream goes on
	// after.
	// A copy with no segment (the stream was idle) keeps nothing: the
	// stream starts here as it would have.
	var seed *cmaf.Snapshot
	if m, err := s.relays.Mirror(e.ID); err == nil {
		if snap := m.Snapshot(); len(snap.Segments) > 0 {
			seed = snap
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	me := s.cluster.Node()
	err := dir.Claim(ctx, e.ID, func(cur *cluster.StreamEntry) error {
		if cur.KeyHash != e.KeyHash || cur.Status == live.StatusEnded.String() {
			return live.ErrEnded
		}
		cur.Origin, cur.Status, cur.Since = me, live.StatusIdle.String(), time.Now().UTC()
		return nil
	})
	if err != nil {
		return live.Kept{}, err
	}
	pos := s.takeoverPosition(e) // this node's relay's included
	s.log.Info("stream comes to this node: its publisher is here", "stream", e.ID, "from", e.Origin, "segment", pos.Seq, "window", seed != nil)
	return live.Kept{ID: e.ID, Key: key, Name: e.Name, Record: e.Record, Public: e.Public, CreatedAt: e.CreatedAt, Resume: &pos, Seed: seed}, nil
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
func (s *Server) takeoverPosition(e cluster.StreamEntry) cmaf.Position {
	now := time.Now()
	hb, heard, known := s.cluster.Position(e.Origin, e.ID)
	ctx, cancel := context.WithTimeout(context.Background(), relay.PositionWait)
	defer cancel()
	// Every other node answers at once, but the origin when it died (a
	// draining one answers, exactly).
	others, draining := 0, false
	for _, n := range s.cluster.Nodes() {
		if n.Name == e.Origin && n.Alive && n.Draining {
			draining = true
		}
		if n.Alive && n.Name != s.cluster.Node() && (n.Name != e.Origin || n.Draining) {
			others++
		}
	}
	if pos, ok := s.relays.Position(ctx, e.ID, others); ok {
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

// packager finds a stream's packager: this node's, or a relay of another
// node's, started on the first request.
func (s *Server) packager(id string) (*cmaf.Packager, bool) {
	if p, ok := s.reg.Packager(id); ok || s.relays == nil {
		return p, ok
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, err := s.relays.Packager(ctx, id)
	return p, err == nil
}

// hub finds a stream's hub: this node's, or a relay of another node's
// units, started on the first request.
func (s *Server) hub(id string) (*stream.Hub, bool) {
	if h, ok := s.reg.Hub(id); ok || s.relays == nil {
		return h, ok
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h, err := s.relays.Hub(ctx, id)
	return h, err == nil
}

// elsewhere is the API's view of what the other nodes hold (api.Elsewhere).
type elsewhere struct {
	s   *Server
	api *api.Server
}

func (e elsewhere) Stream(ctx context.Context, id string) (api.StreamJSON, bool) {
	return e.s.remoteStream(ctx, id)
}
func (e elsewhere) EndStream(ctx context.Context, id string) (api.StreamJSON, bool) {
	return e.s.remoteDelete(ctx, id)
}
func (e elsewhere) Streams() []api.StreamJSON       { return e.s.remoteList() }
func (e elsewhere) Recordings() []api.RecordingJSON { return e.s.remoteRecordings(e.api) }
func (e elsewhere) ServeRecording(w http.ResponseWriter, r *http.Request, id string) bool {
	return e.s.recordingElsewhere(w, r, id)
}
func (e elsewhere) ServeStream(w http.ResponseWriter, r *http.Request, id string) bool {
	return e.s.streamElsewhere(w, r, id)
}
func (e elsewhere) ServeManaged(w http.ResponseWriter, r *http.Request, streamID string) bool {
	return e.s.outputsElsewhere(w, r, streamID)
}
func (e elsewhere) StartStop(ctx context.Context, user, pkg, action string) (int, []byte, bool) {
	if e.s.startStopAtHome == nil {
		return 0, nil, false
	}
	return e.s.startStopAtHome(ctx, user, pkg, action)
}

// remoteStream describes another node's stream, as the directory has it.
func (s *Server) remoteStream(ctx context.Context, id string) (api.StreamJSON, bool) {
	if s.cluster == nil {
		return api.StreamJSON{}, false
	}
	e, err := s.cluster.Streams().Find(ctx, id)
	if err != nil {
		return api.StreamJSON{}, false
	}
	return s.entryJSON(e)
}

// entryJSON describes a directory entry of another node's stream.
func (s *Server) entryJSON(e cluster.StreamEntry) (api.StreamJSON, bool) {
	status, ok := s.entryStatus(e)
	if e.Origin == s.cluster.Node() || !ok {
		return api.StreamJSON{}, false
	}
	return api.StreamJSON{ID: e.ID, Name: e.Name, Status: status, Record: e.Record, Public: e.Public,
		Playback: api.StreamPlayback(s, e.ID, e.Record), CreatedAt: e.CreatedAt, Node: e.Origin,
		Playable: status == live.StatusLive, Viewers: s.watched(e.ID, api.Viewers{}, true)}, true
}

// entryStatus is the status of another node's stream as this node sees
// it: its entry's, except that a stream whose node is gone is reconnecting
// (as the first live node will soon write) until the entry says it ended.
// A node's copy of the directory may skip a change when the cluster is
// shaken (a watch resumed gives the last value of each entry): what it
// says of a stream whose node died does not hang on the others' writes.
func (s *Server) entryStatus(e cluster.StreamEntry) (live.Status, bool) {
	var status live.Status
	if status.UnmarshalJSON([]byte(strconv.Quote(e.Status))) != nil {
		return status, false
	}
	if (status == live.StatusLive || status == live.StatusIdle) && !s.cluster.Alive(e.Origin) {
		status = live.StatusReconnecting
	}
	return status, true
}

// remoteList describes the streams of the other nodes, as this node's copy
// of the directory has them.
func (s *Server) remoteList() []api.StreamJSON {
	var out []api.StreamJSON
	for _, e := range s.cluster.Streams().Entries() {
		if st, ok := s.entryJSON(e); ok {
			out = append(out, st)
		}
	}
	return out
}

func deleteSubject(node string) string { return "glasscast.node." + node + ".delete" }

// remoteDelete ends another node's stream: its origin is asked to.
func (s *Server) remoteDelete(ctx context.Context, id string) (api.StreamJSON, bool) {
	out, ok := s.remoteStream(ctx, id)
	if !ok {
		return out, false
	}
	msg, err := s.cluster.Conn().RequestWithContext(ctx, deleteSubject(out.Node), []byte(id))
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

// remoteStatus is the public status of another node's stream (its watch
// page here plays it through this node): as its origin tells it, or as the
// directory has it when the origin does not answer.
func (s *Server) remoteStatus(id, grant string) (web.Status, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	e, err := s.cluster.Streams().Find(ctx, id)
	if err != nil || e.Origin == s.cluster.Node() {
		return web.Status{}, false
	}
	out := web.Status{ID: e.ID, Name: e.Name, Status: e.Status}
	if st, ok := s.entryStatus(e); ok {
		out.Status = st.String()
	}
	req, _ := json.Marshal(statusRequest{ID: id, Grant: grant})
	if msg, err := s.cluster.Conn().RequestWithContext(ctx, statusSubject(e.Origin), req); err == nil {
		var st web.Status
		if json.Unmarshal(msg.Data, &st) == nil && st.ID == id {
			out = st
		}
	}
	out.Recording = ""
	if e.Record && s.grants(grant, access.Recording) {
		out.Recording, _ = api.RecordingURLs(s.public, grant)
	}
	return out, true
}

// serveStatus answers other nodes' questions about the public status of
// this node's streams.
func (s *Server) serveStatus() error {
	sub, err := s.cluster.Conn().Subscribe(statusSubject(s.cluster.Node()), func(m *nats.Msg) {
		var req statusRequest
		if json.Unmarshal(m.Data, &req) != nil || m.Reply == "" {
			return
		}
		if _, err := s.reg.Get(req.ID); err != nil {
			m.Respond([]byte("{}"))
			return
		}
		st, _ := s.publicStatus(req.ID, req.Grant)
		b, _ := json.Marshal(st)
		m.Respond(b)
	})
	if err != nil {
		return err
	}
	s.undo.push(func() { sub.Unsubscribe() })
	return nil
}

// serveDeletes ends this node's streams other nodes' Streams API delete.
func (s *Server) serveDeletes() error {
	sub, err := s.cluster.Conn().Subscribe(deleteSubject(s.cluster.Node()), func(m *nats.Msg) {
		answer := "ended"
		if s.reg.Delete(string(m.Data)) != nil {
			answer = "no such stream"
		}
		m.Respond([]byte(answer))
	})
	if err != nil {
		return err
	}
	s.undo.push(func() { sub.Unsubscribe() })
	return nil
}

// revoked ends the WebRTC sessions of a stream whose playback tokens were
// just revoked here.
func (s *Server) revoked(id string) int { return s.rtc.CloseStream(id) }

// shareRevocation records a stream's new playback-token generation in the
// cluster, so that every node refuses the old tokens too, before this node
// does.
func (s *Server) shareRevocation(ctx context.Context, id string, gen uint32) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.cluster.PutGeneration(ctx, id, gen); err != nil {
		s.log.Error("cluster: a revocation could not be recorded for the other nodes; nothing was revoked", "stream", id, "err", err)
		return err
	}
	return nil
}

// revokedElsewhere applies a playback-token generation recorded in the
// cluster: the old tokens stop working here, and their WebRTC sessions end.
func (s *Server) revokedElsewhere(id string, gen uint32) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if s.access.Apply(ctx, id, gen) && s.ready.Load() {
		s.rtc.CloseStream(id)
	}
}

// remotePublic says whether another node's stream plays without a token.
func (s *Server) remotePublic(id string) bool {
	if s.cluster == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	e, err := s.cluster.Streams().Find(ctx, id)
	return err == nil && e.Public
}

// nodeStats is what this node says of itself: its streams, their viewers,
// its user sessions and its CPU since it last said.
func (s *Server) nodeStats() cluster.Stats {
	var st cluster.Stats
	if !s.ready.Load() {
		return st // not built yet, or shutting down
	}
	watched := func(id string, v cluster.Viewers) {
		if n := v.WebRTC + v.LLHLS + v.DASH; n > 0 {
			st.Viewers += n
			if st.Watched == nil {
				st.Watched = map[string]cluster.Viewers{}
			}
			w := st.Watched[id]
			st.Watched[id] = cluster.Viewers{WebRTC: w.WebRTC + v.WebRTC, LLHLS: w.LLHLS + v.LLHLS, DASH: w.DASH + v.DASH}
		}
	}
	for _, ls := range s.reg.List() {
		if ls.Status() == live.StatusEnded {
			continue
		}
		if p, ok := s.reg.Packager(ls.ID()); ok && !ls.Internal() {
			if pos := p.Position(); !pos.Zero() {
				if st.Positions == nil {
					st.Positions = map[string]cmaf.Position{}
				}
				st.Positions[ls.ID()] = pos
			}
		}
		st.Streams++
		v := s.countViewers(ls)
		watched(ls.ID(), cluster.Viewers{WebRTC: v.WebRTC, LLHLS: v.LLHLS, DASH: v.DASH})
	}
	// Viewers here of streams other nodes hold.
	var relayed map[string]*stream.Hub
	if s.relays != nil {
		relayed = s.relays.Streams()
	}
	for id, hub := range relayed {
		var v cluster.Viewers
		v.LLHLS, v.DASH = s.viewers.count(id)
		if hub != nil {
			v.WebRTC = s.rtc.Viewers(hub)
		}
		if parent := s.relays.Parent(id); parent != "" {
			id = parent // a rung's viewers are its stream's
		}
		watched(id, v)
	}
	st.Sessions, _, _ = s.plane.Counts()
	st.CPU = s.cpu.percent()
	st.Draining = s.draining.Load()
	return st
}

// cpuMeter is the process's CPU, in percent of a core, between two reads.
type cpuMeter struct {
	mu   sync.Mutex
	at   time.Time
	used time.Duration
}

func (m *cpuMeter) percent() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	used := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	var pct float64
	if !m.at.IsZero() && now.After(m.at) {
		pct = 100 * float64(used-m.used) / float64(now.Sub(m.at))
	}
	m.at, m.used = now, used
	return pct
}

// clusterJSON answers GET /api/v1/cluster.
type clusterJSON struct {
	Node    string         `json:"node"`
	Cluster bool           `json:"cluster"`
	Nodes   []cluster.Node `json:"nodes"`
}

// clusterStatus lists the cluster's nodes (a single node lists itself).
func (s *Server) clusterStatus(w http.ResponseWriter, _ *http.Request) {
	out := clusterJSON{Node: s.cfg.NodeName()}
	if s.cluster != nil {
		out.Cluster, out.Nodes = true, s.cluster.Nodes()
		for i := range out.Nodes {
			out.Nodes[i].Positions = nil // the nodes' own business
		}
	} else {
		out.Nodes = []cluster.Node{{Name: out.Node, Public: s.public, Version: Version(), Heartbeat: time.Now().UTC(),
			Alive: true, Stats: s.nodeStats()}}
	}
	writeJSON(w, out)
}

// buildVersion, set at link time (-ldflags "-X
// github.com/glasscast/glasscast/internal/server.buildVersion=v1.2.3"), is
// the version a release reports.
var buildVersion string

// Version is the build's version: the release's, or dev and its revision.
func Version() string {
	if buildVersion != "" {
		return buildVersion
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "dev-" + s.Value[:12]
			}
		}
	}
	return "dev"
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(v)
}

// authFailSubject carries the client addresses that failed to
// authenticate on a node (a wrong admin token, API key, core token or
// stream key), for every node to count: a client's budget of failures is
// the cluster's, not each node's.
const authFailSubject = "glasscast.authfail"

// shareFailures tells the other nodes of this node's failed
// authentications, and counts theirs.
func (s *Server) shareFailures(throttle *auth.Throttle) error {
	if throttle == nil {
		return nil
	}
	nc, me := s.cluster.Conn(), s.cluster.Node()
	sub, err := nc.Subscribe(authFailSubject, func(m *nats.Msg) {
		if m.Header.Get(hdrFrom) != me && len(m.Data) <= 64 {
			throttle.FailedElsewhere(string(m.Data))
		}
	})
	if err != nil {
		return err
	}
	s.undo.push(func() { sub.Unsubscribe() })
	throttle.Share(func(addr string) {
		m := nats.NewMsg(authFailSubject)
		m.Header.Set(hdrFrom, me)
		m.Data = []byte(addr)
		nc.PublishMsg(m) // buffered by the client: never blocks
	})
	return nil
}
