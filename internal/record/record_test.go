package record_test

import (
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/cmaf"
	"github.com/glasscast/glasscast/internal/record"
	"github.com/glasscast/glasscast/internal/sim"
	"github.com/glasscast/glasscast/internal/stream"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// feed publishes loops of the built-in clip into a packager, as fast as it
// goes, with the stream's timeline, and returns the bytes of media written.
func feed(tb testing.TB, p *cmaf.Packager, loops int) int {
	tb.Helper()
	return feedFrom(tb, p, loops, 0)
}

// feedFrom is feed for a stream whose time goes on from at (a stream taken
// over from another node).
func feedFrom(tb testing.TB, p *cmaf.Packager, loops int, at time.Duration) int {
	tb.Helper()
	c, err := sim.LoadClip(sim.DefaultClip)
	if err != nil {
		tb.Fatal(err)
	}
	tracks, err := c.Tracks()
	if err != nil {
		tb.Fatal(err)
	}
	h := stream.New(stream.Config{})
	if at > 0 {
		h.Resume(at, time.Now())
	}
	r := h.NewReader("cmaf", 1<<16)
	pub, err := h.Publish(tracks)
	if err != nil {
		tb.Fatal(err)
	}
	n := 0
	for i := range loops {
		base := time.Duration(i) * c.Duration
		for _, f := range c.Frames {
			if f.Video {
				pub.WriteVideo(base+f.PTS, base+f.DTS, f.NALUs)
				for _, nalu := range f.NALUs {
					n += len(nalu)
				}
			} else {
				pub.WriteAudio(base+f.DTS, f.AU)
				n += len(f.AU)
			}
			for r.Len() > 0 {
				u, _ := r.Read(tb.Context())
				p.Write(u)
			}
		}
	}
	return n
}

// newPackager is a packager whose window outlasts a test's media: feed
// writes far faster than real time, and the recorder, which follows the
// packager, must not find segments gone before it copied them.
func newPackager() *cmaf.Packager { return cmaf.New(cmaf.Config{Window: 64}) }

func TestRecordAndReload(t *testing.T) {
	dir := t.TempDir()
	s, err := record.Open(record.Config{Dir: dir}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	p := newPackager()
	if _, err := s.Start("abc123", "test", false, p); err != nil {
		t.Fatal(err)
	}
	feed(t, p, 2) // 16 s
	p.Close()
	rec, _ := s.Get("abc123")
	<-rec.Done()
	in := rec.Info()
	if in.Status != record.StatusComplete || in.Duration < 15*time.Second || in.Duration > 17*time.Second {
		t.Fatalf("after 16 s of media: %+v", in)
	}
	s.Close()
	// Recordings are their owner's alone.
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		st, _ := d.Info()
		if want := fs.FileMode(0o600); d.IsDir() && st.Mode().Perm() != 0o700 || !d.IsDir() && st.Mode().Perm() != want {
			t.Errorf("%s is %v", path, st.Mode())
		}
		return nil
	})

	// A server that died mid-write: no end in the meta, a torn last line.
	meta := filepath.Join(dir, "abc123", "meta.json")
	b, _ := os.ReadFile(meta)
	os.WriteFile(meta, []byte(strings.Replace(string(b), `"endedAt"`, `"notEndedAt"`, 1)), 0o644)
	j, _ := os.OpenFile(filepath.Join(dir, "abc123", "journal.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	j.WriteString(`{"seg":{"seq":99,"init":1,"tra`)
	j.Close()

	s, err = record.Open(record.Config{Dir: dir}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec, err = s.Get("abc123")
	if err != nil {
		t.Fatal(err)
	}
	again := rec.Info()
	if again.Status != record.StatusInterrupted || again.Segments != in.Segments || again.Duration != in.Duration || again.Bytes != in.Bytes {
		t.Fatalf("reloaded: %+v, was %+v", again, in)
	}

	mux := http.NewServeMux()
	s.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for path, want := range map[string]int{
		"/recordings/abc123/index.m3u8":       200,
		"/recordings/abc123/video.m3u8":       200,
		"/recordings/abc123/init-video-1.mp4": 200,
		"/recordings/abc123/video-0.m4s":      200,
		"/recordings/abc123/video-99.m4s":     404, // torn: never listed
		"/recordings/abc123/../meta.json":     404,
		"/recordings/abc123/meta.json":        404,
		"/recordings/abc123.mp4":              200,
		"/recordings/nope.mp4":                404,
	} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
}

// A recording whose stream comes back after a restart goes on where it
// stopped: what it had stays (a torn journal line dropped), the new
// segments follow a discontinuity, and all of it plays as one recording.
func TestRecordContinuedAfterRestart(t *testing.T) {
	dir := t.TempDir()
	s, err := record.Open(record.Config{Dir: dir}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	p := newPackager()
	if _, err := s.Start("cafe01", "kept", false, p); err != nil {
		t.Fatal(err)
	}
	feed(t, p, 2)
	p.Close()
	rec, _ := s.Get("cafe01")
	<-rec.Done()
	first := rec.Info()
	s.Close()
	j, _ := os.OpenFile(filepath.Join(dir, "cafe01", "journal.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	j.WriteString(`{"seg":{"seq":99,"init":1,"tra`)
	j.Close()

	s, err = record.Open(record.Config{Dir: dir}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p = newPackager()
	if _, err := s.Start("cafe01", "kept", false, p); err != nil {
		t.Fatal(err)
	}
	feed(t, p, 1)
	p.Close()
	rec, _ = s.Get("cafe01")
	<-rec.Done()
	in := rec.Info()
	if in.Status != record.StatusComplete || in.Gaps != first.Gaps+1 || in.Segments <= first.Segments ||
		in.Duration < first.Duration+7*time.Second || !in.StartedAt.Equal(first.StartedAt) {
		t.Fatalf("continued: %+v\nfirst part: %+v", in, first)
	}

	// Reloaded once more, it lists the same; its playlist has both parts.
	s.Close()
	s, err = record.Open(record.Config{Dir: dir}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ = s.Get("cafe01")
	if again := rec.Info(); again.Segments != in.Segments || again.Duration != in.Duration || again.Gaps != in.Gaps {
		t.Fatalf("reloaded: %+v, was %+v", again, in)
	}
	mux := http.NewServeMux()
	s.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/recordings/cafe01/video.m3u8")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	pl := string(body)
	if strings.Count(pl, "#EXT-X-DISCONTINUITY\n") != 1 || strings.Count(pl, "#EXT-X-MAP") != 2 || !strings.Contains(pl, "#EXT-X-ENDLIST") {
		t.Fatalf("playlist of the continued recording:\n%s", pl)
	}
	getEvery(t, srv.URL+"/recordings/cafe01/", pl)
}

// A stream that goes on past the byte budget stops being recorded, and what
// was recorded stays whole and playable.
func TestRecordStopsAtBudget(t *testing.T) {
	s, err := record.Open(record.Config{Dir: t.TempDir(), MaxBytes: 1 << 20}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := newPackager()
	if _, err := s.Start("cafe01", "long", false, p); err != nil {
		t.Fatal(err)
	}
	feed(t, p, 3)
	rec, _ := s.Get("cafe01")
	select {
	case <-rec.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the recording went on past its budget")
	}
	in := rec.Info()
	if !in.Truncated || in.Bytes < 600<<10 || in.Bytes > 1<<20 || in.Status != record.StatusComplete {
		t.Fatalf("after the budget: %+v", in)
	}
	p.Close()
}

// BenchmarkRecord measures the recorder's throughput: the built-in clip
// packaged and written to disk as fast as it goes, per second of media.
func BenchmarkRecord(b *testing.B) {
	dir := b.TempDir()
	s, err := record.Open(record.Config{Dir: dir}, quiet)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ReportAllocs()
	total := 0
	for i := range b.N {
		p := newPackager()
		id := fmt.Sprintf("be%04x", i%16)
		s.Delete(id)
		if _, err := s.Start(id, "bench", false, p); err != nil {
			b.Fatal(err)
		}
		total += feed(b, p, 4)
		p.Close()
		rec, _ := s.Get(id)
		<-rec.Done()
	}
	b.SetBytes(int64(total / b.N))
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/32e6, "ms/media-second")
}

// BenchmarkMP4Layout measures what the first request for a recording's MP4
// costs: reading every stored fragment's moof and laying out the
// progressive file, per minute of media (later requests hit the cache).
func BenchmarkMP4Layout(b *testing.B) {
	s, err := record.Open(record.Config{Dir: b.TempDir()}, quiet)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	p := newPackager()
	if _, err := s.Start("feed01", "bench", false, p); err != nil {
		b.Fatal(err)
	}
	feed(b, p, 15) // two minutes
	p.Close()
	rec, _ := s.Get("feed01")
	<-rec.Done()
	minutes := rec.Info().Duration.Minutes()
	b.ResetTimer()
	for range b.N {
		if _, err := record.MP4Layout(s, "feed01"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N)/minutes, "ms/media-minute")
}
