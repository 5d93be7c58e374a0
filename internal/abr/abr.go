// Package abr makes an adaptive bitrate ladder of a live stream: one ffmpeg
// per stream encodes the source's video at lower resolutions (480p and 360p
// below a taller source) and publishes each rung to glasscast's own RTMP
// ingest as an unlisted stream. The rungs keep the source's timestamps and
// keyframes (-copyts, keyframes where the source has them), so their
// segments line up with the source's: the LL-HLS multivariant playlist lists
// them as variants with the source's audio, and the DASH manifest as more
// Representations of the video. The source is always the top rung, as it is.
package abr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/glasscast/glasscast/internal/cmaf"
	"github.com/glasscast/glasscast/internal/ffmpeg"
	"github.com/glasscast/glasscast/internal/flv"
	"github.com/glasscast/glasscast/internal/live"
	"github.com/glasscast/glasscast/internal/stream"
)

// Rung is one step of the ladder below the source.
type Rung struct {
	Height int
	Kbps   int
}

// DefaultLadder is 480p at 1.2 Mbit/s and 360p at 700 kbit/s.
var DefaultLadder = []Rung{{480, 1200}, {360, 700}}

// Config tunes the ladder.
type Config struct {
	FFmpeg string
	// Ingest is rtmp://HOST:PORT/live/ of glasscast's own ingest, on an
	// address this process reaches.
	Ingest string
	Ladder []Rung
	// Transcoders bounds the encoders of the whole server; a ladder is one.
	Transcoders *ffmpeg.Budget
}

// Manager runs the ladders.
type Manager struct {
	cfg Config
	reg *live.Registry
	log *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	sub     *live.Subscription
	mu      sync.Mutex
	running map[string]context.CancelFunc // by source stream id
}

// New makes a manager and subscribes it to the registry's events (on its
// "abr" subscription): every stream that goes live gets a ladder, which
// stops when the stream ends.
func New(cfg Config, reg *live.Registry, log *slog.Logger) *Manager {
	if len(cfg.Ladder) == 0 {
		cfg.Ladder = DefaultLadder
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{cfg: cfg, reg: reg, log: log, ctx: ctx, cancel: cancel, running: map[string]context.CancelFunc{}}
	m.sub = reg.Subscribe("abr", m.event)
	return m
}

// Close stops every ladder and waits for them.
func (m *Manager) Close() {
	m.sub.Close()
	m.mu.Lock()
	m.cancel() // under mu: no ladder starts after this
	m.mu.Unlock()
	m.wg.Wait()
}

// Ladders is how many ladders run.
func (m *Manager) Ladders() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.running)
}

func (m *Manager) event(ev live.Event) {
	switch ev.Kind {
	case live.EventLive:
		m.start(ev.Stream)
	case live.EventEnded:
		m.mu.Lock()
		if stop := m.running[ev.Stream.ID()]; stop != nil {
			stop()
		}
		m.mu.Unlock()
	}
}

