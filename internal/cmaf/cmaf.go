// Package cmaf cuts a live stream into CMAF fragments: one fMP4 track per
// file, segments that start at keyframes, and parts of about 200 ms inside
// each segment. LL-HLS (package hls) and DASH (package dash) serve the same
// fragments, so a stream's media is packaged and held in memory once however
// many protocols read it; the recorder writes them to disk.
//
// A Packager is fed units in the hub's order by one goroutine (Run, or Write
// directly) and read by any number of HTTP handlers through View and Wait.
package cmaf

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/glasscast/glasscast/internal/stream"
)

// Config tunes a packager. Zero fields take the defaults.
type Config struct {
	// PartTarget is the duration a part aims at.
	PartTarget time.Duration
	// SegmentMin is the shortest a segment may be before the next keyframe
	// starts a new one.
	SegmentMin time.Duration
	// AudioSegment is the segment duration of audio-only streams.
	AudioSegment time.Duration
	// Window is how many complete segments are kept (at least 4).
	Window int
}

func (c *Config) setDefaults() {
	if c.PartTarget <= 0 {
		c.PartTarget = 200 * time.Millisecond
	}
	if c.SegmentMin <= 0 {
		c.SegmentMin = time.Second
	}
	if c.AudioSegment <= 0 {
		c.AudioSegment = 2 * time.Second
	}
	if c.Window < 4 {
		c.Window = 5 // an LL-HLS playlist keeps three target durations after a removal
	}
}

// Track describes one track of an initialization segment.
type Track struct {
	Kind      stream.Kind
	Name      string // "video" or "audio": the track's file prefix
	Timescale uint32
	Codec     string // RFC 6381
	Width     int
	Height    int
	FrameRate float64
	// SampleRate and Channels describe audio.
	SampleRate int
	Channels   int
}

// Init is one version of the stream's initialization segments. A new version
// starts when the tracks' parameters change (a new resolution, say).
type Init struct {
	Version int
	// Start is the stream time of the version's first segment.
	Start  time.Duration
	Tracks []Track
	Data   [][]byte // the initialization segment of each track
}

// Track returns the index of the track with the given name, or -1.
func (in *Init) Track(name string) int {
	for i, t := range in.Tracks {
		if t.Name == name {
			return i
		}
	}
	return -1
}

// Segment is one segment of every track, cut at the same keyframe.
type Segment struct {
	Seq  uint64
	Init *Init
	// Discontinuity is set on the first segment after a publisher reconnect
	// or a change of initialization segment.
	Discontinuity bool
	// Start is the stream time at which the segment begins.
	Start time.Duration
	// Wall is the wall-clock time of Start.
	Wall   time.Time
	Tracks []*TrackSegment // in the order of Init.Tracks
}

// Complete reports whether every track of the segment is finished.
func (s *Segment) Complete() bool {
	for _, t := range s.Tracks {
		if !t.Complete {
			return false
		}
	}
	return true
}

// TrackSegment is one track's share of a segment. A track numbers its
// segments itself: one that has nothing in a segment (audio that paused, a
// publisher that left right after a keyframe) skips it.
type TrackSegment struct {
	// Seq is the track's own sequence number, valid once Entered.
	Seq     uint64
	Entered bool
	// Start and Duration are in the track's timescale.
	Start    uint64
	Duration uint64
	Parts    []*Part
	Complete bool
	Size     int
}

// Part is a moof+mdat fragment of one track. A segment's bytes are its parts'
// bytes in order.
type Part struct {
	// ID numbers the track's parts through the stream; Index is the
	// part's place in its segment.
	ID          uint64
	Index       int
	Start       uint64 // in the track's timescale
	Duration    uint64
	Independent bool // starts with a keyframe
	Data        []byte
}

// Errors of the view.
var (
	// ErrEnded is returned by Wait once the packager is closed.
	ErrEnded = errors.New("cmaf: stream ended")
)

