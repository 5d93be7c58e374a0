// Package cmaftest packages the test clip for the tests of the packages
// that read a packager (HLS, DASH, recordings): the clip goes through a
// real hub into a real packager, synchronously, as fast as it can.
package cmaftest

import (
	"context"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/cmaf"
	"github.com/glasscast/glasscast/internal/sim"
	"github.com/glasscast/glasscast/internal/stream"
)

// Source is the clip published into a hub whose units a packager takes.
type Source struct {
	Clip *sim.Clip
	Hub  *stream.Hub
	R    *stream.Reader
	P    *cmaf.Packager
	Pub  *stream.Publisher
	loop int
}

// New publishes nothing yet: Feed does.
func New(t testing.TB, cfg cmaf.Config) *Source {
	t.Helper()
	c, err := sim.LoadClip(sim.DefaultClip)
	if err != nil {
		t.Fatal(err)
	}
	tracks, err := c.Tracks()
	if err != nil {
		t.Fatal(err)
	}
	s := &Source{Clip: c, Hub: stream.New(stream.Config{}), P: cmaf.New(cfg)}
	s.R = s.Hub.NewReader("cmaf", 1<<14)
	if s.Pub, err = s.Hub.Publish(tracks); err != nil {
		t.Fatal(err)
	}
	return s
}

// Feed publishes loops more of the clip, on from where the last ended, and
// packages every unit.
func (s *Source) Feed(t testing.TB, loops int) {
	t.Helper()
	for range loops {
		Write(t, s.Pub, s.R, s.P, s.Clip, time.Duration(s.loop)*s.Clip.Duration)
		s.loop++
	}
}

// End closes the publisher and the packager: the stream has ended.
func (s *Source) End(t testing.TB) {
	t.Helper()
	s.Pub.Close(nil)
	Drain(t, s.R, s.P)
	s.P.Close()
}

// Write publishes one pass of clip c at base and packages what the hub
// gives out.
func Write(t testing.TB, pub *stream.Publisher, r *stream.Reader, p *cmaf.Packager, c *sim.Clip, base time.Duration) {
	t.Helper()
	for i := range c.Frames {
		if err := c.WriteFrame(pub, i, base); err != nil {
			t.Fatal(err)
		}
		Drain(t, r, p)
	}
}

// Drain packages what the reader holds.
func Drain(t testing.TB, r *stream.Reader, p *cmaf.Packager) {
	t.Helper()
	for r.Len() > 0 {
		u, err := r.Read(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		p.Write(u)
	}
}
