package control

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/glasscast/glasscast/internal/access"
	"github.com/glasscast/glasscast/internal/live"
	"github.com/glasscast/glasscast/protocol"
)

// A user's session lives on one node, their home. When that node dies or
// drains, the phone reconnects to another node, which goes on with the
// session: the apps that ran accept their SDKs' reconnects there, and the
// managed stream keeps its id, its camera lease and its viewers' URLs. What
// the new home needs is the Session: the old home hands it over when asked
// (Detach), or, gone, left it where the other nodes find it (Sessions).

// Session is what another node needs to go on with a user's session.
type Session struct {
	User    string          `json:"user"`
	Apps    []string        `json:"apps,omitempty"` // running, starting or in their grace
	Managed *ManagedSession `json:"managed,omitempty"`
}

// Empty says there is nothing to go on with.
func (s Session) Empty() bool { return len(s.Apps) == 0 && s.Managed == nil }

// ManagedSession is a managed stream as a session carries it.
type ManagedSession struct {
	ID        string                   `json:"id"`
	MediaID   string                   `json:"mediaId"`
	MediaKey  string                   `json:"mediaKey"`
	Record    bool                     `json:"record,omitempty"`
	Viewers   []string                 `json:"viewers"`
	Start     protocol.StartRTMPStream `json:"start"`
	CreatedAt time.Time                `json:"createdAt"`
	Played    bool                     `json:"played,omitempty"`
	Status    protocol.StreamStatus    `json:"status"`
	// Grants are the playback tokens in the URLs handed out: the node
	// that goes on hands out the same (Config.KeepGrant).
	Grants []string `json:"grants,omitempty"`
}

// Sessions keeps users' sessions where other nodes find them (optional).
type Sessions interface {
	// Save records the user's session as it is now (an empty one: there
	// is nothing to keep). It is called with the user's lock held and
	// must not block.
	Save(s Session)
}

// restoredGrace is how long an app of a session taken over has, past the
// plane's AppGrace, for its SDK to reconnect here: the node its socket
// was bridged through notices the old home's death a few heartbeats late,
// and the SDK waits 1, 2 then 4 s between its attempts.
const restoredGrace = 15 * time.Second

// snapshotLocked is the user's session as another node would go on with it.
func (u *User) snapshotLocked() Session {
	s := Session{User: u.id}
	for pkg, a := range u.apps {
		if a.state != appEnded {
			s.Apps = append(s.Apps, pkg)
		}
	}
	slices.Sort(s.Apps)
	if ms := u.managed; ms != nil && !ms.ended {
		m := &ManagedSession{ID: ms.id, MediaID: ms.st.ID(), MediaKey: ms.st.Key(), Record: ms.st.Record(),
			Start: ms.start, CreatedAt: ms.createdAt, Played: ms.played, Status: ms.status}
		for pkg := range ms.viewers {
			m.Viewers = append(m.Viewers, pkg)
		}
		slices.Sort(m.Viewers)
		if g := u.p.cfg.Grant; g != nil {
			rights := []access.Right{access.Live}
			if m.Record {
				rights = append(rights, access.Live|access.Recording, access.Recording)
			}
			for _, r := range rights {
				if tok := g(m.MediaID, r); access.IsToken(tok) {
					m.Grants = append(m.Grants, tok)
				}
			}
		}
		s.Managed = m
	}
	return s
}

// savedLocked records the user's session as it is now, for the node that
// goes on with it if this one goes away. A plane shutting down keeps what
// was recorded last: its sessions go on elsewhere.
func (u *User) savedLocked() {
	if u.p.cfg.Sessions == nil || u.detached {
		return
	}
	if u.disposed && u.p.isClosed() {
		return
	}
	u.p.cfg.Sessions.Save(u.snapshotLocked())
}

