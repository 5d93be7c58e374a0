package server_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"

	"github.com/glasscast/glasscast/internal/api"
	rtc "github.com/glasscast/glasscast/internal/webrtc"
)

func TestWHEPPlays(t *testing.T) {
	parallel(t)
	needTool(t, "ffmpeg") // for Opus
	h := start(t, nil)
	s := h.create("webrtc")
	if !strings.HasPrefix(s.Playback.WebRTC, h.base+"/whep/"+s.ID+".") {
		t.Fatalf("webrtc URL %q", s.Playback.WebRTC)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	publishSim(ctx, s.Ingest.RTMPURL, nil)
	h.waitPlayable(s.Playback.HLS)

	var mu sync.Mutex
	var frames []rtc.Frame
	var audio []rtc.AudioPacket
	gotFrames := make(chan struct{})
	joined := time.Now()
	c, err := rtc.Dial(ctx, s.Playback.WebRTC, rtc.Options{Frame: func(f rtc.Frame) {
		mu.Lock()
		defer mu.Unlock()
		frames = append(frames, f)
		if len(frames) == 120 {
			close(gotFrames)
		}
	}, Audio: func(p rtc.AudioPacket) {
		mu.Lock()
		audio = append(audio, p)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-gotFrames:
	case <-time.After(20 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("%d frames over WebRTC in 20 s", len(frames))
	}
	mu.Lock()
	defer mu.Unlock()
	if !frames[0].Key {
		t.Fatal("the first frame is not a keyframe: the viewer had to wait for the next one")
	}
	stamped := 0
	for i, f := range frames {
		if !f.Sent.IsZero() {
			stamped++
		}
		// Once at the live edge (two seconds in), frames arrive within a
		// blink of being sent.
		if f.Received.Sub(joined) > 2500*time.Millisecond && !f.Sent.IsZero() && f.Received.Sub(f.Sent) > 500*time.Millisecond {
			t.Fatalf("frame %d arrives %v after it was sent, %v after joining", i, f.Received.Sub(f.Sent), f.Received.Sub(joined))
		}
	}
	if stamped != len(frames) {
		t.Fatalf("%d of %d frames carry the source's SEI stamp", stamped, len(frames))
	}
	if len(audio) < 50 {
		t.Fatalf("%d Opus packets with the video", len(audio))
	}
	t.Logf("first frame %v after joining; %d audio packets", frames[0].Received.Sub(joined), len(audio))
}

func TestWHEPErrors(t *testing.T) {
	parallel(t)
	h := start(t, nil)
	ctx := context.Background()
	_, err := rtc.Dial(ctx, h.base+"/whep/nope", rtc.Options{})
	var he *rtc.HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusUnauthorized {
		t.Fatalf("unknown stream: %v", err)
	}
	s := h.create("idle")
	_, err = rtc.Dial(ctx, s.Playback.WebRTC, rtc.Options{})
	if !errors.As(err, &he) || he.Status != http.StatusServiceUnavailable {
		t.Fatalf("a stream without media yet: %v", err)
	}
	resp, err := http.Post(s.Playback.WebRTC, "text/plain", strings.NewReader("v=0"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("a text offer: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodOptions, s.Playback.WebRTC, nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "Location") {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}

	// A session ends with DELETE.
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	publishSim(pctx, s.Ingest.RTMPURL, nil)
	h.waitPlayable(s.Playback.HLS)
	c, err := rtc.Dial(ctx, s.Playback.WebRTC, rtc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	loc := c.Location()
	// The session's URL is its own capability (96 random bits): it names
	// the stream by id, not by the token.
	if !strings.HasPrefix(loc, h.base+"/whep/"+s.ID+"/") || len(loc) < len(h.base+"/whep/"+s.ID+"/")+24 {
		t.Fatalf("Location %q", loc)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	req, _ = http.NewRequest(http.MethodDelete, loc, nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("a second DELETE: %d", resp.StatusCode)
	}
}

// lossy drops every 25th video packet on its way in, once per sequence
// number, and counts those that come back.
type lossy struct {
	interceptor.NoOp
	mu        sync.Mutex
	n         int
	dropped   map[uint16]bool // sequence number -> came back
	recovered int
}

func (l *lossy) NewInterceptor(string) (interceptor.Interceptor, error) { return l, nil }

func (l *lossy) BindRemoteStream(info *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	if !strings.EqualFold(info.MimeType, "video/H264") {
		return r
	}
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		for {
			n, attr, err := r.Read(b, a)
			if err != nil || n < 4 {
				return n, attr, err
			}
			seq := binary.BigEndian.Uint16(b[2:4])
			l.mu.Lock()
			back, seen := l.dropped[seq]
			l.n++
			drop := !seen && l.n%25 == 0
			if drop {
				l.dropped[seq] = false
			} else if seen && !back {
				l.dropped[seq] = true
				l.recovered++
			}
			l.mu.Unlock()
			if !drop {
				return n, attr, err
			}
		}
	})
}

// TestWHEPRetransmits loses video packets on the viewer's side; the viewer
// asks for them (NACK) and glasscast sends them again from its history.
func TestWHEPRetransmits(t *testing.T) {
	parallel(t)
	h := start(t, nil)
	s := h.create("nack")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	publishSim(ctx, s.Ingest.RTMPURL, nil)
	h.waitPlayable(s.Playback.HLS)

	loss := &lossy{dropped: map[uint16]bool{}}
	gen, err := nack.NewGeneratorInterceptor(nack.GeneratorInterval(20 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	enough := make(chan struct{})
	var once sync.Once
	c, err := rtc.Dial(ctx, s.Playback.WebRTC, rtc.Options{
		Interceptors: []interceptor.Factory{loss, gen},
		Frame: func(rtc.Frame) {
			loss.mu.Lock()
			if loss.recovered >= 10 {
				once.Do(func() { close(enough) })
			}
			loss.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-enough:
	case <-time.After(20 * time.Second):
	}
	loss.mu.Lock()
	defer loss.mu.Unlock()
	t.Logf("%d packets, %d dropped, %d sent again", loss.n, len(loss.dropped), loss.recovered)
	if loss.recovered < 10 {
		t.Fatalf("only %d of %d lost packets came back", loss.recovered, len(loss.dropped))
	}
}

// TestWHEPViewerVanishes: a WebRTC viewer that goes silent without a word
// (its socket gone, as a closed laptop's) leaves the viewer count within
// 5 s, and its session ends.
func TestWHEPViewerVanishes(t *testing.T) {
	parallel(t)
	slow(t)
	h := start(t, nil)
	s := h.create("vanish")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	publishSim(ctx, s.Ingest.RTMPURL, nil)
	h.waitPlayable(s.Playback.HLS)
	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := rtc.Dial(ctx, s.Playback.WebRTC, rtc.Options{UDP: udp})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	viewers := func(n int, within time.Duration) {
		t.Helper()
		h.waitSnapshot(within, func(snap api.Snapshot) bool {
			for _, st := range snap.Streams {
				if st.ID == s.ID {
					return st.Viewers.WebRTC == n
				}
			}
			return false
		})
	}
	viewers(1, 10*time.Second)
	udp.Close() // nothing more comes from the viewer, and no goodbye
	gone := time.Now()
	viewers(0, 5*time.Second)
	t.Logf("the viewer left the count %v after it went silent", time.Since(gone).Round(100*time.Millisecond))
	h.log.waitCount(t, "webrtc viewer left", 1, 10*time.Second)
}
