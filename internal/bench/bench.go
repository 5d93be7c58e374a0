// Package bench is glasscast's load and latency tool, run as
// `glasscast bench`. It starts glasscast as a child process (so the server's
// CPU time and memory are measured apart from the load), drives it with many
// publishers of the Go test source and many LL-HLS and DASH readers from this
// one process, and reports:
//
//   - startup: publish start to the first playable LL-HLS part and to the
//     first DASH segment;
//   - latency: the SEI send time of every frame to its receipt by an LL-HLS
//     reader (parts) and a DASH reader (segments);
//   - load: CPU and memory of the server for 1, 10 and 50 publishers, with
//     and without one LL-HLS reader each;
//   - viewers: CPU and memory per LL-HLS viewer of one stream;
//   - webrtc: for new WHEP viewers joining at random points of the GOP (1 s
//     and 2 s), the time to the first frame and to the live edge; the SEI
//     send time to the Go WHEP client's receipt; audio against video, from
//     the beeps the generated clip has at every keyframe;
//   - webrtc-viewers: CPU and memory per WHEP viewer of one stream;
//   - managed: managed_stream_request to active, with a Go SDK app and the
//     glasses simulator;
//   - sessions: memory and CPU of many idle users, each with a glasses
//     connection and an app session;
//   - cluster, cluster-spread: what relaying costs between nodes, and
//     three nodes sharing one node's load;
//   - failover: the origin SIGKILLed, its publisher back on another node:
//     how soon a viewer on a third node plays again.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/glasscast/glasscast/internal/sim"
)

type options struct {
	scenarios  []string
	duration   time.Duration
	warmup     time.Duration
	publishers []int
	viewers    []int
	trials     int
	sessions   int
	clipFile   string
	gop        time.Duration
	gops       []time.Duration
	joins      int
	jsonOut    string
	out        io.Writer
	// clusterPlain runs the cluster scenarios' routes without TLS.
	clusterPlain bool
}

