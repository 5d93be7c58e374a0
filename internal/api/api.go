// Package api is glasscast's HTTP API: the Streams API (/api/v1/streams),
// behind the admin bearer token, with JSON errors carrying stable codes and
// size-limited request bodies.
package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/glasscast/glasscast/internal/access"
	"github.com/glasscast/glasscast/internal/auth"
	"github.com/glasscast/glasscast/internal/live"
	"github.com/glasscast/glasscast/internal/record"
	"github.com/glasscast/glasscast/internal/restream"
	"github.com/glasscast/glasscast/protocol"
)

// MaxBodyBytes bounds request bodies.
const MaxBodyBytes = 64 << 10

// MaxNameLength bounds a stream's name.
const MaxNameLength = 200

// URLs builds the addresses handed out for a stream.
type URLs interface {
	// Public is the base URL of the HTTP side, without a trailing slash.
	Public() string
	// RTMPBase is rtmp://HOST:PORT/live/ (the key follows).
	RTMPBase() string
	// Grant is the path element of a stream's viewer URLs granting right:
	// a playback token, or the id of a public stream.
	Grant(id string, right access.Right) string
}

// Server serves the API.
type Server struct {
	reg   *live.Registry
	urls  URLs
	token [32]byte
	log   *slog.Logger

	// Viewers, when set, counts a stream's viewers.
	Viewers func(*live.Stream) Viewers
	// Outputs, when set, lists each stream's restream outputs.
	Outputs *restream.Manager
	// Recordings, when set, lists and serves the recordings.
	Recordings *record.Store
	// Counts, when set, says how many users, glasses connections and app
	// sessions the control plane holds.
	Counts func() (users, glasses, apps int)
	// Throttle, when set, slows down guessing of the admin token.
	Throttle *auth.Throttle
	// Node, in a cluster, is this node's name: a stream's origin.
	Node string
	// Elsewhere, in a cluster, is what other nodes hold (nil on a single
	// node).
	Elsewhere Elsewhere
}

// Elsewhere is the streams and recordings other nodes hold, as the
// cluster sees them: one view the API asks, never the cluster itself.
type Elsewhere interface {
	// Stream describes a stream another node holds; false when none does.
	Stream(ctx context.Context, id string) (StreamJSON, bool)
	// EndStream ends a stream another node holds and describes it; false
	// when none does.
	EndStream(ctx context.Context, id string) (StreamJSON, bool)
	// Streams describes the streams other nodes hold.
	Streams() []StreamJSON
	// Recordings lists the recordings on the other live nodes' disks (and
	// those of nodes not reachable now, as unavailable).
	Recordings() []RecordingJSON
	// ServeRecording answers a request about a recording another node
	// holds; false when none does.
	ServeRecording(w http.ResponseWriter, r *http.Request, id string) bool
	// ServeStream answers an admin's request about a stream another
	// node holds (its outputs) from that node; false: this node answers.
	ServeStream(w http.ResponseWriter, r *http.Request, id string) bool
	// ServeManaged answers an app's request about a managed stream
	// another node holds from that node; false: this node answers.
	ServeManaged(w http.ResponseWriter, r *http.Request, streamID string) bool
	// StartStop answers a user's start or stop of an app from the node
	// that holds the user's session when that is another node (ok false:
	// this node acts).
	StartStop(ctx context.Context, user, pkg, action string) (status int, body []byte, ok bool)
}

// New makes the API over a registry; token is the admin bearer token.
func New(reg *live.Registry, urls URLs, token string, log *slog.Logger) *Server {
	return &Server{reg: reg, urls: urls, token: sha256.Sum256([]byte(token)), log: log}
}

// Register adds the API's routes to mux.
func (s *Server) Register(mux *http.ServeMux) {
	mux.Handle("/api/", s.auth(http.HandlerFunc(s.notFound)))
	mux.Handle("/api/v1/streams", s.auth(http.HandlerFunc(s.streams)))
	mux.Handle("/api/v1/streams/{id}", s.auth(http.HandlerFunc(s.oneStream)))
	mux.Handle("/api/v1/recordings", s.auth(http.HandlerFunc(s.recordings)))
	mux.Handle("/api/v1/recordings/{id}", s.auth(http.HandlerFunc(s.oneRecording)))
	mux.Handle("GET /api/v1/events", s.auth(http.HandlerFunc(s.events)))
}

