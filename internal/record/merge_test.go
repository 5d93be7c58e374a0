package record_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/record"
)

// TestPieceMerged: a stream recorded on one node until it died, then on
// the node that took it over (seeded with the last segments its relay
// had, numbered on), is one recording once the first node's piece is taken
// in: every segment once, one gap, its playlist and files whole, the same
// after a reload; taking the piece in again adds nothing.
func TestPieceMerged(t *testing.T) {
	dead, err := record.Open(record.Config{Dir: t.TempDir()}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	const id = "beef01"
	first := newPackager()
	if _, err := dead.Start(id, "moves", false, first); err != nil {
		t.Fatal(err)
	}
	feed(t, first, 2) // 16 s, the last segment cut off
	snap, pos := first.Snapshot(), first.Position()
	if len(snap.Segments) < 5 {
		t.Fatalf("the first node's window has %d segments", len(snap.Segments))
	}
	snap.Segments = snap.Segments[len(snap.Segments)-3:] // what a relay keeps
	first.Close()
	rec, _ := dead.Get(id)
	<-rec.Done()
	before := rec.Info()

	dir := t.TempDir()
	holder, err := record.Open(record.Config{Dir: dir}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	next := newPackager()
	if err := next.Seed(snap); err != nil {
		t.Fatal(err)
	}
	next.Resume(pos)
	if _, err := holder.Start(id, "moves", false, next); err != nil {
		t.Fatal(err)
	}
	feedFrom(t, next, 1, pos.End)
	next.Close()
	rec, _ = holder.Get(id)
	<-rec.Done()
	after := rec.Info()

	desc, err := dead.Piece(id)
	if err != nil {
		t.Fatal(err)
	}
	open := func(_ context.Context, name string) (io.ReadCloser, error) { return dead.File(id, name) }
	n, err := holder.Merge(t.Context(), id, desc, open)
	if err != nil {
		t.Fatal(err)
	}
	in := rec.Info()
	// The seeded window was recorded on both: its segments count once.
	if n != before.Segments-3 || in.Segments != after.Segments+n ||
		in.Duration < before.Duration+7*time.Second || in.Status != record.StatusComplete || !in.StartedAt.Equal(before.StartedAt) {
		t.Fatalf("merged: %d segments in, %+v\nthe dead node's piece: %+v\nthe holder's: %+v", n, in, before, after)
	}
	// The only gap is the one the takeover made: the window the holder
	// kept goes on from the dead node's piece.
	if in.Gaps != 1 || after.Gaps != 1 {
		t.Fatalf("merged with %d gaps (the holder's piece %d), want 1: %+v", in.Gaps, after.Gaps, in)
	}
	if again, err := holder.Merge(t.Context(), id, desc, open); err != nil || again != 0 {
		t.Fatalf("the piece taken in again: %d segments, %v", again, err)
	}

	holder.Close()
	holder, err = record.Open(record.Config{Dir: dir}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	rec, _ = holder.Get(id)
	if re := rec.Info(); re.Segments != in.Segments || re.Gaps != 1 || re.Duration != in.Duration {
		t.Fatalf("reloaded: %+v, was %+v", re, in)
	}
	mux := http.NewServeMux()
	holder.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	pl := get(t, srv.URL+"/recordings/"+id+"/video.m3u8")
	if strings.Count(pl, "#EXT-X-DISCONTINUITY\n") != 1 || !strings.Contains(pl, "#EXT-X-ENDLIST") {
		t.Fatalf("the merged recording's playlist:\n%s", pl)
	}
	getEvery(t, srv.URL+"/recordings/"+id+"/", pl)
	get(t, srv.URL+"/recordings/"+id+".mp4")
}

// getEvery fetches every file a playlist names (its URIs relative to
// base): each must answer 200.
func getEvery(t *testing.T, base, playlist string) {
	t.Helper()
	for _, line := range strings.Split(playlist, "\n") {
		if line == "" || strings.HasPrefix(line, "#") && !strings.Contains(line, "URI=") {
			continue
		}
		uri := line
		if i := strings.Index(line, `URI="`); i >= 0 {
			uri = strings.TrimSuffix(line[i+5:], `"`)
		}
		get(t, base+uri)
	}
}

// get fetches url, which must answer 200.
func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return string(b)
}
