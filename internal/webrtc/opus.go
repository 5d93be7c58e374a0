package webrtc

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/glasscast/glasscast/internal/ffmpeg"
	"github.com/glasscast/glasscast/internal/stream"
)

// opusPacket is one 20 ms Opus packet on the stream's timeline.
type opusPacket struct {
	data []byte
	at   time.Duration // stream time of its first sample
	dur  time.Duration
}

// transcoder turns a stream's AAC into Opus, which browsers' WebRTC needs,
// with one Debian ffmpeg per stream, shared by the stream's WebRTC viewers.
// It runs from the first viewer to the last. It reads the hub like any
// reader, so however ffmpeg behaves the hub never waits for it.
type transcoder struct {
	ffmpeg string
	hub    *stream.Hub
	log    *slog.Logger

	mu     sync.Mutex
	subs   map[chan opusPacket]struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

// subscribe adds a viewer; the returned func removes it. The first viewer
// starts ffmpeg, the last one out stops it.
func (t *transcoder) subscribe() (<-chan opusPacket, func()) {
	ch := make(chan opusPacket, 64)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.subs[ch] = struct{}{}
	if t.cancel == nil {
		ctx, cancel := context.WithCancel(context.Background())
		t.cancel, t.done = cancel, make(chan struct{})
		go t.run(ctx, t.done)
	}
	return ch, func() {
		t.mu.Lock()
		delete(t.subs, ch)
		var stop context.CancelFunc
		var done chan struct{}
		if len(t.subs) == 0 && t.cancel != nil {
			stop, done = t.cancel, t.done
			t.cancel, t.done = nil, nil
		}
		t.mu.Unlock()
		if stop != nil {
			stop()
			<-done
		}
	}
}

// close stops the transcoder whatever its subscribers.
func (t *transcoder) close() {
	t.mu.Lock()
	stop, done := t.cancel, t.done
	t.cancel, t.done = nil, nil
	t.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

func (t *transcoder) publish(p opusPacket) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for ch := range t.subs {
		select {
		case ch <- p:
		default: // a viewer that cannot keep up loses audio, not the others
		}
	}
}

// run feeds ffmpeg from the hub until ctx ends. A new ffmpeg starts at
// every discontinuity (publisher reconnect, new audio format, a gap), so
// the Opus timeline always maps back to stream time.
func (t *transcoder) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	r := t.hub.NewReader("opus", 512)
	defer r.Close()
	var p *ffproc
	defer func() {
		if p != nil {
			p.stop()
		}
	}()
	for {
		u, err := r.Read(ctx)
		if err != nil {
			return
		}
		if u.Kind != stream.KindAudio || u.Tracks == nil || u.Tracks.Audio == nil {
			continue
		}
		a := u.Tracks.Audio
		// ffmpeg's output counts samples; the frame must start where the
		// count says, or the audio would drift from the video.
		next := p.next()
		if p == nil || p.epoch != u.Epoch || p.audio != a || u.DTS < next-maxAudioSlip || u.DTS > next+maxAudioSlip {
			if p != nil {
				p.stop()
			}
			p, err = t.start(u.DTS, u.Epoch, a)
			if err != nil {
				t.log.Warn("webrtc: the Opus transcoder did not start; audio is off", "err", err)
				return
			}
		}
		adts, err := mpeg4audio.ADTSPackets{{Type: a.Config.Type, SampleRate: a.SampleRate, ChannelConfig: a.Config.ChannelConfig, AU: u.Payload}}.Marshal()
		if err != nil {
			continue
		}
		if _, err := p.stdin.Write(adts); err != nil {
			p.stop()
			p = nil
			continue
		}
		p.frames++
	}
}

// maxAudioSlip is how far an AAC frame's timestamp may be from where the
// frames before it end before the transcoder starts over on the frame's own
// time (a gap, an overlap, or a source whose clock drifts).
const maxAudioSlip = 6 * time.Millisecond

