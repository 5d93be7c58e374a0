package cmaf_test

import (
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/cmaf"
	"github.com/glasscast/glasscast/internal/stream"
)

// BenchmarkHubAndPackager measures the publisher's path through the hub and
// the packager behind it: per second of the built-in clip (30 video frames,
// ~43 audio frames), from WriteVideo/WriteAudio to finished parts.
func BenchmarkHubAndPackager(b *testing.B) {
	c := loadClip(b)
	h := stream.New(stream.Config{})
	r := h.NewReader("cmaf", 4096)
	p := cmaf.New(cmaf.Config{})
	pub, err := h.Publish(tracksOf(b, c))
	if err != nil {
		b.Fatal(err)
	}
	bytes := 0
	for _, f := range c.Frames {
		for _, n := range f.NALUs {
			bytes += len(n)
		}
		bytes += len(f.AU)
	}
	b.SetBytes(int64(bytes))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		base := time.Duration(i) * c.Duration
		for _, f := range c.Frames {
			if f.Video {
				pub.WriteVideo(base+f.PTS, base+f.DTS, f.NALUs)
			} else {
				pub.WriteAudio(base+f.DTS, f.AU)
			}
			drain(b, r, p)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/c.Duration.Seconds()/1000, "µs/stream-second")
}
