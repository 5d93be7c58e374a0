package member

import (
	"context"
	"time"

	"github.com/glasscast/glasscast/internal/cmaf"
	"github.com/glasscast/glasscast/internal/control"
	"github.com/glasscast/glasscast/internal/live"
)

// A managed stream lives in its user's home's control plane, but the
// glasses' publish may reach another node (a shared ingest address in
// front of the nodes), which takes the media stream over. The home's plane
// then follows the media where it is (remoteMedia): "active" once it plays
// there, the apps told when it drops and comes back, its end when it ends
// there; and it follows it back (control.LocalMedia) if it returns.

// remoteMedia is a media stream another node holds, as the home's plane
// follows it: its life from the directory, its playability from this
// node's relay of it.
type remoteMedia struct {
	m      *Member
	id     string
	key    string
	record bool
}

var _ control.Media = remoteMedia{}

func (r remoteMedia) ID() string                  { return r.id }
func (r remoteMedia) Key() string                 { return r.key }
func (r remoteMedia) Record() bool                { return r.record }
func (r remoteMedia) Local() (*live.Stream, bool) { return nil, false }

// Status is the stream's as the directory says (reconnecting when its
// node is gone; ended once it is gone from the directory).
func (r remoteMedia) Status() live.Status {
	e, ok := r.m.c.Streams().Lookup(r.id)
	if !ok {
		return live.StatusEnded
	}
	st, ok := r.m.entryStatus(e)
	if !ok {
		return live.StatusEnded
	}
	return st
}

// WaitPlayable waits until this node's relay of the stream can be played.
func (r remoteMedia) WaitPlayable(ctx context.Context) error {
	for {
		if p, err := r.m.relays.Packager(ctx, r.id); err == nil {
			if p.Wait(ctx, (*cmaf.View).Playable) == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond): // the stream moving on: ask again
		}
	}
}

// Watch tells fn of the stream's changes of status in the directory (and
// of its node's death, as reconnecting).
func (r remoteMedia) Watch(_ string, fn func(live.Event)) func() {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		last := r.Status()
		for {
			ch := r.m.c.Changed()
			if now := r.Status(); now != last {
				last = now
				kind := map[live.Status]live.EventKind{live.StatusLive: live.EventLive,
					live.StatusReconnecting: live.EventReconnecting, live.StatusEnded: live.EventEnded}
				if k, ok := kind[now]; ok && ctx.Err() == nil {
					fn(live.Event{Kind: k, At: time.Now()})
				}
				if now == live.StatusEnded {
					return
				}
			}
			select {
			case <-ch:
			case <-ctx.Done():
				return
			case <-time.After(r.m.c.Heartbeat()): // a node's death shows without a change
			}
		}
	}()
	return cancel
}

// End asks the stream's node to end it.
func (r remoteMedia) End() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, ok := r.m.remoteDelete(ctx, r.id); !ok {
		r.m.log.Warn("a managed stream's media on another node could not be ended there", "stream", r.id)
	}
}

// mediaMoved tells this node's control plane that a stream it may hold
// as a managed stream's media is on another node now; its own copy ends
// after.
func (m *Member) mediaMoved(st *live.Stream) {
	if p := m.p(); p != nil {
		p.Plane.MediaMoved(st.ID(), remoteMedia{m: m, id: st.ID(), key: st.Key(), record: st.Record()})
	}
}

// mediaBack tells this node's control plane that a stream taken over here
// may be the media of one of its managed streams.
func (m *Member) mediaBack(ev live.Event) {
	if p := m.p(); p != nil && ev.Kind == live.EventCreated {
		p.Plane.MediaMoved(ev.Stream.ID(), control.LocalMedia(m.reg, ev.Stream))
	}
}
