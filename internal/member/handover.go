package member

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/glasscast/glasscast/internal/nodehttp"
	"github.com/glasscast/glasscast/internal/record"
)

// A recording is one recording wherever its stream went. A stream that
// moves to another node (its origin died, or drained) is recorded there
// from then on, under the same id; the node that recorded it before hands
// its piece over once it is finished and the other node holds the
// recording: it asks that node to take the piece in, which reads the
// piece's description and files from it and merges them
// (record.Store.Merge), and then deletes its own copy. A node that died
// does so when it is back; a draining node before it stops.
//
// The routes for it are on the handler only other nodes reach (nodehttp
// over NATS: members, ADR 10), never on the node's HTTP listener, and
// answer only requests a node made itself (a client's request forwarded
// between nodes carries the client's address).

const memberRecordings = "/member/recordings/"

// handoverTimeout bounds one piece's handover: the holder reads the
// piece a 512 KB range at a time.
const handoverTimeout = 10 * time.Minute

// memberRoutes adds the routes only other nodes ask to next.
func (m *Member) memberRoutes(next http.Handler) http.Handler {
	mux := http.NewServeMux()
	own := func(h http.HandlerFunc) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.RemoteAddr != "" { // a client's request, forwarded
				http.NotFound(w, r)
				return
			}
			h(w, r)
		})
	}
	mux.Handle("GET "+memberRecordings+"{id}/piece", own(m.servePiece))
	mux.Handle("GET "+memberRecordings+"{id}/files/{name}", own(m.serveRecordingFile))
	mux.Handle("POST "+memberRecordings+"{id}/merge", own(m.serveMerge))
	mux.Handle("/", next)
	return mux
}

// servePiece describes a finished recording of this node's for another
// node to take in.
func (m *Member) servePiece(w http.ResponseWriter, r *http.Request) {
	desc, err := m.cfg.Recs.Piece(r.PathValue("id"))
	if err != nil {
		http.Error(w, err.Error(), recordingStatus(err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(desc))
}

// serveRecordingFile sends one of a recording's files.
func (m *Member) serveRecordingFile(w http.ResponseWriter, r *http.Request) {
	f, err := m.cfg.Recs.File(r.PathValue("id"), r.PathValue("name"))
	if err != nil {
		http.Error(w, err.Error(), recordingStatus(err))
		return
	}
	defer f.Close()
	http.ServeContent(w, r, "", time.Time{}, f)
}

// serveMerge takes the piece of one of this node's recordings another
// node ("from") recorded in.
func (m *Member) serveMerge(w http.ResponseWriter, r *http.Request) {
	id, from := r.PathValue("id"), r.URL.Query().Get("from")
	if from == "" || from == m.c.Node() || !m.c.Alive(from) {
		http.Error(w, "from: not another live node", http.StatusBadRequest)
		return
	}
	if _, err := m.cfg.Recs.Get(id); err != nil {
		http.Error(w, err.Error(), recordingStatus(err))
		return
	}
	client := &http.Client{Transport: m.nodes}
	read := func(ctx context.Context, uri string) (io.ReadCloser, error) {
		f, resp, err := nodehttp.OpenFile(ctx, client, from, uri, 0, m.recordingChunk(), nil)
		if err != nil {
			return nil, err
		}
		if resp != nil {
			resp.Body.Close()
			return nil, fmt.Errorf("node %s answered %d for %s", from, resp.StatusCode, uri)
		}
		return f, nil
	}
	base := memberRecordings + url.PathEscape(id)
	rc, err := read(r.Context(), base+"/piece")
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	desc, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	n, err := m.cfg.Recs.Merge(r.Context(), id, desc, func(ctx context.Context, name string) (io.ReadCloser, error) {
		return read(ctx, base+"/files/"+url.PathEscape(name))
	})
	if err != nil {
		m.log.Warn("recording: a piece from another node not taken in", "recording", id, "node", from, "err", err)
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]int{"segments": n})
}

// recordingStatus is the HTTP status of a recording store's error.
func recordingStatus(err error) int {
	switch {
	case errors.Is(err, record.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, record.ErrBusy):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

// recordingChunk is the most of a file one answer over NATS carries.
func (m *Member) recordingChunk() int64 {
	chunk := int64(recordingChunk)
	if mp := m.c.Conn().MaxPayload(); mp > 0 && mp/2 < chunk {
		chunk = mp / 2
	}
	return chunk
}

// recordingHeldElsewhere is the live node, not this one, that records a
// stream now or holds its recording: the stream's origin, or the node the
// index names.
func (m *Member) recordingHeldElsewhere(id string) string {
	me := m.c.Node()
	if e, ok := m.c.Streams().Lookup(id); ok && e.Origin != me && m.c.Alive(e.Origin) {
		return e.Origin
	}
	if e, ok := m.c.Recordings().Lookup(id); ok && e.Node != me && m.c.Alive(e.Node) {
		return e.Node
	}
	return ""
}

// handOver gives the finished recordings of this node's whose stream
// another node records now (or whose recording it holds) to that node,
// ids when given, every one otherwise. It returns how many are left here
// that another node holds.
func (m *Member) handOver(ctx context.Context, ids map[string]bool) (left int) {
	me := m.c.Node()
	client := &http.Client{Transport: &nodehttp.Transport{Conn: m.c.Conn(), Seal: m.seal, Timeout: handoverTimeout}}
	for _, in := range m.cfg.Recs.List() {
		if ids != nil && !ids[in.ID] {
			continue
		}
		holder := m.recordingHeldElsewhere(in.ID)
		if holder == "" {
			continue
		}
		if in.Status == record.StatusRecording || in.Status == record.StatusFailed {
			left++ // its stream goes on here a moment more
			continue
		}
		u := "http://" + holder + memberRecordings + url.PathEscape(in.ID) + "/merge?from=" + url.QueryEscape(me)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
		resp, err := client.Do(req)
		if err != nil {
			m.log.Warn("recording: not handed over", "recording", in.ID, "node", holder, "err", err)
			left++
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			if resp.StatusCode != http.StatusNotFound { // not recording it yet
				m.log.Warn("recording: not handed over", "recording", in.ID, "node", holder, "status", resp.StatusCode, "answer", string(body))
			}
			left++
			continue
		}
		var out struct{ Segments int }
		json.Unmarshal(body, &out)
		if err := m.cfg.Recs.Delete(in.ID); err != nil {
			m.log.Warn("recording: handed over, but this node's copy stays", "recording", in.ID, "err", err)
			continue
		}
		m.log.Info("recording handed over to the node that holds it now", "recording", in.ID, "node", holder, "segments", out.Segments)
	}
	return left
}