// Main runs the bench command.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("glasscast bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	scen := fs.String("scenario", "startup,latency,load,viewers,webrtc,webrtc-viewers,record,restream,abr,managed,sessions", "comma-separated: startup, latency, load, viewers, webrtc, webrtc-viewers, record, restream, abr, managed, sessions, cluster, cluster-spread, failover")
	dur := fs.Duration("duration", 20*time.Second, "measuring time of each load point")
	warm := fs.Duration("warmup", 5*time.Second, "time before measuring, after the streams play")
	pubs := fs.String("publishers", "1,10,50", "publisher counts of the load scenario")
	views := fs.String("viewers", "50,100", "viewer counts of the viewers scenario")
	trials := fs.Int("trials", 5, "trials of the startup and managed scenarios")
	sessions := fs.Int("sessions", 9000, "idle users of the sessions scenario (each costs the server two sockets, the load tool two more)")
	clip := fs.String("clip", "", "fragmented MP4 to publish (default: generate 720p30 2.5 Mbit/s with a 1 s GOP with ffmpeg, or the built-in clip without it)")
	gop := fs.Duration("gop", time.Second, "keyframe interval of the generated clip")
	gops := fs.String("webrtc-gops", "1s,2s", "keyframe intervals the webrtc scenario measures joins at")
	joins := fs.Int("joins", 20, "new WebRTC viewers per GOP in the webrtc scenario")
	jsonOut := fs.String("json", "", "also write the results as JSON to this file")
	useHTTPS := fs.Bool("tls", false, "serve viewers over HTTPS (a TLS connection per viewer) with a certificate made for the run")
	plainRoutes := fs.Bool("cluster-insecure", false, "run the cluster scenarios' NATS routes without TLS (they are mutual TLS otherwise, as glasscast cluster certs sets them up)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	o := options{duration: *dur, warmup: *warm, trials: *trials, sessions: *sessions, clipFile: *clip, gop: *gop, joins: *joins, jsonOut: *jsonOut, out: stdout, clusterPlain: *plainRoutes}
	for _, f := range strings.Split(*gops, ",") {
		g, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil || g < 100*time.Millisecond {
			fmt.Fprintf(stderr, "glasscast bench: -webrtc-gops: %q is not a keyframe interval\n", f)
			return 2
		}
		o.gops = append(o.gops, g)
	}
	if o.joins < 1 {
		fmt.Fprintln(stderr, "glasscast bench: -joins must be at least 1")
		return 2
	}
	o.scenarios = strings.Split(*scen, ",")
	var err error
	if o.publishers, err = ints(*pubs); err != nil {
		fmt.Fprintf(stderr, "glasscast bench: -publishers: %v\n", err)
		return 2
	}
	if o.viewers, err = ints(*views); err != nil {
		fmt.Fprintf(stderr, "glasscast bench: -viewers: %v\n", err)
		return 2
	}
	if *useHTTPS {
		dir, err := os.MkdirTemp("", "glasscast-bench-tls-")
		if err == nil {
			defer os.RemoveAll(dir)
			err = useTLS(dir)
		}
		if err != nil {
			fmt.Fprintf(stderr, "glasscast bench: -tls: %v\n", err)
			return 1
		}
		fmt.Fprintln(stdout, "viewers over HTTPS (HTTP/1.1, a TLS connection each)")
	}
	if err := run(o); err != nil {
		fmt.Fprintf(stderr, "glasscast bench: %v\n", err)
		return 1
	}
	return 0
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%q is not a count", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// results is what a run found, for -json.
type results struct {
	Clip          string              `json:"clip"`
	Startup       map[string]any      `json:"startup,omitempty"`
	Latency       map[string]any      `json:"latency,omitempty"`
	Load          []loadPoint         `json:"load,omitempty"`
	Viewers       []loadPoint         `json:"viewers,omitempty"`
	Baseline      *loadPoint          `json:"baseline,omitempty"`
	WebRTC        []webrtcResult      `json:"webrtc,omitempty"`
	WebRTCViewers []webrtcViewerPoint `json:"webrtcViewers,omitempty"`
	Managed       map[string]any      `json:"managed,omitempty"`
	Record        []loadPoint         `json:"record,omitempty"`
	Restream      []restreamPoint     `json:"restream,omitempty"`
	ABR           map[string]any      `json:"abr,omitempty"`
	Sessions      map[string]any      `json:"sessions,omitempty"`
	Cluster       map[string]any      `json:"cluster,omitempty"`
	Spread        map[string]any      `json:"clusterSpread,omitempty"`
	Failover      map[string]any      `json:"failover,omitempty"`
}

func run(o options) error {
	clip, desc, err := loadClip(o, o.gop)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.out, "clip: %s\n", desc)
	res := results{Clip: desc}
	for _, s := range o.scenarios {
		var err error
		switch strings.TrimSpace(s) {
		case "startup":
			res.Startup, err = startup(o, clip)
		case "latency":
			res.Latency, err = latency(o, clip)
		case "load":
			res.Baseline, res.Load, err = load(o, clip)
		case "viewers":
			res.Viewers, err = viewers(o, clip)
		case "webrtc":
			res.WebRTC, err = webrtcScenario(o)
		case "webrtc-viewers":
			res.WebRTCViewers, err = webrtcViewers(o, clip)
		case "abr":
			res.ABR, err = abrScenario(o, clip)
		case "restream":
			res.Restream, err = restreamScenario(o, clip)
		case "record":
			res.Record, err = recordScenario(o, clip)
		case "managed":
			res.Managed, err = managedStart(o, clip)
		case "sessions":
			res.Sessions, err = idleSessions(o, o.sessions)
		case "cluster":
			res.Cluster, err = clusterScenario(o, clip)
		case "cluster-spread":
			res.Spread, err = spreadScenario(o, clip)
		case "failover":
			res.Failover, err = failoverScenario(o, clip)
		default:
			err = fmt.Errorf("unknown scenario %q", s)
		}
		if err != nil {
			return err
		}
	}
	if o.jsonOut != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		return os.WriteFile(o.jsonOut, b, 0o644)
	}
	return nil
}

