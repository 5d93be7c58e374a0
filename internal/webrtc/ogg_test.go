package webrtc

import (
	"bytes"
	"errors"
	"io"
	"os/exec"
	"testing"
)

// opusOgg makes 1 s of Ogg Opus as the transcoder's ffmpeg writes it.
func opusOgg(t testing.TB) []byte {
	t.Helper()
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "sine=sample_rate=44100", "-t", "1",
		"-c:a", "libopus", "-b:a", "64k", "-application", "lowdelay", "-frame_duration", "20", "-ar", "48000",
		"-f", "ogg", "-page_duration", "20000", "-flush_packets", "1", "pipe:1").Output()
	if err != nil {
		t.Fatalf("ffmpeg (run scripts/test, which installs it): %v", err)
	}
	return out
}

func TestOggOpus(t *testing.T) {
	data := opusOgg(t)
	o := newOggReader(bytes.NewReader(data))
	n := 0
	last := int64(0)
	var durations []int64
	for {
		p, g, err := o.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(p) == 0 || g <= last {
			t.Fatalf("packet %d: %d bytes, granule %d after %d", n, len(p), g, last)
		}
		if n > 0 {
			durations = append(durations, g-last)
		}
		last = g
		n++
	}
	if n < 49 || n > 52 || o.preSkip == 0 {
		t.Fatalf("%d packets, pre-skip %d", n, o.preSkip)
	}
	// Every packet is 20 ms; the last one may be cut at the stream's end.
	for i, d := range durations[:len(durations)-1] {
		if d != 960 {
			t.Fatalf("packet %d lasts %d samples, want 960", i+1, d)
		}
	}
}

func FuzzOggReader(f *testing.F) {
	if _, err := exec.LookPath("ffmpeg"); err == nil {
		f.Add(opusOgg(f)[:2000])
	}
	f.Add([]byte("OggS\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x13OpusHead\x01\x01x\x00\x80\xbb\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		o := newOggReader(bytes.NewReader(b))
		for range 1000 {
			if _, _, err := o.next(); err != nil {
				return
			}
		}
	})
}
