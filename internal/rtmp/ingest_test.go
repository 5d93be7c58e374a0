package rtmp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/gortmplib/pkg/message"
	"go.uber.org/goleak"

	"github.com/glasscast/glasscast/internal/rtmp"
	"github.com/glasscast/glasscast/internal/sei"
	"github.com/glasscast/glasscast/internal/sim"
	"github.com/glasscast/glasscast/internal/stream"
)

type dest struct {
	hub *stream.Hub
	mu  sync.Mutex
	why error
}

func (d *dest) Publish(t *stream.Tracks) (*stream.Publisher, error) { return d.hub.Publish(t) }
func (d *dest) Refuse(err error)                                    { d.mu.Lock(); d.why = err; d.mu.Unlock() }
func (d *dest) ID() string                                          { return "test" }
func (d *dest) refused() error                                      { d.mu.Lock(); defer d.mu.Unlock(); return d.why }

type auth map[string]*dest

func (a auth) AuthorizePublish(key string) (rtmp.Destination, error) {
	if d, ok := a[key]; ok {
		return d, nil
	}
	return nil, errors.New("unknown key")
}

func startIngest(t *testing.T, a auth) string {
	t.Helper()
	srv, err := rtmp.Listen("127.0.0.1:0", a, rtmp.Config{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return "rtmp://" + srv.Addr().String() + "/" + rtmp.App + "/"
}

// readUntil reads units until pred says stop or the deadline passes.
func readUntil(t *testing.T, r *stream.Reader, d time.Duration, pred func(*stream.Unit) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		u, err := r.Read(ctx)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if pred(u) {
			return
		}
	}
}

func TestSimSourceIntoHub(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	d := &dest{hub: stream.New(stream.Config{})}
	base := startIngest(t, auth{"k1": d})
	r := d.hub.NewReader("test", 256)
	defer r.Close()

	ctx, cancel := context.WithCancel(context.Background())
	pubDone := make(chan error, 1)
	go func() { pubDone <- (&sim.Source{}).Publish(ctx, base+"k1") }()

	var video, audio, stamped int
	var lastDTS time.Duration
	readUntil(t, r, 10*time.Second, func(u *stream.Unit) bool {
		if u.Kind == stream.KindVideo {
			if video == 0 && !u.Key {
				t.Fatal("first video unit is not a keyframe")
			}
			if video > 0 && u.DTS <= lastDTS {
				t.Fatalf("video DTS went from %v to %v", lastDTS, u.DTS)
			}
			lastDTS = u.DTS
			video++
			if ts, ok := sei.Find(u.NALUs); ok {
				stamped++
				if lat := time.Since(ts); lat < 0 || lat > 2*time.Second {
					t.Fatalf("SEI latency %v", lat)
				}
			}
		} else {
			audio++
		}
		return video >= 45 && audio >= 30
	})
	tr := d.hub.Tracks()
	if tr.Video == nil || tr.Video.Width != 1280 || tr.Video.Height != 720 || tr.Audio == nil || tr.Audio.Channels != 1 || tr.Audio.SampleRate != 44100 {
		t.Fatalf("tracks: %+v %+v", tr.Video, tr.Audio)
	}
	if stamped != video {
		t.Fatalf("%d of %d frames carry a send time", stamped, video)
	}
	cancel()
	<-pubDone
}

func TestWrongKeyRefused(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	base := startIngest(t, auth{})
	err := (&sim.Source{Loops: 1}).Publish(context.Background(), base+"nope")
	if err == nil || !strings.Contains(err.Error(), "unknown or ended stream key") {
		t.Fatalf("publish with a wrong key: %v", err)
	}
}

func needFFmpeg(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Fatal("ffmpeg is required: run scripts/test, which installs it")
	}
}