// ffproc is one ffmpeg, AAC in (ADTS), Ogg Opus out.
type ffproc struct {
	cmd    *exec.Cmd
	cancel context.CancelFunc // kills it (its process group)
	stderr *ffmpeg.Tail
	stdin  io.WriteCloser
	epoch  uint32
	audio  *stream.Audio
	base   time.Duration // stream time of the first frame written
	frames int64         // AAC frames written
	done   chan struct{}
}

func (t *transcoder) start(base time.Duration, epoch uint32, a *stream.Audio) (*ffproc, error) {
	// No probing, so the first Opus comes out at once (not "-fflags
	// nobuffer", with which ffmpeg drops the first second of output). Raw
	// AAC carries no timestamps and the ones ffmpeg guesses for a pipe that
	// fills in real time jump about; asetpts stamps the audio by its sample
	// count instead, so the Ogg granules count samples from the first frame.
	ctx, cancel := context.WithCancel(context.Background())
	cmd, stderr := ffmpeg.Command(ctx, t.ffmpeg, "-hide_banner", "-loglevel", "error", "-probesize", "32", "-analyzeduration", "0",
		"-f", "aac", "-i", "pipe:0", "-af", "asetpts=N/SR/TB",
		"-c:a", "libopus", "-b:a", "64k", "-application", "lowdelay", "-frame_duration", "20", "-ar", "48000",
		"-f", "ogg", "-page_duration", "20000", "-flush_packets", "1", "pipe:1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, err
	}
	p := &ffproc{cmd: cmd, cancel: cancel, stderr: stderr, stdin: stdin, epoch: epoch, audio: a, base: base, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		o := newOggReader(bufio.NewReader(stdout))
		for {
			data, granule, err := o.next()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.log.Debug("webrtc: opus output", "err", err, "ffmpeg", ffmpeg.LastLine(strings.TrimSpace(stderr.String())))
				}
				io.Copy(io.Discard, stdout)
				return
			}
			// The granule counts the samples to the packet's end, the
			// encoder's priming (pre-skip) included, from the first AAC
			// frame written.
			dur := int64(OpusSamples(data))
			start := granule - dur - o.preSkip
			if granule < 0 || dur == 0 || start < 0 {
				continue // the encoder's priming samples
			}
			t.publish(opusPacket{
				data: data,
				at:   base + samplesToDuration(start, 48000),
				dur:  time.Duration(dur) * time.Second / 48000,
			})
		}
	}()
	return p, nil
}

// samplesToDuration converts a count of samples at rate without
// overflowing on long streams.
func samplesToDuration(n, rate int64) time.Duration {
	return time.Duration(n/rate)*time.Second + time.Duration(n%rate)*time.Second/time.Duration(rate)
}

// next is where the next AAC frame should start; nil has none.
func (p *ffproc) next() time.Duration {
	if p == nil {
		return 0
	}
	return p.base + samplesToDuration(p.frames*1024, int64(p.audio.SampleRate))
}

func (p *ffproc) stop() {
	p.stdin.Close()
	timer := time.AfterFunc(2*time.Second, p.cancel) // kills it if it does not end on its own
	<-p.done
	p.cmd.Wait()
	timer.Stop()
	p.cancel()
}

// OpusSamples is how many 48 kHz samples an Opus packet holds (RFC 6716,
// section 3.1), 0 if it is malformed.
func OpusSamples(p []byte) int {
	if len(p) == 0 {
		return 0
	}
	toc := p[0]
	cfg := int(toc >> 3)
	var per int // samples per frame
	switch {
	case cfg < 12: // SILK: 10, 20, 40, 60 ms
		per = []int{480, 960, 1920, 2880}[cfg%4]
	case cfg < 16: // hybrid: 10, 20 ms
		per = []int{480, 960}[cfg%2]
	default: // CELT: 2.5, 5, 10, 20 ms
		per = []int{120, 240, 480, 960}[cfg%4]
	}
	switch toc & 3 {
	case 0:
		return per
	case 1, 2:
		return 2 * per
	default:
		if len(p) < 2 {
			return 0
		}
		return int(p[1]&0x3f) * per
	}
}
