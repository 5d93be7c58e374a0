// Package live keeps glasscast's live inputs: each stream's identity and
// secret publish key, its lifecycle (idle, live, reconnecting, ended), its hub
// and its always-on CMAF packager, and the reconnect window that lets glasses
// come back to the same stream and URLs after a network drop.
//
// A Registry is the one owner of every stream's life, whoever asks for it
// (the Streams API, the control plane, an ABR ladder): it creates and ends
// streams, and tells subscribers of each change as a typed Event, in order,
// on goroutines of their own (events.go). The RTMP ingest publishes through
// it; the HLS, DASH, WebRTC and thumbnail handlers find streams in it.
package live

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/glasscast/glasscast/internal/cmaf"
	"github.com/glasscast/glasscast/internal/enum"
	"github.com/glasscast/glasscast/internal/rtmp"
	"github.com/glasscast/glasscast/internal/stream"
)

// Status is a stream's lifecycle state.
type Status int

// Statuses. The zero value is invalid.
const (
	StatusIdle Status = iota + 1
	StatusLive
	StatusReconnecting
	StatusEnded
)

var statusNames = enum.New[Status]("status", "idle", "live", "reconnecting", "ended")

func (s Status) String() string { return statusNames.String(s) }

// MarshalJSON writes the status's name.
func (s Status) MarshalJSON() ([]byte, error) { return statusNames.Marshal(s) }

// UnmarshalJSON reads a status's name.
func (s *Status) UnmarshalJSON(b []byte) (err error) {
	*s, err = statusNames.Unmarshal(b)
	return err
}

// Errors callers branch on.
var (
	ErrNotFound     = errors.New("no such stream")
	ErrEnded        = errors.New("stream has ended")
	ErrTooMany      = errors.New("too many streams")
	ErrUnknownKey   = errors.New("unknown stream key")
	ErrRegistryDown = errors.New("shutting down")
)

// Config tunes the registry. Zero fields take the defaults.
type Config struct {
	// ReconnectWindow is how long a stream whose publisher dropped keeps its
	// URLs and waits for the publisher to come back.
	ReconnectWindow time.Duration
	// EndedRetention is how long an ended stream stays listed.
	EndedRetention time.Duration
	// MaxStreams caps the streams that are not ended.
	MaxStreams int
	// Packager tunes each stream's CMAF packager.
	Packager cmaf.Config
	// PackagerQueue is the packager's queue length in units.
	PackagerQueue int
	// Recorder, when set, records the streams created with Record.
	Recorder Recorder
	// Keep, when set, keeps the durable streams across restarts: it is
	// called (never under a lock) when one is created, and on the
	// registry's "keep" subscription when it first goes live and when it
	// ends. An error on create fails the create.
	Keep func(Kept) error
	// Adopt, when set, is asked about a key no stream here holds (or only
	// an ended one): another node's stream, which this node takes over as
	// its origin (a cluster's ingest anywhere). It answers the stream as
	// kept, or ErrUnknownKey, ErrEnded or why not.
	Adopt func(key string) (Kept, error)
}

// Kept is what is kept of a durable stream.
type Kept struct {
	ID        string
	Key       string
	Name      string
	Record    bool
	Public    bool
	Status    Status // idle, live (it has been: it comes back reconnecting), or ended
	CreatedAt time.Time
	EndedAt   time.Time
	// Resume, for a stream taken over from another node, is the position
	// its numbering and stream time go on after (nil: from the start).
	Resume *cmaf.Position
	// Seed, for a stream taken over, is the window a relay of it had: it
	// stays listed, and what comes next follows it (nil: none).
	Seed *cmaf.Snapshot
	// Durable, for a stream taken over, says it is kept across restarts
	// here too (a Streams API stream).
	Durable bool
}

// Recorder keeps a stream's media on disk by following its packager.
type Recorder interface {
	// Start records stream id; public says it plays without a token. done
	// is closed once the recording has everything the packager made.
	Start(id, name string, public bool, p *cmaf.Packager) (done <-chan struct{}, err error)
}

func (c *Config) setDefaults() {
	if c.ReconnectWindow <= 0 {
		c.ReconnectWindow = 60 * time.Second
	}
	if c.EndedRetention <= 0 {
		c.EndedRetention = time.Hour
	}
	if c.MaxStreams <= 0 {
		c.MaxStreams = 1000
	}
	if c.PackagerQueue <= 0 {
		c.PackagerQueue = 2048
	}
}

