package stream_test

import (
	"context"
	"errors"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"go.uber.org/goleak"

	"github.com/glasscast/glasscast/internal/sim"
	"github.com/glasscast/glasscast/internal/stream"
)

func clip(t testing.TB) *sim.Clip {
	t.Helper()
	c, err := sim.LoadClip(sim.DefaultClip)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func tracks(t testing.TB, c *sim.Clip) *stream.Tracks {
	t.Helper()
	tr, err := c.Tracks()
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// write sends one pass of the clip, shifted by base, as fast as it goes.
func write(t testing.TB, pub *stream.Publisher, c *sim.Clip, base time.Duration) {
	t.Helper()
	if err := c.Write(pub, 0, len(c.Frames), base); err != nil {
		t.Fatal(err)
	}
}

func TestKeyframesCarryParameterSets(t *testing.T) {
	c := clip(t)
	h := stream.New(stream.Config{})
	r := h.NewReader("r", 4096)
	pub, err := h.Publish(tracks(t, c))
	if err != nil {
		t.Fatal(err)
	}
	// The clip's samples carry no SPS/PPS in band, as RTMP sends them.
	write(t, pub, c, 0)
	keys := 0
	for r.Len() > 0 {
		u, _ := r.Read(context.Background())
		if u.Kind != stream.KindVideo {
			continue
		}
		if u.Key {
			keys++
			if len(u.NALUs) < 3 || string(u.NALUs[0]) != string(c.SPS) || string(u.NALUs[1]) != string(c.PPS) {
				t.Fatalf("keyframe at %v does not start with SPS and PPS", u.DTS)
			}
		} else if u.NALUs[0][0]&0x1f == 7 {
			t.Fatalf("a non-key frame carries an SPS")
		}
	}
	if keys != 4 {
		t.Fatalf("%d keyframes in 8 s at a 2 s GOP", keys)
	}
}

func TestNewReaderStartsAtCachedKeyframe(t *testing.T) {
	c := clip(t)
	h := stream.New(stream.Config{})
	pub, _ := h.Publish(tracks(t, c))
	write(t, pub, c, 0)
	// Joining after 8 s: the reader gets the last GOP (from 6 s) at once.
	r := h.NewReader("late", 1024)
	u, err := r.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if u.Kind != stream.KindVideo || !u.Key || u.DTS < 5900*time.Millisecond {
		t.Fatalf("first unit for a late reader: %s key=%v at %v", u.Kind, u.Key, u.DTS)
	}
	if n := r.Len(); n < 60 {
		t.Fatalf("only %d units of the cached GOP queued", n)
	}
}

func TestTimelineAcrossReconnects(t *testing.T) {
	c := clip(t)
	h := stream.New(stream.Config{})
	r := h.NewReader("r", 8192)
	tr := tracks(t, c)
	for session := range 3 {
		pub, err := h.Publish(tr)
		if err != nil {
			t.Fatal(err)
		}
		// Each session's publisher starts its own clock at a different place.
		write(t, pub, c, time.Duration(session)*17*time.Hour)
		pub.Close(nil)
	}
	var last [4]time.Duration
	var kindSeen [4]bool
	seen := map[uint32]bool{}
	first := true
	for r.Len() > 0 {
		u, _ := r.Read(context.Background())
		if u.Kind == stream.KindEnd {
			continue
		}
		if first && u.DTS != 0 {
			t.Fatalf("the stream starts at %v, want 0", u.DTS)
		}
		first = false
		if u.DTS < last[u.Kind] || (u.DTS == last[u.Kind] && kindSeen[u.Kind]) {
			t.Fatalf("%s DTS went from %v to %v in session %d", u.Kind, last[u.Kind], u.DTS, u.Epoch)
		}
		if u.DTS > 30*time.Second {
			t.Fatalf("stream time %v: a publisher's own clock leaked through", u.DTS)
		}
		last[u.Kind] = u.DTS
		kindSeen[u.Kind] = true
		seen[u.Epoch] = true
	}
	if len(seen) != 3 {
		t.Fatalf("saw sessions %v", seen)
	}
}

func TestReplacedPublisherIsCutOff(t *testing.T) {
	c := clip(t)
	h := stream.New(stream.Config{})
	tr := tracks(t, c)
	old, _ := h.Publish(tr)
	if _, err := h.Publish(tr); err != nil {
		t.Fatal(err)
	}
	select {
	case <-old.Done():
	default:
		t.Fatal("the old publisher's Done is still open")
	}
	if err := old.WriteAudio(0, []byte{1}); !errors.Is(err, stream.ErrReplaced) {
		t.Fatalf("write by the replaced publisher: %v", err)
	}
}

// TestStalledReaderDoesNotDelayOthers runs a publisher at 30 fps against a
// reader that never reads and one that does: the healthy reader gets every
// unit within a few milliseconds of its writing, the stalled one's losses are
// counted, and the publisher never waits.
func TestStalledReaderDoesNotDelayOthers(t *testing.T) {
	defer goleak.VerifyNone(t)
	c := clip(t)
	h := stream.New(stream.Config{})
	stalled := h.NewReader("stalled", 32)
	healthy := h.NewReader("healthy", 256)
	pub, _ := h.Publish(tracks(t, c))

	var mu sync.Mutex
	var delays []time.Duration
	got := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			u, err := healthy.Read(context.Background())
			if err != nil {
				return
			}
			mu.Lock()
			delays = append(delays, time.Since(u.Arrival))
			got++
			mu.Unlock()
		}
	}()

	// Two seconds of the clip, paced as a publisher would send it.
	start := time.Now()
	sent := 0
	var slowestWrite time.Duration
	for _, f := range c.Frames {
		if f.DTS > 2*time.Second {
			break
		}
		if d := time.Until(start.Add(f.DTS)); d > 0 {
			time.Sleep(d) // pacing the publisher, not synchronising the test
		}
		t0 := time.Now()
		if f.Video {
			pub.WriteVideo(f.PTS, f.DTS, f.NALUs)
		} else {
			pub.WriteAudio(f.DTS, f.AU)
		}
		slowestWrite = max(slowestWrite, time.Since(t0))
		sent++
	}
	h.Close()
	<-done

	mu.Lock()
	defer mu.Unlock()
	if got != sent {
		t.Fatalf("the healthy reader got %d of %d units", got, sent)
	}
	if healthy.Dropped() != 0 {
		t.Fatalf("the healthy reader dropped %d", healthy.Dropped())
	}
	if stalled.Dropped() == 0 || stalled.Lags() == 0 {
		t.Fatalf("the stalled reader's drops were not counted (dropped %d, lags %d)", stalled.Dropped(), stalled.Lags())
	}
	if st := h.Stats(); st.DroppedFrames != stalled.Dropped() {
		t.Fatalf("hub counts %d dropped, the reader %d", st.DroppedFrames, stalled.Dropped())
	}
	sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
	t.Logf("healthy reader: %d units, delay p50 %v p99 %v max %v; slowest publisher write %v; stalled reader dropped %d",
		got, delays[len(delays)/2], delays[len(delays)*99/100], delays[len(delays)-1], slowestWrite, stalled.Dropped())
}