// loadClip returns the clip to publish: the one given, or one generated with
// ffmpeg to match the reference load (720p30, 2.5 Mbit/s, the given GOP,
// beeping at every keyframe), or the built-in one.
func loadClip(o options, gop time.Duration) (*sim.Clip, string, error) {
	file := o.clipFile
	if file == "" {
		if _, err := exec.LookPath("ffmpeg"); err == nil {
			dir := filepath.Join(os.TempDir(), "glasscast-bench")
			os.MkdirAll(dir, 0o755)
			file = filepath.Join(dir, fmt.Sprintf("clip-720p30-2500k-gop%dms-beeps.mp4", gop.Milliseconds()))
			if _, err := os.Stat(file); err != nil {
				fmt.Fprintf(o.out, "generating %s with ffmpeg...\n", file)
				g := strconv.Itoa(int(gop.Seconds() * 30))
				// A beep at every keyframe but the first, 1024 samples early:
				// the AAC encoder's priming delays it that much, and the
				// timestamps are left as they are (no shifting of the video
				// to make up for the priming), so it decodes on the keyframe.
				beep := fmt.Sprintf("aevalsrc=exprs='if(gte(t\\,0.5)*lt(mod(t+%.6f\\,%g)\\,0.1)\\,0.5*sin(2*PI*1000*t)\\,0)':s=44100",
					1024.0/44100, gop.Seconds())
				cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
					"-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
					"-f", "lavfi", "-i", beep, "-t", "10",
					"-vf", "noise=alls=10:allf=t", "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main",
					"-pix_fmt", "yuv420p", "-bf", "0", "-g", g, "-keyint_min", g, "-sc_threshold", "0",
					"-b:v", "2500k", "-maxrate", "2500k", "-bufsize", "2500k",
					"-c:a", "aac", "-ac", "1", "-ar", "44100", "-b:a", "64k",
					"-avoid_negative_ts", "disabled",
					"-movflags", "+frag_keyframe+empty_moov+default_base_moof", "-f", "mp4", file+".tmp")
				cmd.Stderr = os.Stderr
				if err := cmd.Run(); err != nil {
					return nil, "", fmt.Errorf("generating the clip: %w", err)
				}
				os.Rename(file+".tmp", file)
			}
		}
	}
	data := sim.DefaultClip
	desc := "built-in (1280x720 30 fps, ~0.9 Mbit/s, 2 s GOP)"
	if file != "" {
		var err error
		if data, err = os.ReadFile(file); err != nil {
			return nil, "", err
		}
		desc = file
	}
	c, err := sim.LoadClip(data)
	if err != nil {
		return nil, "", err
	}
	bits := 0
	for _, f := range c.Frames {
		for _, n := range f.NALUs {
			bits += 8 * len(n)
		}
		bits += 8 * len(f.AU)
	}
	desc += fmt.Sprintf(" — %.2f Mbit/s", float64(bits)/c.Duration.Seconds()/1e6)
	return c, desc, nil
}

// publishers runs one source per stream until ctx ends.
func publish(ctx context.Context, wg *sync.WaitGroup, clip *sim.Clip, url string, errs chan<- error) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := (&sim.Source{Clip: clip}).Publish(ctx, url)
		if err != nil && ctx.Err() == nil {
			select {
			case errs <- err:
			default:
			}
		}
	}()
}

