package cmaf

import (
	"encoding/json"
	"errors"
	"time"
)

// Position is where a stream's numbering stands: its next segment and
// part numbers, its initialization version, how many discontinuities it
// has had and how far its stream time has gone. A packager that takes a
// stream over from another node starts after it (Resume), so that a player
// that read the other node's playlists and manifests reads on at higher
// numbers, never lower ones: HLS media sequence and part numbers, DASH
// segment numbers and period ids only rise.
type Position struct {
	Seq             uint64            `json:"seq"`             // the next segment
	TrackSeq        map[string]uint64 `json:"trackSeq"`        // each track's next segment
	Part            map[string]uint64 `json:"part"`            // each track's next part
	Init            int               `json:"init"`            // the initialization version in use
	Discontinuities int               `json:"discontinuities"` // so far, in the window and before it
	End             time.Duration     `json:"end"`             // stream time reached
	Anchor          time.Time         `json:"anchor"`          // the wall-clock time of stream time zero
}

// Zero says whether the position is a stream's start (nothing written).
func (pos Position) Zero() bool {
	return pos.Seq == 0 && pos.Init == 0 && len(pos.Part) == 0
}

// Ahead is a position that d more of the stream, at any pace a publisher
// may keep, cannot have reached: what a node that heard pos d ago starts
// after. Segments last at least a second (SegmentMin) and parts are cut
// at most every few tens of milliseconds; the margins are wide, as numbers
// skipped cost nothing and numbers reused break players.
func (pos Position) Ahead(d time.Duration) Position {
	d = max(d, 0)
	segs := 2 + uint64(d/(500*time.Millisecond))
	parts := 20 + uint64(d/(20*time.Millisecond))
	out := pos
	out.Seq += segs
	out.TrackSeq = map[string]uint64{}
	for k, v := range pos.TrackSeq {
		out.TrackSeq[k] = v + segs
	}
	out.Part = map[string]uint64{}
	for k, v := range pos.Part {
		out.Part[k] = v + parts
	}
	out.Discontinuities++
	out.End += d + time.Second
	return out
}

// Later is the position that is past both a and b, number by number.
func Later(a, b Position) Position {
	out := Position{Seq: max(a.Seq, b.Seq), Init: max(a.Init, b.Init), Discontinuities: max(a.Discontinuities, b.Discontinuities),
		End: max(a.End, b.End), Anchor: a.Anchor, TrackSeq: map[string]uint64{}, Part: map[string]uint64{}}
	if out.Anchor.IsZero() || (!b.Anchor.IsZero() && b.Anchor.Before(out.Anchor)) {
		out.Anchor = b.Anchor
	}
	for _, m := range []map[string]uint64{a.TrackSeq, b.TrackSeq} {
		for k, v := range m {
			out.TrackSeq[k] = max(out.TrackSeq[k], v)
		}
	}
	for _, m := range []map[string]uint64{a.Part, b.Part} {
		for k, v := range m {
			out.Part[k] = max(out.Part[k], v)
		}
	}
	return out
}

// Position is where the packager's numbering stands, as its view shows it
// (a mirror's is its source's), and never before the position it resumed
// from.
func (p *Packager) Position() Position {
	p.mu.RLock()
	v := &p.view
	pos := Position{Init: 0, Discontinuities: v.DroppedDiscontinuities, Anchor: v.AvailabilityStart,
		TrackSeq: map[string]uint64{}, Part: copyMap(v.NextPart)}
	if v.Init != nil {
		pos.Init = v.Init.Version
	}
	for _, seg := range v.Segments {
		pos.Seq = seg.Seq + 1
		if seg.Discontinuity {
			pos.Discontinuities++
		}
		for i, ts := range seg.Tracks {
			if !ts.Entered || i >= len(seg.Init.Tracks) {
				continue
			}
			tk := seg.Init.Tracks[i]
			pos.TrackSeq[tk.Name] = max(pos.TrackSeq[tk.Name], ts.Seq+1)
			pos.End = max(pos.End, Duration(ts.Start+ts.Duration, tk.Timescale))
		}
	}
	p.mu.RUnlock()
	p.wmu.Lock()
	base := p.w.base
	p.wmu.Unlock()
	if base == nil {
		return pos
	}
	return Later(pos, *base)
}

