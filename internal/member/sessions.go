package member

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/glasscast/glasscast/internal/control"
	"github.com/glasscast/glasscast/internal/event"
)

// A user's session lives on their home, the node their phone connected to
// last. When the phone connects to another node (its home died or
// drained, or a balancer sent it elsewhere), that node goes on with the
// session: it asks the old home to hand it over (Plane.Detach) and, when
// the old home does not answer, takes what the old home last recorded in
// the cluster (sealed: it names the glasses' publish key). It restores it
// (Plane.Restore), becomes the user's home, and tells every node, whose
// bridges of the user's apps to the old home close with 1012: the SDKs
// reconnect, to the new home.

// handoverWait bounds how long a node waits for the old home to hand a
// session over: a live node answers within milliseconds; one that does
// not in time is taken as gone (its heartbeats take seconds more to say
// so); one that died has no one listening, which NATS says at once.
const handoverWait = 2 * time.Second

// homeWait bounds how long an app's socket waits for its user's session
// to have a new home when the old one is gone.
const homeWait = 10 * time.Second

// movedSubject tells every node that a user's session moved to a node.
const movedSubject = "glasscast.user.moved"

func handoverSubject(node string) string { return "glasscast.node." + node + ".session" }

// sessionSubject is what a recorded session is sealed for.
func sessionSubject(user string) string { return "glasscast.session." + user }

// userMoved is a session's move, as told to every node.
type userMoved struct {
	User string `json:"user"`
	Node string `json:"node"`
}

// sessionStore records the users' sessions in the cluster, in order on a
// queue of its own (the plane saves under the user's lock).
type sessionStore struct {
	q *event.Queue[control.Session]
}

func (m *Member) newSessionStore() *sessionStore {
	users := m.c.Users()
	s := &sessionStore{}
	s.q = event.NewQueue("sessions", nil, func(sess control.Session) {
		p := m.p()
		if p == nil {
			return
		}
		// A save queued before the session was handed over is not
		// written: the new home's record stands.
		if !sess.Empty() && !p.Plane.Holds(sess.User) {
			return
		}
		var sealed []byte
		if !sess.Empty() {
			b, _ := json.Marshal(sess)
			sealed = m.seal.Seal(sessionSubject(sess.User), b)
		}
		err := m.write(func(ctx context.Context) error { return users.PutSession(ctx, sess.User, sealed) })
		if err != nil && m.c.Ready() {
			m.log.Warn("cluster: a user's session not recorded", "user", sess.User, "err", err)
		}
	})
	return s
}