func startup(o options, clip *sim.Clip) (map[string]any, error) {
	fmt.Fprintf(o.out, "\n== startup: publish start -> first playable LL-HLS part / first DASH segment (%d trials)\n", o.trials)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := startServer(ctx)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	var hlsT, dashT []time.Duration
	for i := range o.trials {
		st, err := srv.createStream(fmt.Sprintf("startup-%d", i))
		if err != nil {
			return nil, err
		}
		pctx, pcancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		errs := make(chan error, 1)
		var h, d time.Duration
		var herr, derr error
		var rw sync.WaitGroup
		t0 := time.Now()
		publish(pctx, &wg, clip, st.Ingest.RTMPURL, errs)
		rw.Add(2)
		go func() {
			defer rw.Done()
			_, code, err := get(pctx, st.Playback.HLS) // held until playable
			h, herr = time.Since(t0), err
			if err == nil && code != http.StatusOK {
				herr = fmt.Errorf("HLS: %d", code)
			}
		}()
		go func() {
			defer rw.Done()
			_, code, err := get(pctx, strings.TrimSuffix(st.Playback.DASH, "manifest.mpd")+"video-0.m4s")
			d, derr = time.Since(t0), err
			if err == nil && code != http.StatusOK {
				derr = fmt.Errorf("DASH: %d", code)
			}
		}()
		rw.Wait()
		pcancel()
		wg.Wait()
		if herr != nil || derr != nil {
			return nil, fmt.Errorf("trial %d: %v %v", i, herr, derr)
		}
		hlsT, dashT = append(hlsT, h), append(dashT, d)
		fmt.Fprintf(o.out, "  trial %d: LL-HLS %s   DASH %s\n", i+1, ms(h), ms(d))
	}
	hs, ds := summarize(hlsT), summarize(dashT)
	fmt.Fprintf(o.out, "  LL-HLS first part:    median %s  max %s\n", ms(hs.P50), ms(hs.Max))
	fmt.Fprintf(o.out, "  DASH first segment:   median %s  max %s\n", ms(ds.P50), ms(ds.Max))
	return map[string]any{"hlsMedianMs": hs.P50.Milliseconds(), "hlsMaxMs": hs.Max.Milliseconds(),
		"dashMedianMs": ds.P50.Milliseconds(), "dashMaxMs": ds.Max.Milliseconds(), "trials": o.trials}, nil
}

func latency(o options, clip *sim.Clip) (map[string]any, error) {
	fmt.Fprintf(o.out, "\n== latency: SEI send time -> receipt, one stream, %v\n", o.duration)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := startServer(ctx)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	st, err := srv.createStream("latency")
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	publish(ctx, &wg, clip, st.Ingest.RTMPURL, errs)
	if _, code, err := get(ctx, st.Playback.HLS); err != nil || code != http.StatusOK {
		return nil, fmt.Errorf("stream did not start: %d %v", code, err)
	}
	hlsRec, dashRec := &recorder{}, &recorder{}
	rctx, rcancel := context.WithTimeout(ctx, o.duration)
	defer rcancel()
	base := strings.TrimSuffix(st.Playback.HLS, "index.m3u8")
	var rwg sync.WaitGroup
	rerr := make(chan error, 3)
	for _, r := range []interface{ run(context.Context) error }{
		&llhlsReader{base: base, track: "video", rec: hlsRec},
		&llhlsReader{base: base, track: "audio"},
		&dashReader{mpd: st.Playback.DASH, rec: dashRec},
	} {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			if err := r.run(rctx); err != nil {
				rerr <- err
			}
		}()
	}
	rwg.Wait()
	cancel()
	wg.Wait()
	select {
	case err := <-rerr:
		return nil, err
	case err := <-errs:
		return nil, err
	default:
	}
	h, d := hlsRec.summary(), dashRec.summary()
	fmt.Fprintf(o.out, "  LL-HLS (parts):     %s\n", h)
	fmt.Fprintf(o.out, "  DASH (segments):    %s\n", d)
	return map[string]any{
		"hlsP50Ms": h.P50.Milliseconds(), "hlsP95Ms": h.P95.Milliseconds(), "hlsMaxMs": h.Max.Milliseconds(), "hlsFrames": h.N,
		"dashP50Ms": d.P50.Milliseconds(), "dashP95Ms": d.P95.Milliseconds(), "dashMaxMs": d.Max.Milliseconds(), "dashFrames": d.N,
	}, nil
}

