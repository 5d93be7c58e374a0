package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/glasscast/glasscast/protocol"
)

// Session is one user's session of the app: a socket to glasscast, the
// camera, layouts and events. Its handlers run in the session's own
// goroutine, one at a time, in the order messages arrive.
type Session struct {
	// ID is "<userId>-<packageName>"; UserID is the user's e-mail.
	ID     string
	UserID string

	Camera  *Camera
	Layouts *Layouts
	Events  *Events

	srv   *AppServer
	wsURL string
	log   *slog.Logger

	mu        sync.Mutex
	queue     []func()
	queued    chan struct{}
	conn      *websocket.Conn
	handlers  map[string]map[int]func(json.RawMessage)
	nextID    int
	ackCh     chan error
	closed    bool
	done      chan struct{}
	closeWhy  string
	connected bool
	connects  int
}

func newSession(srv *AppServer, id, user, wsURL string) *Session {
	s := &Session{ID: id, UserID: user, srv: srv, wsURL: wsURL, log: srv.log.With("session", id),
		handlers: map[string]map[int]func(json.RawMessage){}, done: make(chan struct{}), queued: make(chan struct{}, 1)}
	s.Camera = &Camera{s: s}
	s.Layouts = &Layouts{s: s}
	s.Events = &Events{s: s}
	go s.runHandlers()
	return s
}

// runHandlers calls the app's handlers one at a time, apart from the socket's
// reader, so a handler may wait on the session (start a stream, say).
func (s *Session) runHandlers() {
	for {
		s.mu.Lock()
		q := s.queue
		s.queue = nil
		s.mu.Unlock()
		for _, f := range q {
			f()
		}
		select {
		case <-s.queued:
		case <-s.done:
			return
		}
	}
}

func (s *Session) enqueue(f func()) {
	s.mu.Lock()
	s.queue = append(s.queue, f)
	s.mu.Unlock()
	select {
	case s.queued <- struct{}{}:
	default:
	}
}

// Done closes when the session is over for good.
func (s *Session) Done() <-chan struct{} { return s.done }

// Reason says why the session ended.
func (s *Session) Reason() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closeWhy
}

// Connected reports whether the socket is open.
func (s *Session) Connected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connected
}

// connect opens the socket and waits for the ack.
func (s *Session) connect(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(dctx, s.wsURL, nil)
	if err != nil {
		return fmt.Errorf("connect %s: %w", s.wsURL, err)
	}
	c.SetReadLimit(protocol.MaxMessageBytes)
	ack := make(chan error, 1)
	s.mu.Lock()
	s.conn, s.ackCh = c, ack
	s.mu.Unlock()
	go s.readLoop(c)
	if err := s.send(protocol.AppConnectionInit{Type: protocol.TypeAppConnectionInit, SessionID: s.ID,
		PackageName: s.srv.cfg.PackageName, APIKey: s.srv.cfg.APIKey, Timestamp: protocol.Now()}); err != nil {
		c.CloseNow()
		return err
	}
	select {
	case err := <-ack:
		if err != nil {
			c.CloseNow()
			return err
		}
	case <-dctx.Done():
		c.CloseNow()
		return errors.New("connection timeout: no tpa_connection_ack within 5 s")
	}
	s.mu.Lock()
	s.connected = true
	s.connects++
	s.mu.Unlock()
	s.sendSubscriptions()
	return nil
}

// Connections counts the times the socket has been opened: 1, plus one
// for every reconnect.
func (s *Session) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connects
}

// send writes a message on the socket.
func (s *Session) send(msg any) error {
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c == nil {
		return ErrNotConnected
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, b); err != nil {
		return fmt.Errorf("%w: %v", ErrNotConnected, err)
	}
	return nil
}

// on registers a handler for a message or stream type; the returned func
// removes it.
func (s *Session) on(kind string, h func(json.RawMessage)) func() {
	s.mu.Lock()
	if s.handlers[kind] == nil {
		s.handlers[kind] = map[int]func(json.RawMessage){}
	}
	s.nextID++
	id := s.nextID
	s.handlers[kind][id] = h
	s.mu.Unlock()
	s.sendSubscriptions()
	return func() {
		s.mu.Lock()
		delete(s.handlers[kind], id)
		if len(s.handlers[kind]) == 0 {
			delete(s.handlers, kind)
		}
		s.mu.Unlock()
		s.sendSubscriptions()
	}
}

// sendSubscriptions tells glasscast which streams the handlers want.
func (s *Session) sendSubscriptions() {
	s.mu.Lock()
	if !s.connected {
		s.mu.Unlock()
		return
	}
	subs := []string{}
	for k := range s.handlers {
		if !strings.HasPrefix(k, "msg:") {
			subs = append(subs, k)
		}
	}
	s.mu.Unlock()
	sort.Strings(subs)
	s.send(map[string]any{"type": protocol.TypeSubscriptionUpdate, "packageName": s.srv.cfg.PackageName,
		"subscriptions": subs, "sessionId": s.ID, "timestamp": protocol.Now()})
}

