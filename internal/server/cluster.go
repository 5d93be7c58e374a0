package server

import (
	"context"
	"encoding/json"
	"net/http"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/glasscast/glasscast/internal/cluster"
	"github.com/glasscast/glasscast/internal/cmaf"
	"github.com/glasscast/glasscast/internal/live"
	"github.com/glasscast/glasscast/internal/relay"
	"github.com/glasscast/glasscast/internal/store"
	"github.com/glasscast/glasscast/internal/stream"
)

// joinCluster makes this node part of the cluster its configuration names.
// The apps are the cluster's from then on: once it has joined, the node
// moves the apps it kept on its own into the cluster and puts those of its
// configuration file there.
func (s *Server) joinCluster(cfgApps []store.App) error {
	c, err := cluster.Start(cluster.Config{
		Node: s.cfg.NodeName(), Listen: s.cfg.NATSListen, Routes: s.cfg.NATSRoutes, URLs: s.cfg.NATS,
		Dir: s.cfg.Data, Secret: s.secret, Public: s.public, Version: Version(), Stats: s.nodeStats,
	}, s.log.With("component", "cluster"))
	if err != nil {
		return err
	}
	s.cluster = c
	s.undo.push(c.Close)
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
		if err != nil {
			return "", err
		}
		if e.Origin == c.Node() {
			return "", relay.ErrNotHere // this node's, and over
		}
		return e.Origin, nil
	}, rlog)
	s.undo.push(s.relays.Close)
	return nil
}

// announce keeps this node's streams in the cluster's directory: listed
// from creation, with their status, until they end.
func (s *Server) announce(dir *cluster.Streams, ev live.Event) {
	st := ev.Stream
	if st.Internal() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var err error
	if ev.Kind == live.EventEnded {
		err = dir.Delete(ctx, st.ID())
	} else {
		err = dir.Put(ctx, cluster.StreamEntry{ID: st.ID(), Name: st.Name(), Origin: s.cluster.Node(), Status: st.Status().String(),
			Public: st.Public(), Record: st.Record(), CreatedAt: st.CreatedAt()})
	}
	if err != nil && s.cluster.Ready() {
		s.log.Warn("cluster: the stream directory not updated", "stream", st.ID(), "event", ev.Kind, "err", err)
	}
}

// leaveCluster takes this node out of the cluster: its relays stop, its
// streams leave the directory, and the others see it go.
func (s *Server) leaveCluster() {
	s.relays.Close()
	s.origin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	dir := s.cluster.Streams()
	for _, st := range s.reg.List() {
		if e, ok := dir.Lookup(st.ID()); ok && e.Origin == s.cluster.Node() {
			dir.Delete(ctx, st.ID())
		}
	}
	s.cluster.Close()
}

// packager finds a stream's packager: this node's, or a relay of another
// node's, started on the first request.
func (s *Server) packager(id string) (*cmaf.Packager, bool) {
	if p, ok := s.reg.Packager(id); ok || s.relays == nil {
		return p, ok
	}
	if _, err := s.reg.Get(id); err == nil {
		return nil, false // this node's, and over
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
	if _, err := s.reg.Get(id); err == nil {
		return nil, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h, err := s.relays.Hub(ctx, id)
	return h, err == nil
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
	for _, ls := range s.reg.List() {
		if ls.Status() == live.StatusEnded {
			continue
		}
		st.Streams++
		v := s.countViewers(ls)
		st.Viewers += v.WebRTC + v.LLHLS + v.DASH
	}
	st.Sessions, _, _ = s.plane.Counts()
	st.CPU = s.cpu.percent()
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
	} else {
		out.Nodes = []cluster.Node{{Name: out.Node, Public: s.public, Version: Version(), Heartbeat: time.Now().UTC(),
			Alive: true, Stats: s.nodeStats()}}
	}
	writeJSON(w, out)
}

// Version is the build's version: dev and its revision.
func Version() string {
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