// Registry holds the streams.
type Registry struct {
	cfg Config
	log *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	byID   map[string]*Stream
	byKey  map[string]*Stream

	subMu      sync.Mutex // after any Stream.mu
	subs       []*Subscription
	subsClosed bool
	subWG      sync.WaitGroup // every subscription's goroutine
}

// New makes a registry. Close releases it.
func New(cfg Config, log *slog.Logger) *Registry {
	cfg.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	r := &Registry{
		cfg: cfg, log: log, ctx: ctx, cancel: cancel,
		byID: make(map[string]*Stream), byKey: make(map[string]*Stream),
	}
	if cfg.Keep != nil {
		r.Subscribe("keep", r.keepEvent)
	}
	return r
}

// Config returns the registry's settings.
func (r *Registry) Config() Config { return r.cfg }

// Stream is one live input.
type Stream struct {
	reg       *Registry
	id        string
	key       string
	name      string
	record    bool
	internal  bool
	public    bool
	durable   bool
	createdAt time.Time
	hub       *stream.Hub
	pkg       *cmaf.Packager
	stopPkg   context.CancelFunc
	recorded  <-chan struct{} // closed when the recording has it all (nil: not recorded)

	mu        sync.Mutex
	status    Status
	since     time.Time // start of the current publisher session
	endedAt   time.Time
	endReason string
	shutdown  bool          // ended by the registry closing
	finished  bool          // ended, and its packager has written everything
	done      chan struct{} // closed when finished
	lastError string
	window    *time.Timer
	changed   chan struct{}
	wasLive   bool // a publisher has been live (kept, for durable streams)
	subs      []*Subscription

	keptLive bool // the "keep" subscription saved it as live (its goroutine only)
}

// CreateOptions are what a new stream may be given.
type CreateOptions struct {
	Name   string
	Record bool
	// Internal streams (an ABR rendition) are not listed and do not count
	// against MaxStreams; their hub keeps the publisher's timestamps.
	Internal bool
	// Public streams play without a token.
	Public bool
	// Durable streams are kept across restarts (Config.Keep).
	Durable bool
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Create makes a stream, idle until something publishes to its key.
func (r *Registry) Create(opts CreateOptions) (*Stream, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, ErrRegistryDown
	}
	r.pruneLocked(time.Now())
	active := 0
	for _, s := range r.byID {
		if s.Status() != StatusEnded && !s.internal {
			active++
		}
	}
	if active >= r.cfg.MaxStreams && !opts.Internal {
		r.mu.Unlock()
		return nil, ErrTooMany
	}
	s := r.newStream(opts, randomHex(8), randomHex(20), time.Now().UTC()) // a 160-bit key
	r.addLocked(s)
	r.mu.Unlock()
	if s.durable {
		if err := r.cfg.Keep(s.kept()); err != nil {
			s.durable = false
			s.end("it could not be saved")
			r.mu.Lock()
			delete(r.byID, s.id)
			r.mu.Unlock()
			return nil, fmt.Errorf("the stream could not be saved: %w", err)
		}
	}
	s.mu.Lock()
	s.emitLocked(Event{Kind: EventCreated, At: s.createdAt})
	s.mu.Unlock()
	r.log.Info("stream created", "stream", s.id, "name", s.name, "record", s.record)
	return s, nil
}

// newStream makes a stream and starts its packager.
func (r *Registry) newStream(opts CreateOptions, id, key string, created time.Time) *Stream {
	s := &Stream{
		reg:       r,
		id:        id,
		key:       key,
		name:      opts.Name,
		record:    opts.Record && !opts.Internal,
		internal:  opts.Internal,
		public:    opts.Public && !opts.Internal,
		durable:   opts.Durable && !opts.Internal && r.cfg.Keep != nil,
		createdAt: created,
		status:    StatusIdle,
		changed:   make(chan struct{}),
		done:      make(chan struct{}),
	}
	s.hub = stream.New(stream.Config{OnPublish: s.onPublish, OnUnpublish: s.onUnpublish, KeepTimestamps: opts.Internal})
	s.pkg = cmaf.New(r.cfg.Packager)
	reader := s.hub.NewReader("cmaf", r.cfg.PackagerQueue)
	ctx, cancel := context.WithCancel(r.ctx)
	s.stopPkg = cancel
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		s.pkg.Run(ctx, reader) // until the hub closes, at the end
		reader.Close()
		s.finish()
	}()
	if s.record {
		var err error
		if r.cfg.Recorder == nil {
			s.record = false
		} else if s.recorded, err = r.cfg.Recorder.Start(s.id, s.name, s.public, s.pkg); err != nil {
			r.log.Error("stream not recorded", "stream", s.id, "err", err)
			s.record = false
		}
	}
	return s
}

