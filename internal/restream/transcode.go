package restream

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

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
	cmd := exec.CommandContext(cctx, o.m.cfg.FFmpeg, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr TailBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return errPermanent{fmt.Errorf("ffmpeg: %w", err)}
	}
	o.m.log.Debug("output transcoding", "output", o.id, "args", strings.Join(args, " "))

	// Feed: FLV from the queue. A slow ffmpeg fills the pipe and then the
	// queue, which drops to the next keyframe; nothing waits upstream.
	feedErr := make(chan error, 1)
	go func() {
		defer stdin.Close()
		feedErr <- FeedFLV(cctx, stdin, r, first, first.DTS)
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
	case errors.Is(ferr, ErrTracksChanged), errors.Is(ferr, errStreamEnded):
		return ferr
	case sendErr != nil && !errors.Is(sendErr, io.EOF) && !errors.Is(sendErr, errFFmpegOutput):
		return sendErr // the destination's side failed
	}
	msg := strings.TrimSpace(stderr.String())
	if msg == "" && waitErr != nil {
		msg = waitErr.Error()
	}
	if msg == "" {
		msg = "ffmpeg ended"
	}
	return errors.New("ffmpeg: " + lastLine(msg))
}

// errFFmpegOutput marks a failure to read what ffmpeg wrote (its own error
// is on its stderr).
var errFFmpegOutput = errors.New("ffmpeg's output ended")

// relay publishes the FLV ffmpeg writes: it connects once ffmpeg has given
// the configuration of every track the source has.
func (o *Output) relay(ctx context.Context, out io.Reader, src *stream.Tracks) error {
	fr, err := newFLVReader(out)
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
		u, err := fr.next()
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
			if (src.Video != nil && fr.tracks.Video == nil) || (src.Audio != nil && fr.tracks.Audio == nil) {
				continue
			}
			t := fr.tracks
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

func lastLine(s string) string {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// FeedFLV writes FLV to w from a hub reader, starting with first, with
// timestamps of stream time minus base, until the reader ends (errStreamEnded),
// the source changes its parameters (ErrTracksChanged) or a write fails. A
// slow w fills the reader's queue, which drops to the next keyframe: nothing
// upstream waits.
func FeedFLV(ctx context.Context, w io.Writer, r *stream.Reader, first *stream.Unit, base time.Duration) error {
	tracks := first.Tracks
	fw := &flvWriter{w: bufio.NewWriterSize(w, 64<<10)}
	err := fw.header(tracks)
	for unit := first; err == nil; {
		if unit.Kind != stream.KindEnd && unit.DTS >= base {
			if unit.Tracks != tracks && !sameParams(unit.Tracks, tracks) {
				return ErrTracksChanged
			}
			err = fw.unit(unit, base)
			if err == nil && r.Len() == 0 {
				err = fw.w.Flush()
			}
		}
		if err != nil {
			break
		}
		unit, err = r.Read(ctx)
		if errors.Is(err, stream.ErrClosed) {
			err = errStreamEnded
		}
	}
	return err
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

// TailBuffer keeps the last 4 KiB written to it: a helper process's
// stderr, for its last error.
type TailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *TailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 4096 {
		t.buf = t.buf[len(t.buf)-4096:]
	}
	return len(p), nil
}

func (t *TailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// flvWriter writes an FLV stream (Adobe FLV spec v10.1, E.4): H.264 as AVC
// packets of 4-byte length-prefixed NAL units, AAC as raw frames, each
// behind its sequence header.
type flvWriter struct {
	w     *bufio.Writer
	video bool
	audio bool
	tag   bytes.Buffer
}

const (
	flvAudio = 8
	flvVideo = 9
)

func (f *flvWriter) header(t *stream.Tracks) error {
	flags := byte(0)
	if t.Video != nil {
		flags |= 1
		f.video = true
	}
	if t.Audio != nil {
		flags |= 4
		f.audio = true
	}
	if _, err := f.w.Write([]byte{'F', 'L', 'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0}); err != nil {
		return err
	}
	if v := t.Video; v != nil {
		rec := []byte{1, v.SPS[1], v.SPS[2], v.SPS[3], 0xff, 0xe1}
		rec = binary.BigEndian.AppendUint16(rec, uint16(len(v.SPS)))
		rec = append(rec, v.SPS...)
		rec = append(rec, 1)
		rec = binary.BigEndian.AppendUint16(rec, uint16(len(v.PPS)))
		rec = append(rec, v.PPS...)
		if err := f.write(flvVideo, 0, append([]byte{0x17, 0, 0, 0, 0}, rec...)); err != nil {
			return err
		}
	}
	if a := t.Audio; a != nil {
		asc, err := a.Config.Marshal()
		if err != nil {
			return err
		}
		if err := f.write(flvAudio, 0, append([]byte{0xaf, 0}, asc...)); err != nil {
			return err
		}
	}
	return nil
}

func (f *flvWriter) unit(u *stream.Unit, base time.Duration) error {
	ts := uint32((u.DTS - base) / time.Millisecond)
	switch {
	case u.Kind == stream.KindVideo && f.video:
		f.tag.Reset()
		kind := byte(0x27)
		if u.Key {
			kind = 0x17
		}
		cts := int32((u.PTS - u.DTS) / time.Millisecond)
		f.tag.Write([]byte{kind, 1, byte(cts >> 16), byte(cts >> 8), byte(cts)})
		var l [4]byte
		for _, n := range u.NALUs {
			binary.BigEndian.PutUint32(l[:], uint32(len(n)))
			f.tag.Write(l[:])
			f.tag.Write(n)
		}
		return f.write(flvVideo, ts, f.tag.Bytes())
	case u.Kind == stream.KindAudio && f.audio:
		f.tag.Reset()
		f.tag.Write([]byte{0xaf, 1})
		f.tag.Write(u.Payload)
		return f.write(flvAudio, ts, f.tag.Bytes())
	}
	return nil
}

func (f *flvWriter) write(kind byte, ts uint32, data []byte) error {
	var h [11]byte
	h[0] = kind
	h[1], h[2], h[3] = byte(len(data)>>16), byte(len(data)>>8), byte(len(data))
	h[4], h[5], h[6], h[7] = byte(ts>>16), byte(ts>>8), byte(ts), byte(ts>>24)
	if _, err := f.w.Write(h[:]); err != nil {
		return err
	}
	if _, err := f.w.Write(data); err != nil {
		return err
	}
	var tail [4]byte
	binary.BigEndian.PutUint32(tail[:], uint32(11+len(data)))
	_, err := f.w.Write(tail[:])
	return err
}
