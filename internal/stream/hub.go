package stream

import (
	"errors"
	"sync"
	"time"
)

// Errors a publisher or reader branches on.
var (
	ErrClosed   = errors.New("stream closed")
	ErrReplaced = errors.New("publisher replaced by a newer one")
)

// Unit is one access unit on the stream's timeline. Units are shared by every
// reader and must not be modified.
type Unit struct {
	Kind Kind
	// DTS and PTS are stream time: zero at the stream's first unit, monotonic
	// per kind across publisher reconnects, and kept close to wall-clock time.
	DTS, PTS time.Duration
	// Key is true for an H.264 IDR (which then carries SPS and PPS) and for
	// every audio unit.
	Key bool
	// NALUs holds a video access unit; Payload an audio one (a raw AAC frame).
	NALUs   [][]byte
	Payload []byte
	// Epoch counts publisher sessions; it changes when a publisher reconnects.
	Epoch uint32
	// Tracks describes the tracks the unit belongs to.
	Tracks *Tracks
	// Arrival is when the unit entered the hub.
	Arrival time.Time

	memo *unitMemo
}

// unitMemo holds what an output derives from a unit, once for all readers.
type unitMemo struct {
	once sync.Once
	v    any
}

// Derived returns what compute makes of the unit, computed once for all the
// hub's readers. It is for one output (WebRTC keeps its RTP payloads here);
// a unit made outside a hub computes it at every call.
func (u *Unit) Derived(compute func() any) any {
	if u.memo == nil {
		return compute()
	}
	u.memo.once.Do(func() { u.memo.v = compute() })
	return u.memo.v
}

// Size is the number of payload bytes the unit carries.
func (u *Unit) Size() int {
	if u.Kind == KindAudio {
		return len(u.Payload)
	}
	n := 0
	for _, nalu := range u.NALUs {
		n += len(nalu)
	}
	return n
}

// Config tunes a hub. Zero fields take the defaults.
type Config struct {
	// GOPCacheUnits and GOPCacheBytes bound the cached group of pictures; a
	// longer GOP is not cached and new readers wait for the next keyframe.
	GOPCacheUnits int
	GOPCacheBytes int
	// OnPublish and OnUnpublish run in the publisher's goroutine, outside the
	// hub's lock, when a publisher session starts and ends.
	OnPublish   func(epoch uint32, t *Tracks)
	OnUnpublish func(epoch uint32, err error)
	// KeepTimestamps takes the publisher's timestamps as stream time (only
	// kept monotonic): for a rendition whose encoder was given the source's
	// stream time, so both share one timeline.
	KeepTimestamps bool
}

// Hub is one live stream: one publisher at a time, many readers.
type Hub struct {
	cfg Config

	mu      sync.Mutex
	closed  bool
	readers map[*Reader]struct{}
	pub     *Publisher
	epoch   uint32
	tracks  *Tracks
	gop     []*Unit // from the last keyframe on; nil when not cacheable
	gopSize int
	lastKey *Unit // the last video keyframe, cached or not
	tl      timeline
	st      counters
}

// New makes a hub.
func New(cfg Config) *Hub {
	if cfg.GOPCacheUnits <= 0 {
		cfg.GOPCacheUnits = 1500
	}
	if cfg.GOPCacheBytes <= 0 {
		cfg.GOPCacheBytes = 24 << 20
	}
	return &Hub{cfg: cfg, readers: make(map[*Reader]struct{}), tl: timeline{keep: cfg.KeepTimestamps}}
}

// LastKeyframe is the latest video keyframe (an IDR with its SPS and PPS),
// nil before the first.
func (h *Hub) LastKeyframe() *Unit {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lastKey
}

// Tracks returns the current track set, nil before the first publish.
func (h *Hub) Tracks() *Tracks {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.tracks
}

// Resume makes a hub no one has published to yet go on with a stream
// another node had: its stream time reached end at wall-clock time at (by
// this node's clock). The first publisher's timestamps start after end by
// the time since at, as a reconnect's would on one node.
func (h *Hub) Resume(end time.Duration, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.tl.started || h.tl.keep || h.epoch != 0 {
		return
	}
	h.tl.started, h.tl.end, h.tl.endWall = true, end, at
}

