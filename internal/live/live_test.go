package live

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/glasscast/glasscast/internal/sim"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// events collects what a subscription hears.
type events struct {
	mu   sync.Mutex
	list []Event
	ch   chan Event
}

func collect() (*events, func(Event)) {
	e := &events{ch: make(chan Event, 1024)}
	return e, func(ev Event) {
		e.mu.Lock()
		e.list = append(e.list, ev)
		e.mu.Unlock()
		e.ch <- ev
	}
}

func (e *events) next(t *testing.T) Event {
	t.Helper()
	select {
	case ev := <-e.ch:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10 s")
	}
	return Event{}
}

func (e *events) kinds(t *testing.T, n int) []EventKind {
	t.Helper()
	var out []EventKind
	for range n {
		out = append(out, e.next(t).Kind)
	}
	return out
}

func publish(t *testing.T, s *Stream) func() {
	t.Helper()
	tracks, err := sim.DefaultTracks()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := s.Publish(tracks)
	if err != nil {
		t.Fatal(err)
	}
	return func() { pub.Close(errors.New("gone")) }
}

func same(a, b []EventKind) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A stream's life is told in order to every subscriber, the registry's and
// the stream's own; the stream's own subscription ends after EventEnded.
func TestLifeInOrder(t *testing.T) {
	r := New(Config{ReconnectWindow: time.Hour}, quiet)
	defer r.Close()
	all, fn := collect()
	r.Subscribe("test", fn)
	s, err := r.Create(CreateOptions{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	own, ownFn := collect()
	s.Subscribe("own", ownFn)
	for range 3 {
		publish(t, s)()
	}
	if err := r.Delete(s.ID()); err != nil {
		t.Fatal(err)
	}
	if s.Status() != StatusEnded {
		t.Fatalf("deleted, the stream is %v", s.Status())
	}
	if _, ok := r.Packager(s.ID()); ok {
		t.Fatal("a deleted stream's packager is still served")
	}
	want := []EventKind{EventCreated, EventLive, EventReconnecting, EventLive, EventReconnecting, EventLive, EventReconnecting, EventEnded}
	if got := all.kinds(t, len(want)); !same(got, want) {
		t.Fatalf("registry subscriber: %v, want %v", got, want)
	}
	if got := own.kinds(t, len(want)-1); !same(got, want[1:]) {
		t.Fatalf("stream subscriber: %v, want %v", got, want[1:])
	}
	<-s.Done()
	// Subscribing to an ended stream hears its end at once.
	late, lateFn := collect()
	s.Subscribe("late", lateFn)
	if ev := late.next(t); ev.Kind != EventEnded || ev.Reason != "deleted" {
		t.Fatalf("late subscriber: %+v", ev)
	}
	if err := r.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A subscriber that does not return delays only itself: the publisher,
// Delete and other subscribers go on; what it missed is delivered, in
// order, when it returns.
func TestSlowSubscriberStallsNobody(t *testing.T) {
	r := New(Config{ReconnectWindow: time.Hour}, quiet)
	defer r.Close()
	release := make(chan struct{})
	slow, slowFn := collect()
	r.Subscribe("slow", func(ev Event) {
		if ev.Kind == EventCreated {
			<-release
		}
		slowFn(ev)
	})
	fast, fastFn := collect()
	r.Subscribe("fast", fastFn)
	s, err := r.Create(CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	publish(t, s)()
	r.Delete(s.ID())
	want := []EventKind{EventCreated, EventLive, EventReconnecting, EventEnded}
	if got := fast.kinds(t, 4); !same(got, want) {
		t.Fatalf("fast subscriber: %v", got)
	}
	close(release)
	if got := slow.kinds(t, 4); !same(got, want) {
		t.Fatalf("slow subscriber, released: %v", got)
	}
}

// A publisher that does not come back within the window ends the stream,
// with the reason.
func TestReconnectWindow(t *testing.T) {
	r := New(Config{ReconnectWindow: 50 * time.Millisecond}, quiet)
	defer r.Close()
	s, err := r.Create(CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	own, fn := collect()
	s.Subscribe("own", fn)
	publish(t, s)()
	if got := own.kinds(t, 2); !same(got, []EventKind{EventLive, EventReconnecting}) {
		t.Fatalf("%v", got)
	}
	ev := own.next(t)
	if ev.Kind != EventEnded || ev.Reason == "" || ev.Shutdown {
		t.Fatalf("after the window: %+v", ev)
	}
	if _, err := r.AuthorizePublish(s.Key()); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("the ended stream's key: %v", err)
	}
}

// A durable stream is kept when created, when it first goes live (not at
// every reconnect) and when it ends, but not when the registry closes with
// the server.
func TestKeptOnItsChanges(t *testing.T) {
	kept := make(chan Kept, 16)
	var logged safeBuffer
	r := New(Config{ReconnectWindow: time.Hour, Keep: func(k Kept) error {
		kept <- k
		return nil
	}}, slog.New(slog.NewTextHandler(&logged, nil)))
	a, err := r.Create(CreateOptions{Durable: true})
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.Create(CreateOptions{Durable: true})
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.Create(CreateOptions{}) // not durable
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		publish(t, a)()
	}
	r.Delete(a.ID())
	<-a.Done()
	if err := r.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.Close()
	close(kept)
	var got []string
	for k := range kept {
		got = append(got, k.ID+" "+k.Status.String())
	}
	// The shutdown's log says what happens to each: the durable stream
	// comes back, the other ends.
	log := logged.String()
	if !strings.Contains(log, `msg="stream kept; resumes after restart" stream=`+b.ID()) ||
		strings.Contains(log, "stream="+b.ID()+" reason") ||
		!strings.Contains(log, `msg="stream ended" stream=`+c.ID()+` reason="server shutting down"`) {
		t.Fatalf("the shutdown logged:\n%s", log)
	}
	want := []string{a.ID() + " idle", b.ID() + " idle", a.ID() + " live", a.ID() + " ended"}
	if len(got) != len(want) {
		t.Fatalf("kept %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("kept %v, want %v", got, want)
		}
	}
}

// A failed save fails the create, and nothing of the stream is left.
func TestCreateFailsWhenNotKept(t *testing.T) {
	r := New(Config{Keep: func(Kept) error { return errors.New("disk full") }}, quiet)
	defer r.Close()
	if _, err := r.Create(CreateOptions{Durable: true}); err == nil {
		t.Fatal("created a durable stream that could not be saved")
	}
	if n := len(r.List()); n != 0 {
		t.Fatalf("%d streams listed", n)
	}
}

func TestStatusJSON(t *testing.T) {
	for s := StatusIdle; s <= StatusEnded; s++ {
		b, err := s.MarshalJSON()
		var back Status
		if err != nil || back.UnmarshalJSON(b) != nil || back != s {
			t.Fatalf("%v: %s %v %v", s, b, back, err)
		}
	}
	if _, err := Status(0).MarshalJSON(); err == nil {
		t.Fatal("the zero status encoded")
	}
	var k EventKind
	if err := k.UnmarshalJSON([]byte(`"exploded"`)); err == nil {
		t.Fatal("an unknown event kind decoded")
	}
}

// safeBuffer is a log written by several goroutines.
type safeBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *safeBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *safeBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
