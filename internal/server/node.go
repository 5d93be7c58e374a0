package server

import (
	"encoding/json"
	"net/http"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/glasscast/glasscast/internal/cluster"
	"github.com/glasscast/glasscast/internal/cmaf"
	"github.com/glasscast/glasscast/internal/live"
	"github.com/glasscast/glasscast/internal/stream"
)

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
	relays := s.view.Relays()
	var relayed map[string]*stream.Hub
	if relays != nil {
		relayed = relays.Streams()
	}
	for id, hub := range relayed {
		var v cluster.Viewers
		v.LLHLS, v.DASH = s.viewers.count(id)
		if hub != nil {
			v.WebRTC = s.rtc.Viewers(hub)
		}
		if parent := relays.Parent(id); parent != "" {
			id = parent // a rung's viewers are its stream's
		}
		watched(id, v)
	}
	st.Sessions, _, _ = s.plane.Counts()
	st.CPU = s.cpu.percent()
	st.Draining = s.view.Draining()
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
	out := clusterJSON{Node: s.view.Node(), Cluster: s.view.Cluster() != nil, Nodes: s.view.Nodes()}
	for i := range out.Nodes {
		out.Nodes[i].Positions = nil // the nodes' own business
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
