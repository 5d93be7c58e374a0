package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/glasscast/glasscast/internal/sim"
	rtc "github.com/glasscast/glasscast/internal/webrtc"
)

// liveEdge is how close to its source a frame must arrive for its viewer to
// be at the live edge.
const liveEdge = 50 * time.Millisecond

// webrtcResult is what the webrtc scenario found at one GOP.
type webrtcResult struct {
	GOPMs int64 `json:"gopMs"`
	Joins int   `json:"joins"`
	// From the WHEP offer to the first frame, which is a keyframe.
	FirstFrameP50Ms float64 `json:"firstFrameP50Ms"`
	FirstFrameP95Ms float64 `json:"firstFrameP95Ms"`
	FirstFrameMaxMs float64 `json:"firstFrameMaxMs"`
	FirstNotKey     int     `json:"firstFrameNotKeyframe"`
	// From the WHEP offer to the first frame at the live edge.
	LiveEdgeP50Ms float64 `json:"liveEdgeP50Ms"`
	LiveEdgeMaxMs float64 `json:"liveEdgeMaxMs"`
	// Publisher's SEI stamp to the Go client's receipt, at the live edge.
	LatencyP50Ms float64 `json:"latencyP50Ms"`
	LatencyP95Ms float64 `json:"latencyP95Ms"`
	LatencyP99Ms float64 `json:"latencyP99Ms"`
	LatencyMaxMs float64 `json:"latencyMaxMs"`
	Frames       int     `json:"frames"`
	FellBehind   int     `json:"framesLaterThanLiveEdge"`
	// Audio against video, from the beeps at keyframes.
	AudioPackets     int     `json:"audioPackets"`
	Beeps            int     `json:"beeps"`
	SourceOffsetMs   float64 `json:"sourceOffsetMs"`
	AVOffsetP50Ms    float64 `json:"avOffsetP50Ms"` // as sender reports place them, source offset removed
	AVOffsetMaxMs    float64 `json:"avOffsetMaxAbsMs"`
	ArrivalSkewP50Ms float64 `json:"audioArrivesAfterVideoP50Ms"`
	AudioNote        string  `json:"audioNote,omitempty"`
}

func msf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// webrtcClips is the clips of the webrtc scenario: the one given, or one
// generated per GOP.
func webrtcClips(o options) ([]*sim.Clip, []string, error) {
	var clips []*sim.Clip
	var descs []string
	gops := o.gops
	if o.clipFile != "" {
		gops = gops[:1]
	}
	for _, g := range gops {
		c, d, err := loadClip(o, g)
		if err != nil {
			return nil, nil, err
		}
		clips = append(clips, c)
		descs = append(descs, d)
	}
	return clips, descs, nil
}

// clipGOP is the spacing of a clip's first two keyframes.
func clipGOP(c *sim.Clip) time.Duration {
	var keys []time.Duration
	for _, f := range c.Frames {
		if !f.Video {
			continue
		}
		for _, n := range f.NALUs {
			if len(n) > 0 && n[0]&0x1f == 5 {
				keys = append(keys, f.PTS)
				break
			}
		}
		if len(keys) == 2 {
			return keys[1] - keys[0]
		}
	}
	return c.Duration
}