func (r *Registry) addLocked(s *Stream) {
	r.byID[s.id] = s
	r.byKey[s.key] = s
}

// kept is what Config.Keep is given for s.
func (s *Stream) kept() Kept {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := Kept{ID: s.id, Key: s.key, Name: s.name, Record: s.record, Public: s.public, Status: StatusIdle,
		CreatedAt: s.createdAt, EndedAt: s.endedAt}
	switch {
	case s.status == StatusEnded:
		k.Status = StatusEnded
	case s.wasLive:
		k.Status = StatusLive
	}
	return k
}

// keepEvent saves a durable stream's state when it first goes live and
// when it ends, on the registry's "keep" subscription (the database may be
// slow: nobody waits for it). A failure is logged: the stream goes on, and
// after a restart it comes back as last saved. A stream the server stops
// with it is not saved as ended: it comes back after the restart.
func (r *Registry) keepEvent(ev Event) {
	s := ev.Stream
	if !s.durable {
		return
	}
	switch {
	case ev.Kind == EventLive && !s.keptLive:
		s.keptLive = true
	case ev.Kind == EventEnded && !ev.Shutdown:
	default:
		return
	}
	if err := r.cfg.Keep(s.kept()); err != nil {
		r.log.Error("stream state not saved", "stream", s.id, "err", err)
	}
}

// Restore brings back the durable streams a previous run kept, before
// anything publishes: an idle one idle, one that had been live waiting for
// its publisher for the reconnect window (counted from now), an ended one
// listed as ended until its retention passes. Their keys work again.
func (r *Registry) Restore(kept []Kept) {
	now := time.Now()
	for _, k := range kept {
		if k.Status == StatusEnded && now.Sub(k.EndedAt) > r.cfg.EndedRetention {
			continue
		}
		opts := CreateOptions{Name: k.Name, Record: k.Record && k.Status != StatusEnded, Public: k.Public, Durable: true}
		s := r.newStream(opts, k.ID, k.Key, k.CreatedAt)
		if k.Status == StatusEnded {
			s.record = k.Record // what it was; its recording is finished
		}
		r.mu.Lock()
		r.addLocked(s)
		r.mu.Unlock()
		switch k.Status {
		case StatusEnded:
			s.endAt(k.EndedAt, "")
		case StatusLive:
			s.mu.Lock()
			s.wasLive = true
			s.setLocked(StatusReconnecting)
			s.window = time.AfterFunc(r.cfg.ReconnectWindow, func() {
				s.end("the publisher did not come back within the reconnect window after a restart")
			})
			s.mu.Unlock()
			r.log.Info("stream restored, waiting for its publisher", "stream", s.id, "window", r.cfg.ReconnectWindow)
		default:
			r.log.Info("stream restored", "stream", s.id)
		}
	}
}

// pruneLocked forgets ended streams past their retention.
func (r *Registry) pruneLocked(now time.Time) {
	for id, s := range r.byID {
		s.mu.Lock()
		old := s.status == StatusEnded && now.Sub(s.endedAt) > r.cfg.EndedRetention
		s.mu.Unlock()
		if old {
			delete(r.byID, id)
		}
	}
}

// ReconnectWindow is how long a stream waits for its publisher to come back.
func (r *Registry) ReconnectWindow() time.Duration { return r.cfg.ReconnectWindow }

// Internal says whether the stream is an unlisted helper stream.
func (s *Stream) Internal() bool { return s.internal }

// Get returns a stream by id, ended ones included.
func (r *Registry) Get(id string) (*Stream, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.byID[id]
	if !ok {
		return nil, ErrNotFound
	}
	return s, nil
}

// List returns every stream, newest first.
func (r *Registry) List() []*Stream {
	r.mu.Lock()
	r.pruneLocked(time.Now())
	out := make([]*Stream, 0, len(r.byID))
	for _, s := range r.byID {
		if !s.internal {
			out = append(out, s)
		}
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].createdAt.Equal(out[j].createdAt) {
			return out[i].createdAt.After(out[j].createdAt)
		}
		return out[i].id < out[j].id
	})
	return out
}

// Delete ends a stream: its publisher is cut off and its URLs stop
// answering at once. It does not wait for what follows (the packager
// writing out what it held, outputs stopping): EventEnded says when that
// is done.
func (r *Registry) Delete(id string) error {
	s, err := r.Get(id)
	if err != nil {
		return err
	}
	s.end("deleted")
	return nil
}