func TestStalledReaderResumesAtKeyframe(t *testing.T) {
	c := clip(t)
	h := stream.New(stream.Config{})
	r := h.NewReader("slow", 16)
	pub, _ := h.Publish(tracks(t, c))
	// Two GOPs overflow the queue many times; stop a few units after the
	// third keyframe, which the reader must have kept.
	keys, after := 0, 0
	for _, f := range c.Frames {
		if f.Video && h264.IsRandomAccess(f.NALUs) {
			keys++
		}
		if keys == 3 {
			if after++; after > 8 {
				break
			}
		}
		if f.Video {
			pub.WriteVideo(f.PTS, f.DTS, f.NALUs)
		} else {
			pub.WriteAudio(f.DTS, f.AU)
		}
	}
	if r.Lags() == 0 {
		t.Fatal("the queue never overflowed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	u, err := r.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if u.Kind != stream.KindVideo || !u.Key {
		t.Fatalf("after overflowing, the reader resumes with %s key=%v", u.Kind, u.Key)
	}
}

func TestRejectsBadTracks(t *testing.T) {
	h := stream.New(stream.Config{})
	if _, err := h.Publish(&stream.Tracks{}); err == nil {
		t.Fatal("published a stream without tracks")
	}
	if _, err := stream.NewVideo([]byte{0x67, 1}, []byte{0x68}); err == nil {
		t.Fatal("accepted a truncated SPS")
	}
}
