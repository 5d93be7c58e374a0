package server_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/glasscast/glasscast/internal/api"
	"github.com/glasscast/glasscast/internal/config"
	rtc "github.com/glasscast/glasscast/internal/webrtc"
)

// deadOffer is a WHEP offer whose peer is gone before anyone answers: the
// sessions it opens never connect.
func deadOffer(t *testing.T) string {
	t.Helper()
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(kind, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return offer.SDP
}

// offerFrom posts n offers at once from loopback address from (127.0.0.N:
// each is another client to the server) and counts the answers by status.
func offerFrom(t *testing.T, from, whepURL, offer string, n int) map[int]int {
	t.Helper()
	tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).DialContext}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var mu sync.Mutex
	got := map[int]int{}
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code := -1
			if resp, err := c.Post(whepURL, "application/sdp", strings.NewReader(offer)); err == nil {
				resp.Body.Close()
				code = resp.StatusCode
			}
			mu.Lock()
			got[code]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return got
}

// TestWHEPAdmission floods WHEP with offers that never connect: the caps on
// sessions still connecting (per client address, per stream) and on all
// sessions hold however many arrive at once, none of them is a viewer, they
// end after a few seconds, and a real viewer then gets in and counts.
func TestWHEPAdmission(t *testing.T) {
	parallel(t)
	slow(t)
	h := start(t, func(c *config.Config) { c.WebRTCMaxViewers = 20 })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, b := h.create("a"), h.create("b")
	publishSim(ctx, a.Ingest.RTMPURL, nil)
	publishSim(ctx, b.Ingest.RTMPURL, nil)
	h.waitPlayable(a.Playback.HLS)
	h.waitPlayable(b.Playback.HLS)
	offer := deadOffer(t)
	want := func(what string, got map[int]int, exp map[int]int) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(exp) {
			t.Fatalf("%s: answers %v, want %v", what, got, exp)
		}
	}

	// Per address 8 may be connecting; per stream max(16, 20/20) = 16.
	want("12 offers from one address", offerFrom(t, "127.0.0.1", a.Playback.WebRTC, offer, 12), map[int]int{201: 8, 429: 4})
	want("12 from a second address", offerFrom(t, "127.0.0.2", a.Playback.WebRTC, offer, 12), map[int]int{201: 8, 429: 4})
	want("a third address on the same stream", offerFrom(t, "127.0.0.3", a.Playback.WebRTC, offer, 2), map[int]int{503: 2})
	// Another stream: 16 offers from two addresses, 4 slots left of 20.
	var g1, g2 map[int]int
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); g1 = offerFrom(t, "127.0.0.3", b.Playback.WebRTC, offer, 8) }()
	go func() { defer wg.Done(); g2 = offerFrom(t, "127.0.0.4", b.Playback.WebRTC, offer, 8) }()
	wg.Wait()
	if g1[201]+g2[201] != 4 || g1[503]+g2[503] != 12 {
		t.Fatalf("16 offers for the last 4 slots: %v and %v", g1, g2)
	}
	if v := h.get(a.ID).Viewers.WebRTC + h.get(b.ID).Viewers.WebRTC; v != 0 {
		t.Fatalf("sessions that never connected count as %d viewers", v)
	}

	// All 20 time out within a few seconds; then a real viewer from the
	// flooding address gets in and counts.
	flooded := time.Now()
	h.log.waitCount(t, "webrtc viewer never connected", 20, 20*time.Second)
	t.Logf("the pending sessions ended %v after the flood", time.Since(flooded).Round(100*time.Millisecond))
	c, err := rtc.Dial(ctx, a.Playback.WebRTC, rtc.Options{})
	if err != nil {
		t.Fatalf("a viewer after the flood: %v", err)
	}
	defer c.Close()
	h.waitSnapshot(10*time.Second, func(s api.Snapshot) bool {
		for _, st := range s.Streams {
			if st.ID == a.ID {
				return st.Viewers.WebRTC == 1
			}
		}
		return false
	})
}

// 50 viewers from one address (an office behind one NAT, or a balancer)
// starting within 2 s all play: the first are admitted at once, the rest
// asked to come back after Retry-After, and an address whose sessions
// connect is let more of them connect at once. The time each took is
// logged (figures belong in the benchmarks).
func TestWHEPBurstFromOneAddress(t *testing.T) {
	parallel(t)
	h := start(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := h.create("an office's audience")
	publishSim(ctx, s.Ingest.RTMPURL, nil)
	h.waitPlayable(s.Playback.HLS)
	office := from("127.0.0.6")
	const n = 50
	took := make(chan time.Duration, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * 2 * time.Second / n) // the viewers' own pace, spread over 2 s
			began := time.Now()
			first := make(chan struct{})
			var once sync.Once
			dctx, dcancel := context.WithTimeout(ctx, 60*time.Second)
			defer dcancel()
			c, err := rtc.Dial(dctx, s.Playback.WebRTC, rtc.Options{HTTP: office, RetryBusy: true,
				Frame: func(rtc.Frame) { once.Do(func() { close(first) }) }})
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			select {
			case <-first:
				took <- time.Since(began)
			case <-dctx.Done():
				errs <- fmt.Errorf("no frame within 60 s")
			}
		})
	}
	wg.Wait()
	close(took)
	close(errs)
	for err := range errs {
		t.Errorf("a viewer: %v", err)
	}
	var worst time.Duration
	played := 0
	for d := range took {
		played++
		worst = max(worst, d)
	}
	if played != n {
		t.Fatalf("%d of %d viewers from one address played", played, n)
	}
	t.Logf("%d viewers from one address started within 2 s: all played, the slowest %v after it started", n, worst.Round(10*time.Millisecond))
}