// Packager returns the packager of a stream that can be watched: any stream
// that has not ended.
func (r *Registry) Packager(id string) (*cmaf.Packager, bool) {
	s, err := r.Get(id)
	if err != nil || s.Status() == StatusEnded {
		return nil, false
	}
	return s.pkg, true
}

// Hub returns the hub of a stream that can be watched.
func (r *Registry) Hub(id string) (*stream.Hub, bool) {
	s, err := r.Get(id)
	if err != nil || s.Status() == StatusEnded {
		return nil, false
	}
	return s.hub, true
}

// AuthorizePublish implements rtmp.Authorizer.
func (r *Registry) AuthorizePublish(key string) (rtmp.Destination, error) {
	r.mu.Lock()
	s, ok := r.byKey[key]
	r.mu.Unlock()
	if (!ok || s.Status() == StatusEnded) && r.cfg.Adopt != nil {
		k, err := r.cfg.Adopt(key)
		if err == nil {
			return r.adopt(k)
		}
		if !ok {
			return nil, err
		}
	}
	if !ok {
		return nil, ErrUnknownKey
	}
	if s.Status() == StatusEnded {
		return nil, ErrEnded
	}
	return s, nil
}

// adopt makes another node's stream this node's: same id, key and URLs.
func (r *Registry) adopt(k Kept) (*Stream, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, ErrRegistryDown
	}
	s := r.newStream(CreateOptions{Name: k.Name, Record: k.Record, Public: k.Public, Durable: k.Durable}, k.ID, k.Key, k.CreatedAt)
	if k.Resume != nil {
		// Before anyone can publish: players that read the other node's
		// playlists read on at higher numbers, later in stream time.
		s.hub.Resume(k.Resume.End, time.Now())
		if k.Seed != nil {
			if err := s.pkg.Seed(k.Seed); err != nil {
				r.log.Warn("the window of a stream taken over could not be kept", "stream", k.ID, "err", err)
			}
		}
		s.pkg.Resume(*k.Resume)
	}
	r.addLocked(s)
	r.mu.Unlock()
	if s.durable {
		// Kept here from now on: a restart of this node brings it back.
		// A stream that could not be saved is served all the same.
		if err := r.cfg.Keep(s.kept()); err != nil {
			r.log.Error("a stream taken over could not be saved", "stream", s.id, "err", err)
		}
	}
	s.mu.Lock()
	s.emitLocked(Event{Kind: EventCreated, At: time.Now()})
	s.mu.Unlock()
	r.log.Info("stream taken over from another node", "stream", s.id, "name", s.name)
	return s, nil
}

// Close ends every stream, waits for their packagers to write out what
// they held, delivers the last events and waits for the subscriptions.
func (r *Registry) Close() {
	r.mu.Lock()
	r.closed = true
	all := make([]*Stream, 0, len(r.byID))
	for _, s := range r.byID {
		all = append(all, s)
	}
	r.mu.Unlock()
	for _, s := range all {
		s.end("server shutting down")
	}
	r.wg.Wait()
	r.cancel()
	r.closeSubscriptions()
}

// ID is the stream's public identifier, used in its URLs.
func (s *Stream) ID() string { return s.id }

// Key is the secret publish key.
func (s *Stream) Key() string { return s.key }

// Name is the name given at creation.
func (s *Stream) Name() string { return s.name }

// Record says whether the stream asked to be recorded.
func (s *Stream) Record() bool { return s.record }

// Public says the stream plays without a token.
func (s *Stream) Public() bool { return s.public }

// Durable says the stream is kept across restarts.
func (s *Stream) Durable() bool { return s.durable }

// CreatedAt is when the stream was created.
func (s *Stream) CreatedAt() time.Time { return s.createdAt }

// Hub is the stream's hub, for outputs that read it.
func (s *Stream) Hub() *stream.Hub { return s.hub }

// Packager is the stream's CMAF packager.
func (s *Stream) Packager() *cmaf.Packager { return s.pkg }

// WaitPlayable returns once a player can start the stream (every track has
// a complete segment), or with an error when ctx ends or the stream ends
// first.
func (s *Stream) WaitPlayable(ctx context.Context) error {
	return s.pkg.Wait(ctx, (*cmaf.View).Playable)
}

// Status is the current lifecycle state.
func (s *Stream) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// Done is closed once the stream has ended and everything its packager
// held has been written (EventEnded is then on its way to subscribers).
func (s *Stream) Done() <-chan struct{} { return s.done }

// Changed returns a channel closed at the next status change.
func (s *Stream) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

