package control_test

import (
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/control"
	"github.com/glasscast/glasscast/internal/live"
	"github.com/glasscast/glasscast/protocol"
)

// savedSessions keeps the last session saved for each user.
type savedSessions struct {
	mu   sync.Mutex
	last map[string]control.Session
}

func (s *savedSessions) Save(sess control.Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last[sess.User] = sess
}

func (s *savedSessions) get(user string) control.Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last[user]
}

// A user's session moves from one plane to another, as it does from a
// node that drains (or dies) to the node the phone reaches next: the old
// plane hands it over without ending anything, and what it recorded is
// what it hands over; the new plane goes on with the managed stream (same
// id and URLs, the glasses told to resume to the same ingest), an app
// that reconnects hears where the stream stands, an app that does not is
// started again in a new session, and a stop there ends the media.
func TestSessionMoves(t *testing.T) {
	saved := &savedSessions{last: map[string]control.Session{}}
	from := newWorldWith(t, func(c *control.Config) { c.Sessions = saved }, "a", "b")
	to := newWorld(t, "a", "b")

	glassesFrom, _ := from.phone("u")
	pa, sa := from.app("u", "a")
	from.app("u", "b")
	sa.Receive(managed("a"))
	first := next[protocol.ManagedStreamStatus](t, pa, nil)
	start := next[protocol.StartRTMPStream](t, glassesFrom, nil)
	if first.Status != protocol.StreamInitializing || start.StreamID != first.StreamID {
		t.Fatalf("started: %+v, the glasses told %+v", first, start)
	}
	rec := saved.get("u")
	if !slices.Equal(rec.Apps, []string{"a", "b"}) || rec.Managed == nil || rec.Managed.ID != first.StreamID ||
		!slices.Equal(rec.Managed.Viewers, []string{"a"}) || rec.Managed.Start.RTMPURL != start.RTMPURL {
		t.Fatalf("recorded: %+v", rec)
	}

	sess, ok := from.p.Detach("u", 1012, "moved")
	if !ok || !reflect.DeepEqual(sess, rec) {
		t.Fatalf("handed over %+v (%v), recorded %+v", sess, ok, rec)
	}
	if got := <-pa.closed; got != "1012 moved" {
		t.Fatalf("the app's socket closed with %q", got)
	}
	none[protocol.StopRTMPStream](t, glassesFrom)
	none[protocol.ManagedStreamStatus](t, pa)
	media, err := from.reg.Get(sess.Managed.MediaID)
	if err != nil || media.Status() == live.StatusEnded {
		t.Fatalf("the media after the handover: %v", err)
	}
	if from.p.Holds("u") {
		t.Fatal("the old plane still holds the session")
	}
	if _, ok := from.p.Detach("u", 1012, "moved"); ok {
		t.Fatal("handed over twice")
	}

	to.p.Restore(sess, func(ms *control.ManagedSession) (control.Media, bool) {
		st, err := from.reg.Get(ms.MediaID)
		if err != nil {
			return nil, false
		}
		return control.LocalMedia(from.reg, st), true
	})
	glassesTo, _ := to.phone("u")
	resume := next[protocol.StartRTMPStream](t, glassesTo, nil)
	if resume.StreamID != first.StreamID || resume.RTMPURL != start.RTMPURL {
		t.Fatalf("the glasses told %+v, before %+v", resume, start)
	}

	// App a reconnects: it hears where the stream stands, at its URLs.
	p := newPeer()
	s := to.p.ConnectApp(p)
	s.Receive(&protocol.AppConnectionInit{Type: protocol.TypeAppConnectionInit, SessionID: "u-a", PackageName: "a", APIKey: apiKey})
	next[protocol.AppConnectionAck](t, p, nil)
	st := next[protocol.ManagedStreamStatus](t, p, nil)
	if st.StreamID != first.StreamID || st.HLSURL != first.HLSURL || st.WebRTCURL != first.WebRTCURL || st.Status != protocol.StreamInitializing {
		t.Fatalf("after the move: %+v, before %+v", st, first)
	}

	// App b does not: past its grace it is started in a new session.
	seen := make(chan string, 16)
	to.hooks.mu.Lock()
	to.hooks.seen = seen
	to.hooks.mu.Unlock()
	to.clock.Advance(20 * time.Second)
	for _, want := range []string{"stop u-b error", "session u-b"} {
		select {
		case got := <-seen:
			if got != want {
				t.Fatalf("posted %q, want %q", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %q posted: %v", want, to.hooks.log())
		}
	}

	// The stream is the new plane's: a's stop ends it, media and all.
	s.Receive(&protocol.ManagedStreamStop{Type: protocol.TypeManagedStreamStop, PackageName: "a"})
	if m := next[protocol.ManagedStreamStatus](t, p, func(m protocol.ManagedStreamStatus) bool { return m.Status != protocol.StreamInitializing }); m.Status != protocol.StreamStopped {
		t.Fatalf("after the stop: %+v", m)
	}
	next[protocol.StopRTMPStream](t, glassesTo, nil)
	if media.Status() != live.StatusEnded {
		t.Fatal("the media did not end with the stream")
	}
}

// A plane that already holds something of a user's is not restored over.
func TestRestoreKeepsWhatIsHeld(t *testing.T) {
	w := newWorld(t, "a")
	w.phone("u")
	pa, sa := w.app("u", "a")
	sa.Receive(managed("a"))
	first := next[protocol.ManagedStreamStatus](t, pa, nil)
	w.p.Restore(control.Session{User: "u", Apps: []string{"a"}, Managed: &control.ManagedSession{ID: "m-other", MediaID: "x"}},
		func(*control.ManagedSession) (control.Media, bool) {
			t.Fatal("asked for media")
			return nil, false
		})
	sa.Receive(&protocol.StreamStatusCheck{Type: protocol.TypeStreamStatusCheck, PackageName: "a"})
	check := next[protocol.StreamStatusCheckResponse](t, pa, nil)
	if !check.HasActiveStream || check.StreamInfo == nil || check.StreamInfo.StreamID != first.StreamID {
		t.Fatalf("after a restore over it: %+v", check)
	}
}