// View is a consistent picture of the packager's output. It is only valid
// inside the function View or Wait called with it; keep what it points to,
// not the View.
type View struct {
	// Init is the current initialization version, nil before any media.
	Init *Init
	// Segments holds the window of complete segments followed by the one in
	// progress, oldest first.
	Segments []*Segment
	// PartTarget is the longest part seen in the window, per track name.
	PartTarget map[string]time.Duration
	// NextPart is the ID the next part of each track will have.
	NextPart map[string]uint64
	// MaxSegment is the longest complete segment seen.
	MaxSegment time.Duration
	// Bandwidth is the peak bits per second of a complete segment, per
	// track name.
	Bandwidth map[string]int
	// DroppedDiscontinuities counts discontinuities in segments that have
	// left the window (HLS's EXT-X-DISCONTINUITY-SEQUENCE).
	DroppedDiscontinuities int
	// AvailabilityStart is the wall-clock time of stream time zero.
	AvailabilityStart time.Time
	Ended             bool
	// Variants are the ids of the stream's other renditions (an ABR
	// ladder's rungs), as SetVariants last named them.
	Variants []string
}

// Playable reports whether a player can start: every track has a complete
// segment, so every playlist and the manifest list media.
func (v *View) Playable() bool {
	if v.Init == nil {
		return false
	}
	for _, t := range v.Init.Tracks {
		entries := v.TrackSegments(t.Name)
		if len(entries) == 0 || !entries[0].TS.Complete {
			return false
		}
	}
	return true
}

// TrackEntry is one track's segment, with the segment it belongs to.
type TrackEntry struct {
	Seg   *Segment
	TS    *TrackSegment
	Track Track
}

// TrackSegments lists a track's segments in the window, oldest first: the
// complete ones, then the one in progress, if any.
func (v *View) TrackSegments(name string) []TrackEntry {
	var out []TrackEntry
	for _, seg := range v.Segments {
		i := seg.Init.Track(name)
		if i < 0 {
			continue
		}
		ts := seg.Tracks[i]
		if !ts.Entered {
			continue
		}
		out = append(out, TrackEntry{Seg: seg, TS: ts, Track: seg.Init.Tracks[i]})
		if !ts.Complete {
			break
		}
	}
	return out
}

// Segment returns the segment with sequence number seq, or nil.
func (v *View) Segment(seq uint64) *Segment {
	if len(v.Segments) == 0 {
		return nil
	}
	first := v.Segments[0].Seq
	if seq < first || seq-first >= uint64(len(v.Segments)) {
		return nil
	}
	return v.Segments[seq-first]
}

// Last returns the newest segment, or nil.
func (v *View) Last() *Segment {
	if len(v.Segments) == 0 {
		return nil
	}
	return v.Segments[len(v.Segments)-1]
}

// Packager holds a stream's fragments.
type Packager struct {
	cfg Config

	wmu sync.Mutex // serialises writers
	w   writer

	mu      sync.RWMutex
	view    View
	changed chan struct{}
	ops     uint64                 // changes made so far
	journal func(n uint64, op *Op) // told of every change, under mu

	vmu      sync.Mutex
	variants []Variant
	follow   *Packager
}

// Follow makes p take src's wall clock for its stream time (program date
// times, DASH availability): p packages a rendition of src on the same
// timeline.
func (p *Packager) Follow(src *Packager) {
	p.vmu.Lock()
	p.follow = src
	p.vmu.Unlock()
}

func (p *Packager) anchorSrc() *Packager {
	p.vmu.Lock()
	defer p.vmu.Unlock()
	return p.follow
}

// Variant is another rendition of the stream (a rung of an adaptive
// bitrate ladder), packaged by its own packager on the same timeline and
// served under its own id.
type Variant struct {
	ID string
	P  *Packager
}

// SetVariants sets the stream's other renditions (nil for none); their
// ids are a change of the view (a mirror learns them).
func (p *Packager) SetVariants(v []Variant) {
	v = v[:min(len(v), MaxVariants)]
	p.vmu.Lock()
	p.variants = v
	p.vmu.Unlock()
	var ids []string
	for _, vr := range v {
		ids = append(ids, vr.ID)
	}
	p.apply(&Op{Kind: OpVariants, IDs: ids}) // and wakes playlist requests
}

