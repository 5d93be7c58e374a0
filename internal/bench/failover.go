package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/glasscast/glasscast/internal/hls"
	"github.com/glasscast/glasscast/internal/sim"
	rtc "github.com/glasscast/glasscast/internal/webrtc"
)

// failoverScenario measures what viewers on a surviving node see when a
// stream's origin dies: three nodes, a stream published to a, watched on c
// over WebRTC (one session, kept) and LL-HLS (a playlist reload every
// 200 ms). a is killed (SIGKILL) and the
// publisher comes back to b at once, as glasses reconnecting through a
// balancer would. Each round, from the publish on b: c's Streams API says
// live on b; c's WebRTC viewer gets its first new frame in the session it
// had; c's video playlist lists a new part (numbered after the last one
// before). The glasses' own reconnect delay comes on top.
func failoverScenario(o options, clip *sim.Clip) (map[string]any, error) {
	rounds := max(o.trials, 1)
	fmt.Fprintf(o.out, "\n== failover: three nodes (%s), the origin SIGKILLed, its publisher back on another node at once; a viewer on the third (%d rounds)\n", routesKind(o), rounds)
	var live, frame, part []time.Duration
	for i := range rounds {
		l, f, p, err := failoverOnce(o, clip)
		if err != nil {
			return nil, fmt.Errorf("round %d: %w", i+1, err)
		}
		fmt.Fprintf(o.out, "  round %d: live again %s, first new WebRTC frame %s, first new LL-HLS part %s\n", i+1, ms(l), ms(f), ms(p))
		live, frame, part = append(live, l), append(frame, f), append(part, p)
	}
	sl, sf, sp := summarize(live), summarize(frame), summarize(part)
	fmt.Fprintf(o.out, "  from the publish on the new node:  live again %s; first new WebRTC frame %s; first new LL-HLS part %s\n", sl, sf, sp)
	out := map[string]any{"rounds": rounds, "liveAgainP50Ms": msf(sl.P50), "liveAgainMaxMs": msf(sl.Max),
		"webrtcFrameP50Ms": msf(sf.P50), "webrtcFrameMaxMs": msf(sf.Max), "llhlsPartP50Ms": msf(sp.P50), "llhlsPartMaxMs": msf(sp.Max)}

	fmt.Fprintf(o.out, "\n== failover-drain: the origin SIGTERMed (it drains), its publisher cut off and back on another node at once; the longest stall a viewer on the third node sees (%d rounds)\n", rounds)
	var rtcStall, hlsStall, exit []time.Duration
	for i := range rounds {
		f, p, e, err := drainOnce(o, clip)
		if err != nil {
			return nil, fmt.Errorf("drain round %d: %w", i+1, err)
		}
		fmt.Fprintf(o.out, "  round %d: longest gap between WebRTC frames %s, between new LL-HLS parts %s; the drained node exited after %s\n", i+1, ms(f), ms(p), ms(e))
		rtcStall, hlsStall, exit = append(rtcStall, f), append(hlsStall, p), append(exit, e)
	}
	sf, sp, se := summarize(rtcStall), summarize(hlsStall), summarize(exit)
	fmt.Fprintf(o.out, "  during a drain:  WebRTC stall %s; LL-HLS stall %s; the node exits after %s\n", sf, sp, se)
	out["drainWebRTCStallP50Ms"], out["drainWebRTCStallMaxMs"] = msf(sf.P50), msf(sf.Max)
	out["drainLLHLSStallP50Ms"], out["drainLLHLSStallMaxMs"] = msf(sp.P50), msf(sp.Max)
	out["drainExitP50Ms"] = msf(se.P50)
	return out, nil
}

