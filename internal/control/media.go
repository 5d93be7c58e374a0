package control

import (
	"context"

	"github.com/glasscast/glasscast/internal/live"
)

// Media is a managed stream's media stream as the plane follows it: the
// registry's stream on this node or, in a cluster, the same stream on
// another node once the glasses' publish went there (Plane.MediaMoved).
// The viewers' URLs are the same either way.
type Media interface {
	ID() string
	Key() string
	Record() bool
	Status() live.Status
	// WaitPlayable returns once a player can start.
	WaitPlayable(ctx context.Context) error
	// Watch calls fn with each change of the stream's life (live,
	// reconnecting, ended) until stop; fn may be called once more while
	// stop returns.
	Watch(name string, fn func(live.Event)) (stop func())
	// End ends the media stream: its URLs stop answering.
	End()
	// Local is the registry's stream when the media is on this node.
	Local() (*live.Stream, bool)
}

// LocalMedia is a media stream of this node's registry.
func LocalMedia(reg *live.Registry, st *live.Stream) Media { return localMedia{reg, st} }

type localMedia struct {
	reg *live.Registry
	*live.Stream
}

func (l localMedia) Watch(name string, fn func(live.Event)) func() {
	return l.Stream.Subscribe(name, fn).Close
}
func (l localMedia) End()                        { l.reg.Delete(l.ID()) }
func (l localMedia) Local() (*live.Stream, bool) { return l.Stream, true }

// MediaMoved makes the managed stream over media stream mediaID follow m
// from now on (its media went to another node, or came back here); false
// when no managed stream here has it.
func (p *Plane) MediaMoved(mediaID string, m Media) bool {
	for _, u := range p.allUsers() {
		u.mu.Lock()
		ms := u.managed
		if ms == nil || ms.ended || ms.st.ID() != mediaID {
			u.mu.Unlock()
			continue
		}
		if was, ok := ms.st.Local(); ok {
			if now, ok := m.Local(); ok && now == was {
				u.mu.Unlock()
				return true // the same stream
			}
		}
		ms.followLocked(m)
		u.mu.Unlock()
		_, local := m.Local()
		p.log.Info("managed stream follows its media", "user", u.id, "stream", ms.id, "media", mediaID, "here", local)
		return true
	}
	return false
}
