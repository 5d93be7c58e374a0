package sim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"

	"github.com/glasscast/glasscast/internal/rtmp"
	"github.com/glasscast/glasscast/internal/sei"
)

// Source publishes a clip over RTMP, looped, paced by the wall clock.
type Source struct {
	Clip *Clip
	// Loops is how many times the clip plays; 0 loops until the context ends.
	Loops int
	// NoSEI leaves the frames as they are in the clip.
	NoSEI bool
	// OnConnected, when set, runs once the server has accepted the publish.
	OnConnected func()
	// Stamp, when set, changes the timestamp of every frame as it is sent
	// (video's PTS moves with its DTS): a broken encoder's clock, wraps and
	// jumps included.
	Stamp func(video bool, dts time.Duration) time.Duration
	// TLS configures rtmps:// (nil: the system's roots).
	TLS *tls.Config
	// Dial, when set, opens the TCP connection (a chosen local address,
	// say).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	framesSent atomic.Uint64
	bytesSent  atomic.Uint64
}

// FramesSent counts the video frames written so far.
func (s *Source) FramesSent() uint64 { return s.framesSent.Load() }

// BytesSent counts the payload bytes written so far.
func (s *Source) BytesSent() uint64 { return s.bytesSent.Load() }

// Publish connects to rawURL (rtmp://host:port/app/key or rtmps://…) and sends
// the clip until ctx ends, the loops are done, or the server hangs up. It
// returns nil only when the loops are done.
func (s *Source) Publish(ctx context.Context, rawURL string) error {
	c := s.Clip
	if c == nil {
		var err error
		if c, err = LoadClip(DefaultClip); err != nil {
			return err
		}
	}
	if len(c.Frames) == 0 {
		return ErrNoClip
	}
	u, err := rtmp.ClientURL(rawURL)
	if err != nil {
		return err
	}
	dialCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn := &gortmplib.Client{URL: u, Publish: true, TLSConfig: s.TLS, DialContext: s.Dial}
	if err := conn.Initialize(dialCtx); err != nil {
		return fmt.Errorf("publish to %s: %w", withoutKey(rawURL), statusError(err))
	}
	defer conn.Close()

	var tracks []*gortmplib.Track
	var video, audio *gortmplib.Track
	if c.SPS != nil {
		video = &gortmplib.Track{Codec: &codecs.H264{SPS: c.SPS, PPS: c.PPS}}
		tracks = append(tracks, video)
	}
	if c.Audio != nil {
		audio = &gortmplib.Track{Codec: &codecs.MPEG4Audio{Config: c.Audio}}
		tracks = append(tracks, audio)
	}
	w := &gortmplib.Writer{Conn: conn, Tracks: tracks}
	if err := w.Initialize(); err != nil {
		return err
	}
	if s.OnConnected != nil {
		s.OnConnected()
	}

	// Nothing the server sends after the publish starts matters, and the
	// connection is not safe for a concurrent reader and writer: a server
	// that hangs up shows as a failed write, within a frame or two.
	timer := time.NewTimer(0)
	defer timer.Stop()
	start := time.Now()
	for loop := 0; s.Loops == 0 || loop < s.Loops; loop++ {
		base := time.Duration(loop) * c.Duration
		for i := range c.Frames {
			f := &c.Frames[i]
			due := start.Add(base + f.DTS)
			if d := time.Until(due); d > 0 {
				timer.Reset(d)
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-timer.C:
				}
			} else if ctx.Err() != nil {
				return ctx.Err()
			}
			if err := s.write(w, video, audio, f, base); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return err
			}
		}
	}
	return nil
}

func (s *Source) write(w *gortmplib.Writer, video, audio *gortmplib.Track, f *Frame, base time.Duration) error {
	if f.Video {
		if video == nil {
			return nil
		}
		au := f.NALUs
		if !s.NoSEI {
			au = make([][]byte, 0, len(f.NALUs)+1)
			au = append(au, sei.Marshal(time.Now()))
			au = append(au, f.NALUs...)
		}
		for _, n := range au {
			s.bytesSent.Add(uint64(len(n)))
		}
		s.framesSent.Add(1)
		dts := s.stamp(true, base+f.DTS)
		return w.WriteH264(video, dts+f.PTS-f.DTS, dts, au)
	}
	if audio == nil {
		return nil
	}
	s.bytesSent.Add(uint64(len(f.AU)))
	return w.WriteMPEG4Audio(audio, s.stamp(false, base+f.DTS), f.AU)
}

// withoutKey is an RTMP URL fit to print: the stream key is the secret.
func withoutKey(raw string) string {
	if i := strings.LastIndex(raw, "/"); i > len("rtmps://") {
		return raw[:i+1] + "…"
	}
	return "the server"
}

// statusRE finds the code and description of an onStatus the RTMP client
// quotes as a Go value.
var statusRE = regexp.MustCompile(`\{code ([^}]*)\} \{description ([^}]*)\}`)

// statusError says what the server answered in words, when it refused.
func statusError(err error) error {
	if m := statusRE.FindStringSubmatch(err.Error()); m != nil {
		return fmt.Errorf("the server refused: %s (%s)", m[2], m[1])
	}
	return err
}

func (s *Source) stamp(video bool, dts time.Duration) time.Duration {
	if s.Stamp == nil {
		return dts
	}
	return s.Stamp(video, dts)
}

// ErrNoClip is returned when a source has nothing to send.
var ErrNoClip = errors.New("sim: the clip has no frames")