func webrtcScenario(o options) ([]webrtcResult, error) {
	clips, descs, err := webrtcClips(o)
	if err != nil {
		return nil, err
	}
	var out []webrtcResult
	for i, clip := range clips {
		gop := clipGOP(clip)
		fmt.Fprintf(o.out, "\n== webrtc: WHEP viewers on loopback, %v GOP (%s)\n", gop, descs[i])
		r, err := webrtcOnce(o, clip, gop)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func webrtcOnce(o options, clip *sim.Clip, gop time.Duration) (webrtcResult, error) {
	res := webrtcResult{GOPMs: gop.Milliseconds()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := startServer(ctx)
	if err != nil {
		return res, err
	}
	defer srv.stop()
	st, err := srv.createStream("webrtc")
	if err != nil {
		return res, err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	errs := make(chan error, 1)
	publish(ctx, &wg, clip, st.Ingest.RTMPURL, errs)
	if _, code, err := get(ctx, st.Playback.HLS); err != nil || code != 200 {
		return res, fmt.Errorf("stream did not start: %d %v", code, err)
	}

	// Joins at random points of the GOP.
	var first, edge []time.Duration
	for i := range o.joins {
		time.Sleep(time.Duration(rand.Int64N(int64(gop)))) // a random point in the GOP, not synchronisation
		j, err := join(ctx, st.Playback.WebRTC)
		if err != nil {
			return res, fmt.Errorf("join %d: %w", i+1, err)
		}
		first = append(first, j.first)
		edge = append(edge, j.edge)
		if !j.key {
			res.FirstNotKey++
		}
	}
	res.Joins = len(first)
	f, e := summarize(first), summarize(edge)
	res.FirstFrameP50Ms, res.FirstFrameP95Ms, res.FirstFrameMaxMs = msf(f.P50), msf(f.P95), msf(f.Max)
	res.LiveEdgeP50Ms, res.LiveEdgeMaxMs = msf(e.P50), msf(e.Max)
	fmt.Fprintf(o.out, "  first frame after the offer (%d joins): median %s  p95 %s  max %s  (%d not a keyframe)\n",
		res.Joins, ms(f.P50), ms(f.P95), ms(f.Max), res.FirstNotKey)
	fmt.Fprintf(o.out, "  at the live edge (frame within %v of its source) after: median %s  max %s\n", liveEdge, ms(e.P50), ms(e.Max))

	// One viewer for the measuring window.
	w, err := watch(ctx, st.Playback.WebRTC, o.duration)
	if err != nil {
		return res, err
	}
	select {
	case err := <-errs:
		return res, fmt.Errorf("the publisher failed: %w", err)
	default:
	}
	l := summarize(w.latency)
	res.Frames, res.FellBehind = l.N, w.behind
	res.LatencyP50Ms, res.LatencyP95Ms, res.LatencyP99Ms, res.LatencyMaxMs = msf(l.P50), msf(l.P95), msf(l.P99), msf(l.Max)
	fmt.Fprintf(o.out, "  transport latency (SEI stamp -> Go client, %v): %s; %d frames later than %v once live\n", o.duration, l, w.behind, liveEdge)

	res.AudioPackets = len(w.audio)
	if err := avSync(&res, clip, w); err != nil {
		res.AudioNote = err.Error()
		fmt.Fprintf(o.out, "  audio: %d Opus packets; sync not measured: %v\n", len(w.audio), err)
	} else {
		fmt.Fprintf(o.out, "  audio: %d Opus packets, %d beeps; A/V offset as a player syncs it: median %+.1f ms, worst %.1f ms (source's own %+.1f ms removed); audio arrives %+.1f ms after its video\n",
			res.AudioPackets, res.Beeps, res.AVOffsetP50Ms, res.AVOffsetMaxMs, res.SourceOffsetMs, res.ArrivalSkewP50Ms)
	}
	return res, nil
}

type joined struct {
	first, edge time.Duration
	key         bool
}

// join watches until the first frame at the live edge.
func join(ctx context.Context, url string) (joined, error) {
	var j joined
	var mu sync.Mutex
	atEdge := make(chan struct{})
	t0 := time.Now()
	c, err := rtc.Dial(ctx, url, rtc.Options{Frame: func(f rtc.Frame) {
		mu.Lock()
		defer mu.Unlock()
		if j.first == 0 {
			j.first, j.key = f.Received.Sub(t0), f.Key
		}
		if j.edge == 0 && !f.Sent.IsZero() && f.Received.Sub(f.Sent) <= liveEdge {
			j.edge = f.Received.Sub(t0)
			close(atEdge)
		}
	}})
	if err != nil {
		return j, err
	}
	defer c.Close()
	select {
	case <-atEdge:
	case <-time.After(10 * time.Second):
		return j, errors.New("no frame at the live edge within 10 s")
	}
	mu.Lock()
	defer mu.Unlock()
	return j, nil
}

type watched struct {
	latency []time.Duration
	behind  int
	frames  []rtc.Frame
	audio   []rtc.AudioPacket
	srs     []rtc.SenderReport
}

// watch receives a stream for d and keeps what arrived after the live edge.
func watch(ctx context.Context, url string, d time.Duration) (*watched, error) {
	w := &watched{}
	var mu sync.Mutex
	live := false
	c, err := rtc.Dial(ctx, url, rtc.Options{
		Frame: func(f rtc.Frame) {
			mu.Lock()
			defer mu.Unlock()
			if f.Sent.IsZero() {
				return
			}
			lat := f.Received.Sub(f.Sent)
			if !live && lat > liveEdge {
				return
			}
			live = true
			w.latency = append(w.latency, lat)
			if lat > liveEdge {
				w.behind++
			}
			w.frames = append(w.frames, f)
		},
		Audio: func(p rtc.AudioPacket) {
			mu.Lock()
			defer mu.Unlock()
			if live {
				w.audio = append(w.audio, p)
			}
		},
		SenderReport: func(sr rtc.SenderReport) {
			mu.Lock()
			defer mu.Unlock()
			w.srs = append(w.srs, sr)
		},
	})
	if err != nil {
		return nil, err
	}
	time.Sleep(d) // the measuring window
	c.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(w.latency) == 0 {
		return nil, errors.New("no frames at the live edge")
	}
	return w, nil
}

// avSync finds the beeps in the Opus the viewer got and puts them, and the
// keyframes, on the wall clock through the sender reports, as a player
// synchronising audio with video does.
func avSync(res *webrtcResult, clip *sim.Clip, w *watched) error {
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		return errors.New("no ffmpeg to decode the audio")
	}
	if len(w.audio) == 0 {
		return errors.New("no audio")
	}
	src, _, err := sourceOffset(ffmpeg, clip)
	if err != nil {
		return err
	}
	res.SourceOffsetMs = msf(src)
	packets := make([][]byte, len(w.audio))
	starts := make([]int, len(w.audio)) // first PCM sample of each packet
	total := 0
	for i, p := range w.audio {
		packets[i] = p.Payload
		starts[i] = total
		total += rtc.OpusSamples(p.Payload)
	}
	pcm, err := decodePCM(ffmpeg, "ogg", oggOpus(packets), 48000)
	if err != nil {
		return err
	}
	if len(pcm) != total {
		return fmt.Errorf("decoded %d samples of %d", len(pcm), total)
	}
	var videoSR, audioSR []rtc.SenderReport
	for _, sr := range w.srs {
		if sr.Video {
			videoSR = append(videoSR, sr)
		} else {
			audioSR = append(audioSR, sr)
		}
	}
	if len(videoSR) == 0 || len(audioSR) == 0 {
		return fmt.Errorf("sender reports: %d video, %d audio", len(videoSR), len(audioSR))
	}
	var keyWall, keyArrival []time.Duration
	epoch := w.frames[0].Received
	for _, f := range w.frames {
		if f.Key {
			keyWall = append(keyWall, wallOf(videoSR, f.RTPTime, 90000).Sub(epoch))
			keyArrival = append(keyArrival, f.Received.Sub(epoch))
		}
	}
	if len(keyWall) == 0 {
		return errors.New("no keyframes")
	}
	var offs, skews []time.Duration
	worst := time.Duration(0)
	for _, at := range onsets(pcm, 48000/5) {
		k := sort.Search(len(starts), func(i int) bool { return starts[i] > at }) - 1
		p := w.audio[k]
		rtp := p.RTPTime + uint32(at-starts[k])
		off := nearest(wallOf(audioSR, rtp, 48000).Sub(epoch), keyWall) - src
		offs = append(offs, off)
		worst = max(worst, abs(off))
		skews = append(skews, nearest(p.Received.Sub(epoch), keyArrival)-src)
	}
	if len(offs) == 0 {
		return errors.New("no beeps in the audio received")
	}
	res.Beeps = len(offs)
	res.AVOffsetP50Ms = msf(median(offs))
	res.AVOffsetMaxMs = msf(worst)
	res.ArrivalSkewP50Ms = msf(median(skews))
	return nil
}

// wallOf maps an RTP time to the wall clock through the sender report
// nearest to it.
func wallOf(srs []rtc.SenderReport, rtp uint32, rate int) time.Time {
	best := srs[0]
	for _, sr := range srs[1:] {
		if abs32(int32(rtp-sr.RTPTime)) < abs32(int32(rtp-best.RTPTime)) {
			best = sr
		}
	}
	return best.NTP.Add(time.Duration(int32(rtp-best.RTPTime)) * time.Second / time.Duration(rate))
}

func abs32(x int32) int64 {
	if x < 0 {
		return -int64(x)
	}
	return int64(x)
}

// webrtcViewerPoint is the server's CPU and memory with n WHEP viewers of
// one stream.
type webrtcViewerPoint struct {
	Viewers       int     `json:"viewers"`
	CPUPercent    float64 `json:"cpuPercentOfOneCore"`
	FFmpegPercent float64 `json:"ffmpegCpuPercentOfOneCore"`
	RSSMB         float64 `json:"rssMB"`
	MinFPS        float64 `json:"slowestViewerFps"`
}

func webrtcViewers(o options, clip *sim.Clip) ([]webrtcViewerPoint, error) {
	fmt.Fprintf(o.out, "\n== webrtc-viewers: WHEP viewers of one stream (%v per point)\n", o.duration)
	var pts []webrtcViewerPoint
	for _, n := range append([]int{0}, o.viewers...) {
		p, err := measureWebRTC(o, clip, n)
		if err != nil {
			return nil, err
		}
		line := fmt.Sprintf("  %4d viewers: glasscast %6.1f %% of a core, RSS %6.1f MB; its ffmpeg (Opus) %4.1f %%", n, p.CPUPercent, p.RSSMB, p.FFmpegPercent)
		if n > 0 {
			z := pts[0]
			line += fmt.Sprintf("; slowest viewer %.1f fps; per viewer: %.3f %% CPU, %.3f MB", p.MinFPS,
				(p.CPUPercent-z.CPUPercent)/float64(n), (p.RSSMB-z.RSSMB)/float64(n))
		}
		fmt.Fprintln(o.out, line)
		pts = append(pts, p)
	}
	return pts, nil
}

func measureWebRTC(o options, clip *sim.Clip, n int) (webrtcViewerPoint, error) {
	p := webrtcViewerPoint{Viewers: n}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := startServer(ctx)
	if err != nil {
		return p, err
	}
	defer srv.stop()
	st, err := srv.createStream("webrtc-viewers")
	if err != nil {
		return p, err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	errs := make(chan error, 1)
	publish(ctx, &wg, clip, st.Ingest.RTMPURL, errs)
	if _, code, err := get(ctx, st.Playback.HLS); err != nil || code != 200 {
		return p, fmt.Errorf("stream did not start: %d %v", code, err)
	}
	counts := make([]int, n)
	var mu sync.Mutex
	counting := false
	var clients []*rtc.Client
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for i := range n {
		c, err := rtc.Dial(ctx, st.Playback.WebRTC, rtc.Options{Frame: func(rtc.Frame) {
			mu.Lock()
			if counting {
				counts[i]++
			}
			mu.Unlock()
		}})
		if err != nil {
			return p, fmt.Errorf("viewer %d: %w", i+1, err)
		}
		clients = append(clients, c)
		// One client address may have only a few sessions connecting.
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		err = c.Connected(cctx)
		ccancel()
		if err != nil {
			return p, fmt.Errorf("viewer %d did not connect: %w", i+1, err)
		}
	}
	time.Sleep(o.warmup) // settling the load, not synchronising
	pid := srv.cmd.Process.Pid
	u0, err := procUsage(pid)
	if err != nil {
		return p, err
	}
	k0 := childrenCPU(pid)
	mu.Lock()
	counting = true
	mu.Unlock()
	t0 := time.Now()
	time.Sleep(o.duration) // the measuring window
	u1, err := procUsage(pid)
	if err != nil {
		return p, err
	}
	k1 := childrenCPU(pid)
	elapsed := time.Since(t0)
	mu.Lock()
	counting = false
	minFrames := -1
	for _, c := range counts {
		if minFrames < 0 || c < minFrames {
			minFrames = c
		}
	}
	mu.Unlock()
	select {
	case err := <-errs:
		return p, fmt.Errorf("the publisher failed: %w", err)
	default:
	}
	p.CPUPercent = 100 * float64(u1.cpu-u0.cpu) / float64(elapsed)
	p.FFmpegPercent = 100 * float64(k1-k0) / float64(elapsed)
	p.RSSMB = float64(u1.rss) / (1 << 20)
	if n > 0 {
		p.MinFPS = float64(minFrames) / elapsed.Seconds()
	}
	return p, nil
}

// childrenCPU is the CPU time of a process's children (glasscast's ffmpeg
// helpers), living and ended.
func childrenCPU(pid int) time.Duration {
	var total time.Duration
	if u, err := procUsage(pid); err == nil {
		total = u.childCPU
	}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				if u, err := procUsage(c); err == nil {
					total += u.cpu
				}
			}
		}
	}
	return total
}