// Snapshot is what the dashboard shows: every stream and the sessions.
type Snapshot struct {
	Time    time.Time    `json:"time"`
	Streams []StreamJSON `json:"streams"`
	// Recordings lists the recordings, newest first.
	Recordings []RecordingJSON `json:"recordings"`
	Users      int             `json:"users"`
	Glasses    int             `json:"glassesConnections"`
	Apps       int             `json:"appSessions"`
}

func (s *Server) snapshot() Snapshot {
	snap := Snapshot{Time: time.Now().UTC()}
	for _, st := range s.reg.List() {
		snap.Streams = append(snap.Streams, s.describe(st))
	}
	if s.Elsewhere != nil {
		snap.Streams = s.withRemote(snap.Streams)
	}
	if snap.Streams == nil {
		snap.Streams = []StreamJSON{}
	}
	snap.Recordings = s.recordingList()
	if s.Counts != nil {
		snap.Users, snap.Glasses, snap.Apps = s.Counts()
	}
	return snap
}

// events streams snapshots as server-sent events, one a second.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		WriteError(w, http.StatusInternalServerError, protocol.APIUnavailable, "streaming is not supported here")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		b, _ := json.Marshal(s.snapshot())
		if _, err := fmt.Fprintf(w, "event: snapshot\ndata: %s\n\n", b); err != nil {
			return
		}
		fl.Flush()
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
		}
	}
}

type errorBody struct {
	Error struct {
		Code    protocol.ErrorCode `json:"code"`
		Message string             `json:"message"`
	} `json:"error"`
}

// WriteError writes a JSON error.
func WriteError(w http.ResponseWriter, status int, code protocol.ErrorCode, message string) {
	var b errorBody
	b.Error.Code, b.Error.Message = code, message
	writeJSON(w, status, b)
}

// JSONBody is v as the API writes it (and as a node answering for another
// writes it: the same bytes).
func JSONBody(v any) []byte {
	b, _ := json.MarshalIndent(v, "", "  ")
	return append(b, '\n')
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(JSONBody(v))
}