func (s *Stream) setLocked(st Status) {
	if s.status == st {
		return
	}
	s.status = st
	close(s.changed)
	s.changed = make(chan struct{})
}

// Publish implements rtmp.Destination.
func (s *Stream) Publish(t *stream.Tracks) (*stream.Publisher, error) {
	if s.Status() == StatusEnded {
		return nil, ErrEnded
	}
	return s.hub.Publish(t)
}

// Refuse implements rtmp.Destination: the reason shows in the status.
func (s *Stream) Refuse(reason error) {
	s.mu.Lock()
	s.lastError = reason.Error()
	s.mu.Unlock()
}

func (s *Stream) onPublish(epoch uint32, t *stream.Tracks) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status == StatusEnded {
		return
	}
	if s.window != nil {
		s.window.Stop()
		s.window = nil
	}
	s.since = time.Now()
	s.lastError = ""
	s.setLocked(StatusLive)
	s.wasLive = true
	s.emitLocked(Event{Kind: EventLive})
	s.reg.log.Info("stream live", "stream", s.id, "session", epoch)
}

func (s *Stream) onUnpublish(epoch uint32, cause error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status != StatusLive {
		return
	}
	s.setLocked(StatusReconnecting)
	reason := "the publisher left"
	if cause != nil {
		reason = cause.Error()
	}
	s.emitLocked(Event{Kind: EventReconnecting, Reason: reason})
	win := s.reg.cfg.ReconnectWindow
	s.reg.log.Info("stream reconnecting", "stream", s.id, "session", epoch, "cause", cause, "window", win)
	s.window = time.AfterFunc(win, func() { s.end("the publisher did not come back within the reconnect window") })
}

// end moves the stream to ended, once: the publisher is cut off and the
// key and URLs stop working at once; the packager then writes out what it
// held and finish tells the subscribers.
func (s *Stream) end(reason string) { s.endAt(time.Now(), reason) }

// endAt ends the stream as of at; an empty reason is a stream restored as
// ended, of which nobody is told.
func (s *Stream) endAt(at time.Time, reason string) {
	s.reg.mu.Lock() // before s.mu, as everywhere
	delete(s.reg.byKey, s.key)
	closing := s.reg.closed
	s.reg.mu.Unlock()
	s.mu.Lock()
	if s.status == StatusEnded {
		s.mu.Unlock()
		return
	}
	if s.window != nil {
		s.window.Stop()
		s.window = nil
	}
	s.endedAt, s.endReason, s.shutdown = at, reason, closing
	s.setLocked(StatusEnded)
	s.mu.Unlock()
	s.hub.Close() // the packager's reader ends once it has read what is left
}

// finish runs on the packager's goroutine once it has written everything:
// once the recording has it all too, the media is let go (an ended stream
// stays listed, without it), the ending is complete, and its subscribers
// hear it.
func (s *Stream) finish() {
	s.pkg.Close()
	if s.recorded != nil {
		<-s.recorded
	}
	s.pkg.Release()
	s.stopPkg()
	s.mu.Lock()
	s.finished = true
	close(s.done)
	reason := s.endReason
	if reason != "" {
		s.emitLocked(Event{Kind: EventEnded, At: s.endedAt, Reason: reason, Shutdown: s.shutdown})
	} else {
		for _, sub := range s.subs {
			sub.q.Close()
		}
		s.subs = nil
	}
	s.mu.Unlock()
	switch {
	case reason == "":
	case s.shutdown && s.durable:
		// Not saved as ended (keepEvent): it comes back after the restart.
		s.reg.log.Info("stream kept; resumes after restart", "stream", s.id)
	default:
		s.reg.log.Info("stream ended", "stream", s.id, "reason", reason)
	}
}

// Info is a snapshot of a stream for the API.
type Info struct {
	ID        string
	Name      string
	Record    bool
	Public    bool
	Status    Status
	CreatedAt time.Time
	LastError string
	Uptime    time.Duration
	Stats     stream.Stats
	Playable  bool
}

// Info returns the stream's current state and counters.
func (s *Stream) Info() Info {
	s.mu.Lock()
	in := Info{
		ID: s.id, Name: s.name, Record: s.record, Public: s.public, Status: s.status,
		CreatedAt: s.createdAt, LastError: s.lastError,
	}
	if s.status == StatusLive {
		in.Uptime = time.Since(s.since)
	}
	s.mu.Unlock()
	in.Stats = s.hub.Stats()
	s.pkg.View(func(v *cmaf.View) { in.Playable = v.Playable() })
	return in
}
