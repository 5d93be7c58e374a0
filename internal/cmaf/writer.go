package cmaf

import (
	"bytes"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"
	mcodecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"

	"github.com/glasscast/glasscast/internal/stream"
)

const videoTimescale = 90000

// writer is the packager's state on the writing side; the packager's wmu
// guards it.
type writer struct {
	p       *Packager
	tracks  *stream.Tracks
	init    *Init
	tw      []*trackWriter // in the order of init.Tracks
	lead    int            // the track whose keyframes cut segments
	epoch   uint32
	discont bool // the next segment follows a discontinuity
	anchor  time.Time
	anchorT bool
	nextSeq uint64
	seqs    map[string]uint64 // each track's next sequence number
	mfhd    uint32
	// base is the position the packager resumed from (Resume), nil for a
	// stream that starts here.
	base *Position
}

type sample struct {
	dts    uint64
	ptsOff int32
	key    bool
	nalus  [][]byte // video
	data   []byte   // audio
}

type trackWriter struct {
	idx      int
	info     Track
	pending  *sample
	lastDur  uint64
	seg      *Segment // the segment this track writes into; nil when none
	part     []*fragSample
	partT0   uint64
	partDur  uint64
	partKey  bool
	partMax  uint64 // longest part, in ticks
	nextDTS  uint64 // audio: where the next frame is expected
	haveNext bool
	frameLen uint64 // audio: samples per frame
	// early is set when the last sample was packaged before the next one
	// came, with an estimated duration ending at end.
	early bool
	end   uint64
}

func (w *writer) write(u *stream.Unit) {
	if u.Kind == stream.KindEnd {
		w.flush() // the publisher left: finish what is held
		return
	}
	if u.Tracks == nil {
		return
	}
	if u.Tracks != w.tracks {
		if w.tracks == nil || !sameParams(w.tracks, u.Tracks) {
			w.reinit(u.Tracks)
		}
		w.tracks = u.Tracks
	}
	if u.Epoch != w.epoch {
		if w.epoch != 0 {
			w.flush()
			w.discont = true
		}
		w.epoch = u.Epoch
		w.anchorT = false
	}
	idx := w.trackFor(u.Kind)
	if idx < 0 {
		return
	}
	t := w.tw[idx]
	s := t.sample(u)
	if s == nil {
		return
	}
	if !w.anchorT {
		w.anchorT = true
		w.anchor = u.Arrival.Add(-u.DTS)
		if src := w.p.anchorSrc(); src != nil {
			// A rendition on its source's timeline keeps its clock too.
			src.View(func(v *View) {
				if !v.AvailabilityStart.IsZero() {
					w.anchor = v.AvailabilityStart
				}
			})
		}
		w.p.apply(&Op{Kind: OpAnchor, Wall: w.anchor})
	}

	if idx == w.lead {
		switch {
		case t.seg == nil:
			if !s.key {
				return
			}
			t.enter(w, w.openSegment(u.DTS), s.dts)
		case s.key && u.DTS-t.seg.Start >= w.segmentMin():
			t.finishPending(w, s.dts)
			t.closePart(w)
			t.closeSegment(w)
			t.enter(w, w.openSegment(u.DTS), s.dts)
		default:
			t.finishPending(w, s.dts)
			if s.key {
				t.closePart(w) // parts start at keyframes where they can
			}
		}
		t.pending = s
		t.closeEarly(w)
		return
	}

	// A follower (audio beside video) writes into the lead's segments: it
	// joins the newest open one, then moves on to each segment the lead
	// started at or before its samples.
	var target *Segment
	w.p.View(func(v *View) {
		for i := len(v.Segments) - 1; i >= 0; i-- {
			seg := v.Segments[i]
			if seg.Init != w.init || seg.Tracks[t.idx].Complete {
				break
			}
			if t.seg == nil || seg.Start <= u.DTS {
				target = seg
				break
			}
		}
	})
	if target == nil {
		target = t.seg // a sample a little older than the segments after it
	}
	if target == nil {
		return // nothing to join yet: the lead has not started a segment
	}
	if t.seg == nil {
		t.enter(w, target, s.dts)
	} else if target.Seq > t.seg.Seq {
		t.finishPending(w, s.dts)
		t.closePart(w)
		t.closeSegment(w)
		w.skip(t.idx, target.Seq) // segments the track had nothing for
		t.enter(w, target, s.dts)
	} else {
		t.finishPending(w, s.dts)
	}
	t.pending = s
	t.closeEarly(w)
}

func (w *writer) segmentMin() time.Duration {
	if w.tw[w.lead].info.Kind == stream.KindAudio {
		return w.p.cfg.AudioSegment
	}
	return w.p.cfg.SegmentMin
}