// Holds says this plane holds a session of the user's.
func (p *Plane) Holds(userID string) bool {
	u := p.user(userID, false)
	if u == nil {
		return false
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return !u.disposed
}

func (p *Plane) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// Detach hands a user's session to the node that goes on with it (their
// phone connected there): what it holds is returned and forgotten here
// without ending anything — the managed stream's media plays on, its
// camera lease goes with it, and the apps' sockets are closed with close
// (a code their SDKs reconnect after) to reconnect to the new home. ok is
// false when this node holds nothing for the user.
func (p *Plane) Detach(userID string, closeCode int, reason string) (Session, bool) {
	u := p.user(userID, false)
	if u == nil {
		return Session{}, false
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.disposed {
		return Session{}, false
	}
	s := u.snapshotLocked()
	u.detached = true
	// An unmanaged stream's exclusive lease does not move: its app hears
	// it stopped, and why, and starts it again on the new home.
	if us := u.unmanaged; us != nil {
		us.endLocked(protocol.StreamStopped, "", "The user's session moved to another node: start the stream again", true)
	}
	u.disposed = true
	if u.grace != nil {
		u.grace.Stop()
	}
	for _, a := range u.apps {
		if a.timer != nil {
			a.timer.Stop()
		}
		a.state = appEnded
		a.endGraceLocked()
		if a.sock != nil {
			a.sock.peer.Close(closeCode, reason)
			a.sock = nil
		}
	}
	if ms := u.managed; ms != nil {
		ms.ended = true
		ms.stopLocked()
		if f, ok := p.cfg.Camera.(interface{ Forget(string, Lease) }); ok {
			f.Forget(u.id, ms.lease)
		} else {
			p.cfg.Camera.Release(u.id, ms.lease)
		}
		u.managed = nil
	}
	if g := u.glasses; g != nil {
		g.peer.Close(1000, "Replaced by a new connection")
		u.glasses = nil
	}
	p.forget(u)
	p.log.Info("user session handed to another node", "user", userID, "apps", len(s.Apps), "managed", s.Managed != nil)
	return s, true
}

// DetachAll lets every user's session go as Detach does, for the nodes
// their phones reach next (this node is leaving the cluster): nothing
// ends, and what each user's session was is where Sessions recorded it.
func (p *Plane) DetachAll(closeCode int, reason string) {
	for _, u := range p.allUsers() {
		p.Detach(u.id, closeCode, reason)
	}
}

// Restore goes on with a session another node held: its apps wait for
// their SDKs to reconnect here (brought back in a new session, as any app
// whose socket dropped, if they do not), and its managed stream follows
// its media (found by media) with the same id, URLs and viewers, and the
// camera lease. A user this node already holds apps or a stream for
// keeps them: nothing is restored over them.
func (p *Plane) Restore(s Session, media func(ms *ManagedSession) (Media, bool)) {
	if s.Empty() {
		return
	}
	u := p.user(s.User, true)
	if u == nil {
		return
	}
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.disposed || len(u.apps) > 0 || u.managed != nil || u.unmanaged != nil {
		return
	}
	for _, pkg := range s.Apps {
		app, err := p.apps.App(ctx, pkg)
		if err != nil {
			p.log.Warn("app of a session taken over not restored", "user", u.id, "app", pkg, "err", err)
			continue
		}
		a := &appSession{u: u, pkg: pkg, app: app, sessionID: u.id + "-" + pkg, state: appRunning,
			subs: map[string]bool{}, ready: make(chan struct{}), restored: true}
		close(a.ready)
		u.apps[pkg] = a
		u.graceLocked(a, p.cfg.AppGrace+restoredGrace)
	}
	if m := s.Managed; m != nil {
		u.restoreManagedLocked(m, media)
	}
	p.log.Info("user session taken over from another node", "user", u.id, "apps", len(u.apps), "managed", u.managed != nil)
	u.savedLocked()
}

// restoreManagedLocked makes the managed stream of a session taken over.
func (u *User) restoreManagedLocked(m *ManagedSession, media func(ms *ManagedSession) (Media, bool)) {
	p := u.p
	st, ok := media(m)
	if !ok || st.Status() == live.StatusEnded {
		p.log.Info("managed stream of a session taken over has ended meanwhile", "user", u.id, "stream", m.ID)
		return
	}
	if keep := p.cfg.KeepGrant; keep != nil {
		for _, g := range m.Grants {
			keep(g)
		}
	}
	lease := Lease{StreamID: m.ID}
	if err := p.cfg.Camera.Acquire(u.id, lease); err != nil {
		p.log.Warn("managed stream of a session taken over: the camera is held", "user", u.id, "stream", m.ID, "err", err)
		return
	}
	ms := &managedStream{u: u, id: m.ID, st: st, lease: lease, viewers: map[string]bool{}, status: m.Status,
		createdAt: m.CreatedAt, start: m.Start, played: m.Played}
	for _, pkg := range m.Viewers {
		if u.apps[pkg] != nil {
			ms.viewers[pkg] = true
		}
	}
	switch {
	case !ms.played:
		ms.status = protocol.StreamInitializing
	case st.Status() == live.StatusLive:
		ms.status = protocol.StreamActive
	default: // its publisher is on its way back (the old home had it)
		ms.status = protocol.StreamReconnecting
	}
	u.managed = ms
	p.cfg.Directory.Put(ms.id, u.id)
	ms.ka = u.startKeepAlive(ms.id, func() {
		ms.endLocked(protocol.StreamError, protocol.CodeKeepAliveTimeout, "Stream timed out waiting for keep-alive")
	})
	if !ms.played {
		// A whole start timeout from here: createdAt is by the old home's
		// clock, which this node's is not compared with.
		ms.timers = append(ms.timers, u.after(p.cfg.ManagedStartTimeout, func() {
			if u.managed == ms && !ms.played {
				ms.endLocked(protocol.StreamError, protocol.CodeTimeout, fmt.Sprintf("Stream start timeout: nothing playable came from the glasses within %v", p.cfg.ManagedStartTimeout))
			}
		}))
	}
	ms.followLocked(st)
	// Glasses already here that do not push are told to, to the same
	// ingest (as a phone back within its grace is).
	if u.glasses != nil && ms.start.RTMPURL != "" && st.Status() != live.StatusLive {
		resume := ms.start
		resume.Timestamp = protocol.Now()
		u.sendGlassesLocked(resume)
	}
	p.log.Info("managed stream taken over with its session", "user", u.id, "stream", ms.id, "media", st.ID(), "viewers", len(ms.viewers))
}
