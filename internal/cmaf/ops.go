package cmaf

import "time"

// OpKind is what an Op changes.
type OpKind uint8

// The changes a packager's view goes through. The writer makes them; a
// mirror (a packager fed by another node's) applies the same ones and ends
// up with the same view, so the same requests answer the same bytes.
const (
	// OpInit starts a new initialization version (Op.Init).
	OpInit OpKind = iota + 1
	// OpAnchor sets the wall-clock time of stream time zero (Op.Wall),
	// unless it is set.
	OpAnchor
	// OpSegment opens segment Op.Seg of the current initialization version
	// at stream time Op.Start, wall-clock Op.Wall.
	OpSegment
	// OpEnter starts track Op.Track's share of segment Op.Seg at Op.Ticks,
	// numbered Op.TrackSeq.
	OpEnter
	// OpPart adds Op.Part to track Op.Track's share of segment Op.Seg; the
	// track's longest part so far is Op.PartTarget.
	OpPart
	// OpComplete finishes track Op.Track's share of segment Op.Seg; when the
	// track leads (Op.Lead), complete segments beyond the window go.
	OpComplete
	// OpSkip completes track Op.Track's share of the segments of the
	// current initialization version before Op.Seg that it never entered.
	OpSkip
	// OpEnded marks the stream ended.
	OpEnded
	// OpRelease drops the segments of an ended stream.
	OpRelease
	// OpVariants names the stream's other renditions (Op.IDs: an ABR
	// ladder's rungs, each a stream of its own; none when it stops).
	OpVariants
)

// MaxVariants bounds the renditions a change names.
const MaxVariants = 16

// Op is one change of a packager's view.
type Op struct {
	Kind          OpKind
	Init          *Init
	Wall          time.Time
	Seg           uint64
	Start         time.Duration
	Discontinuity bool
	Track         int
	TrackSeq      uint64
	Ticks         uint64
	Part          *Part
	PartTarget    time.Duration
	Lead          bool
	IDs           []string
}

// apply makes op's change to the view; window is how many complete
// segments are kept. It reports whether op fits the view (a mirror that
// missed a change finds out here).
func (v *View) apply(op *Op, window int) bool {
	switch op.Kind {
	case OpInit:
		v.Init = op.Init
	case OpAnchor:
		if v.AvailabilityStart.IsZero() {
			v.AvailabilityStart = op.Wall.Round(0) // no monotonic reading: it does not travel
		}
	case OpSegment:
		in := v.Init
		if in == nil {
			return false
		}
		if last := v.Last(); last != nil && last.Seq+1 != op.Seg {
			return false
		}
		if in.Start == 0 && in.Version > 1 {
			in.Start = op.Start
		}
		seg := &Segment{Seq: op.Seg, Init: in, Discontinuity: op.Discontinuity, Start: op.Start, Wall: op.Wall.Round(0),
			Tracks: make([]*TrackSegment, len(in.Tracks))}
		for i := range seg.Tracks {
			seg.Tracks[i] = &TrackSegment{}
		}
		v.Segments = append(v.Segments, seg)
	case OpEnter:
		ts := v.trackSegment(op.Seg, op.Track)
		if ts == nil {
			return false
		}
		ts.Start, ts.Seq, ts.Entered = op.Ticks, op.TrackSeq, true
	case OpPart:
		seg := v.Segment(op.Seg)
		ts := v.trackSegment(op.Seg, op.Track)
		if ts == nil || op.Part == nil {
			return false
		}
		name := seg.Init.Tracks[op.Track].Name
		part := *op.Part
		part.ID = v.NextPart[name]
		part.Index = len(ts.Parts)
		v.NextPart[name]++
		ts.Parts = append(ts.Parts, &part)
		ts.Size += len(part.Data)
		ts.Duration = part.Start + part.Duration - ts.Start
		v.PartTarget[name] = op.PartTarget
	case OpComplete:
		seg := v.Segment(op.Seg)
		ts := v.trackSegment(op.Seg, op.Track)
		if ts == nil {
			return false
		}
		tk := seg.Init.Tracks[op.Track]
		ts.Complete = true
		if ts.Duration > 0 {
			bw := int(int64(ts.Size) * 8 * int64(tk.Timescale) / int64(ts.Duration))
			v.Bandwidth[tk.Name] = max(v.Bandwidth[tk.Name], bw)
		}
		if op.Lead {
			v.MaxSegment = max(v.MaxSegment, Duration(ts.Duration, tk.Timescale))
			v.trim(op.Track, window)
		}
	case OpSkip:
		for _, seg := range v.Segments {
			if seg.Init != v.Init || seg.Seq >= op.Seg || op.Track >= len(seg.Tracks) {
				continue
			}
			if ts := seg.Tracks[op.Track]; !ts.Entered {
				ts.Complete = true
			}
		}
	case OpEnded:
		v.Ended = true
	case OpRelease:
		v.Segments = nil
		v.Ended = true
	case OpVariants:
		if len(op.IDs) > MaxVariants {
			return false
		}
		v.Variants = append([]string(nil), op.IDs...)
	default:
		return false
	}
	return true
}

// trackSegment is track i's share of segment seq, nil when the view has
// no such thing.
func (v *View) trackSegment(seq uint64, i int) *TrackSegment {
	seg := v.Segment(seq)
	if seg == nil || i < 0 || i >= len(seg.Tracks) {
		return nil
	}
	return seg.Tracks[i]
}

// trim keeps the window: complete segments (by the lead track) beyond it
// go, oldest first.
func (v *View) trim(lead, window int) {
	complete := 0
	for _, s := range v.Segments {
		if s.Tracks[lead].Complete {
			complete++
		}
	}
	drop := 0
	for complete > window && drop < len(v.Segments) {
		if v.Segments[drop].Tracks[lead].Complete {
			complete--
		}
		drop++
	}
	for _, s := range v.Segments[:drop] {
		if s.Discontinuity {
			v.DroppedDiscontinuities++
		}
	}
	if drop > 0 {
		v.Segments = append([]*Segment(nil), v.Segments[drop:]...)
	}
}
