package stream_test

import (
	"context"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/sim"
	"github.com/glasscast/glasscast/internal/stream"
)

// stamp changes the timestamp of frame i of a clip (its kind, its DTS).
type stamp func(i int, video bool, dts time.Duration) time.Duration

// runStamped writes one pass of the clip, stamped, and returns what comes
// out of the hub, the clip frame each unit is, and the hub's stats.
func runStamped(t testing.TB, c *sim.Clip, st stamp) ([]*stream.Unit, []int, stream.Stats) {
	t.Helper()
	h := stream.New(stream.Config{})
	defer h.Close()
	r := h.NewReader("r", 16384)
	defer r.Close()
	pub, err := h.Publish(tracks(t, c))
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range c.Frames {
		dts := st(i, f.Video, f.DTS)
		if f.Video {
			err = pub.WriteVideo(dts+f.PTS-f.DTS, dts, f.NALUs)
		} else {
			err = pub.WriteAudio(dts, f.AU)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	stats := h.Stats()
	pub.Close(nil)
	// The units share their payloads with the clip's frames.
	frameOf := map[*byte]int{}
	for i, f := range c.Frames {
		if f.Video {
			frameOf[&f.NALUs[len(f.NALUs)-1][0]] = i
		} else {
			frameOf[&f.AU[0]] = i
		}
	}
	var out []*stream.Unit
	var frames []int
	for r.Len() > 0 {
		u, _ := r.Read(context.Background())
		if u.Kind == stream.KindEnd {
			continue
		}
		out = append(out, u)
		if u.Kind == stream.KindVideo {
			frames = append(frames, frameOf[&u.NALUs[len(u.NALUs)-1][0]])
		} else {
			frames = append(frames, frameOf[&u.Payload[0]])
		}
	}
	return out, frames, stats
}

// checkTimeline says whether a stamped run's timeline is the plain run's,
// shifted by one amount give or take slack: nothing lost, no hole, video and
// audio still in sync, each kind's DTS rising. The frames in odd were
// stamped wrong on their own and are not held to it.
func checkTimeline(t testing.TB, ref, got []*stream.Unit, frames []int, slack time.Duration, odd map[int]bool) {
	t.Helper()
	if len(got) != len(ref) {
		t.Fatalf("%d units came out, %d without the jumps", len(got), len(ref))
	}
	var last [4]time.Duration
	var seen [4]bool
	var lo, hi time.Duration
	first := true
	for i, u := range got {
		if seen[u.Kind] && u.DTS <= last[u.Kind] {
			t.Fatalf("unit %d: %s DTS went from %v to %v", i, u.Kind, last[u.Kind], u.DTS)
		}
		if u.PTS < u.DTS || u.PTS-u.DTS > 5*time.Second {
			t.Fatalf("unit %d: PTS %v for DTS %v", i, u.PTS, u.DTS)
		}
		seen[u.Kind], last[u.Kind] = true, u.DTS
		if odd[frames[i]] {
			continue // stamped wrong on its own: it may land off
		}
		d := u.DTS - ref[i].DTS
		if first {
			lo, hi, first = d, d, false
		}
		lo, hi = min(lo, d), max(hi, d)
	}
	if hi-lo > slack {
		t.Fatalf("the timeline is off the plain one by %v to %v: more than %v apart", lo, hi, slack)
	}
}

// TestTimestampJumps: one frame stamped an hour ahead, a jump that stays,
// a 32-bit wrap of RTMP's millisecond clock and an encoder restarting 3 s
// back are each re-anchored: the stream time goes on as if nothing had
// happened, and video and audio stay in sync.
func TestTimestampJumps(t *testing.T) {
	c := clip(t)
	ref, _, _ := runStamped(t, c, func(_ int, _ bool, d time.Duration) time.Duration { return d })
	mid := len(c.Frames) / 2
	const wrap = time.Duration(1<<32) * time.Millisecond
	for _, tc := range []struct {
		name  string
		st    stamp
		jumps uint64
		odd   map[int]bool
	}{
		{"one frame an hour ahead", func(i int, v bool, d time.Duration) time.Duration {
			if i == mid {
				return d + time.Hour
			}
			return d
		}, 2, map[int]bool{mid: true}},
		{"an hour ahead from the middle on", func(i int, _ bool, d time.Duration) time.Duration {
			if i >= mid {
				return d + time.Hour
			}
			return d
		}, 2, nil},
		{"RTMP's 32-bit clock wraps", func(_ int, _ bool, d time.Duration) time.Duration {
			return (wrap - 2*time.Second + d) % wrap
		}, 2, nil},
		{"the encoder restarts 3 s back", func(i int, _ bool, d time.Duration) time.Duration {
			if i >= mid {
				return d - 3*time.Second
			}
			return d
		}, 2, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, frames, stats := runStamped(t, c, tc.st)
			checkTimeline(t, ref, got, frames, 100*time.Millisecond, tc.odd)
			if stats.TimestampJumps != tc.jumps {
				t.Fatalf("%d jumps counted, want %d", stats.TimestampJumps, tc.jumps)
			}
		})
	}
}

// FuzzTimestampJumps stamps random frames of the clip with jumps, once or
// from there on, forward and back, wraps included, several on one frame.
func FuzzTimestampJumps(f *testing.F) {
	f.Add([]byte{10, 0, 40, 5, 90, 3})
	f.Add([]byte{1, 1, 2, 2, 3, 3, 200, 4})
	f.Fuzz(func(t *testing.T, data []byte) {
		c := clip(t)
		ref, _, _ := runStamped(t, c, func(_ int, _ bool, d time.Duration) time.Duration { return d })
		sizes := []time.Duration{time.Hour, -3 * time.Second, 5 * time.Second, -time.Hour,
			-time.Duration(1<<32) * time.Millisecond, time.Duration(1<<31) * time.Millisecond}
		type ev struct {
			at    int
			size  time.Duration
			stays bool
		}
		var evs []ev
		for i := 0; i+1 < len(data) && len(evs) < 8; i += 2 {
			// Past the first frames, which anchor the session's timeline.
			evs = append(evs, ev{at: 8 + int(data[i])*(len(c.Frames)-8)/256, size: sizes[int(data[i+1]>>1)%len(sizes)], stays: data[i+1]&1 == 1})
		}
		odd := map[int]bool{}
		for _, e := range evs {
			if !e.stays {
				odd[e.at] = true
			}
		}
		got, frames, _ := runStamped(t, c, func(i int, _ bool, d time.Duration) time.Duration {
			for _, e := range evs {
				if e.stays && i >= e.at || i == e.at {
					d += e.size
				}
			}
			return d
		})
		checkTimeline(t, ref, got, frames, time.Duration(len(evs)+1)*100*time.Millisecond, odd)
	})
}