func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if PrincipalOf(r.Context()) == PrincipalAdmin { // verified by the node it reached
			next.ServeHTTP(w, r)
			return
		}
		h := r.Header.Get("Authorization")
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || tok == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="glasscast"`)
			WriteError(w, http.StatusUnauthorized, protocol.APIUnauthorized, "an Authorization: Bearer <admin token> header is required")
			return
		}
		addr := auth.ClientAddr(r.RemoteAddr)
		if TooManyFailures(w, s.Throttle, addr) {
			return
		}
		sum := sha256.Sum256([]byte(tok))
		if subtle.ConstantTimeCompare(sum[:], s.token[:]) != 1 {
			s.Throttle.Failed(addr)
			s.log.Warn("admin refused: wrong admin token", "remote", addr, "method", r.Method, "path", r.URL.Path)
			w.Header().Set("WWW-Authenticate", `Bearer realm="glasscast", error="invalid_token"`)
			WriteError(w, http.StatusUnauthorized, protocol.APIUnauthorized, "the bearer token is not valid")
			return
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), PrincipalAdmin)))
	})
}

// Admin wraps a handler so that it needs the admin token.
func (s *Server) Admin(next http.Handler) http.Handler { return s.auth(next) }

// TooManyFailures answers 429 with Retry-After, and true, when addr has
// failed to authenticate too often lately.
func TooManyFailures(w http.ResponseWriter, th *auth.Throttle, addr string) bool {
	d := th.Blocked(addr)
	if d <= 0 {
		return false
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(d/time.Second)+1))
	WriteError(w, http.StatusTooManyRequests, protocol.APITooManyFailures, "too many failed authentications from this address; try again later")
	return true
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	WriteError(w, http.StatusNotFound, protocol.APINotFound, "no such endpoint: "+r.URL.Path)
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	WriteError(w, http.StatusMethodNotAllowed, protocol.APIMethodNotAllowed, "allowed methods: "+allow)
}

func (s *Server) streams(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		list := s.reg.List()
		out := make([]StreamJSON, 0, len(list))
		for _, st := range list {
			out = append(out, s.describe(st))
		}
		if s.Elsewhere != nil {
			out = s.withRemote(out)
		}
		writeJSON(w, http.StatusOK, map[string]any{"streams": out})
	case http.MethodPost:
		s.create(w, r)
	default:
		methodNotAllowed(w, "GET, POST")
	}
}

// withRemote adds the streams other nodes hold to this node's, newest
// first as they are: every node lists the same streams. A stream that
// moved to another node is listed as that node has it.
func (s *Server) withRemote(out []StreamJSON) []StreamJSON {
	at := map[string]int{}
	for i, st := range out {
		at[st.ID] = i
	}
	for _, rs := range s.Elsewhere.Streams() {
		if i, ok := at[rs.ID]; ok {
			if out[i].Status == live.StatusEnded {
				out[i] = rs
			}
			continue
		}
		out = append(out, rs)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.After(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

func (s *Server) oneStream(w http.ResponseWriter, r *http.Request) {
	st, err := s.reg.Get(r.PathValue("id"))
	// Over here, or not here: another node may hold it (a cluster).
	if (err != nil || st.Status() == live.StatusEnded) && s.Elsewhere != nil {
		remote := s.Elsewhere.Stream
		if r.Method == http.MethodDelete {
			remote = s.Elsewhere.EndStream
		}
		if out, ok := remote(r.Context(), r.PathValue("id")); ok {
			writeJSON(w, http.StatusOK, out)
			return
		}
	}
	if err != nil {
		WriteError(w, http.StatusNotFound, protocol.APINotFound, "no stream with id "+quote(r.PathValue("id")))
		return
	}
	switch r.Method {
	case http.MethodGet:
		writeJSON(w, http.StatusOK, s.describe(st))
	case http.MethodDelete:
		s.reg.Delete(st.ID())
		writeJSON(w, http.StatusOK, s.describe(st))
	default:
		methodNotAllowed(w, "GET, DELETE")
	}
}

// badBody answers a request whose body could not be read or decoded: 413
// past MaxBodyBytes, 400 otherwise.
func badBody(w http.ResponseWriter, err error) {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		WriteError(w, http.StatusRequestEntityTooLarge, protocol.APITooLarge, fmt.Sprintf("the body is larger than %d bytes", MaxBodyBytes))
		return
	}
	WriteError(w, http.StatusBadRequest, protocol.APIBadRequest, err.Error())
}

func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return fmt.Sprintf("%q", s)
}

// CreateRequest is the body of POST /api/v1/streams.
type CreateRequest struct {
	Name   string `json:"name"`
	Record bool   `json:"record"`
	// Public streams play by their id alone; the others only with a
	// playback token, which every URL handed out carries.
	Public bool `json:"public"`
}

// DecodeCreate reads and checks a create request body. It is what the API
// runs on untrusted input, exposed for its fuzz target.
func DecodeCreate(body io.Reader) (CreateRequest, error) {
	var req CreateRequest
	data, err := io.ReadAll(body)
	if err != nil {
		return req, err
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		return req, nil // no body: all defaults
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, fmt.Errorf("the body is not a valid stream request: %w", err)
	}
	if dec.More() {
		return req, errors.New("the body has data after the JSON object")
	}
	if len(req.Name) > MaxNameLength {
		return req, fmt.Errorf("name is longer than %d bytes", MaxNameLength)
	}
	for _, c := range req.Name {
		if unicode.IsControl(c) {
			return req, errors.New("name has control characters")
		}
	}
	return req, nil
}

func (s *Server) create(w http.ResponseWriter, r *http.Request) {
	req, err := DecodeCreate(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		badBody(w, err)
		return
	}
	st, err := s.reg.Create(live.CreateOptions{Name: req.Name, Record: req.Record, Public: req.Public, Durable: true})
	switch {
	case errors.Is(err, live.ErrTooMany):
		WriteError(w, http.StatusTooManyRequests, protocol.APILimit, "the server holds as many streams as it is configured to")
		return
	case err != nil:
		WriteError(w, http.StatusServiceUnavailable, protocol.APIUnavailable, err.Error())
		return
	}
	w.Header().Set("Location", "/api/v1/streams/"+st.ID())
	writeJSON(w, http.StatusCreated, s.describe(st))
}

// StreamJSON is a stream on the wire.
type StreamJSON struct {
	ID        string          `json:"id"`
	Name      string          `json:"name,omitempty"`
	Status    live.Status     `json:"status"`
	Record    bool            `json:"record"`
	Public    bool            `json:"public"`
	Ingest    IngestJSON      `json:"ingest"`
	Playback  Playback        `json:"playback"`
	Recording *Recording      `json:"recording,omitempty"`
	Outputs   []restream.Info `json:"outputs,omitempty"`
	CreatedAt time.Time       `json:"createdAt"`
	LastError string          `json:"lastError,omitempty"`
	// Node, in a cluster, is the node that holds the stream's media.
	Node     string `json:"node,omitempty"`
	Playable bool   `json:"playable"`

	Bitrate         int64   `json:"bitrate"`
	FPS             float64 `json:"fps"`
	Width           int     `json:"width,omitempty"`
	Height          int     `json:"height,omitempty"`
	VideoCodec      string  `json:"videoCodec,omitempty"`
	AudioCodec      string  `json:"audioCodec,omitempty"`
	AudioSampleRate int     `json:"audioSampleRate,omitempty"`
	AudioChannels   int     `json:"audioChannels,omitempty"`
	Uptime          float64 `json:"uptime"`
	FramesIn        uint64  `json:"framesIn"`
	DroppedFrames   uint64  `json:"droppedFrames"`
	// TimestampJumps counts the publisher's timestamps that jumped (an
	// hour ahead, a wrap, an encoder restart) and were re-anchored.
	TimestampJumps uint64  `json:"timestampJumps"`
	Readers        int     `json:"readers"`
	Viewers        Viewers `json:"viewers"`
}

// Viewers counts a stream's viewers by protocol. WebRTC viewers are
// sessions; LL-HLS and DASH ones are the player sessions (handed out by the
// multivariant playlist and the manifest) seen in the last 10 s, and the
// clients without one (address and User-Agent) that fetched media.
type Viewers struct {
	WebRTC int `json:"webrtc"`
	LLHLS  int `json:"llhls"`
	DASH   int `json:"dash"`
}

// Recording is where a recorded stream's recording plays.
type Recording struct {
	HLS string `json:"hls"`
	MP4 string `json:"mp4"`
}

// IngestJSON says where to publish.
type IngestJSON struct {
	RTMPURL string `json:"rtmpUrl"`
}

// Playback lists the viewer URLs.
type Playback struct {
	HLS       string `json:"hls"`
	DASH      string `json:"dash"`
	WebRTC    string `json:"webrtc"`
	Watch     string `json:"watch"`
	Thumbnail string `json:"thumbnail"`
}

// PlaybackURLs builds a stream's viewer URLs from the public base: grant
// is the path element of the media URLs, watch that of the watch page.
func PlaybackURLs(public, grant, watch string) Playback {
	return Playback{
		HLS:       public + "/hls/" + grant + "/index.m3u8",
		DASH:      public + "/dash/" + grant + "/manifest.mpd",
		WebRTC:    public + "/whep/" + grant,
		Watch:     public + "/watch/" + watch,
		Thumbnail: public + "/thumb/" + grant + ".jpg",
	}
}

// StreamPlayback builds the viewer URLs urls hands out for a stream: the
// watch page of a recorded stream also grants its recording, which it links.
func StreamPlayback(urls URLs, id string, recorded bool) Playback {
	watch := access.Live
	if recorded {
		watch |= access.Recording
	}
	return PlaybackURLs(urls.Public(), urls.Grant(id, access.Live), urls.Grant(id, watch))
}

func (s *Server) describe(st *live.Stream) StreamJSON {
	in := st.Info()
	out := StreamJSON{
		ID:             in.ID,
		Name:           in.Name,
		Status:         in.Status,
		Record:         in.Record,
		Public:         in.Public,
		Ingest:         IngestJSON{RTMPURL: s.urls.RTMPBase() + st.Key()},
		Playback:       StreamPlayback(s.urls, in.ID, in.Record),
		CreatedAt:      in.CreatedAt,
		LastError:      in.LastError,
		Playable:       in.Playable && in.Status != live.StatusEnded,
		Bitrate:        in.Stats.Bitrate,
		FPS:            in.Stats.FPS,
		Uptime:         in.Uptime.Seconds(),
		FramesIn:       in.Stats.FramesIn,
		DroppedFrames:  in.Stats.DroppedFrames,
		TimestampJumps: in.Stats.TimestampJumps,
		Readers:        in.Stats.Readers,
		Node:           s.Node,
	}
	if t := in.Stats.Tracks; t != nil {
		if t.Video != nil {
			out.Width, out.Height, out.VideoCodec = t.Video.Width, t.Video.Height, t.Video.Codec()
		}
		if t.Audio != nil {
			out.AudioCodec, out.AudioSampleRate, out.AudioChannels = t.Audio.Codec(), t.Audio.SampleRate, t.Audio.Channels
		}
	}
	if in.Status != live.StatusLive {
		out.Bitrate, out.FPS = 0, 0
	}
	if s.Viewers != nil {
		out.Viewers = s.Viewers(st)
	}
	if s.Outputs != nil {
		out.Outputs = s.Outputs.List(in.ID)
	}
	if in.Record {
		hls, mp4 := RecordingURLs(s.urls.Public(), s.urls.Grant(in.ID, access.Recording))
		out.Recording = &Recording{HLS: hls, MP4: mp4}
	}
	return out
}