// Resume makes a packager that has not been written to yet start after
// pos: its first segment, part, track segment and initialization version
// are numbered past pos's, its first segment follows a discontinuity, and
// its stream keeps pos's wall-clock anchor.
func (p *Packager) Resume(pos Position) {
	if pos.Zero() {
		return
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	w := &p.w
	if w.init != nil {
		return // written to already
	}
	base := pos
	w.base = &base
	w.nextSeq = pos.Seq
	w.seqs = map[string]uint64{}
	for k, v := range pos.TrackSeq {
		w.seqs[k] = v
	}
	w.discont = true
	p.update(func(v *View) {
		for k, n := range pos.Part {
			v.NextPart[k] = max(v.NextPart[k], n)
		}
		// A seeded window must end right before pos's next segment (a
		// playlist's segments are numbered one after another); one that
		// does not (another node's copy had a segment more) is let go.
		if last := v.Last(); last != nil && last.Seq+1 != pos.Seq {
			v.Segments = nil
		}
		// pos counts the discontinuities of its window too: those of a
		// window this packager was seeded with are listed, not dropped.
		listed := 0
		for _, seg := range v.Segments {
			if seg.Discontinuity {
				listed++
			}
		}
		v.DroppedDiscontinuities = max(v.DroppedDiscontinuities, pos.Discontinuities-listed)
	})
	if !pos.Anchor.IsZero() {
		p.apply(&Op{Kind: OpAnchor, Wall: pos.Anchor})
	}
}

// seedJump is how far a seeded packager's change count jumps past its
// seed's: every mirror of the same stream on another node finds a gap at
// the next change and takes a snapshot of this packager, whatever count
// its own copy had reached.
const seedJump = 1 << 20

// Seed starts a packager that has written nothing from what a mirror had
// of the same stream (a node taking it over from one that died): the
// window stays listed, at the same URLs, the segment that was in progress
// is finished with what it had, and what is written next (after Resume)
// starts a new segment behind a discontinuity — as after a publisher's
// reconnect on one node. A player that was reading a segment from the node
// that died finds it here, finished; a playlist is answered at once.
func (p *Packager) Seed(s *Snapshot) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if p.w.init != nil {
		return errors.New("cmaf: a packager that has written cannot be seeded")
	}
	if err := p.Restore(s); err != nil {
		return err
	}
	p.mu.Lock()
	p.ops += seedJump
	var open []*Op
	if last := p.view.Last(); last != nil {
		for i, ts := range last.Tracks {
			if !ts.Complete {
				open = append(open, &Op{Kind: OpComplete, Seg: last.Seq, Track: i, Lead: i == 0})
			}
		}
	}
	p.mu.Unlock()
	for _, op := range open {
		p.apply(op)
	}
	return nil
}

// MarshalJSON writes the position as one short array of numbers: a node
// tells of every stream it holds in each heartbeat. Tracks are video and
// audio.
func (pos Position) MarshalJSON() ([]byte, error) {
	var anchor int64
	if !pos.Anchor.IsZero() {
		anchor = pos.Anchor.UnixMilli()
	}
	return json.Marshal([]int64{int64(pos.Seq), int64(pos.Init), int64(pos.Discontinuities), pos.End.Milliseconds(), anchor,
		int64(pos.TrackSeq["video"]), int64(pos.TrackSeq["audio"]), int64(pos.Part["video"]), int64(pos.Part["audio"])})
}

// UnmarshalJSON reads what MarshalJSON wrote; numbers after the ones it
// knows (a newer build's) are left.
func (pos *Position) UnmarshalJSON(b []byte) error {
	var a []int64
	if err := json.Unmarshal(b, &a); err != nil {
		return err
	}
	if len(a) < 9 {
		return errors.New("cmaf: a short position")
	}
	for _, n := range a[:9] {
		if n < 0 {
			return errors.New("cmaf: a negative position")
		}
	}
	*pos = Position{Seq: uint64(a[0]), Init: int(a[1]), Discontinuities: int(a[2]), End: time.Duration(a[3]) * time.Millisecond,
		TrackSeq: map[string]uint64{"video": uint64(a[5]), "audio": uint64(a[6])},
		Part:     map[string]uint64{"video": uint64(a[7]), "audio": uint64(a[8])}}
	if a[4] != 0 {
		pos.Anchor = time.UnixMilli(a[4])
	}
	return nil
}