func TestFFmpegCodecs(t *testing.T) {
	needFFmpeg(t)
	cases := []struct {
		name    string
		args    []string
		refused string // substring of the refusal, or "" when accepted
		video   bool
		audio   bool
	}{
		{"h264+aac", []string{"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-f", "lavfi", "-i", "sine", "-c:v", "libx264", "-g", "30", "-c:a", "aac"}, "", true, true},
		{"video only", []string{"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-c:v", "libx264", "-g", "30"}, "", true, false},
		{"audio only", []string{"-f", "lavfi", "-i", "sine", "-c:a", "aac", "-ar", "48000", "-ac", "2"}, "", false, true},
		{"mp3 audio", []string{"-f", "lavfi", "-i", "sine", "-c:a", "libmp3lame", "-ar", "44100"}, "MP3", false, false},
		{"flv1 video", []string{"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-c:v", "flv1"}, "Sorenson", false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := &dest{hub: stream.New(stream.Config{})}
			base := startIngest(t, auth{"k": d})
			r := d.hub.NewReader("test", 1024)
			defer r.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			args := append([]string{"-hide_banner", "-loglevel", "error", "-re"}, tc.args...)
			args = append(args, "-t", "10", "-f", "flv", base+"k")
			cmd := exec.CommandContext(ctx, "ffmpeg", args...)
			out := &strings.Builder{}
			cmd.Stderr = out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cancel(); cmd.Wait() }()
			if tc.refused != "" {
				err := cmd.Wait()
				if err == nil {
					t.Fatalf("ffmpeg succeeded; want a refusal")
				}
				if why := d.refused(); why == nil || !strings.Contains(why.Error(), tc.refused) {
					t.Fatalf("refusal reason %v, want it to mention %q (ffmpeg said %s)", why, tc.refused, out)
				}
				return
			}
			var v, a int
			readUntil(t, r, 15*time.Second, func(u *stream.Unit) bool {
				if u.Kind == stream.KindVideo {
					v++
				} else {
					a++
				}
				return (!tc.video || v >= 20) && (!tc.audio || a >= 20)
			})
			tr := d.hub.Tracks()
			if (tr.Video != nil) != tc.video || (tr.Audio != nil) != tc.audio {
				t.Fatalf("tracks video=%v audio=%v, want %v %v", tr.Video != nil, tr.Audio != nil, tc.video, tc.audio)
			}
			if tc.name == "audio only" && (tr.Audio.SampleRate != 48000 || tr.Audio.Channels != 2) {
				t.Fatalf("audio %+v", tr.Audio)
			}
			if v > 0 || a > 0 {
				fmt.Fprintf(io.Discard, "%d %d", v, a)
			}
		})
	}
}

func TestSecondPublisherReplacesFirst(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	d := &dest{hub: stream.New(stream.Config{})}
	base := startIngest(t, auth{"k": d})
	r := d.hub.NewReader("test", 1024)
	defer r.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := make(chan error, 1)
	go func() { first <- (&sim.Source{}).Publish(ctx, base+"k") }()
	readUntil(t, r, 10*time.Second, func(u *stream.Unit) bool { return u.Epoch == 1 && u.Kind == stream.KindVideo && !u.Key })

	second := make(chan error, 1)
	go func() { second <- (&sim.Source{}).Publish(ctx, base+"k") }()
	var last time.Duration
	readUntil(t, r, 10*time.Second, func(u *stream.Unit) bool {
		if u.Kind == stream.KindVideo {
			if u.DTS <= last {
				t.Fatalf("DTS not monotonic across the takeover: %v after %v", u.DTS, last)
			}
			last = u.DTS
		}
		return u.Epoch == 2 && u.Kind == stream.KindVideo && !u.Key
	})
	select {
	case err := <-first:
		if err == nil {
			t.Fatal("first publisher ended without an error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("first publisher was not cut off")
	}
	cancel()
	<-second
}

// TestBrokenMediaMidStreamRefused: an access unit whose NAL length runs past
// its end, after good media, cuts the publisher off with an error status
// naming the cause, and the stream's destination is told why.
func TestBrokenMediaMidStreamRefused(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	d := &dest{hub: stream.New(stream.Config{})}
	base := startIngest(t, auth{"k1": d})
	c, err := sim.LoadClip(sim.DefaultClip)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := rtmp.ClientURL(base + "k1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn := &gortmplib.Client{URL: u, Publish: true}
	if err := conn.Initialize(ctx); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	video := &gortmplib.Track{Codec: &codecs.H264{SPS: c.SPS, PPS: c.PPS}}
	w := &gortmplib.Writer{Conn: conn, Tracks: []*gortmplib.Track{video}}
	if err := w.Initialize(); err != nil {
		t.Fatal(err)
	}
	r := d.hub.NewReader("test", 256)
	defer r.Close()
	sent := 0
	for _, f := range c.Frames {
		if f.Video && sent < 10 {
			if err := w.WriteH264(video, f.PTS, f.DTS, f.NALUs); err != nil {
				t.Fatal(err)
			}
			sent++
		}
	}
	readUntil(t, r, 10*time.Second, func(u *stream.Unit) bool { return u.Kind == stream.KindVideo })
	// A NAL unit that says it is 4 KiB long and carries 3 bytes.
	conn.Write(&message.Video{ChunkStreamID: message.VideoChunkStreamID, MessageStreamID: 0x1000000, Codec: message.CodecH264,
		Type: message.VideoTypeAU, AU: []byte{0, 0, 0x10, 0, 0x41, 0x9a, 0x00}, DTS: time.Second})
	conn.NetConn().SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		m, err := conn.Read()
		if err != nil {
			t.Fatalf("no error status before the connection ended: %v", err)
		}
		cmd, ok := m.(*message.CommandAMF0)
		if !ok || cmd.Name != "onStatus" || len(cmd.Arguments) < 2 {
			continue
		}
		desc := fmt.Sprint(cmd.Arguments[1])
		if !strings.Contains(desc, "NetStream.Publish.Rejected") || !strings.Contains(desc, "bad H.264 access unit") {
			t.Fatalf("status: %s", desc)
		}
		break
	}
	if why := d.refused(); why == nil || !strings.Contains(why.Error(), "bad H.264 access unit") {
		t.Fatalf("the destination was told %v", why)
	}
}