func (w *writer) trackFor(k stream.Kind) int {
	for i, t := range w.tw {
		if t.info.Kind == k {
			return i
		}
	}
	return -1
}

// flush completes every track's segment: the sample waiting for its
// duration gets the previous one's. A track that had not reached the newest
// segments skips them.
func (w *writer) flush() {
	for _, t := range w.tw {
		if t.seg == nil {
			continue
		}
		if t.pending != nil {
			t.finishPending(w, t.pending.dts+max(t.lastDur, 1))
		}
		t.closePart(w)
		t.closeSegment(w)
	}
	for i := range w.tw {
		w.skip(i, ^uint64(0))
	}
}

// skip completes track i's share of the segments before seq to that the
// track never entered: it has nothing in them.
func (w *writer) skip(i int, to uint64) {
	w.p.apply(&Op{Kind: OpSkip, Track: i, Seg: to})
}

// reinit starts a new initialization version for a new set of tracks.
func (w *writer) reinit(tr *stream.Tracks) {
	w.flush()
	version := 1
	switch {
	case w.init != nil:
		version = w.init.Version + 1
		w.discont = true
	case w.base != nil:
		version = w.base.Init + 1 // after the versions of the node it came from
	}
	in := &Init{Version: version}
	w.tw = nil
	if tr.Video != nil {
		in.Tracks = append(in.Tracks, Track{
			Kind: stream.KindVideo, Name: "video", Timescale: videoTimescale, Codec: tr.Video.Codec(),
			Width: tr.Video.Width, Height: tr.Video.Height, FrameRate: tr.Video.FrameRate,
		})
		in.Data = append(in.Data, marshalInit(videoTimescale, &mcodecs.H264{SPS: tr.Video.SPS, PPS: tr.Video.PPS}))
	}
	if tr.Audio != nil {
		sr := uint32(tr.Audio.SampleRate)
		in.Tracks = append(in.Tracks, Track{
			Kind: stream.KindAudio, Name: "audio", Timescale: sr, Codec: tr.Audio.Codec(),
			SampleRate: tr.Audio.SampleRate, Channels: tr.Audio.Channels,
		})
		in.Data = append(in.Data, marshalInit(sr, &mcodecs.MPEG4Audio{Config: tr.Audio.Config}))
	}
	for i, tk := range in.Tracks {
		t := &trackWriter{idx: i, info: tk, frameLen: 1024}
		if tk.Kind == stream.KindAudio && tr.Audio.Config.FrameLengthFlag {
			t.frameLen = 960
		}
		w.tw = append(w.tw, t)
	}
	w.lead = 0 // video when there is video, else audio
	w.init = in
	w.p.apply(&Op{Kind: OpInit, Init: in})
}

func marshalInit(scale uint32, codec mcodecs.Codec) []byte {
	var buf seekablebuffer.Buffer
	in := fmp4.Init{Tracks: []*fmp4.InitTrack{{ID: 1, TimeScale: scale, Codec: codec}}}
	if err := in.Marshal(&buf); err != nil {
		panic("cmaf: init segment: " + err.Error()) // only for codecs we never build
	}
	return buf.Bytes()
}

func sameParams(a, b *stream.Tracks) bool {
	if !a.SameShape(b) {
		return false
	}
	if a.Video != nil && (!bytes.Equal(a.Video.SPS, b.Video.SPS) || !bytes.Equal(a.Video.PPS, b.Video.PPS)) {
		return false
	}
	if a.Audio != nil && a.Audio.Config != b.Audio.Config {
		return false
	}
	return true
}

// openSegment starts segment Seq at stream time start.
func (w *writer) openSegment(start time.Duration) *Segment {
	seq := w.nextSeq
	w.p.apply(&Op{Kind: OpSegment, Seg: seq, Discontinuity: w.discont, Start: start, Wall: w.anchor.Add(start)})
	w.nextSeq++
	w.discont = false
	var seg *Segment
	w.p.View(func(v *View) { seg = v.Segment(seq) })
	return seg
}