// start runs a stream's ladder once it is live (a reconnect finds it
// running already).
func (m *Manager) start(st *live.Stream) {
	if st.Internal() || st.Status() == live.StatusEnded {
		return
	}
	m.mu.Lock()
	if m.running[st.ID()] != nil || m.ctx.Err() != nil {
		m.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(m.ctx)
	m.running[st.ID()] = cancel
	m.wg.Add(1)
	m.mu.Unlock()
	go func() {
		defer m.wg.Done()
		m.run(ctx, st)
		cancel()
		m.mu.Lock()
		delete(m.running, st.ID())
		m.mu.Unlock()
	}()
}

type rungStream struct {
	rung Rung
	st   *live.Stream
}

// run keeps src's ladder until ctx ends: when the stream ends or the
// manager closes.
func (m *Manager) run(ctx context.Context, src *live.Stream) {
	var rungs []rungStream
	defer func() {
		src.Packager().SetVariants(nil)
		for _, r := range rungs {
			m.reg.Delete(r.st.ID())
		}
	}()
	wait := time.Second
	for ctx.Err() == nil {
		tracks := src.Hub().Tracks()
		if tracks == nil || tracks.Video == nil {
			return // nothing to scale
		}
		if rungs == nil {
			for _, r := range m.cfg.Ladder {
				if r.Height >= tracks.Video.Height {
					continue
				}
				st, err := m.reg.Create(live.CreateOptions{Name: fmt.Sprintf("%dp of %s", r.Height, src.ID()), Internal: true})
				if err != nil {
					m.log.Error("abr: rung not created", "stream", src.ID(), "err", err)
					return
				}
				st.Packager().Follow(src.Packager())
				rungs = append(rungs, rungStream{r, st})
			}
			if len(rungs) == 0 {
				return
			}
			var vs []cmaf.Variant
			for _, r := range rungs {
				vs = append(vs, cmaf.Variant{ID: r.st.ID(), P: r.st.Packager()})
			}
			src.Packager().SetVariants(vs)
		}
		started := time.Now()
		err := m.encode(ctx, src, rungs)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > 30*time.Second {
			wait = time.Second
		}
		m.log.Warn("abr: encoder stopped; restarting", "stream", src.ID(), "err", err, "in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// encode runs one ffmpeg for every rung until it fails or ctx ends.
func (m *Manager) encode(ctx context.Context, src *live.Stream, rungs []rungStream) error {
	r := src.Hub().NewReader("abr", 1024)
	defer r.Close()
	first, err := readMedia(ctx, r)
	if err != nil {
		return err
	}
	args := []string{"-hide_banner", "-loglevel", "error", "-nostats", "-copyts", "-fflags", "+genpts", "-f", "flv", "-i", "pipe:0"}
	st := m.sourceStats(ctx, src)
	srcKbps := int((st.Bitrate - st.AudioBitrate) / 1000)
	for _, g := range rungs {
		kbps := g.rung.Kbps
		if h := first.Tracks.Video.Height; srcKbps > 0 && h > 0 {
			// Never more than the source spends per pixel row.
			kbps = min(kbps, max(srcKbps*g.rung.Height/h, 100))
		}
		g.rung.Kbps = kbps
		args = append(args, "-map", "0:v", "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency",
			"-vf", "scale=-2:"+strconv.Itoa(g.rung.Height), "-pix_fmt", "yuv420p", "-force_key_frames", "source",
			"-b:v", fmt.Sprintf("%dk", g.rung.Kbps), "-maxrate", fmt.Sprintf("%dk", g.rung.Kbps*3/2), "-bufsize", fmt.Sprintf("%dk", g.rung.Kbps*2),
			"-an", "-f", "flv", m.cfg.Ingest+g.st.Key())
	}
	if b := m.cfg.Transcoders; !b.TryAcquire() {
		m.log.Warn("abr: the ladder waits for a transcoder; viewers get the source alone meanwhile", "stream", src.ID(), "max", b.Cap())
		if err := b.Acquire(ctx); err != nil {
			return err
		}
	}
	defer m.cfg.Transcoders.Release()
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd, stderr := ffmpeg.Command(cctx, m.cfg.FFmpeg, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	m.log.Info("abr: encoding", "stream", src.ID(), "rungs", len(rungs))
	feedErr := make(chan error, 1)
	go func() {
		defer stdin.Close()
		feedErr <- flv.Feed(cctx, stdin, r, first, 0)
		cancel()
	}()
	werr := cmd.Wait()
	cancel()
	ferr := <-feedErr
	if errors.Is(ferr, flv.ErrTracksChanged) {
		return ferr
	}
	if err := ffmpeg.Err("ffmpeg", stderr, werr); err != nil {
		return err
	}
	return ferr
}

// sourceStats waits a few seconds for the source's bitrate, which the rungs
// never exceed per row of pixels.
func (m *Manager) sourceStats(ctx context.Context, src *live.Stream) stream.Stats {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(3 * time.Second)
	for {
		st := src.Hub().Stats()
		if st.Bitrate > 0 || time.Now().After(deadline) {
			return st
		}
		select {
		case <-ctx.Done():
			return st
		case <-tick.C:
		}
	}
}

func readMedia(ctx context.Context, r *stream.Reader) (*stream.Unit, error) {
	for {
		u, err := r.Read(ctx)
		if err != nil {
			return nil, err
		}
		if u.Kind == stream.KindVideo && u.Tracks != nil {
			return u, nil
		}
	}
}
