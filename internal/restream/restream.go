// Package restream pushes live streams on to other RTMP servers: YouTube,
// Twitch, X, Facebook, or anything that takes RTMP or RTMPS. Each output reads
// the stream's hub through its own bounded queue, so a slow or dead
// destination loses its own frames and never touches the publisher, the
// viewers or another output. An output passes the media through as it is
// (gortmplib's client), unless a platform's ingest rules need it changed,
// when ffmpeg transcodes the track that breaks them. A failed output retries
// with backoff for as long as its stream lives.
package restream

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/glasscast/glasscast/internal/event"
	"github.com/glasscast/glasscast/internal/ffmpeg"
	"github.com/glasscast/glasscast/internal/flv"
	"github.com/glasscast/glasscast/internal/rtmp"
	"github.com/glasscast/glasscast/internal/stream"
	"github.com/glasscast/glasscast/protocol"
)

// Status is an output's state, as apps see it.
type Status = protocol.OutputState

// Statuses of an output.
const (
	StatusConnecting   = protocol.OutputConnecting
	StatusActive       = protocol.OutputActive
	StatusReconnecting = protocol.OutputReconnecting
	StatusError        = protocol.OutputError
	StatusStopped      = protocol.OutputStopped
)

// Limits.
const (
	MaxPerStream = 10
	MaxPerOwner  = 10 // per stream, as the real system counts
	MaxNameLen   = 100
)

// Errors callers map to their codes.
var (
	ErrTooMany         = errors.New("the stream has the most outputs it may have (10)")
	ErrTooManyForOwner = errors.New("the app has the most outputs it may have on this stream (10)")
	ErrDuplicate       = errors.New("the stream already has an output to this URL")
	ErrNotFound        = errors.New("no such output")
	ErrNotAuthorized   = errors.New("only the app that added an output may remove it")
	ErrStreamGone      = errors.New("the stream has ended")
)

// Config tunes the manager. Zero fields take the defaults.
type Config struct {
	// FFmpeg is the ffmpeg that transcodes for platform profiles; empty:
	// outputs that would need it fail with a clear error.
	FFmpeg string
	// BackoffMin and BackoffMax bound the wait between attempts.
	BackoffMin, BackoffMax time.Duration
	// Queue is each output's queue length in units.
	Queue int
	// WriteTimeout bounds one write to a destination.
	WriteTimeout time.Duration
	// MeasureTimeout bounds the wait for the source's stats that a
	// profile's check needs.
	MeasureTimeout time.Duration
	// TLS configures rtmps:// outputs (nil: the system's roots).
	TLS *tls.Config
	// Allow lists the internal networks apps' outputs may reach all the
	// same (see Internal); the admin's outputs go anywhere.
	Allow []netip.Prefix
	// Transcoders bounds the ffmpeg encoders the server runs (nil: none).
	Transcoders *ffmpeg.Budget
}

