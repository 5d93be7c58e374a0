package cmaf_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"

	"github.com/glasscast/glasscast/internal/cmaf"
	"github.com/glasscast/glasscast/internal/cmaf/cmaftest"
	"github.com/glasscast/glasscast/internal/sim"
	"github.com/glasscast/glasscast/internal/stream"
)

func loadClip(t testing.TB) *sim.Clip {
	t.Helper()
	c, err := sim.LoadClip(sim.DefaultClip)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// feed publishes loops of the clip into a hub session and packages every
// unit the hub gives out.
func feed(t testing.TB, h *stream.Hub, r *stream.Reader, p *cmaf.Packager, c *sim.Clip, pub *stream.Publisher, loops int, end bool) {
	t.Helper()
	for l := range loops {
		cmaftest.Write(t, pub, r, p, c, time.Duration(l)*c.Duration)
	}
	if end {
		pub.Close(nil)
		drain(t, r, p)
	}
}

func drain(t testing.TB, r *stream.Reader, p *cmaf.Packager) { cmaftest.Drain(t, r, p) }

func tracksOf(t testing.TB, c *sim.Clip) *stream.Tracks {
	t.Helper()
	tr, err := c.Tracks()
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestSegmentsAndParts(t *testing.T) {
	c := loadClip(t)
	h := stream.New(stream.Config{})
	r := h.NewReader("cmaf", 4096)
	p := cmaf.New(cmaf.Config{Window: 6})
	pub, err := h.Publish(tracksOf(t, c))
	if err != nil {
		t.Fatal(err)
	}
	feed(t, h, r, p, c, pub, 3, true)

	p.View(func(v *cmaf.View) {
		if got := len(v.Segments); got != 6 {
			t.Fatalf("%d segments in the window, want 6", got)
		}
		if v.PartTarget["video"] != 200*time.Millisecond {
			t.Errorf("video part target %v, want 200ms", v.PartTarget["video"])
		}
		if pt := v.PartTarget["audio"]; pt < 200*time.Millisecond || pt > 240*time.Millisecond {
			t.Errorf("audio part target %v", pt)
		}
		for si, seg := range v.Segments {
			if !seg.Complete() {
				t.Fatalf("segment %d incomplete after the publisher left", seg.Seq)
			}
			if si > 0 && seg.Seq != v.Segments[si-1].Seq+1 {
				t.Fatalf("sequence jumps from %d to %d", v.Segments[si-1].Seq, seg.Seq)
			}
			for ti, ts := range seg.Tracks {
				tr := seg.Init.Tracks[ti]
				d := cmaf.Duration(ts.Duration, tr.Timescale)
				if d < 1900*time.Millisecond || d > 2100*time.Millisecond {
					t.Errorf("segment %d %s lasts %v", seg.Seq, tr.Name, d)
				}
				next := ts.Start
				for pi, pt := range ts.Parts {
					if pt.Start != next {
						t.Fatalf("segment %d %s part %d starts at %d, want %d", seg.Seq, tr.Name, pi, pt.Start, next)
					}
					next = pt.Start + pt.Duration
					if tr.Name == "video" && pt.Independent != (pi == 0) {
						t.Errorf("segment %d part %d independent=%v", seg.Seq, pi, pt.Independent)
					}
					var parts fmp4.Parts
					if err := parts.Unmarshal(pt.Data); err != nil || len(parts) != 1 || parts[0].Tracks[0].BaseTime != pt.Start {
						t.Fatalf("part %d of segment %d does not parse back: %v", pi, seg.Seq, err)
					}
				}
				if next != ts.Start+ts.Duration {
					t.Fatalf("segment %d %s parts end at %d, segment at %d", seg.Seq, tr.Name, next, ts.Start+ts.Duration)
				}
				if si > 0 {
					prev := v.Segments[si-1].Tracks[ti]
					if tr.Name == "video" && prev.Start+prev.Duration != ts.Start {
						t.Fatalf("video segment %d does not start where %d ended", seg.Seq, seg.Seq-1)
					}
				}
			}
			// Every video segment starts with a keyframe and holds 2 s at 30 fps.
			var parts fmp4.Parts
			var all []byte
			for _, pt := range seg.Tracks[0].Parts {
				all = append(all, pt.Data...)
			}
			if err := parts.Unmarshal(all); err != nil {
				t.Fatal(err)
			}
			n := 0
			for pi, part := range parts {
				for i, s := range part.Tracks[0].Samples {
					if (pi == 0 && i == 0) == s.IsNonSyncSample {
						t.Fatalf("segment %d sample %d of part %d: sync=%v", seg.Seq, i, pi, !s.IsNonSyncSample)
					}
					n++
				}
			}
			if n != 60 {
				t.Errorf("segment %d has %d video frames, want 60", seg.Seq, n)
			}
		}
	})
}

func TestReconnectIsDiscontinuity(t *testing.T) {
	c := loadClip(t)
	h := stream.New(stream.Config{})
	r := h.NewReader("cmaf", 4096)
	p := cmaf.New(cmaf.Config{})
	tr := tracksOf(t, c)
	pub, _ := h.Publish(tr)
	feed(t, h, r, p, c, pub, 1, true)
	var before uint64
	var lastEnd time.Duration
	p.View(func(v *cmaf.View) {
		last := v.Last()
		before = last.Seq
		lastEnd = last.Start + cmaf.Duration(last.Tracks[0].Duration, 90000)
	})
	pub2, _ := h.Publish(tr)
	feed(t, h, r, p, c, pub2, 1, false)
	p.View(func(v *cmaf.View) {
		next := v.Segment(before + 1)
		if next == nil || !next.Discontinuity {
			t.Fatalf("the first segment after the reconnect is %+v, want a discontinuity", next)
		}
		if next.Start < lastEnd {
			t.Fatalf("stream time went back: %v after %v", next.Start, lastEnd)
		}
		if next.Init.Version != 1 {
			t.Fatalf("same tracks, new init version %d", next.Init.Version)
		}
	})
}

func TestResolutionChangeMakesNewInit(t *testing.T) {
	c := loadClip(t)
	h := stream.New(stream.Config{})
	r := h.NewReader("cmaf", 4096)
	p := cmaf.New(cmaf.Config{})
	pub, _ := h.Publish(tracksOf(t, c))
	feed(t, h, r, p, c, pub, 1, false)

	// A 640x360 SPS (same profile) arrives in band with the next IDR.
	sps := []byte{0x67, 0x4d, 0x40, 0x1e, 0xec, 0xa0, 0x50, 0x17, 0xfc, 0xb8, 0x08, 0x80, 0x00, 0x00, 0x03, 0x00, 0x80, 0x00, 0x00, 0x1e, 0x07, 0x8b, 0x16, 0xcb}
	if _, err := stream.NewVideo(sps, c.PPS); err != nil {
		t.Fatalf("test SPS: %v", err)
	}
	idr := c.Frames[0].NALUs
	au := append([][]byte{sps, c.PPS}, idr...)
	if err := pub.WriteVideo(c.Duration, c.Duration, au); err != nil {
		t.Fatal(err)
	}
	if err := pub.WriteVideo(c.Duration+33*time.Millisecond, c.Duration+33*time.Millisecond, c.Frames[2].NALUs); err != nil {
		t.Fatal(err)
	}
	pub.Close(nil)
	drain(t, r, p)
	p.View(func(v *cmaf.View) {
		last := v.Last()
		if last.Init.Version != 2 || !last.Discontinuity {
			t.Fatalf("last segment: init v%d discontinuity=%v", last.Init.Version, last.Discontinuity)
		}
		if w := last.Init.Tracks[0].Width; w != 640 {
			t.Fatalf("new init width %d", w)
		}
		if last.Init.Start != last.Start {
			t.Fatalf("init start %v, segment start %v", last.Init.Start, last.Start)
		}
		if !bytes.Contains(last.Init.Data[0], sps) {
			t.Fatal("the new init segment does not carry the new SPS")
		}
	})
}

// FuzzPackager drives a hub and packager with arbitrary units: nothing may
// panic, and whatever is packaged must parse back with timestamps that move
// forward.
func FuzzPackager(f *testing.F) {
	f.Add([]byte{0x01, 0x02, 0x03, 0x10, 0x20, 0x11, 0x30, 0x41, 0xff})
	f.Add([]byte{0x81, 0x01, 0x01, 0x01, 0x81, 0xf0, 0x02})
	c, err := sim.LoadClip(sim.DefaultClip)
	if err != nil {
		f.Fatal(err)
	}
	key, delta := c.Frames[0], c.Frames[0]
	for _, fr := range c.Frames[1:] {
		if fr.Video {
			delta = fr
			break
		}
	}
	f.Fuzz(func(t *testing.T, ops []byte) {
		h := stream.New(stream.Config{})
		r := h.NewReader("cmaf", 4096)
		p := cmaf.New(cmaf.Config{PartTarget: 100 * time.Millisecond, SegmentMin: 300 * time.Millisecond, Window: 4})
		tr := tracksOf(t, c)
		pub, _ := h.Publish(tr)
		var clock time.Duration
		for _, op := range ops {
			clock += time.Duration(op&0x3f) * time.Millisecond
			switch op >> 6 {
			case 0: // a video frame; keyframe when the low bits say so
				f := key
				if op&1 == 0 {
					f = delta
				}
				pub.WriteVideo(clock+time.Duration(op&3)*time.Millisecond, clock, f.NALUs)
			case 1:
				pub.WriteAudio(clock, []byte{0x21, op})
			case 2: // time goes backwards
				clock -= time.Duration(op&0x3f) * 2 * time.Millisecond
				clock = max(clock, 0)
			case 3: // the publisher reconnects
				pub.Close(nil)
				pub, _ = h.Publish(tr)
			}
			drain(t, r, p)
		}
		pub.Close(nil)
		drain(t, r, p)
		p.View(func(v *cmaf.View) {
			for _, seg := range v.Segments {
				for _, ts := range seg.Tracks {
					next := ts.Start
					for _, pt := range ts.Parts {
						if pt.Start < next || pt.Duration == 0 {
							t.Fatalf("part at %d (duration %d) after %d", pt.Start, pt.Duration, next)
						}
						next = pt.Start + pt.Duration
						var parts fmp4.Parts
						if err := parts.Unmarshal(pt.Data); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
		})
	})
}

// A rendition that follows its source shares its wall clock: the same
// stream time has the same program date time, though its media came later.
func TestFollowSharesTheClock(t *testing.T) {
	c := loadClip(t)
	run := func(follow *cmaf.Packager) *cmaf.Packager {
		h := stream.New(stream.Config{KeepTimestamps: true})
		r := h.NewReader("cmaf", 4096)
		p := cmaf.New(cmaf.Config{})
		if follow != nil {
			p.Follow(follow)
		}
		pub, err := h.Publish(tracksOf(t, c))
		if err != nil {
			t.Fatal(err)
		}
		feed(t, h, r, p, c, pub, 1, false)
		return p
	}
	src := run(nil)
	rend := run(src)
	var a, b time.Time
	src.View(func(v *cmaf.View) { a = v.Segments[1].Wall.Add(-v.Segments[1].Start) })
	rend.View(func(v *cmaf.View) { b = v.Segments[1].Wall.Add(-v.Segments[1].Start) })
	if !a.Equal(b) {
		t.Fatalf("the rendition's clock is %v off its source's", b.Sub(a))
	}
}

// TestResumeNumbersOn: a packager that takes a stream over from another
// (a node that died) from where that one's position stood numbers every
// segment, track segment, part and initialization version after the
// other's, starts with a discontinuity, goes on in stream time and keeps
// the stream's wall-clock anchor.
func TestResumeNumbersOn(t *testing.T) {
	c := loadClip(t)
	tr := tracksOf(t, c)
	h := stream.New(stream.Config{})
	r := h.NewReader("cmaf", 4096)
	first := cmaf.New(cmaf.Config{})
	pub, _ := h.Publish(tr)
	feed(t, h, r, first, c, pub, 2, false) // cut off: no end
	pos := first.Position()
	var was struct {
		seq, videoSeq, part uint64
		init, disc          int
		anchor              time.Time
	}
	first.View(func(v *cmaf.View) {
		last := v.Last()
		was.seq, was.init, was.anchor = last.Seq, v.Init.Version, v.AvailabilityStart
		was.videoSeq = last.Tracks[0].Seq
		was.part = v.NextPart["video"] - 1
		was.disc = v.DroppedDiscontinuities
	})
	if pos.Seq != was.seq+1 || pos.TrackSeq["video"] != was.videoSeq+1 || pos.Part["video"] != was.part+1 || pos.End < c.Duration {
		t.Fatalf("position %+v of a packager whose last segment is %d (video %d), last video part %d", pos, was.seq, was.videoSeq, was.part)
	}

	heard := time.Now()
	h2 := stream.New(stream.Config{})
	h2.Resume(pos.End, heard)
	r2 := h2.NewReader("cmaf", 4096)
	next := cmaf.New(cmaf.Config{})
	next.Resume(pos.Ahead(0))
	pub2, _ := h2.Publish(tr)
	feed(t, h2, r2, next, c, pub2, 1, true)
	next.View(func(v *cmaf.View) {
		seg := v.Segments[0]
		switch {
		case seg.Seq <= was.seq:
			t.Fatalf("the first segment after the takeover is %d, the last before %d", seg.Seq, was.seq)
		case !seg.Discontinuity:
			t.Fatal("the first segment after the takeover follows no discontinuity")
		case seg.Init.Version <= was.init:
			t.Fatalf("init version %d after %d", seg.Init.Version, was.init)
		case seg.Tracks[0].Seq <= was.videoSeq:
			t.Fatalf("the video track's segment %d after %d", seg.Tracks[0].Seq, was.videoSeq)
		case seg.Tracks[0].Parts[0].ID <= was.part:
			t.Fatalf("video part %d after %d", seg.Tracks[0].Parts[0].ID, was.part)
		case seg.Start < pos.End:
			t.Fatalf("stream time went back: %v after %v", seg.Start, pos.End)
		case seg.Init.Start != seg.Start:
			t.Fatalf("the new version starts at %v, its first segment at %v", seg.Init.Start, seg.Start)
		case !v.AvailabilityStart.Equal(was.anchor):
			t.Fatalf("the anchor moved from %v to %v", was.anchor, v.AvailabilityStart)
		case v.DroppedDiscontinuities < was.disc:
			t.Fatalf("discontinuity sequence %d after %d", v.DroppedDiscontinuities, was.disc)
		}
	})
	// Its position is past both.
	if got := next.Position(); got.Seq <= pos.Seq || got.Part["video"] <= pos.Part["video"] || got.Init <= pos.Init {
		t.Fatalf("position %+v after resuming from %+v", got, pos)
	}
	// Ahead leaves room for what the other node may have written since.
	later := pos.Ahead(3 * time.Second)
	if later.Seq < pos.Seq+8 || later.Part["audio"] < pos.Part["audio"]+150 || later.End < pos.End+3*time.Second {
		t.Fatalf("3 s ahead of %+v: %+v", pos, later)
	}
}

// TestSeedKeepsTheWindow: a packager seeded with a mirror of one cut off
// mid-segment (a node that died) lists that window, the segment that was in
// progress finished with the parts it had, and what it writes next follows
// behind a discontinuity, its parts numbered past every copy's position
// (here: parts more than the mirror's, as another relay may have had); the
// discontinuity sequence is the mirror's. A window that another copy had
// a segment more than is let go: segment numbers run on in a playlist.
func TestSeedKeepsTheWindow(t *testing.T) {
	c := loadClip(t)
	tr := tracksOf(t, c)
	h := stream.New(stream.Config{})
	r := h.NewReader("cmaf", 4096)
	first := cmaf.New(cmaf.Config{})
	pub, _ := h.Publish(tr)
	feed(t, h, r, first, c, pub, 2, false) // cut off: no end
	mirror, err := cmaf.NewMirror(first.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	var was struct {
		seqs      []uint64
		lastParts int
		complete  bool
		dropped   int
	}
	mirror.View(func(v *cmaf.View) {
		for _, seg := range v.Segments {
			was.seqs = append(was.seqs, seg.Seq)
		}
		last := v.Last()
		was.lastParts, was.complete, was.dropped = len(last.Tracks[0].Parts), last.Complete(), v.DroppedDiscontinuities
	})
	if was.complete || was.lastParts == 0 {
		t.Fatalf("the clip did not leave a segment in progress: complete %v, %d parts", was.complete, was.lastParts)
	}
	pos := mirror.Position()
	// Another relay was some parts further.
	further := pos
	further.Part = map[string]uint64{"video": pos.Part["video"] + 3, "audio": pos.Part["audio"] + 3}

	h2 := stream.New(stream.Config{})
	h2.Resume(pos.End, time.Now())
	r2 := h2.NewReader("cmaf", 4096)
	next := cmaf.New(cmaf.Config{})
	if err := next.Seed(mirror.Snapshot()); err != nil {
		t.Fatal(err)
	}
	// Seeded: playable at once, the window listed (finishing the cut
	// segment may move its oldest out, as any segment's end does), the
	// cut segment finished.
	next.View(func(v *cmaf.View) {
		last := was.seqs[len(was.seqs)-1]
		if !v.Playable() || len(v.Segments) < len(was.seqs)-1 || v.Last().Seq != last || !v.Last().Complete() || len(v.Last().Tracks[0].Parts) != was.lastParts {
			t.Fatalf("seeded view: playable %v, %d segments (of %d), the last %d complete %v with %d parts (want %d, %d)",
				v.Playable(), len(v.Segments), len(was.seqs), v.Last().Seq, v.Last().Complete(), len(v.Last().Tracks[0].Parts), last, was.lastParts)
		}
	})
	next.Resume(cmaf.Later(pos, further))
	pub2, _ := h2.Publish(tr)
	feed(t, h2, r2, next, c, pub2, 1, true)
	next.View(func(v *cmaf.View) {
		var seqs []uint64
		var firstNew *cmaf.Segment
		for _, seg := range v.Segments {
			seqs = append(seqs, seg.Seq)
			if firstNew == nil && seg.Seq > was.seqs[len(was.seqs)-1] {
				firstNew = seg
			}
		}
		switch {
		case firstNew == nil:
			t.Fatalf("no segment after the seeded window: %v", seqs)
		case firstNew.Seq != further.Seq || !firstNew.Discontinuity:
			t.Fatalf("the first new segment is %d (discontinuity %v), want %d after one", firstNew.Seq, firstNew.Discontinuity, further.Seq)
		case firstNew.Tracks[0].Parts[0].ID < further.Part["video"]:
			t.Fatalf("video part %d, want from %d", firstNew.Tracks[0].Parts[0].ID, further.Part["video"])
		case firstNew.Start < pos.End:
			t.Fatalf("stream time went back: %v after %v", firstNew.Start, pos.End)
		case v.DroppedDiscontinuities < was.dropped:
			t.Fatalf("discontinuity sequence %d after %d", v.DroppedDiscontinuities, was.dropped)
		}
	})
	// The media playlist lists the old window, then the discontinuity.
	var pl strings.Builder
	next.View(func(v *cmaf.View) {
		for _, seg := range v.Segments {
			if seg.Discontinuity && seg.Seq >= further.Seq {
				pl.WriteString("|")
			}
			fmt.Fprintf(&pl, "%d ", seg.Seq)
		}
	})
	if !strings.Contains(pl.String(), "|") {
		t.Fatalf("segments %s", pl.String())
	}

	// Another copy was a segment further: the window goes.
	ahead := pos
	ahead.Seq++
	other := cmaf.New(cmaf.Config{})
	if err := other.Seed(mirror.Snapshot()); err != nil {
		t.Fatal(err)
	}
	other.Resume(ahead)
	other.View(func(v *cmaf.View) {
		if len(v.Segments) != 0 {
			t.Fatalf("a window a segment short of the position stayed: %d segments", len(v.Segments))
		}
	})
}

// TestPositionJSON: a position travels as a short array and comes back
// the same (to the millisecond); a short or negative one is refused.
func TestPositionJSON(t *testing.T) {
	pos := cmaf.Position{Seq: 812, Init: 3, Discontinuities: 5, End: 1623456 * time.Millisecond,
		Anchor: time.UnixMilli(1796650000123), TrackSeq: map[string]uint64{"video": 800, "audio": 811},
		Part: map[string]uint64{"video": 8120, "audio": 8130}}
	b, err := json.Marshal(pos)
	if err != nil || len(b) > 80 {
		t.Fatalf("%s %v", b, err)
	}
	var back cmaf.Position
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, pos) {
		t.Fatalf("%s came back as %+v (%v)", b, back, err)
	}
	for _, bad := range []string{`[1,2,3]`, `[1,2,3,4,5,6,7,8,-9]`, `{}`} {
		if json.Unmarshal([]byte(bad), &back) == nil {
			t.Fatalf("%s accepted", bad)
		}
	}
}
