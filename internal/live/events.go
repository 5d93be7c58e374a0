package live

import (
	"context"
	"sync"
	"time"

	"github.com/glasscast/glasscast/internal/enum"
	"github.com/glasscast/glasscast/internal/event"
)

// EventKind is what happened to a stream.
type EventKind int

// A stream's life: Created, then Live and Reconnecting as its publisher
// comes and goes, and Ended once. The zero value is invalid.
const (
	// EventCreated: the stream exists and its key publishes. A stream
	// restored after a restart is not created again.
	EventCreated EventKind = iota + 1
	// EventLive: a publisher started a session (the first or a reconnect).
	EventLive
	// EventReconnecting: the publisher dropped; the reconnect window runs.
	EventReconnecting
	// EventEnded: the stream ended and everything its packager held has
	// been written (a recording has all of it). Its URLs stopped answering
	// when it ended, before this is delivered.
	EventEnded
)

var eventNames = enum.New[EventKind]("event kind", "created", "live", "reconnecting", "ended")

func (k EventKind) String() string { return eventNames.String(k) }

// MarshalJSON writes the kind's name.
func (k EventKind) MarshalJSON() ([]byte, error) { return eventNames.Marshal(k) }

// UnmarshalJSON reads a kind's name.
func (k *EventKind) UnmarshalJSON(b []byte) (err error) {
	*k, err = eventNames.Unmarshal(b)
	return err
}

// Event is one change of a stream's life.
type Event struct {
	Kind   EventKind
	Stream *Stream
	At     time.Time
	// Reason says why a stream ended, or why its publisher dropped.
	Reason string
	// Shutdown marks the ends of a registry closing with the server: the
	// streams were not ended by anyone.
	Shutdown bool
}

// Subscription receives events on a goroutine of its own, in the order
// they happened; a slow subscriber delays only itself.
type Subscription struct {
	reg    *Registry
	stream *Stream // nil: every stream
	q      *event.Queue[item]
}

// item is what a subscription's queue carries: an event, or a marker Sync
// waits for.
type item struct {
	ev     Event
	synced chan struct{}
}

func newQueue(name string, wg *sync.WaitGroup, fn func(Event)) *event.Queue[item] {
	return event.NewQueue(name, wg, func(it item) {
		if it.synced != nil {
			close(it.synced)
			return
		}
		fn(it.ev)
	})
}

// Subscribe delivers every stream's events to fn, in order, on a goroutine
// of the subscription's own labelled name. fn must not wait for another
// subscription. The subscription lasts until Close or until the registry
// has closed and delivered the ends of the streams it ended.
func (r *Registry) Subscribe(name string, fn func(Event)) *Subscription {
	sub := &Subscription{reg: r, q: newQueue(name, &r.subWG, fn)}
	r.subMu.Lock()
	defer r.subMu.Unlock()
	if r.subsClosed {
		sub.q.Close()
		return sub
	}
	r.subs = append(r.subs, sub)
	return sub
}

// Subscribe delivers this stream's events from now on to fn, in order, on
// a goroutine of the subscription's own; after EventEnded the subscription
// ends by itself. A stream that has ended already gets EventEnded at once.
func (s *Stream) Subscribe(name string, fn func(Event)) *Subscription {
	sub := &Subscription{reg: s.reg, stream: s, q: newQueue(name, &s.reg.subWG, fn)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.finished {
		sub.q.Push(item{ev: Event{Kind: EventEnded, Stream: s, At: s.endedAt, Reason: s.endReason}})
		sub.q.Close()
		return sub
	}
	s.subs = append(s.subs, sub)
	return sub
}

// Close stops the deliveries; events already queued are still delivered.
// It never waits, so a subscriber may close its own subscription.
func (sub *Subscription) Close() {
	sub.q.Close()
	if s := sub.stream; s != nil {
		s.mu.Lock()
		s.subs = remove(s.subs, sub)
		s.mu.Unlock()
		return
	}
	r := sub.reg
	r.subMu.Lock()
	r.subs = remove(r.subs, sub)
	r.subMu.Unlock()
}

func remove(list []*Subscription, sub *Subscription) []*Subscription {
	for i, x := range list {
		if x == sub {
			return append(list[:i:i], list[i+1:]...)
		}
	}
	return list
}

// emitLocked delivers ev to the stream's subscribers and the registry's;
// s.mu is held, which orders a stream's events as its changes. Pushing
// never blocks.
func (s *Stream) emitLocked(ev Event) {
	ev.Stream = s
	if ev.At.IsZero() {
		ev.At = time.Now()
	}
	for _, sub := range s.subs {
		sub.q.Push(item{ev: ev})
	}
	if ev.Kind == EventEnded {
		for _, sub := range s.subs {
			sub.q.Close()
		}
		s.subs = nil
	}
	r := s.reg
	r.subMu.Lock()
	for _, sub := range r.subs {
		sub.q.Push(item{ev: ev})
	}
	r.subMu.Unlock()
}

// Sync waits until every registry-wide subscription has handled the events
// emitted before the call, or ctx ends.
func (r *Registry) Sync(ctx context.Context) error {
	r.subMu.Lock()
	var marks []chan struct{}
	for _, sub := range r.subs {
		m := make(chan struct{})
		if sub.q.Push(item{synced: m}) {
			marks = append(marks, m)
		}
	}
	r.subMu.Unlock()
	for _, m := range marks {
		select {
		case <-m:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// closeSubscriptions ends the registry's subscriptions once they have
// delivered what is queued, and waits for every subscription's goroutine.
func (r *Registry) closeSubscriptions() {
	r.subMu.Lock()
	r.subsClosed = true
	subs := r.subs
	r.subs = nil
	r.subMu.Unlock()
	for _, sub := range subs {
		sub.q.Close()
	}
	r.subWG.Wait()
}