// Publish starts a publisher session with the given tracks. A publisher
// already in place is replaced: its writes fail with ErrReplaced and its Done
// channel closes.
func (h *Hub) Publish(t *Tracks) (*Publisher, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, ErrClosed
	}
	old := h.pub
	h.epoch++
	totals.publishes.Add(1)
	p := &Publisher{hub: h, epoch: h.epoch, codec: h264Codec{}, done: make(chan struct{}), needKey: t.Video != nil}
	h.pub = p
	h.tracks = t
	h.gop = nil
	h.gopSize = 0
	h.tl.newEpoch(time.Now())
	h.mu.Unlock()

	if old != nil {
		old.end(ErrReplaced)
	}
	if h.cfg.OnPublish != nil {
		h.cfg.OnPublish(p.epoch, t)
	}
	return p, nil
}

// Close ends the stream: the publisher is cut off and readers get ErrClosed
// once they have drained their queues.
func (h *Hub) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	h.gop, h.gopSize, h.lastKey = nil, 0, nil // nobody reads a closed hub's media
	pub := h.pub
	readers := make([]*Reader, 0, len(h.readers))
	for r := range h.readers {
		readers = append(readers, r)
	}
	h.mu.Unlock()

	if pub != nil {
		pub.end(ErrClosed)
	}
	for _, r := range readers {
		r.closeWith(ErrClosed)
	}
}

// write is the publisher's path: rebase, cache, fan out. Never blocks on a
// reader.
func (h *Hub) write(p *Publisher, u *Unit) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return ErrClosed
	}
	if h.pub != p {
		return ErrReplaced
	}
	u.Epoch = p.epoch
	u.Tracks = h.tracks
	h.tl.rebase(u)
	h.st.add(u)

	h.cacheGOP(u)
	for r := range h.readers {
		r.push(u)
	}
	return nil
}

// cacheGOP keeps the units from the last keyframe on. Audio-only streams
// have no keyframes to start from, so nothing is cached for them.
func (h *Hub) cacheGOP(u *Unit) {
	switch {
	case u.Kind == KindVideo && u.Key:
		h.lastKey = u
		h.gop = append(h.gop[:0], u)
		h.gopSize = u.Size()
	case h.gop == nil:
	case len(h.gop) < h.cfg.GOPCacheUnits && h.gopSize+u.Size() <= h.cfg.GOPCacheBytes:
		h.gop = append(h.gop, u)
		h.gopSize += u.Size()
	default:
		h.gop = nil // too long to cache: new readers wait for the next keyframe
		h.gopSize = 0
	}
}

// NewReader adds a reader whose queue holds up to size units. It starts at
// the cached keyframe when there is one.
func (h *Hub) NewReader(name string, size int) *Reader {
	if size < 16 {
		size = 16
	}
	r := &Reader{hub: h, name: name, buf: make([]*Unit, size), notify: make(chan struct{}, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		r.err = ErrClosed
		return r
	}
	h.readers[r] = struct{}{}
	r.waitKey = true
	start := h.gop
	if len(start) > size {
		start = start[len(start)-size:]
	}
	for _, u := range start {
		r.push(u)
	}
	return r
}

// Readers is how many readers the hub has.
func (h *Hub) Readers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.readers)
}

func (h *Hub) removeReader(r *Reader) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.readers[r]; ok {
		delete(h.readers, r)
		h.st.retiredDrops += r.Dropped()
	}
}

// Publisher writes one publisher session into the hub.
type Publisher struct {
	hub     *Hub
	epoch   uint32
	codec   videoCodec
	needKey bool // no keyframe seen yet in this session

	once sync.Once
	done chan struct{}
	err  error
}

// Epoch is the session's number.
func (p *Publisher) Epoch() uint32 { return p.epoch }

// Done closes when the session is over: replaced, closed, or ended by Close.
func (p *Publisher) Done() <-chan struct{} { return p.done }

// Err says why Done closed.
func (p *Publisher) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

func (p *Publisher) end(err error) {
	p.once.Do(func() {
		p.err = err
		close(p.done)
	})
}

// Close ends the session because the publisher went away.
func (p *Publisher) Close(cause error) {
	h := p.hub
	h.mu.Lock()
	current := h.pub == p
	if current {
		h.pub = nil
		h.tl.endEpoch(time.Now())
		end := &Unit{Kind: KindEnd, Epoch: p.epoch, Tracks: h.tracks, Arrival: time.Now()}
		for r := range h.readers {
			r.push(end)
		}
	}
	h.mu.Unlock()
	if cause == nil {
		cause = errors.New("publisher disconnected")
	}
	p.end(cause)
	if current && h.cfg.OnUnpublish != nil {
		h.cfg.OnUnpublish(p.epoch, cause)
	}
}