// loadPoint is one measured configuration.
type loadPoint struct {
	Publishers  int     `json:"publishers"`
	Readers     int     `json:"readers"` // LL-HLS viewers in all (each reads video and audio)
	CPUPercent  float64 `json:"cpuPercentOfOneCore"`
	RSSMB       float64 `json:"rssMB"`
	PeakRSSMB   float64 `json:"peakRssMB"`
	HLSP95Ms    int64   `json:"hlsP95Ms,omitempty"`
	ReaderErrs  int     `json:"readerErrors"`
	DroppedUnit uint64  `json:"droppedUnits"`
	// Recording: bytes on disk and MB per stream-hour.
	RecordedBytes   int64   `json:"recordedBytes,omitempty"`
	RecordMBPerHour float64 `json:"recordMBPerStreamHour,omitempty"`
}

// measure runs publishers streams, each with readersPerStream LL-HLS
// viewers, on a fresh server and measures its CPU and memory.
func measure(o options, clip *sim.Clip, publishers, viewersPerStream int, record ...bool) (loadPoint, error) {
	p := loadPoint{Publishers: publishers, Readers: publishers * viewersPerStream}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := startServer(ctx, "--max-rtmp-conns", "4096")
	if err != nil {
		return p, err
	}
	defer srv.stop()
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	var streams []*streamInfo
	for i := range publishers {
		st, err := srv.createStream(fmt.Sprintf("load-%d", i), len(record) > 0 && record[0])
		if err != nil {
			return p, err
		}
		streams = append(streams, st)
		publish(ctx, &wg, clip, st.Ingest.RTMPURL, errs)
	}
	for _, st := range streams {
		if _, code, err := get(ctx, st.Playback.HLS); err != nil || code != http.StatusOK {
			return p, fmt.Errorf("stream %s did not start: %d %v", st.ID, code, err)
		}
	}
	rec := &recorder{}
	var bases []string
	for _, st := range streams {
		bases = append(bases, st.Playback.HLS)
	}
	stopViewers := watchLLHLS(ctx, bases, viewersPerStream, rec)
	defer stopViewers()
	time.Sleep(o.warmup) // settling the load, not synchronising
	u0, err := procUsage(srv.cmd.Process.Pid)
	if err != nil {
		return p, err
	}
	t0 := time.Now()
	rec.mu.Lock()
	rec.lat = rec.lat[:0]
	rec.mu.Unlock()
	time.Sleep(o.duration) // the measuring window
	u1, err := procUsage(srv.cmd.Process.Pid)
	if err != nil {
		return p, err
	}
	elapsed := time.Since(t0)
	for _, st := range streams {
		if info, err := srv.getStream(st.ID); err == nil {
			p.DroppedUnit += info.DroppedFrames
		}
	}
	if len(record) > 0 && record[0] {
		recs, err := srv.recordings()
		if err != nil {
			return p, err
		}
		var secs float64
		for _, r := range recs {
			p.RecordedBytes += r.Bytes
			secs += r.Duration
		}
		if secs > 0 {
			p.RecordMBPerHour = float64(p.RecordedBytes) / (1 << 20) / secs * 3600
		}
	}
	stopViewers()
	cancel()
	wg.Wait()
	select {
	case err := <-errs:
		return p, fmt.Errorf("a publisher failed: %w", err)
	default:
	}
	p.CPUPercent = 100 * float64(u1.cpu-u0.cpu) / float64(elapsed)
	p.RSSMB = float64(u1.rss) / (1 << 20)
	p.PeakRSSMB = float64(u1.hwm) / (1 << 20)
	p.HLSP95Ms = rec.summary().P95.Milliseconds()
	p.ReaderErrs = rec.errs
	return p, nil
}

