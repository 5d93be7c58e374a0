// Package sdk is glasscast's Go SDK for smart-glasses apps: the Go
// counterpart of the MentraOS TypeScript SDK, speaking the same protocol.
//
// An app is an HTTP server glasscast calls when a user starts it: the
// AppServer answers the webhook, opens the session's socket and hands the
// Session to OnSession. A Session has a Camera (managed streams shared with
// other apps and watched over LL-HLS, DASH or WebRTC; unmanaged streams to
// the app's own RTMP server, holding the camera alone), Layouts (text on the
// glasses) and Events (transcriptions). Requests return errors as values:
// errors.Is(err, sdk.ErrCameraBusy).
//
//	srv := sdk.NewAppServer(sdk.Config{PackageName: "com.example.app", APIKey: key})
//	srv.OnSession(func(ctx context.Context, s *sdk.Session) error {
//		res, err := s.Camera.StartManagedStream(ctx, sdk.ManagedStreamOptions{})
//		...
//	})
//	srv.ListenAndServe(ctx, ":3000")
package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/glasscast/glasscast/protocol"
)

// Config is an app's identity with glasscast.
type Config struct {
	PackageName string
	APIKey      string
	// Logger gets what goes wrong (a refused API key, a session that could
	// not connect) and the sessions' comings and goings; nil:
	// slog.Default(). slog.New(slog.DiscardHandler) silences it.
	Logger *slog.Logger
}

// AppServer is an app's server: it takes glasscast's webhooks and runs the
// sessions they start.
type AppServer struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	onSession func(ctx context.Context, s *Session) error
	onStop    func(s *Session, reason string)
	cleanups  []func()
	sessions  map[string]*Session
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// NewAppServer makes an app server.
func NewAppServer(cfg Config) *AppServer {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &AppServer{cfg: cfg, log: log.With("app", cfg.PackageName), sessions: map[string]*Session{}, ctx: ctx, cancel: cancel}
}

// OnSession sets what runs for each new session, in a goroutine of its own
// once the session's socket is open; its context ends with the session.
func (a *AppServer) OnSession(f func(ctx context.Context, s *Session) error) {
	a.mu.Lock()
	a.onSession = f
	a.mu.Unlock()
}

// OnStop sets what runs when glasscast stops a session (the user stopped the
// app, or the user session ended).
func (a *AppServer) OnStop(f func(s *Session, reason string)) {
	a.mu.Lock()
	a.onStop = f
	a.mu.Unlock()
}

// AddCleanupHandler registers f to run when the server shuts down.
func (a *AppServer) AddCleanupHandler(f func()) {
	a.mu.Lock()
	a.cleanups = append(a.cleanups, f)
	a.mu.Unlock()
}

// Session returns a running session by id.
func (a *AppServer) Session(id string) *Session {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sessions[id]
}

// Handler serves the webhook at POST /webhook and a health check at GET /health.
func (a *AppServer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /webhook", a.webhook)
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "healthy", "app": a.cfg.PackageName})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func (a *AppServer) webhook(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"status": "error", "message": "unreadable body"})
		return
	}
	var head struct {
		Type string `json:"type"`
	}
	json.Unmarshal(body, &head)
	switch head.Type {
	case protocol.WebhookSessionRequest:
		var req protocol.SessionRequest
		if json.Unmarshal(body, &req) != nil || req.SessionID == "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"status": "error", "message": "bad session request"})
			return
		}
		if err := a.startSession(r.Context(), req); err != nil {
			a.log.Warn("session failed to connect", "session", req.SessionID, "err", err)
			writeJSON(w, http.StatusInternalServerError, map[string]string{"status": "error", "message": "Failed to connect"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "success"})
	case protocol.WebhookStopRequest:
		var req protocol.StopRequest
		json.Unmarshal(body, &req)
		if s := a.Session(req.SessionID); s != nil {
			a.stopped(s, req.Reason)
			s.Disconnect()
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "success"})
	default:
		writeJSON(w, http.StatusBadRequest, map[string]string{"status": "error", "message": "Unknown webhook request type"})
	}
}

func (a *AppServer) startSession(ctx context.Context, req protocol.SessionRequest) error {
	url := req.MentraOSWebsocketURL
	if url == "" {
		url = req.AugmentOSWebsocketURL
	}
	if url == "" {
		return errors.New("the session request has no WebSocket URL")
	}
	if old := a.Session(req.SessionID); old != nil {
		old.send(protocol.OwnershipRelease{Type: protocol.TypeOwnershipRelease, PackageName: a.cfg.PackageName,
			SessionID: req.SessionID, Reason: "switching_clouds", Timestamp: protocol.Now()})
		old.end("replaced by a new session request")
	}
	s := newSession(a, req.SessionID, req.UserID, url)
	if err := s.connect(ctx); err != nil {
		s.end("failed to connect")
		return err
	}
	a.mu.Lock()
	a.sessions[s.ID] = s
	f := a.onSession
	a.mu.Unlock()
	if f != nil {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			sctx, cancel := context.WithCancel(a.ctx)
			defer cancel()
			go func() {
				select {
				case <-s.done:
					cancel()
				case <-sctx.Done():
				}
			}()
			if err := f(sctx, s); err != nil {
				a.log.Warn("OnSession returned an error", "session", s.ID, "err", err)
			}
		}()
	}
	a.log.Info("session started", "session", s.ID)
	return nil
}

func (a *AppServer) stopped(s *Session, reason string) {
	a.mu.Lock()
	f := a.onStop
	a.mu.Unlock()
	if f != nil {
		f(s, reason)
	}
}

func (a *AppServer) sessionEnded(s *Session) {
	a.mu.Lock()
	if a.sessions[s.ID] == s {
		delete(a.sessions, s.ID)
	}
	a.mu.Unlock()
}

// Serve serves the webhook on ln until ctx ends, then disconnects every
// session, runs the cleanup handlers, and waits for OnSession calls.
func (a *AppServer) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hs.Shutdown(sctx)
	a.Shutdown()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// ListenAndServe listens on addr and serves until ctx ends.
func (a *AppServer) ListenAndServe(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return a.Serve(ctx, ln)
}

// Shutdown disconnects every session, runs the cleanup handlers and waits
// for the OnSession calls to return.
func (a *AppServer) Shutdown() {
	a.mu.Lock()
	all := make([]*Session, 0, len(a.sessions))
	for _, s := range a.sessions {
		all = append(all, s)
	}
	cleanups := a.cleanups
	a.cleanups = nil
	a.mu.Unlock()
	for _, s := range all {
		s.Disconnect()
	}
	for _, f := range cleanups {
		f()
	}
	a.cancel()
	a.wg.Wait()
}
