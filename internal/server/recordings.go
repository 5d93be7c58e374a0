package server

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/glasscast/glasscast/internal/access"
	"github.com/glasscast/glasscast/internal/api"
	"github.com/glasscast/glasscast/internal/cluster"
)

// A cluster's recordings stay on the disk of the node that wrote them; the
// cluster's index (glasscast_recordings) says where each one is, so that
// every node lists them all, answers the API about any of them (from the
// node that holds it) and sends a player to that node.

// indexSizeEvery is how often a recording that grows has its size
// rewritten in the index; a change of status is written at once.
const indexSizeEvery = 10 * time.Second

// indexed is what this node last wrote of one of its recordings.
type indexed struct {
	e  cluster.RecordingEntry
	at time.Time
}

// indexRecordings brings the index up to date with this node's
// recordings: new and changed ones written, deleted and pruned ones taken
// out. last is what it wrote before (nil: nothing is known, the index's
// entries naming this node are checked against the disk).
func (s *Server) indexRecordings(ctx context.Context, last map[string]indexed) map[string]indexed {
	idx := s.cluster.Recordings()
	node := s.cluster.Node()
	now := time.Now()
	next := map[string]indexed{}
	for _, in := range s.recs.List() {
		e := cluster.RecordingEntry{ID: in.ID, Node: node, Name: in.Name, Status: in.Status, StartedAt: in.StartedAt,
			Duration: in.Duration.Seconds(), Bytes: in.Bytes, Segments: in.Segments, Gaps: in.Gaps, Truncated: in.Truncated, Error: in.Error}
		if !in.EndedAt.IsZero() {
			end := in.EndedAt
			e.EndedAt = &end
		}
		prev, known := last[in.ID]
		grown := prev.e
		grown.Duration, grown.Bytes, grown.Segments = e.Duration, e.Bytes, e.Segments
		if known && (sameRecording(prev.e, e) || sameRecording(grown, e) && now.Sub(prev.at) < indexSizeEvery) {
			next[in.ID] = prev
			continue
		}
		if err := idx.Put(ctx, e); err != nil {
			if known {
				next[in.ID] = prev
			}
			continue // again at the next heartbeat
		}
		next[in.ID] = indexed{e, now}
	}
	if last == nil {
		for _, e := range idx.List() {
			if _, ok := next[e.ID]; e.Node == node && !ok {
				idx.Delete(ctx, e.ID)
			}
		}
	}
	for id := range last {
		if _, ok := next[id]; !ok {
			if e, ok := idx.Lookup(id); !ok || e.Node == node {
				idx.Delete(ctx, id)
			}
		}
	}
	return next
}

// sameRecording says whether two entries say the same.
func sameRecording(a, b cluster.RecordingEntry) bool {
	ae, be := a.EndedAt, b.EndedAt
	a.EndedAt, b.EndedAt = nil, nil
	return a == b && (ae == nil) == (be == nil) && (ae == nil || ae.Equal(*be))
}

// recordingJSON is an index entry as the API shows it.
func recordingJSON(e cluster.RecordingEntry) api.RecordingJSON {
	return api.RecordingJSON{ID: e.ID, Name: e.Name, Status: e.Status, StartedAt: e.StartedAt, EndedAt: e.EndedAt,
		Duration: e.Duration, Bytes: e.Bytes, Segments: e.Segments, Gaps: e.Gaps, Truncated: e.Truncated, Error: e.Error, Node: e.Node}
}

// remoteRecordings lists the recordings of the other live nodes.
func (s *Server) remoteRecordings(apiServer *api.Server) func() []api.RecordingJSON {
	return func() []api.RecordingJSON {
		var out []api.RecordingJSON
		for _, e := range s.cluster.Recordings().List() {
			if e.Node != s.cluster.Node() && s.cluster.Alive(e.Node) {
				out = append(out, apiServer.RemoteRecordingJSON(recordingJSON(e)))
			}
		}
		return out
	}
}

// recordingHolder is the live node, not this one, whose disk holds a
// recording; "" when none does.
func (s *Server) recordingHolder(id string) string {
	e, ok := s.cluster.Recordings().Lookup(id)
	if !ok || e.Node == s.cluster.Node() || !s.cluster.Alive(e.Node) {
		return ""
	}
	return e.Node
}

// recordingElsewhere answers an API request about another node's
// recording from that node.
func (s *Server) recordingElsewhere(w http.ResponseWriter, r *http.Request, id string) bool {
	node := s.recordingHolder(id)
	if node == "" {
		return false
	}
	s.forwardTo(w, r, node)
	return true
}

// recordingsAnywhere sends a player asking this node for another node's
// recording to that node (the files are on its disk; a recording's MP4 is
// too big to pass through): a temporary redirect to the same path, grant
// and all, on the node's public URL.
func (s *Server) recordingsAnywhere(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest := strings.TrimPrefix(r.URL.Path, "/recordings/")
		id, file, _ := strings.Cut(rest, "/")
		id = strings.TrimSuffix(id, ".mp4")
		if _, err := s.recs.Get(id); err == nil || r.Method == http.MethodOptions {
			next.ServeHTTP(w, r)
			return
		}
		node := s.recordingHolder(id)
		public := ""
		for _, n := range s.cluster.Nodes() {
			if n.Name == node {
				public = n.Public
			}
		}
		if node == "" || public == "" || public == s.public {
			// Nowhere else to send it (nodes that share a public URL, a
			// balancer's, would send the player round in circles).
			next.ServeHTTP(w, r)
			return
		}
		target := public + "/recordings/" + r.PathValue(access.GrantValue)
		if file != "" {
			target += "/" + file
		} else {
			target += ".mp4"
		}
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, target, http.StatusTemporaryRedirect)
	})
}
