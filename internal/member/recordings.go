package member

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/glasscast/glasscast/internal/access"
	"github.com/glasscast/glasscast/internal/api"
	"github.com/glasscast/glasscast/internal/cluster"
	"github.com/glasscast/glasscast/internal/nodehttp"
	"github.com/glasscast/glasscast/internal/record"
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
func (m *Member) indexRecordings(ctx context.Context, last map[string]indexed) map[string]indexed {
	idx := m.c.Recordings()
	node := m.c.Node()
	now := time.Now()
	next := map[string]indexed{}
	for _, in := range m.cfg.Recs.List() {
		e := cluster.RecordingEntry{ID: in.ID, Node: node, Name: in.Name, Status: in.Status, StartedAt: in.StartedAt,
			Duration: in.Duration.Seconds(), Bytes: in.Bytes, Segments: in.Segments, Gaps: in.Gaps, Truncated: in.Truncated, Error: in.Error}
		if !in.EndedAt.IsZero() {
			end := in.EndedAt
			e.EndedAt = &end
		}
		prev, known := last[in.ID]
		if cur, ok := idx.Lookup(in.ID); ok && cur.Node != node && m.c.Alive(cur.Node) &&
			in.Status != record.StatusRecording && in.Status != record.StatusFailed {
			continue // the other node's now: this piece is handed over to it
		}
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

// remoteRecordings lists the recordings of the other nodes: those of a
// node that is not alive as unavailable (their files are on its disk),
// until it is back.
func (m *Member) remoteRecordings(apiServer *api.Server) []api.RecordingJSON {
	var out []api.RecordingJSON
	for _, e := range m.c.Recordings().List() {
		if e.Node == m.c.Node() {
			continue
		}
		j := apiServer.RemoteRecordingJSON(recordingJSON(e))
		if !m.c.Alive(e.Node) {
			j.Status, j.Error = recordingUnavailable, unreachable(e.Node)
		}
		out = append(out, j)
	}
	return out
}

// recordingUnavailable is the status of a recording on a node that is not
// alive.
const recordingUnavailable = "unavailable"

func unreachable(node string) string {
	return "the node that holds it (" + node + ") is not reachable now; it plays again when that node is back"
}

// recordingOnDeadNode is the node, not alive, whose disk holds a
// recording; "" when none.
func (m *Member) recordingOnDeadNode(id string) string {
	e, ok := m.c.Recordings().Lookup(id)
	if !ok || e.Node == m.c.Node() || m.c.Alive(e.Node) {
		return ""
	}
	return e.Node
}

// recordingHolder is the live node, not this one, whose disk holds a
// recording; "" when none does.
func (m *Member) recordingHolder(id string) string {
	e, ok := m.c.Recordings().Lookup(id)
	if !ok || e.Node == m.c.Node() || !m.c.Alive(e.Node) {
		return ""
	}
	return e.Node
}

// recordingElsewhere answers an API request about another node's
// recording from that node.
func (m *Member) recordingElsewhere(w http.ResponseWriter, r *http.Request, id string) bool {
	node := m.recordingHolder(id)
	if node == "" {
		if dead := m.recordingOnDeadNode(id); dead != "" {
			w.Header().Set("Retry-After", "30")
			api.WriteError(w, http.StatusServiceUnavailable, "recording_unavailable", "recording "+id+": "+unreachable(dead))
			return true
		}
		return false
	}
	m.forwardTo(w, r, node)
	return true
}

// recordingsAnywhere answers a player asking this node for another node's
// recording (the files are on its disk). When the holder has a public URL
// of its own, it is sent there: a temporary redirect to the same path,
// grant and all (a recording's MP4 is big; the holder serves it best).
// Nodes that share one public URL (a balancer's) would send the player
// round in circles: this node passes the holder's answer on instead,
// fetched over NATS a range at a time (see relayRecording).
func (m *Member) recordingsAnywhere(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest := strings.TrimPrefix(r.URL.Path, "/recordings/")
		id, file, _ := strings.Cut(rest, "/")
		id = strings.TrimSuffix(id, ".mp4")
		if _, err := m.cfg.Recs.Get(id); err == nil || r.Method == http.MethodOptions {
			next.ServeHTTP(w, r)
			return
		}
		node := m.recordingHolder(id)
		if node == "" {
			if dead := m.recordingOnDeadNode(id); dead != "" {
				w.Header().Set("Access-Control-Allow-Origin", "*")
				w.Header().Set("Retry-After", "30")
				http.Error(w, "this recording: "+unreachable(dead), http.StatusServiceUnavailable)
				return
			}
			next.ServeHTTP(w, r) // nobody has it: the usual "no such recording"
			return
		}
		uri := "/recordings/" + r.PathValue(access.GrantValue)
		if file != "" {
			uri += "/" + file
		} else {
			uri += ".mp4"
		}
		if r.URL.RawQuery != "" {
			uri += "?" + r.URL.RawQuery
		}
		public := ""
		for _, n := range m.c.Nodes() {
			if n.Name == node {
				public = n.Public
			}
		}
		if public == "" || public == m.public {
			m.relayRecording(w, r, node, uri)
			return
		}
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, public+uri, http.StatusTemporaryRedirect)
	})
}

// recordingChunk is the most of a recording's file one answer over NATS
// carries (under half the 1 MB a NATS message may be by default).
const recordingChunk = 512 << 10

// relayRecording answers r with node's file at uri (a recording's),
// read over NATS a range at a time (nodehttp.File) and served by
// http.ServeContent: the client's ranges, HEAD and conditional requests
// answered as the holder would. Answers that are not a range of a file
// (a playlist, an error) are passed on as they came.
func (m *Member) relayRecording(w http.ResponseWriter, r *http.Request, node, uri string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	chunk := m.recordingChunk()
	from, _, ranged := byteRange(r.Header.Get("Range"))
	if !ranged || from < 0 {
		from = 0
	}
	r = r.WithContext(nodehttp.WithClient(r.Context(), r.RemoteAddr))
	if err := nodehttp.ServeFile(w, r, &http.Client{Transport: m.nodes}, node, uri, from, chunk); err != nil {
		http.Error(w, "the node that holds the recording ("+node+") did not answer", http.StatusBadGateway)
	}
}

// byteRange reads a request's Range header: one range of bytes, from
// start to end (-1: to the end of the file), or the last -start bytes when
// start is negative. A request with no range, several, or one that does
// not parse asks for the whole file (ranged is false).
func byteRange(h string) (start, end int64, ranged bool) {
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return 0, -1, false
	}
	from, to, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return 0, -1, false
	}
	if from == "" {
		n, err := strconv.ParseInt(to, 10, 64)
		if err != nil || n <= 0 {
			return 0, -1, false
		}
		return -n, -1, true
	}
	a, err := strconv.ParseInt(from, 10, 64)
	if err != nil || a < 0 {
		return 0, -1, false
	}
	if to == "" {
		return a, -1, true
	}
	b, err := strconv.ParseInt(to, 10, 64)
	if err != nil || b < a {
		return 0, -1, false
	}
	return a, b, true
}
