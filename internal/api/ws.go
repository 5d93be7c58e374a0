package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/glasscast/glasscast/internal/auth"
	"github.com/glasscast/glasscast/internal/control"
	"github.com/glasscast/glasscast/protocol"
)

// peer carries one WebSocket for the control plane: messages are queued and
// written by a goroutine of their own, so the control plane never waits on a
// network; a peer whose queue fills is too slow and is disconnected.
type peer struct {
	c     *websocket.Conn
	out   chan any
	done  chan struct{}
	once  sync.Once
	log   *slog.Logger
	label string
}

type closeMsg struct {
	code   websocket.StatusCode
	reason string
}

// queueLen bounds what may wait for a slow socket.
const queueLen = 256

func newPeer(c *websocket.Conn, log *slog.Logger, label string) *peer {
	return &peer{c: c, out: make(chan any, queueLen), done: make(chan struct{}), log: log, label: label}
}

// Send implements control.Peer.
func (p *peer) Send(msg any) {
	select {
	case <-p.done:
	case p.out <- msg:
	default:
		p.log.Warn("socket too slow: disconnecting it", "peer", p.label, "queued", queueLen)
		p.shut()
	}
}

// Close implements control.Peer: what is queued goes first.
func (p *peer) Close(code int, reason string) {
	if len(reason) > 120 {
		reason = reason[:120]
	}
	select {
	case <-p.done:
	case p.out <- closeMsg{websocket.StatusCode(code), reason}:
	default:
		p.shut()
	}
}

func (p *peer) shut() {
	p.once.Do(func() {
		close(p.done)
		p.c.CloseNow()
	})
}

// writeLoop writes queued messages until the socket closes.
func (p *peer) writeLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			p.shut()
			return
		case <-p.done:
			return
		case m := <-p.out:
			if cm, ok := m.(closeMsg); ok {
				p.c.Close(cm.code, cm.reason)
				p.shut()
				return
			}
			b, err := json.Marshal(m)
			if err != nil {
				p.log.Error("cannot encode a message", "peer", p.label, "err", err)
				continue
			}
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err = p.c.Write(wctx, websocket.MessageText, b)
			cancel()
			if err != nil {
				p.shut()
				return
			}
		}
	}
}

// pingLoop sends WebSocket pings; a peer that does not answer is closed.
func (p *peer) pingLoop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.done:
			return
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, every+10*time.Second)
			err := p.c.Ping(pctx)
			cancel()
			if err != nil {
				p.shut()
				return
			}
		}
	}
}

// Sockets serves /app-ws and /glasses-ws.
type Sockets struct {
	Plane  *control.Plane
	Secret []byte
	Log    *slog.Logger
	// AppPing is the protocol-level ping interval to apps (10 s).
	AppPing time.Duration
	// GlassesPing is the app-level {"type":"ping"} interval to phones (2 s).
	GlassesPing time.Duration
	// InitTimeout bounds the wait for an app's tpa_connection_init.
	InitTimeout time.Duration
	// Throttle, when set, slows down guessing of core tokens and API keys.
	Throttle *auth.Throttle
	// GlassesConnected, when set, is told of each phone that connects
	// (in a cluster: this node becomes the user's home).
	GlassesConnected func(user string)
	// Bridge, in a cluster, carries an app's socket to the node that holds
	// its user's session when that is another node (nil: this node serves
	// it). peer is the app's socket.
	Bridge func(init *protocol.AppConnectionInit, peer control.Peer) AppBridge

	mu     sync.Mutex
	peers  map[*peer]struct{}
	closed bool
	// closeCode and closeReason are what sockets get once closed (new
	// ones too).
	closeCode   websocket.StatusCode
	closeReason string
	wg          sync.WaitGroup
}

// track registers a socket's handler; false when shutting down.
func (s *Sockets) track(p *peer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.peers == nil {
		s.peers = map[*peer]struct{}{}
	}
	s.peers[p] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Sockets) untrack(p *peer) {
	s.mu.Lock()
	delete(s.peers, p)
	s.mu.Unlock()
	s.wg.Done()
}

// Close closes every socket and waits for their handlers: hijacked
// connections are not the HTTP server's to wait for.
func (s *Sockets) Close() { s.CloseWith(int(websocket.StatusGoingAway), "Server shutting down") }

// CloseWith is Close with a close code and reason of the caller's: a
// cluster node that drains closes with one both SDKs take as "reconnect".
func (s *Sockets) CloseWith(code int, reason string) {
	s.mu.Lock()
	if !s.closed {
		s.closed, s.closeCode, s.closeReason = true, websocket.StatusCode(code), reason
	}
	all := make([]*peer, 0, len(s.peers))
	for p := range s.peers {
		all = append(all, p)
	}
	s.mu.Unlock()
	for _, p := range all {
		p.Close(code, reason)
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		for _, p := range all {
			p.shut()
		}
		s.wg.Wait()
	}
}

// Register adds the socket routes.
func (s *Sockets) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /app-ws", s.app)
	mux.HandleFunc("GET /glasses-ws", s.glasses)
}

