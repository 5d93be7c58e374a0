package restream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/glasscast/glasscast/internal/ffmpeg"
	"github.com/glasscast/glasscast/internal/flv"
	"github.com/glasscast/glasscast/internal/stream"
)

// transcode pushes through ffmpeg, which re-encodes the tracks that break
// the profile (libx264 at a fixed frame rate, a keyframe every KeyInterval,
// CBR; AAC 128 kbit/s stereo) and copies the others. glasscast feeds it FLV
// on stdin from the output's queue and reads FLV back from its stdout, which
// it publishes itself: ffmpeg opens no connection and never sees the
// destination's URL.
func (o *Output) transcode(ctx context.Context, video, audio bool) error {
	r := o.hub.NewReader("output "+o.id, o.m.cfg.Queue)
	defer r.Close()
	first, err := firstUnit(ctx, r)
	if err != nil {
		return err
	}
	tracks := first.Tracks
	st := o.hub.Stats()
	args := o.ffmpegArgs(tracks, st, video, audio)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd, stderr := ffmpeg.Command(cctx, o.m.cfg.FFmpeg, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return errPermanent{fmt.Errorf("ffmpeg: %w", err)}
	}
	o.m.log.Debug("output transcoding", "output", o.id, "args", strings.Join(args, " "))

	// Feed: FLV from the queue. A slow ffmpeg fills the pipe and then the
	// queue, which drops to the next keyframe; nothing waits upstream.
	feedErr := make(chan error, 1)
	go func() {
		defer stdin.Close()
		feedErr <- flv.Feed(cctx, stdin, r, first, first.DTS)
		cancel() // ends ffmpeg if it is still running
	}()

	sendErr := o.relay(cctx, stdout, tracks)
	cancel()
	io.Copy(io.Discard, stdout)
	waitErr := cmd.Wait()
	ferr := <-feedErr
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(ferr, flv.ErrTracksChanged), errors.Is(ferr, errStreamEnded):
		return ferr
	case sendErr != nil && !errors.Is(sendErr, io.EOF) && !errors.Is(sendErr, errFFmpegOutput):
		return sendErr // the destination's side failed
	}
	if err := ffmpeg.Err("ffmpeg", stderr, waitErr); err != nil {
		return err
	}
	return errors.New("ffmpeg ended")
}

// errFFmpegOutput marks a failure to read what ffmpeg wrote (its own error
// is on its stderr).
var errFFmpegOutput = errors.New("ffmpeg's output ended")

// relay publishes the FLV ffmpeg writes: it connects once ffmpeg has given
// the configuration of every track the source has.
func (o *Output) relay(ctx context.Context, out io.Reader, src *stream.Tracks) error {
	fr, err := flv.NewReader(out)
	if err != nil {
		return errFFmpegOutput
	}
	var d *destination
	defer func() {
		if d != nil {
			d.close()
		}
	}()
	var pending []*stream.Unit
	for {
		u, err := fr.Next()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || ctx.Err() != nil {
				return errFFmpegOutput
			}
			return errPermanent{fmt.Errorf("ffmpeg's output: %w", err)}
		}
		if d == nil {
			if u != nil {
				if len(pending) >= 64 {
					return errPermanent{errors.New("ffmpeg's output: media before the configuration of every track")}
				}
				pending = append(pending, u)
			}
			if (src.Video != nil && fr.Tracks().Video == nil) || (src.Audio != nil && fr.Tracks().Audio == nil) {
				continue
			}
			t := fr.Tracks()
			if d, err = o.connect(ctx, &t); err != nil {
				return err
			}
			for _, p := range pending {
				if err := d.write(p, 0); err != nil {
					return err
				}
			}
			pending = nil
			continue
		}
		if u != nil {
			if err := d.write(u, 0); err != nil {
				return err
			}
		}
	}
}

// ffmpegArgs builds the transcoding command.
func (o *Output) ffmpegArgs(t *stream.Tracks, st stream.Stats, video, audio bool) []string {
	p := o.profile
	args := []string{"-hide_banner", "-loglevel", "error", "-nostats",
		"-fflags", "+genpts", "-f", "flv", "-i", "pipe:0"}
	if t.Video != nil {
		if video {
			fps := 30
			if st.FPS >= 1 {
				fps = int(math.Round(st.FPS))
			} else if t.Video.FrameRate >= 1 {
				fps = int(math.Round(t.Video.FrameRate))
			}
			fps = min(max(fps, 1), 60)
			kbps := int((st.Bitrate - st.AudioBitrate) / 1000)
			if kbps <= 0 {
				kbps = p.TargetVideoKbps
			}
			if p.MinVideoKbps > 0 {
				kbps = max(kbps, p.MinVideoKbps)
			}
			if p.MaxVideoKbps > 0 {
				kbps = min(kbps, p.MaxVideoKbps)
			}
			gop := int(p.KeyInterval.Seconds() * float64(fps))
			args = append(args, "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
				"-fps_mode", "cfr", "-r", strconv.Itoa(fps),
				"-g", strconv.Itoa(gop), "-keyint_min", strconv.Itoa(gop), "-sc_threshold", "0",
				"-b:v", fmt.Sprintf("%dk", kbps), "-minrate", fmt.Sprintf("%dk", kbps), "-maxrate", fmt.Sprintf("%dk", kbps),
				"-bufsize", fmt.Sprintf("%dk", 2*kbps), "-x264-params", "nal-hrd=cbr")
		} else {
			args = append(args, "-c:v", "copy")
		}
	}
	if t.Audio != nil {
		if audio {
			rate := 48000
			if t.Audio.SampleRate == 44100 {
				rate = 44100
			}
			args = append(args, "-c:a", "aac", "-b:a", "128k", "-ac", "2", "-ar", strconv.Itoa(rate))
		} else {
			args = append(args, "-c:a", "copy")
		}
	}
	return append(args, "-flvflags", "no_duration_filesize", "-f", "flv", "pipe:1")
}