// WriteVideo writes an H.264 access unit with timestamps in the publisher's
// own clock. Parameter sets are taken out of the access unit: a change makes
// a new track set, and every IDR leaves with the current SPS and PPS in front.
// Units before the session's first IDR are dropped: nobody could decode them.
func (p *Publisher) WriteVideo(pts, dts time.Duration, au [][]byte) error {
	if p.Err() != nil {
		return p.err
	}
	params, nalus, key := p.codec.split(au)
	if len(params) > 0 {
		if err := p.updateParams(params); err != nil {
			return err
		}
	}
	if len(nalus) == 0 {
		return nil // parameter sets only
	}
	if !key && p.needKey {
		return nil
	}
	if key {
		p.needKey = false
		v := p.hub.Tracks().Video
		if v == nil {
			return errors.New("video unit on a stream without a video track")
		}
		nalus = withPrefix(p.codec.prefix(v), nalus)
	}
	return p.hub.write(p, &Unit{Kind: KindVideo, PTS: pts, DTS: dts, Key: key, NALUs: nalus, Arrival: time.Now(), memo: &unitMemo{}})
}

// updateParams makes a new track set when the parameter sets change.
func (p *Publisher) updateParams(params [][]byte) error {
	h := p.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	cur := h.tracks
	if cur == nil || cur.Video == nil || h.pub != p {
		return nil
	}
	v, err := p.codec.update(cur.Video, params)
	if err != nil || v == nil {
		return err
	}
	h.tracks = &Tracks{Video: v, Audio: cur.Audio}
	return nil
}

// WriteAudio writes one AAC frame.
func (p *Publisher) WriteAudio(pts time.Duration, au []byte) error {
	if p.Err() != nil {
		return p.err
	}
	if len(au) == 0 {
		return nil
	}
	return p.hub.write(p, &Unit{Kind: KindAudio, PTS: pts, DTS: pts, Key: true, Payload: au, Arrival: time.Now()})
}

// timeline maps publisher timestamps to stream time. The first unit of the
// stream is at zero; a reconnecting publisher continues where the wall clock
// says the stream is, so stream time keeps following real time and a gap
// shows as a gap.
//
// Within a session, a timestamp that jumps (a frame stamped an hour ahead,
// a 32-bit wrap, an encoder restarted at zero) is a discontinuity: the
// kind's offset is re-anchored so the unit lands one usual step after the
// one before, and the other kind, when it makes the same jump, gets the same
// correction, which keeps the two in sync. A step forward is a jump only
// when it outruns the wall clock by more than jumpAhead (a publisher that
// stopped sending for a while comes back with its timestamps as far on); a
// step back of more than jumpBack is one, and shorter ones are clamped.
type timeline struct {
	keep     bool // publisher timestamps are stream time
	started  bool // some unit was written
	epochSet bool // the current epoch's offsets are known
	offset   [3]time.Duration
	last     [3]time.Duration // last stream DTS per kind
	lastIn   [3]time.Duration // last publisher DTS per kind
	lastAt   [3]time.Time     // arrival of the last unit per kind
	step     [3]time.Duration // the kind's usual spacing
	seen     [3]bool          // in any session
	inEpoch  [3]int           // units in this session
	end      time.Duration    // largest DTS written
	// The session's start and the previous one's end, by the wall clock.
	epochStart time.Time
	endWall    time.Time
	// A kind whose last unit was re-anchored, and how it stood before:
	// the next unit may return to the old clock (one unit stamped wrong).
	undo struct {
		pending [3]bool
		offset  [3]time.Duration
		last    [3]time.Duration
		at      [3]time.Time
	}
	// The last re-anchoring, for the other kind to follow.
	jumpIn  time.Duration // the publisher's step that was a jump
	jumpFix time.Duration // what was added to the offset
	jumpAt  time.Time
	jumpOf  Kind
	jumps   uint64
}

const (
	jumpAhead = 500 * time.Millisecond
	jumpBack  = 500 * time.Millisecond
	// firstApart is how far apart the kinds' first units of a session may
	// be stamped: sources start their tracks at different times.
	firstApart = 5 * time.Second
	// maxPTSDelta bounds a unit's presentation delay behind its decoding.
	maxPTSDelta = 5 * time.Second
)