// drainOnce is one drain round on a cluster of its own: a stream published
// to a, watched on c over WebRTC and LL-HLS (its playlist asked every
// 50 ms); a is SIGTERMed and drains; its publisher, cut off, comes back to
// b at once (as through a balancer, which takes a out at its first failed
// health check). It returns the longest time c's WebRTC viewer went without
// a frame, and c's playlist without a new part, from a second before the
// SIGTERM until 10 s after; and how long a took to exit.
func drainOnce(o options, clip *sim.Clip) (rtcStall, hlsStall, exit time.Duration, err error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rig, err := startRig(ctx, o, []string{"--drain-timeout", "15s"}, "drain")
	if err != nil {
		return 0, 0, 0, err
	}
	defer rig.close()
	a, b, c, st := rig.a, rig.b, rig.c, rig.st
	key := st.Ingest.RTMPURL[strings.LastIndex(st.Ingest.RTMPURL, "/")+1:]
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	errs := make(chan error, 1)
	// The glasses: to a, and once cut off, to b.
	wg.Go(func() {
		(&sim.Source{Clip: clip}).Publish(ctx, st.Ingest.RTMPURL)
		if ctx.Err() == nil {
			publish(ctx, &wg, clip, b.rtmpURL+key, errs)
		}
	})
	if _, code, err := get(ctx, st.Playback.HLS); err != nil || code != http.StatusOK {
		return 0, 0, 0, fmt.Errorf("the stream did not start: %d %v", code, err)
	}
	if err := c.waitStream(ctx, st.ID); err != nil {
		return 0, 0, 0, err
	}
	frames, err := rig.watch(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	var mu sync.Mutex
	var parts []time.Time
	playlist := strings.TrimSuffix(on(c, st.Playback.HLS), "index.m3u8") + "video.m3u8"
	wg.Go(func() {
		lastMSN, lastPart := -1, -1
		for ctx.Err() == nil {
			if body, code, err := get(ctx, playlist); err == nil && code == http.StatusOK {
				m, p := hls.LastPart(string(body))
				if p >= 0 && (int(m) != lastMSN || p != lastPart) {
					mu.Lock()
					parts = append(parts, time.Now())
					mu.Unlock()
					lastMSN, lastPart = int(m), p
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	time.Sleep(3 * time.Second) // the relays on c settle: measuring, not synchronising
	term := time.Now()
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
		exit = time.Since(term)
		rig.aGone = true
	case <-time.After(30 * time.Second):
		return 0, 0, 0, errors.New("the drained node did not exit within 30 s")
	}
	if left := time.Until(term.Add(10 * time.Second)); left > 0 {
		time.Sleep(left) // the window measured
	}
	mu.Lock()
	defer mu.Unlock()
	from, to := term.Add(-time.Second), term.Add(10*time.Second)
	got := frames()
	longest := func(at []time.Time) time.Duration {
		var gap time.Duration
		prev := from
		for _, t := range at {
			if t.Before(from) || t.After(to) {
				continue
			}
			gap = max(gap, t.Sub(prev))
			prev = t
		}
		return max(gap, to.Sub(prev))
	}
	return longest(got), longest(parts), exit, nil
}

// failoverOnce is one round on a cluster of its own.
func failoverOnce(o options, clip *sim.Clip) (liveAgain, frame, part time.Duration, err error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rig, err := startRig(ctx, o, nil, "failover")
	if err != nil {
		return 0, 0, 0, err
	}
	defer rig.close()
	a, b, c, st := rig.a, rig.b, rig.c, rig.st
	pubCtx, stopPub := context.WithCancel(ctx)
	defer stopPub()
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	publish(pubCtx, &wg, clip, st.Ingest.RTMPURL, errs)
	if _, code, err := get(ctx, st.Playback.HLS); err != nil || code != http.StatusOK {
		return 0, 0, 0, fmt.Errorf("the stream did not start: %d %v", code, err)
	}
	for _, n := range []*server{b, c} {
		if err := n.waitStream(ctx, st.ID); err != nil {
			return 0, 0, 0, err
		}
	}
	frames, err := rig.watch(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	playlist := strings.TrimSuffix(on(c, st.Playback.HLS), "index.m3u8") + "video.m3u8"
	// An LL-HLS viewer on c too (its relay runs): a reload every 200 ms.
	hlsCtx, stopHLS := context.WithCancel(ctx)
	defer stopHLS()
	go func() {
		for hlsCtx.Err() == nil {
			get(hlsCtx, playlist)
			time.Sleep(200 * time.Millisecond)
		}
	}()
	time.Sleep(3 * time.Second) // the relays on c settle: measuring, not synchronising
	a.cmd.Process.Kill()
	<-a.done
	rig.aGone = true
	stopPub()
	wg.Wait()
	// The newest part c has of a's: what comes after it is the new origin's.
	body, _, err := get(ctx, playlist)
	if err != nil {
		return 0, 0, 0, err
	}
	msn, p := hls.LastPart(string(body))
	key := st.Ingest.RTMPURL[strings.LastIndex(st.Ingest.RTMPURL, "/")+1:]
	back := time.Now()
	publish(ctx, &wg, clip, b.rtmpURL+key, errs)
	defer wg.Wait()
	defer cancel()
	deadline := back.Add(30 * time.Second)
	// Each measured on its own, polling (measuring, not synchronising): a
	// request that waits does not hold up the others.
	poll := func(done func() bool) time.Duration {
		for time.Now().Before(deadline) {
			if done() {
				return time.Since(back)
			}
			time.Sleep(10 * time.Millisecond)
		}
		return 0
	}
	var mw sync.WaitGroup
	mw.Go(func() {
		liveAgain = poll(func() bool {
			s, err := c.getStream(st.ID)
			return err == nil && s.Status == "live" && s.Node == "b"
		})
	})
	mw.Go(func() {
		part = poll(func() bool {
			body, code, err := get(ctx, playlist)
			m, q := hls.LastPart(string(body))
			return err == nil && code == http.StatusOK && q >= 0 && (m > msn || m == msn && q > p)
		})
	})
	mw.Go(func() {
		frame = poll(func() bool {
			got := frames()
			return len(got) > 0 && got[len(got)-1].After(back)
		})
		if frame > 0 {
			for _, at := range frames() {
				if at.After(back) {
					frame = at.Sub(back)
					break
				}
			}
		}
	})
	mw.Wait()
	if liveAgain == 0 || part == 0 || frame == 0 {
		return 0, 0, 0, fmt.Errorf("after 30 s: live again %v, a new LL-HLS part %v, a new WebRTC frame %v", liveAgain, part, frame)
	}
	return liveAgain, frame, part, nil
}

// rig is three nodes, a, b and c, with a stream on a.
type rig struct {
	a, b, c *server
	st      *streamInfo
	aGone   bool // a exited (killed, or drained): only its data is left
	viewer  *rtc.Client
}

// startRig starts the three nodes (extra: flags for each) and creates
// the stream (named name) on a.
func startRig(ctx context.Context, o options, extra []string, name string) (*rig, error) {
	nodes, err := startClusterWith(ctx, o.clusterPlain, extra, "a", "b", "c")
	if err != nil {
		return nil, err
	}
	r := &rig{a: nodes[0], b: nodes[1], c: nodes[2]}
	if r.st, err = r.a.createStream(name); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

// watch opens a WebRTC viewer of the stream on c; frames is when each of
// its frames came.
func (r *rig) watch(ctx context.Context) (frames func() []time.Time, err error) {
	var mu sync.Mutex
	var at []time.Time
	r.viewer, err = rtc.Dial(ctx, on(r.c, r.st.Playback.WebRTC), rtc.Options{Frame: func(f rtc.Frame) {
		mu.Lock()
		at = append(at, f.Received)
		mu.Unlock()
	}})
	if err != nil {
		return nil, fmt.Errorf("webrtc on c: %w", err)
	}
	return func() []time.Time {
		mu.Lock()
		defer mu.Unlock()
		return append([]time.Time(nil), at...)
	}, nil
}

// close stops the viewer and the nodes.
func (r *rig) close() {
	if r.viewer != nil {
		r.viewer.Close()
	}
	r.c.stop()
	r.b.stop()
	if r.aGone {
		os.RemoveAll(r.a.dataDir)
	} else {
		r.a.stop()
	}
}