func (s *Session) dispatch(kind string, data json.RawMessage) {
	s.mu.Lock()
	hs := make([]func(json.RawMessage), 0, len(s.handlers[kind]))
	ids := make([]int, 0, len(s.handlers[kind]))
	for id := range s.handlers[kind] {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	for _, id := range ids {
		hs = append(hs, s.handlers[kind][id])
	}
	s.mu.Unlock()
	if len(hs) == 0 {
		return
	}
	s.enqueue(func() {
		for _, h := range hs {
			h(data)
		}
	})
}

func (s *Session) readLoop(c *websocket.Conn) {
	for {
		_, data, err := c.Read(context.Background())
		if err != nil {
			s.closedBy(c, err)
			return
		}
		msg, err := protocol.DecodeFromCloud(data)
		if err != nil {
			continue
		}
		switch m := msg.(type) {
		case *protocol.AppConnectionAck:
			s.ackResult(nil)
		case *protocol.AppConnectionError:
			if !s.ackResult(&StreamError{Code: m.Code, Message: m.Message}) {
				s.log.Warn("glasscast reported an error", "code", m.Code, "message", m.Message)
			}
		case *protocol.ManagedStreamStatus:
			s.Camera.managedStatus(m)
			s.dispatch("msg:"+protocol.TypeManagedStreamStatus, data)
		case *protocol.RTMPStreamStatus:
			s.Camera.streamStatus(m)
			s.dispatch("msg:"+protocol.TypeRTMPStreamStatus, data)
		case *protocol.StreamStatusCheckResponse:
			s.Camera.checkResponse(m)
		case *protocol.RawDataStream:
			s.dispatch(m.StreamType, m.Data)
		}
	}
}

// ackResult settles a pending connect; false when none was pending.
func (s *Session) ackResult(err error) bool {
	s.mu.Lock()
	ch := s.ackCh
	s.ackCh = nil
	s.mu.Unlock()
	if ch == nil {
		return false
	}
	ch <- err
	return true
}

// closedBy handles the socket's end: reconnect as the TS SDK does, or end
// the session for good.
func (s *Session) closedBy(c *websocket.Conn, err error) {
	s.mu.Lock()
	if s.conn != c {
		s.mu.Unlock()
		return
	}
	s.conn, s.connected = nil, false
	closed := s.closed
	s.mu.Unlock()
	s.ackResult(err)
	if closed {
		return
	}
	code := websocket.CloseStatus(err)
	var ce websocket.CloseError
	reason := ""
	if errors.As(err, &ce) {
		reason = ce.Reason
	}
	switch {
	case code == websocket.StatusNormalClosure || code == websocket.StatusGoingAway ||
		strings.Contains(reason, "App stopped") || strings.Contains(reason, "User session ended"):
		s.end(fmt.Sprintf("closed by glasscast: %s", reason))
		return
	case code == websocket.StatusPolicyViolation:
		s.end(fmt.Sprintf("refused by glasscast: %s", reason))
		return
	}
	// Anything else is a network problem: reconnect, 1 s, 2 s, 4 s apart.
	go func() {
		for attempt := range 3 {
			select {
			case <-s.done:
				return
			case <-time.After(time.Duration(1<<attempt) * time.Second):
			}
			if err := s.connect(context.Background()); err == nil {
				s.log.Info("reconnected", "attempt", attempt+1)
				return
			}
		}
		s.end("connection permanently lost: maximum reconnection attempts exceeded")
	}()
}

// end finishes the session for good.
func (s *Session) end(why string) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.closeWhy = why
	c := s.conn
	s.conn, s.connected = nil, false
	s.mu.Unlock()
	if c != nil {
		c.Close(websocket.StatusNormalClosure, "")
	}
	s.Camera.cleanup()
	close(s.done)
	s.srv.sessionEnded(s)
	s.log.Info("session ended", "reason", why)
}

// Disconnect ends the session from the app's side: a running unmanaged
// stream is stopped first.
func (s *Session) Disconnect() {
	if s.Camera.IsCurrentlyStreaming() {
		s.Camera.StopStream(context.Background())
	}
	s.end("disconnected by the app")
}

// Layouts shows things on the glasses.
type Layouts struct{ s *Session }

// ShowTextWall shows text on the main view; duration 0 keeps it.
func (l *Layouts) ShowTextWall(text string, duration time.Duration) error {
	layout, _ := json.Marshal(protocol.TextWall{LayoutType: "text_wall", Text: text})
	ev := protocol.DisplayEvent{Type: protocol.TypeDisplayEvent, PackageName: l.s.srv.cfg.PackageName, View: "main",
		Layout: layout, Timestamp: protocol.Now()}
	if duration > 0 {
		ms := int(duration.Milliseconds())
		ev.DurationMs = &ms
	}
	return l.s.send(ev)
}

// Events delivers the user's streams of events.
type Events struct{ s *Session }

// Transcription is speech the glasses heard.
type Transcription = protocol.Transcription

// OnTranscription calls h with en-US transcriptions; the returned func
// unsubscribes.
func (e *Events) OnTranscription(h func(Transcription)) (unsubscribe func()) {
	return e.s.on(protocol.StreamTranscriptEnUS, func(data json.RawMessage) {
		var t Transcription
		if json.Unmarshal(data, &t) == nil {
			h(t)
		}
	})
}