// serve runs one accepted socket: its writer, its liveness loop and, in
// this goroutine, read until the socket closes.
func (s *Sockets) serve(w http.ResponseWriter, r *http.Request, label string, alive func(ctx context.Context, p *peer), read func(ctx context.Context, p *peer)) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return
	}
	c.SetReadLimit(protocol.MaxMessageBytes)
	p := newPeer(c, s.Log, label)
	if !s.track(p) {
		s.mu.Lock()
		code, reason := s.closeCode, s.closeReason
		s.mu.Unlock()
		c.Close(code, reason)
		return
	}
	defer s.untrack(p)
	// Shutdown closes sockets through Close, in order, not by cancelling.
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.writeLoop(ctx) }()
	go func() { defer wg.Done(); alive(ctx, p) }()
	read(ctx, p)
	p.shut()
	cancel()
	wg.Wait()
}

func (s *Sockets) app(w http.ResponseWriter, r *http.Request) {
	addr := auth.ClientAddr(r.RemoteAddr)
	if TooManyFailures(w, s.Throttle, addr) {
		return
	}
	s.serve(w, r, "app "+r.RemoteAddr, func(ctx context.Context, p *peer) {
		p.pingLoop(ctx, orDefault(s.AppPing, 10*time.Second))
	}, func(ctx context.Context, p *peer) {
		// The first message, tpa_connection_init, says whose session the app
		// joins: another node may hold it (a cluster).
		var local *control.AppSocket
		var bridge AppBridge
		for first := true; ; first = false {
			rctx, rcancel := ctx, context.CancelFunc(func() {})
			if first {
				rctx, rcancel = context.WithTimeout(ctx, orDefault(s.InitTimeout, 10*time.Second))
			}
			typ, data, err := p.c.Read(rctx)
			rcancel()
			if err != nil {
				return
			}
			if typ != websocket.MessageText {
				continue
			}
			msg, err := protocol.DecodeFromApp(data)
			if err != nil {
				s.Log.Debug("bad app message", "err", err)
				continue
			}
			if local == nil && bridge == nil {
				// Only an app whose key this node has checked is bridged:
				// the key itself never leaves this node, and a wrong one
				// is refused here, counted against its address.
				verified := ""
				if init, ok := msg.(*protocol.AppConnectionInit); ok && s.Bridge != nil && s.Plane.AppKeyOK(init.PackageName, init.APIKey) {
					verified = init.PackageName
					if bridge = s.Bridge(init, p); bridge != nil {
						defer bridge.Gone()
					}
				}
				if bridge == nil {
					local = s.Plane.ConnectApp(p)
					defer local.Gone()
					local.Verified = verified // checked just above: not looked up twice
					local.OnBadKey = func() { s.Throttle.Failed(addr) }
				}
			}
			if bridge != nil {
				bridge.Receive(data) // as it came (the init without its key)
				continue
			}
			local.Receive(msg) // a refused socket is closed by the plane; the read then ends
		}
	})
}

// AppBridge carries an app's socket to the node that holds its user's
// session.
type AppBridge interface {
	Receive(raw []byte) // a message from the app, as it came (the init's API key is the bridge's to drop)
	Gone()              // the app's socket closed
}

// tokenFrom takes the core token from the Authorization header or the token
// query parameter (the phone uses the latter).
func tokenFrom(r *http.Request) string {
	if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return strings.TrimSpace(t)
	}
	return r.URL.Query().Get("token")
}

func (s *Sockets) glasses(w http.ResponseWriter, r *http.Request) {
	tok := tokenFrom(r)
	refuse := func(msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		json.NewEncoder(w).Encode(protocol.ConnectionError{Type: protocol.TypeConnectionError, Message: msg, Timestamp: protocol.Now()})
	}
	if tok == "" {
		refuse("No core token provided")
		return
	}
	addr := auth.ClientAddr(r.RemoteAddr)
	if d := s.Throttle.Blocked(addr); d > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(d/time.Second)+1))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		json.NewEncoder(w).Encode(protocol.ConnectionError{Type: protocol.TypeConnectionError, Message: "Too many failed authentications from this address; try again later", Timestamp: protocol.Now()})
		return
	}
	user, err := auth.Verify(s.Secret, tok)
	if errors.Is(err, auth.ErrNoUser) {
		refuse("Invalid core token - no user ID")
		return
	}
	if err != nil {
		s.Throttle.Failed(addr)
		s.Log.Warn("glasses refused: bad core token", "remote", r.RemoteAddr)
		refuse("Invalid core token")
		return
	}
	s.serve(w, r, "glasses "+user, func(ctx context.Context, p *peer) {
		t := time.NewTicker(orDefault(s.GlassesPing, 2*time.Second))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				p.Send(protocol.Ping{Type: protocol.TypePing})
			}
		}
	}, func(ctx context.Context, p *peer) {
		if s.GlassesConnected != nil {
			s.GlassesConnected(user) // before the phone hears it is connected
		}
		sock, err := s.Plane.ConnectGlasses(user, p)
		if err != nil {
			p.Close(int(websocket.StatusGoingAway), err.Error())
			return
		}
		defer sock.Gone()
		for {
			typ, data, err := p.c.Read(ctx)
			if err != nil {
				return
			}
			if typ != websocket.MessageText {
				continue // microphone audio: not used
			}
			msg, err := protocol.DecodeFromGlasses(data)
			if err != nil {
				s.Log.Debug("bad glasses message", "user", user, "err", err)
				continue
			}
			sock.Receive(msg)
		}
	})
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