func (c *Config) setDefaults() {
	if c.BackoffMin <= 0 {
		c.BackoffMin = time.Second
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = 30 * time.Second
	}
	if c.Queue <= 0 {
		c.Queue = 1024
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.MeasureTimeout <= 0 {
		c.MeasureTimeout = 10 * time.Second
	}
}

// Source is a stream outputs read.
type Source interface {
	ID() string
	Hub() *stream.Hub
}

// Manager holds every stream's outputs.
type Manager struct {
	cfg Config
	log *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	streams map[string][]*Output // by stream id, in the order added
	// changes carries the ids of streams whose outputs were added, removed
	// or changed status, in order, to onChange on the queue's goroutine.
	changes  *event.Queue[string]
	onChange func(streamID string)
}

// New makes a manager. Close stops every output.
func New(cfg Config, log *slog.Logger) *Manager {
	cfg.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{cfg: cfg, log: log, ctx: ctx, cancel: cancel, streams: map[string][]*Output{}}
	m.changes = event.NewQueue("restream changes", nil, m.tell)
	return m
}

// OnChange sets the function told, in order and on one goroutine of the
// manager's, after an output of a stream is added, removed or changes
// status.
func (m *Manager) OnChange(fn func(streamID string)) {
	m.mu.Lock()
	m.onChange = fn
	m.mu.Unlock()
}

func (m *Manager) changed(streamID string) { m.changes.Push(streamID) }

func (m *Manager) tell(streamID string) {
	m.mu.Lock()
	fn := m.onChange
	m.mu.Unlock()
	if fn != nil {
		fn(streamID)
	}
}

// Request is an output to add.
type Request struct {
	URL  string
	Name string
	// Profile names a platform's rules ("youtube", "twitch", "x",
	// "facebook"), "none" for none; empty: recognised from the URL.
	Profile string
	// Owner is who added it: an app's package name, or "admin".
	Owner string
	// ID keeps the id of an output added again after a restart; empty:
	// a new one.
	ID string
}

// Output is one destination of a stream.
type Output struct {
	m       *Manager
	id      string
	stream  string
	url     string
	name    string
	owner   string
	profile *Profile
	hub     *stream.Hub
	cancel  context.CancelFunc
	done    chan struct{}

	mu         sync.Mutex
	status     Status
	lastError  string
	mode       string // passthrough, or what is transcoded
	bytes      uint64
	rateBytes  uint64
	rateAt     time.Time
	bitrate    int64
	since      time.Time
	connects   int
	violations []string
}

// Info is a snapshot of an output.
type Info struct {
	ID         string    `json:"id"`
	URL        string    `json:"url"`
	Name       string    `json:"name,omitempty"`
	Owner      string    `json:"addedBy"`
	Profile    string    `json:"profile,omitempty"`
	Mode       string    `json:"mode,omitempty"` // passthrough, transcode video, transcode audio, transcode video+audio
	Violations []string  `json:"violations,omitempty"`
	Status     Status    `json:"status"`
	Error      string    `json:"error,omitempty"`
	Bytes      uint64    `json:"bytes"`
	Bitrate    int64     `json:"bitrate"`
	Connects   int       `json:"connects"`
	Since      time.Time `json:"since"`
}

func randomID() string {
	b := make([]byte, 6)
	rand.Read(b)
	return "o" + hex.EncodeToString(b)
}

// CheckRequest validates a request without adding it.
func CheckRequest(req Request) error {
	if _, err := rtmp.ClientURL(req.URL); err != nil {
		return err
	}
	if len(req.Name) > MaxNameLen {
		return fmt.Errorf("name is longer than %d characters", MaxNameLen)
	}
	if _, err := ProfileFor(req.Profile, req.URL); err != nil {
		return err
	}
	return nil
}

// Add starts an output of src.
func (m *Manager) Add(src Source, req Request) (Info, error) {
	if err := CheckRequest(req); err != nil {
		return Info{}, err
	}
	prof, _ := ProfileFor(req.Profile, req.URL)
	m.mu.Lock()
	if m.ctx.Err() != nil {
		m.mu.Unlock()
		return Info{}, ErrStreamGone
	}
	outs := m.streams[src.ID()]
	if len(outs) >= MaxPerStream {
		m.mu.Unlock()
		return Info{}, ErrTooMany
	}
	owned := 0
	for _, o := range outs {
		if o.owner == req.Owner {
			owned++
		}
	}
	if req.Owner != "admin" && owned >= MaxPerOwner {
		m.mu.Unlock()
		return Info{}, ErrTooManyForOwner
	}
	for _, o := range outs {
		if sameURL(o.url, req.URL) {
			m.mu.Unlock()
			return Info{}, ErrDuplicate
		}
	}
	ctx, cancel := context.WithCancel(m.ctx)
	id := req.ID
	if id == "" {
		id = randomID()
	}
	o := &Output{m: m, id: id, stream: src.ID(), url: req.URL, name: req.Name, owner: req.Owner,
		profile: prof, hub: src.Hub(), cancel: cancel, done: make(chan struct{}),
		status: StatusConnecting, since: time.Now()}
	m.streams[src.ID()] = append(outs, o)
	m.wg.Add(1)
	m.mu.Unlock()
	created := o.Info() // the answer describes the output as added, not as it may be a moment later
	go func() {
		defer m.wg.Done()
		defer close(o.done)
		o.run(ctx)
	}()
	m.log.Info("output added", "stream", src.ID(), "output", o.id, "url", Redact(req.URL), "by", req.Owner, "profile", profName(prof))
	m.changed(src.ID())
	return created, nil
}

func profName(p *Profile) string {
	if p == nil {
		return ""
	}
	return p.Name
}

// sameURL compares destinations, ignoring a trailing slash and the case of
// the scheme and host.
func sameURL(a, b string) bool {
	norm := func(s string) string {
		s = strings.TrimRight(strings.TrimSpace(s), "/")
		if i := strings.Index(s, "://"); i >= 0 {
			rest := s[i+3:]
			j := strings.IndexByte(rest, '/')
			if j < 0 {
				j = len(rest)
			}
			s = strings.ToLower(s[:i+3]+rest[:j]) + rest[j:]
		}
		return s
	}
	return norm(a) == norm(b)
}

// Redact hides a URL's stream key (its last path element and query) for
// logs and for apps that did not add the output.
func Redact(raw string) string {
	i := strings.LastIndexByte(strings.TrimRight(raw, "/"), '/')
	if i < 0 || i < strings.Index(raw, "://")+3 {
		return raw
	}
	return raw[:i+1] + "…"
}

// List returns a stream's outputs, in the order added.
func (m *Manager) List(streamID string) []Info {
	m.mu.Lock()
	outs := append([]*Output(nil), m.streams[streamID]...)
	m.mu.Unlock()
	infos := make([]Info, 0, len(outs))
	for _, o := range outs {
		infos = append(infos, o.Info())
	}
	return infos
}

// CountByStatus counts every stream's outputs by status.
func (m *Manager) CountByStatus() map[Status]int {
	m.mu.Lock()
	var outs []*Output
	for _, list := range m.streams {
		outs = append(outs, list...)
	}
	m.mu.Unlock()
	n := map[Status]int{}
	for _, o := range outs {
		o.mu.Lock()
		n[o.status]++
		o.mu.Unlock()
	}
	return n
}

// Remove stops and forgets an output. by is who asks: the owner, or
// "admin" who may remove any.
func (m *Manager) Remove(streamID, outputID, by string) (Info, error) {
	m.mu.Lock()
	outs := m.streams[streamID]
	idx := -1
	for i, o := range outs {
		if o.id == outputID {
			idx = i
		}
	}
	if idx < 0 {
		m.mu.Unlock()
		return Info{}, ErrNotFound
	}
	o := outs[idx]
	if by != "admin" && by != o.owner {
		m.mu.Unlock()
		return Info{}, ErrNotAuthorized
	}
	m.streams[streamID] = append(outs[:idx:idx], outs[idx+1:]...)
	if len(m.streams[streamID]) == 0 {
		delete(m.streams, streamID)
	}
	m.mu.Unlock()
	o.stop()
	m.log.Info("output removed", "stream", streamID, "output", outputID, "by", by)
	m.changed(streamID)
	return o.Info(), nil
}

// StopStream stops every output of a stream that ended. It does not wait
// for them (a destination may not answer): Close does.
func (m *Manager) StopStream(streamID string) {
	m.mu.Lock()
	outs := m.streams[streamID]
	delete(m.streams, streamID)
	m.mu.Unlock()
	for _, o := range outs {
		o.cancel()
	}
}

// Close stops every output and waits for them, then for the last change
// notifications.
func (m *Manager) Close() {
	m.mu.Lock()
	m.cancel()
	m.mu.Unlock()
	m.wg.Wait()
	m.changes.Close()
	<-m.changes.Done()
}

func (o *Output) stop() {
	o.cancel()
	<-o.done
}

// Info returns the output's current state.
func (o *Output) Info() Info {
	o.mu.Lock()
	defer o.mu.Unlock()
	in := Info{ID: o.id, URL: o.url, Name: o.name, Owner: o.owner, Profile: profName(o.profile), Mode: o.mode,
		Violations: o.violations, Status: o.status, Error: o.lastError, Bytes: o.bytes, Connects: o.connects, Since: o.since}
	if o.status == StatusActive {
		in.Bitrate = o.bitrate
	}
	return in
}

func (o *Output) setStatus(status Status, lastError string) {
	o.mu.Lock()
	changed := o.status != status || (lastError != "" && o.lastError != lastError)
	o.status = status
	if lastError != "" {
		o.lastError = lastError
	}
	if status == StatusActive {
		o.connects++
		o.lastError = ""
	}
	o.mu.Unlock()
	if changed {
		o.m.log.Info("output", "stream", o.stream, "output", o.id, "status", status, "err", lastError)
		o.m.changed(o.stream)
	}
}

// addBytes counts what was sent and keeps the bitrate over about 2 s.
func (o *Output) addBytes(n uint64, now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.bytes += n
	if o.rateAt.IsZero() {
		o.rateAt, o.rateBytes = now, o.bytes
		return
	}
	if d := now.Sub(o.rateAt); d >= 2*time.Second {
		o.bitrate = int64(float64(o.bytes-o.rateBytes) * 8 / d.Seconds())
		o.rateAt, o.rateBytes = now, o.bytes
	}
}

// errPermanent marks failures no retry mends.
type errPermanent struct{ error }

// run pushes until ctx ends, retrying with backoff.
func (o *Output) run(ctx context.Context) {
	defer o.setStatus(StatusStopped, "")
	wait := o.m.cfg.BackoffMin
	for ctx.Err() == nil {
		started := time.Now()
		err := o.pushOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errStreamEnded) {
			return
		}
		var perm errPermanent
		if errors.As(err, &perm) {
			o.setStatus(StatusError, perm.Error())
			<-ctx.Done()
			return
		}
		if errors.Is(err, flv.ErrTracksChanged) {
			continue // at once, with the new parameters
		}
		if time.Since(started) > 30*time.Second {
			wait = o.m.cfg.BackoffMin // it had been working: start the backoff again
		}
		o.setStatus(StatusReconnecting, o.errorText(err))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, o.m.cfg.BackoffMax)
	}
}