// LinkVariants gives a mirror the packagers of the renditions its view
// names (mirrors of them in turn); SetVariants is the origin's.
func (p *Packager) LinkVariants(v []Variant) {
	p.vmu.Lock()
	p.variants = v
	p.vmu.Unlock()
	p.update(func(*View) {}) // wake playlist requests
}

// Variants returns the other renditions that can be played now: those the
// view names (on a mirror, the origin's) that have media and have not ended.
func (p *Packager) Variants() []Variant {
	p.vmu.Lock()
	all := p.variants
	p.vmu.Unlock()
	if len(all) == 0 {
		return nil
	}
	var named []string
	p.View(func(v *View) { named = v.Variants })
	var out []Variant
	for _, v := range all {
		if !slices.Contains(named, v.ID) {
			continue
		}
		ok := false
		v.P.View(func(vw *View) { ok = vw.Playable() && !vw.Ended })
		if ok {
			out = append(out, v)
		}
	}
	return out
}

// New makes a packager.
func New(cfg Config) *Packager {
	cfg.setDefaults()
	p := &Packager{cfg: cfg, changed: make(chan struct{})}
	p.view.PartTarget = map[string]time.Duration{}
	p.view.Bandwidth = map[string]int{}
	p.view.NextPart = map[string]uint64{}
	p.w.p = p
	return p
}

// Config returns the packager's settings.
func (p *Packager) Config() Config { return p.cfg }

// Run feeds the packager from a hub reader until the hub closes or ctx ends.
func (p *Packager) Run(ctx context.Context, r *stream.Reader) error {
	for {
		u, err := r.Read(ctx)
		if err != nil {
			if errors.Is(err, stream.ErrClosed) {
				return nil
			}
			return err
		}
		p.Write(u)
	}
}

// Write packages one unit.
func (p *Packager) Write(u *stream.Unit) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.w.write(u)
}

// Flush completes the segment in progress: the publisher has gone, and the
// next media, if any, starts a new segment.
func (p *Packager) Flush() {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.w.flush()
}

// Close flushes and marks the stream ended; waiters are released.
func (p *Packager) Close() {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.w.flush()
	p.apply(&Op{Kind: OpEnded})
}

// Release drops the media of an ended stream (its segments and what the
// writer held) once whoever follows it has copied what it needs; the view
// stays ended and empty.
func (p *Packager) Release() {
	p.wmu.Lock()
	p.w = writer{p: p}
	p.wmu.Unlock()
	p.vmu.Lock()
	p.variants, p.follow = nil, nil
	p.vmu.Unlock()
	p.apply(&Op{Kind: OpRelease})
}

// View runs fn with the current view, under a read lock: fn must not block.
func (p *Packager) View(fn func(v *View)) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	fn(&p.view)
}

// Wait blocks until ready reports true for the view (it is called on every
// change, under a read lock), ctx ends, or the packager closes.
func (p *Packager) Wait(ctx context.Context, ready func(v *View) bool) error {
	for {
		p.mu.RLock()
		ok := ready(&p.view)
		ended := p.view.Ended
		ch := p.changed
		p.mu.RUnlock()
		if ok {
			return nil
		}
		if ended {
			return ErrEnded
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// apply makes a change to the view under the write lock, tells the
// journal, and wakes the waiters.
func (p *Packager) apply(op *Op) {
	p.mu.Lock()
	p.view.apply(op, p.cfg.Window)
	p.ops++
	if p.journal != nil {
		p.journal(p.ops, op)
	}
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// update changes the view under the write lock and wakes the waiters.
func (p *Packager) update(fn func(v *View)) {
	p.mu.Lock()
	fn(&p.view)
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// Ticks converts a duration to a timescale without overflowing for long streams.
func Ticks(d time.Duration, scale uint32) uint64 {
	if d < 0 {
		return 0
	}
	s := uint64(scale)
	return uint64(d/time.Second)*s + uint64(d%time.Second)*s/uint64(time.Second)
}

// Duration converts ticks of a timescale to a duration.
func Duration(t uint64, scale uint32) time.Duration {
	s := uint64(scale)
	return time.Duration(t/s)*time.Second + time.Duration((t%s)*uint64(time.Second)/s)
}