// agrees says whether a unit d after the other kind's last one, which
// arrived wall before it, is on that kind's clock.
func agrees(d, wall time.Duration) bool {
	return d >= -jumpBack && d <= max(wall, 0)+jumpAhead
}

// other is the kind beside k.
func other(k Kind) Kind {
	if k == KindVideo {
		return KindAudio
	}
	return KindVideo
}

func (t *timeline) newEpoch(now time.Time) {
	t.epochSet = false
	t.epochStart = now
	t.inEpoch = [3]int{}
	t.undo.pending = [3]bool{}
}

func (t *timeline) endEpoch(now time.Time) {
	t.endWall = now
}

func (t *timeline) rebase(u *Unit) {
	k := u.Kind
	if !t.epochSet {
		t.epochSet = true
		target := time.Duration(0)
		if t.started && !t.keep {
			gap := time.Duration(0)
			if !t.endWall.IsZero() {
				gap = t.epochStart.Sub(t.endWall)
			}
			target = t.end + max(gap, 40*time.Millisecond)
		}
		off := target - u.DTS
		if t.keep {
			off = 0
		}
		t.offset = [3]time.Duration{off, off, off}
	}
	ptsDelta := min(max(u.PTS-u.DTS, 0), maxPTSDelta)
	dts := u.DTS + t.offset[k]
	o := other(k)
	if !t.keep && t.inEpoch[k] == 0 && t.inEpoch[o] > 0 {
		// A kind's first unit of the session starts beside the other's:
		// one of the two may have been stamped wrong.
		near := t.last[o]
		if d := dts - near; d < -firstApart || d > max(u.Arrival.Sub(t.lastAt[o]), 0)+firstApart || dts < 0 {
			t.offset[k] += near - dts
			dts = near
			t.jumps++
		}
	}
	if t.undo.pending[k] {
		t.undo.pending[k] = false
		// Back on the clock from before the jump: that unit alone was off.
		back := u.DTS + t.undo.offset[k]
		if d := back - t.undo.last[k]; d > 0 && d <= max(u.Arrival.Sub(t.undo.at[k]), 0)+jumpAhead {
			t.offset[k] = t.undo.offset[k]
			dts = back
			t.jumps++
		}
	}
	if t.seen[k] {
		d := dts - t.last[k]
		wall := u.Arrival.Sub(t.lastAt[k])
		switch {
		case t.inEpoch[k] == 1 && !t.keep && t.inEpoch[o] > 0 && agrees(dts-t.last[o], u.Arrival.Sub(t.lastAt[o])) &&
			d > max(wall, 0)+jumpAhead:
			// The kind's first unit was the odd one, stamped early: this
			// one is on the other kind's clock and stays there.
		case t.inEpoch[k] > 0 && !t.keep && (d < -jumpBack || d > max(wall, 0)+jumpAhead):
			in := u.DTS - t.lastIn[k]
			fix := t.last[k] + t.step[k] - dts
			// The same jump seen on both kinds differs only by their
			// spacing before it.
			same := 2*max(t.step[KindVideo], t.step[KindAudio]) + 20*time.Millisecond
			if t.jumpOf != 0 && t.jumpOf != k && u.Arrival.Sub(t.jumpAt) < jumpAhead && (in-t.jumpIn).Abs() < same {
				fix = t.jumpFix // the other kind's jump: the same correction
			}
			t.undo.pending[k] = true
			t.undo.offset[k], t.undo.last[k], t.undo.at[k] = t.offset[k], t.last[k], t.lastAt[k]
			t.offset[k] += fix
			dts += fix
			t.jumpIn, t.jumpFix, t.jumpAt, t.jumpOf = in, fix, u.Arrival, k
			t.jumps++
			if dts <= t.last[k] {
				dts = t.last[k] + time.Millisecond
			}
		case d <= 0:
			dts = t.last[k] + time.Millisecond
		case d <= 200*time.Millisecond && t.inEpoch[k] > 0:
			t.step[k] = d
		}
	} else if t.step[k] == 0 {
		t.step[k] = 20 * time.Millisecond
	}
	t.started = true
	t.seen[k] = true
	t.inEpoch[k]++
	t.last[k] = dts
	t.lastIn[k] = u.DTS
	t.lastAt[k] = u.Arrival
	t.end = max(t.end, dts)
	u.DTS = dts
	u.PTS = dts + ptsDelta
}