// errorText is what an output's status says of a failure. An app is told
// only which stage failed: the raw error (a refused port, a TLS alert, an
// HTTP server's answer) would make outputs a scanner of the networks
// glasscast can reach. The operator reads it in the log and in the admin's
// own outputs.
func (o *Output) errorText(err error) string {
	if err == nil {
		return "the destination hung up"
	}
	if o.owner == "admin" {
		return err.Error()
	}
	o.m.log.Info("output failed", "stream", o.stream, "output", o.id, "by", o.owner, "err", err)
	var ce connectError
	switch {
	case errors.As(err, &ce):
		return genericError
	case strings.HasPrefix(err.Error(), "ffmpeg"):
		return "the transcoder failed"
	}
	return "the connection to the destination was lost"
}

// connectError is a failure to reach or open a destination.
type connectError struct{ error }

func (e connectError) Unwrap() error { return e.error }

// ErrTracksChanged ends a connection whose source changed its parameters.
var ErrTracksChanged = flv.ErrTracksChanged

// pushOnce makes one connection and pushes until it fails or ctx ends.
func (o *Output) pushOnce(ctx context.Context) error {
	// A profile is checked against the source as it is now; the stream may
	// be between publishers, or just started, so wait for the figures.
	var violations []Violation
	if o.profile != nil {
		st, err := o.measure(ctx)
		if err != nil {
			return err
		}
		violations = o.profile.Check(st)
	}
	mode := "passthrough"
	var vio []string
	video, audio := false, false
	for _, v := range violations {
		vio = append(vio, v.String())
		video = video || v.Track == "video"
		audio = audio || v.Track == "audio"
	}
	switch {
	case video && audio:
		mode = "transcode video+audio"
	case video:
		mode = "transcode video"
	case audio:
		mode = "transcode audio"
	}
	o.mu.Lock()
	o.mode, o.violations = mode, vio
	o.mu.Unlock()
	if mode == "passthrough" {
		return o.pass(ctx)
	}
	if o.m.cfg.FFmpeg == "" {
		return errPermanent{fmt.Errorf("the source breaks %s's rules (%s) and transcoding needs ffmpeg, which is off or missing", o.profile.Name, strings.Join(vio, "; "))}
	}
	b := o.m.cfg.Transcoders
	if !b.TryAcquire() {
		o.m.log.Warn("output waits for a transcoder", "stream", o.stream, "output", o.id, "max", b.Cap())
		o.setStatus(StatusError, b.Full())
		if err := b.Acquire(ctx); err != nil {
			return err
		}
		o.setStatus(StatusConnecting, "")
	}
	defer b.Release()
	return o.transcode(ctx, video, audio)
}

// measure waits until the hub's stats say enough for a profile's check.
func (o *Output) measure(ctx context.Context) (stream.Stats, error) {
	deadline := time.Now().Add(o.m.cfg.MeasureTimeout)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		st := o.hub.Stats()
		if st.Publishing && measured(st) {
			return st, nil
		}
		if st.Publishing && time.Now().After(deadline) && st.Tracks != nil {
			// Never two keyframes in the wait: the interval is too long.
			if st.Tracks.Video != nil && st.KeyInterval == 0 {
				st.KeyInterval = o.m.cfg.MeasureTimeout
			}
			return st, nil
		}
		if !st.Publishing {
			deadline = time.Now().Add(o.m.cfg.MeasureTimeout)
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-tick.C:
		}
	}
}