// write makes a write to a shared bucket, trying again for up to
// writeRetry when the bucket does not answer (its leader died and the
// others are electing one: NATS's elections take up to about ten
// seconds), until this node leaves.
func (m *Member) write(f func(ctx context.Context) error) error {
	deadline := time.Now().Add(writeRetry)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
		err := f(ctx)
		cancel()
		if err == nil || !m.c.Ready() || m.left.Load() || time.Now().After(deadline) {
			return err
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// writeRetry bounds how long write tries.
const writeRetry = 30 * time.Second

func (s *sessionStore) Save(sess control.Session) { s.q.Push(sess) }

func (s *sessionStore) close() {
	s.q.Close()
	<-s.q.Done()
}

// glassesConnected makes this node the user's home, going on with the
// session another node held.
func (m *Member) glassesConnected(user string) {
	c := m.c
	users := c.Users()
	// The phone waits for its ack meanwhile; a node that has just
	// started may need a few seconds to join.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	prev, err := users.Recorded(ctx, user)
	moved := err == nil && prev != "" && prev != c.Node()
	if moved {
		if sess, ok := m.takeSession(ctx, user, prev); ok {
			m.p().Plane.Restore(sess, m.restoreMedia)
		}
		// Every node knows at once (their bridges of the user's apps to
		// the old home close; an app that connects is bridged here),
		// before the bucket does: its leader may be the node that died.
		users.Moved(user, c.Node())
		b, _ := json.Marshal(userMoved{User: user, Node: c.Node()})
		c.Conn().Publish(movedSubject, m.seal.Seal(movedSubject, b))
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Second)
	err = users.Claim(cctx, user)
	ccancel()
	if err == nil || !c.Ready() {
		return
	}
	// Recorded once the bucket answers again.
	m.log.Info("cluster: the user's home not recorded yet; trying again", "user", user, "err", err)
	go func() {
		if err := m.write(func(ctx context.Context) error { return users.Claim(ctx, user) }); err != nil && c.Ready() {
			m.log.Warn("cluster: this node is not recorded as the user's home", "user", user, "err", err)
		}
	}()
}

// takeSession asks the old home for the user's session and, when it does
// not answer, reads what it recorded.
func (m *Member) takeSession(ctx context.Context, user, prev string) (control.Session, bool) {
	subj := handoverSubject(prev)
	actx, cancel := context.WithTimeout(ctx, handoverWait)
	reply, err := m.c.Conn().RequestWithContext(actx, subj, m.seal.Seal(subj, []byte(user)))
	cancel()
	if err == nil {
		plain, err := m.seal.Open(subj+".reply", reply.Data)
		var sess control.Session
		if err != nil || json.Unmarshal(plain, &sess) != nil || sess.User != user {
			return control.Session{}, false // it holds nothing of the user's
		}
		m.log.Info("user's session handed over by the node that held it", "user", user, "from", prev)
		return sess, true
	}
	if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, nats.ErrTimeout) {
		m.log.Warn("cluster: the user's old home not asked for the session", "user", user, "node", prev, "err", err)
	} else {
		m.log.Debug("the user's old home did not answer", "user", user, "node", prev, "err", err)
	}
	sealed, err := m.c.Users().Session(ctx, user)
	if err != nil || sealed == nil {
		return control.Session{}, false
	}
	plain, err := m.seal.Open(sessionSubject(user), sealed)
	var sess control.Session
	if err != nil || json.Unmarshal(plain, &sess) != nil || sess.User != user {
		m.log.Warn("cluster: a user's recorded session unreadable", "user", user)
		return control.Session{}, false
	}
	m.log.Info("user's session taken over from a node that did not answer", "user", user, "from", prev)
	return sess, true
}

// restoreMedia finds a managed stream's media: this node's stream, or
// another node's as the directory names it.
func (m *Member) restoreMedia(ms *control.ManagedSession) (control.Media, bool) {
	if st, err := m.reg.Get(ms.MediaID); err == nil {
		return control.LocalMedia(m.reg, st), true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := m.c.Streams().Find(ctx, ms.MediaID); err != nil {
		return nil, false
	}
	return remoteMedia{m: m, id: ms.MediaID, key: ms.MediaKey, record: ms.Record}, true
}

// serveHandover answers another node's request for a user's session: this
// node hands it over (its apps' sockets close with 1012, to reconnect to
// the new home) and forgets it.
func (m *Member) serveHandover() error {
	c := m.c
	subj := handoverSubject(c.Node())
	sub, err := c.Conn().Subscribe(subj, func(msg *nats.Msg) {
		plain, err := m.seal.Open(subj, msg.Data)
		if err != nil || len(plain) == 0 || msg.Reply == "" {
			return
		}
		user := string(plain)
		m.log.Debug("asked for a user's session", "user", user)
		b := []byte("{}")
		if sess, ok := m.p().Plane.Detach(user, int(drainClose), "The user's session moved to another node: reconnect"); ok {
			b, _ = json.Marshal(sess)
		}
		msg.Respond(m.seal.Seal(subj+".reply", b))
	})
	if err != nil {
		return err
	}
	m.undo.push(func() { sub.Unsubscribe() })
	moved, err := c.Conn().Subscribe(movedSubject, func(msg *nats.Msg) {
		plain, err := m.seal.Open(movedSubject, msg.Data)
		var mv userMoved
		if err != nil || json.Unmarshal(plain, &mv) != nil || mv.User == "" {
			return
		}
		if mv.Node != c.Node() {
			c.Users().Moved(mv.User, mv.Node)
		}
		m.bridges.moved(mv.User, mv.Node)
	})
	if err != nil {
		return err
	}
	m.undo.push(func() { moved.Unsubscribe() })
	return nil
}

// bridgeSet is this node's bridges of app sockets, by user.
type bridgeSet struct {
	mu sync.Mutex
	by map[string]map[*appBridge]bool
}

func (s *bridgeSet) add(user string, b *appBridge) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.by == nil {
		s.by = map[string]map[*appBridge]bool{}
	}
	if s.by[user] == nil {
		s.by[user] = map[*appBridge]bool{}
	}
	s.by[user][b] = true
}

func (s *bridgeSet) remove(user string, b *appBridge) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.by[user], b)
	if len(s.by[user]) == 0 {
		delete(s.by, user)
	}
}

// moved closes the user's bridges to any node but their new home.
func (s *bridgeSet) moved(user, node string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for b := range s.by[user] {
		if b.home != node {
			b.moveOnce.Do(func() { close(b.moved) })
		}
	}
}

// waitHome waits a while for a user whose recorded home is gone to have
// a new one (their phone reconnecting to some node): an app's SDK that
// reconnects first finds its session there, not "session not found".
func (m *Member) waitHome(ctx context.Context, user string) string {
	users := m.c.Users()
	prev, err := users.Recorded(ctx, user)
	if err != nil || prev == "" || prev == m.c.Node() {
		return ""
	}
	for {
		if home, err := users.Home(ctx, user); err == nil && home != "" {
			return home
		}
		select {
		case <-ctx.Done():
			return ""
		case <-time.After(250 * time.Millisecond):
		}
	}
}