func (p loadPoint) line() string {
	s := fmt.Sprintf("  %3d publishers %4d viewers: CPU %6.1f %% of a core   RSS %6.1f MB (peak %6.1f)", p.Publishers, p.Readers, p.CPUPercent, p.RSSMB, p.PeakRSSMB)
	if p.Readers > 0 {
		s += fmt.Sprintf("   LL-HLS p95 %d ms, %d errors", p.HLSP95Ms, p.ReaderErrs)
	}
	if p.DroppedUnit > 0 {
		s += fmt.Sprintf("   %d units dropped", p.DroppedUnit)
	}
	if p.RecordedBytes > 0 {
		s += fmt.Sprintf("   recorded %.1f MB (%.0f MB per stream-hour)", float64(p.RecordedBytes)/(1<<20), p.RecordMBPerHour)
	}
	return s
}

func load(o options, clip *sim.Clip) (*loadPoint, []loadPoint, error) {
	fmt.Fprintf(o.out, "\n== load: server CPU and memory, LL-HLS and DASH always on (%v per point)\n", o.duration)
	base, err := measure(o, clip, 0, 0)
	if err != nil {
		return nil, nil, err
	}
	fmt.Fprintln(o.out, base.line()+"   (idle)")
	var pts []loadPoint
	for _, n := range o.publishers {
		for _, v := range []int{0, 1} {
			p, err := measure(o, clip, n, v)
			if err != nil {
				return nil, nil, err
			}
			pts = append(pts, p)
			per := ""
			if n > 0 {
				per = fmt.Sprintf("   per stream: %.2f %% CPU, %.2f MB", p.CPUPercent/float64(n), (p.RSSMB-base.RSSMB)/float64(n))
			}
			fmt.Fprintln(o.out, p.line()+per)
		}
	}
	return &base, pts, nil
}

func viewers(o options, clip *sim.Clip) ([]loadPoint, error) {
	fmt.Fprintf(o.out, "\n== viewers: LL-HLS viewers of one stream (%v per point)\n", o.duration)
	zero, err := measure(o, clip, 1, 0)
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(o.out, zero.line())
	pts := []loadPoint{zero}
	for _, v := range o.viewers {
		p, err := measure(o, clip, 1, v)
		if err != nil {
			return nil, err
		}
		pts = append(pts, p)
		fmt.Fprintf(o.out, "%s   per viewer: %.3f %% CPU, %.3f MB\n", p.line(), (p.CPUPercent-zero.CPUPercent)/float64(v), (p.RSSMB-zero.RSSMB)/float64(v))
	}
	return pts, nil
}

// watchLLHLS runs n LL-HLS viewers (a video and an audio reader each; rec
// measures the video) of each stream whose multivariant playlist is given,
// until the returned stop.
func watchLLHLS(ctx context.Context, multivariants []string, n int, rec *recorder) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, mv := range multivariants {
		base := strings.TrimSuffix(mv, "index.m3u8")
		for range n {
			for _, tr := range []string{"video", "audio"} {
				r := &llhlsReader{base: base, track: tr}
				if tr == "video" {
					r.rec = rec
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := r.run(ctx); err != nil && ctx.Err() == nil {
						rec.failed()
					}
				}()
			}
		}
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

// recordScenario measures what recording costs: the same streams, each with
// an LL-HLS viewer, without and with recording: CPU, memory, the viewers'
// latency, and what lands on disk.
func recordScenario(o options, clip *sim.Clip) ([]loadPoint, error) {
	n := 10
	fmt.Fprintf(o.out, "\n== record: %d streams with one LL-HLS viewer each, recording off and on (%v per point)\n", n, o.duration)
	var out []loadPoint
	for _, on := range []bool{false, true} {
		p, err := measure(o, clip, n, 1, on)
		if err != nil {
			return nil, err
		}
		label := "off"
		if on {
			label = "on "
		}
		fmt.Fprintf(o.out, "  recording %s%s\n", label, p.line())
		out = append(out, p)
	}
	return out, nil
}
