package sim

import (
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
)

func TestDefaultClip(t *testing.T) {
	c, err := LoadClip(DefaultClip)
	if err != nil {
		t.Fatal(err)
	}
	if len(DefaultClip) >= 1<<20 {
		t.Fatalf("the committed clip is %d bytes; keep it under 1 MB", len(DefaultClip))
	}
	if c.Duration < 8*time.Second || c.Duration > 8050*time.Millisecond {
		t.Fatalf("duration %v", c.Duration)
	}
	var video, audio, keys int
	var last [2]time.Duration
	for _, f := range c.Frames {
		i := 0
		if f.Video {
			video++
			if h264.IsRandomAccess(f.NALUs) {
				keys++
			}
		} else {
			audio++
			i = 1
		}
		if f.DTS < last[i] {
			t.Fatalf("DTS goes back to %v", f.DTS)
		}
		last[i] = f.DTS
	}
	if video != 240 || keys != 4 || audio < 340 || c.Audio.SampleRate != 44100 || c.Audio.ChannelConfig != 1 {
		t.Fatalf("%d video frames, %d keyframes, %d audio frames, audio %+v", video, keys, audio, c.Audio)
	}
	if v := c.WithoutAudio(); v.Audio != nil || len(v.Frames) != video {
		t.Fatal("WithoutAudio kept audio")
	}
	if a := c.WithoutVideo(); a.SPS != nil || len(a.Frames) != audio {
		t.Fatal("WithoutVideo kept video")
	}
}

func FuzzLoadClip(f *testing.F) {
	f.Add(DefaultClip[:4096])
	f.Add([]byte{0, 0, 0, 8, 'f', 't', 'y', 'p'})
	f.Add([]byte{0, 0, 0, 1, 'm', 'd', 'a', 't', 0, 0, 0, 0, 0, 0, 0, 16})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := LoadClip(b)
		if err == nil && (c.Duration <= 0 || len(c.Frames) == 0) {
			t.Fatalf("accepted a clip without frames")
		}
	})
}