// sample turns a unit into the track's sample, in the track's timescale.
func (t *trackWriter) sample(u *stream.Unit) *sample {
	scale := t.info.Timescale
	dts := Ticks(u.DTS, scale)
	if t.info.Kind == stream.KindAudio {
		// AAC frames are a fixed number of samples; RTMP's millisecond
		// timestamps are not. Keep the frames back to back unless the
		// source really jumped.
		if t.haveNext && absDiff(dts, t.nextDTS) <= t.frameLen {
			dts = t.nextDTS
		}
		if t.pending != nil && dts <= t.pending.dts {
			dts = t.pending.dts + 1
		}
		dts = max(dts, t.end) // never back into what is already out
		t.nextDTS, t.haveNext = dts+t.frameLen, true
		return &sample{dts: dts, key: true, data: u.Payload}
	}
	if t.early && absDiff(dts, t.end) <= t.lastDur/2 {
		// Keep the timeline seamless after a part closed on an estimate:
		// this frame moves by the estimate's error, a millisecond or so.
		shift := int64(t.end) - int64(dts)
		dts = t.end
		u2 := *u
		u2.PTS += time.Duration(shift) * time.Second / time.Duration(scale)
		u = &u2
	}
	t.early = false
	if t.pending != nil && dts <= t.pending.dts {
		dts = t.pending.dts + 1
	}
	if dts < t.end {
		shift := t.end - dts
		dts = t.end
		u2 := *u
		u2.PTS += Duration(shift, scale)
		u = &u2
	}
	pts := Ticks(u.PTS, scale)
	off := int32(0)
	if pts > dts {
		off = int32(min(pts-dts, 1<<30))
	}
	return &sample{dts: dts, ptsOff: off, key: u.Key, nalus: u.NALUs}
}

func absDiff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}

// enter starts this track's share of seg at dts.
func (t *trackWriter) enter(w *writer, seg *Segment, dts uint64) {
	t.seg = seg
	if w.seqs == nil {
		w.seqs = map[string]uint64{}
	}
	seq := w.seqs[t.info.Name]
	w.seqs[t.info.Name]++
	w.p.apply(&Op{Kind: OpEnter, Seg: seg.Seq, Track: t.idx, Ticks: dts, TrackSeq: seq})
}

// finishPending gives the waiting sample its duration (up to next) and adds
// it to the part, closing the part once it is long enough.
func (t *trackWriter) finishPending(w *writer, next uint64) {
	s := t.pending
	if s == nil {
		return
	}
	t.pending = nil
	dur := t.lastDur
	if next > s.dts {
		dur = next - s.dts
	}
	dur = max(dur, 1)
	t.lastDur = dur
	t.end = s.dts + dur
	// Parts aim at the target: one closes when the next sample would carry
	// it more than 15 % past, or once it is within half a sample of it.
	target := Ticks(w.p.cfg.PartTarget, t.info.Timescale)
	if len(t.part) > 0 && t.partDur+dur > target+target*15/100 {
		t.closePart(w)
	}
	if len(t.part) == 0 {
		t.partT0, t.partKey = s.dts, s.key
	}
	t.part = append(t.part, &fragSample{dur: uint32(min(dur, 1<<31)), cts: s.ptsOff, sync: s.key, nalus: s.nalus, data: s.data})
	t.partDur += dur
	if t.partDur+dur/2 >= target {
		t.closePart(w)
	}
}

// closeEarly packages the waiting sample at once, with the previous
// sample's duration, when it completes the part: the part is out a frame
// sooner than if it waited for the next sample to learn the duration.
func (t *trackWriter) closeEarly(w *writer) {
	s := t.pending
	if s == nil || t.lastDur == 0 || len(t.part) == 0 {
		return
	}
	target := Ticks(w.p.cfg.PartTarget, t.info.Timescale)
	if t.partDur+t.lastDur+t.lastDur/2 < target || t.partDur+t.lastDur > target+target*15/100 {
		return
	}
	est := t.lastDur
	if t.info.Kind == stream.KindAudio {
		est = t.frameLen
	}
	end := s.dts + est
	t.finishPending(w, end)
	t.closePart(w)
	if t.info.Kind == stream.KindVideo {
		t.early, t.end = true, end
	}
}

// closePart packages the samples gathered so far as a part.
func (t *trackWriter) closePart(w *writer) {
	if len(t.part) == 0 || t.seg == nil {
		return
	}
	w.mfhd++
	data := fragment(w.mfhd, t.partT0, t.part)
	t.partMax = max(t.partMax, t.partDur)
	w.p.apply(&Op{Kind: OpPart, Seg: t.seg.Seq, Track: t.idx, PartTarget: Duration(t.partMax, t.info.Timescale),
		Part: &Part{Start: t.partT0, Duration: t.partDur, Independent: t.partKey, Data: data}})
	t.part, t.partDur = nil, 0
}

// closeSegment finishes this track's share of its segment.
func (t *trackWriter) closeSegment(w *writer) {
	seg := t.seg
	if seg == nil {
		return
	}
	t.seg = nil
	w.p.apply(&Op{Kind: OpComplete, Seg: seg.Seq, Track: t.idx, Lead: t.idx == w.lead})
}
