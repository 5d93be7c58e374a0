package api

import (
	"errors"
	"net/http"
	"sort"
	"time"

	"github.com/glasscast/glasscast/internal/access"
	"github.com/glasscast/glasscast/internal/record"
	"github.com/glasscast/glasscast/protocol"
)

// RecordingJSON is a recording on the wire.
type RecordingJSON struct {
	ID        string     `json:"id"` // the stream's id
	Name      string     `json:"name,omitempty"`
	Status    string     `json:"status"` // recording, failed (live, but it cannot be written now), complete, interrupted, or (in a cluster) unavailable: on a node that is not reachable now
	StartedAt time.Time  `json:"startedAt"`
	EndedAt   *time.Time `json:"endedAt,omitempty"`
	Duration  float64    `json:"duration"` // seconds of media
	Bytes     int64      `json:"bytes"`
	Segments  int        `json:"segments"`
	Gaps      int        `json:"gaps"`                // publisher reconnects (or skipped stretches) inside it
	Truncated bool       `json:"truncated,omitempty"` // stopped at --record-max-bytes while the stream went on, or its end could not be written
	Error     string     `json:"error,omitempty"`     // the last failure to write it (a full disk)
	Node      string     `json:"node,omitempty"`      // in a cluster: the node whose disk holds it
	HLS       string     `json:"hls"`
	MP4       string     `json:"mp4"`
}

// RecordingURLs are where a stream's recording plays: the HLS playlist
// (an EVENT playlist while it is written, VOD after) and the MP4 download
// (once it is finished).
func RecordingURLs(public, grant string) (hls, mp4 string) {
	return public + "/recordings/" + grant + "/index.m3u8", public + "/recordings/" + grant + ".mp4"
}

func (s *Server) recordingJSON(in record.Info) RecordingJSON {
	out := RecordingJSON{ID: in.ID, Name: in.Name, Status: in.Status, StartedAt: in.StartedAt,
		Duration: in.Duration.Seconds(), Bytes: in.Bytes, Segments: in.Segments, Gaps: in.Gaps, Truncated: in.Truncated, Error: in.Error}
	if !in.EndedAt.IsZero() {
		e := in.EndedAt
		out.EndedAt = &e
	}
	out.HLS, out.MP4 = RecordingURLs(s.urls.Public(), s.urls.Grant(in.ID, access.Recording))
	out.Node = s.Node
	return out
}

// RemoteRecordingJSON is another node's recording, as the cluster's index
// has it, with URLs on this node (which sends their requests on).
func (s *Server) RemoteRecordingJSON(in RecordingJSON) RecordingJSON {
	in.HLS, in.MP4 = RecordingURLs(s.urls.Public(), s.urls.Grant(in.ID, access.Recording))
	return in
}

func (s *Server) recordings(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, "GET")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"recordings": s.recordingList()})
}

// recordingList lists the recordings, newest first: this node's and, in a
// cluster, the other live nodes'.
func (s *Server) recordingList() []RecordingJSON {
	out := []RecordingJSON{}
	if s.Recordings != nil {
		for _, in := range s.Recordings.List() {
			out = append(out, s.recordingJSON(in))
		}
	}
	if s.Elsewhere != nil {
		out = append(out, s.Elsewhere.Recordings()...)
		sort.SliceStable(out, func(i, j int) bool { return out[i].StartedAt.After(out[j].StartedAt) })
	}
	return out
}

func (s *Server) oneRecording(w http.ResponseWriter, r *http.Request) {
	var rec *record.Recording
	err := record.ErrNotFound
	if s.Recordings != nil {
		rec, err = s.Recordings.Get(r.PathValue("id"))
	}
	if err != nil && s.Elsewhere != nil && s.Elsewhere.ServeRecording(w, r, r.PathValue("id")) {
		return
	}
	if err != nil {
		WriteError(w, http.StatusNotFound, protocol.APINotFound, "no recording "+quote(r.PathValue("id")))
		return
	}
	switch r.Method {
	case http.MethodGet:
		writeJSON(w, http.StatusOK, s.recordingJSON(rec.Info()))
	case http.MethodDelete:
		err := s.Recordings.Delete(r.PathValue("id"))
		switch {
		case errors.Is(err, record.ErrBusy):
			WriteError(w, http.StatusConflict, protocol.APIConflict, "the recording is still being written; end its stream first")
		case errors.Is(err, record.ErrNotFound):
			WriteError(w, http.StatusNotFound, protocol.APINotFound, "no recording "+quote(r.PathValue("id")))
		case err != nil:
			WriteError(w, http.StatusInternalServerError, protocol.APIUnavailable, err.Error())
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	default:
		methodNotAllowed(w, "GET, DELETE")
	}
}
