package hls_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/glasscast/glasscast/internal/cmaf"
	"github.com/glasscast/glasscast/internal/cmaf/cmaftest"
	"github.com/glasscast/glasscast/internal/hls"
)

// serve puts an HLS handler for stream "s" in front of src's packager.
func serve(t *testing.T, src *cmaftest.Source) *httptest.Server {
	mux := http.NewServeMux()
	mux.Handle("/hls/{id}/{file}", hls.New(func(id string) (*cmaf.Packager, bool) { return src.P, id == "s" }))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// newest is the last part the view has of track: its segment's sequence
// number and its index in the segment.
func newest(p *cmaf.Packager, track string) (msn uint64, part int) {
	p.View(func(v *cmaf.View) {
		entries := v.TrackSegments(track)
		last := entries[len(entries)-1].TS
		if len(last.Parts) == 0 {
			last = entries[len(entries)-2].TS
		}
		msn, part = last.Seq, len(last.Parts)-1
	})
	return msn, part
}

func TestPlaylistsFollowThePackager(t *testing.T) {
	src := cmaftest.New(t, cmaf.Config{Window: 6})
	src.Feed(t, 2)
	srv := serve(t, src)

	code, multi := get(t, srv.URL+"/hls/s/index.m3u8")
	if code != http.StatusOK || !strings.Contains(multi, "#EXT-X-STREAM-INF:") || !strings.Contains(multi, "video.m3u8") ||
		!strings.Contains(multi, `TYPE=AUDIO`) || !strings.Contains(multi, "audio.m3u8") {
		t.Fatalf("multivariant playlist: %d\n%s", code, multi)
	}
	for _, track := range []string{"video", "audio"} {
		code, pl := get(t, srv.URL+"/hls/s/"+track+".m3u8")
		if code != http.StatusOK {
			t.Fatalf("%s playlist: %d %s", track, code, pl)
		}
		var complete, parts int
		src.P.View(func(v *cmaf.View) {
			for _, e := range v.TrackSegments(track) {
				if e.TS.Complete {
					complete++
				}
				parts += len(e.TS.Parts)
			}
		})
		if n := strings.Count(pl, "#EXTINF:"); n != complete {
			t.Errorf("%s: %d segments listed, the packager has %d complete", track, n, complete)
		}
		// Parts are listed for the last segments only; every one listed is
		// one the packager has.
		if n := strings.Count(pl, "#EXT-X-PART:"); n == 0 || n > parts {
			t.Errorf("%s: %d parts listed of %d", track, n, parts)
		}
		msn, part := hls.LastPart(pl)
		if wm, wp := newest(src.P, track); msn != wm || part != wp {
			t.Errorf("%s: the newest part listed is %d.%d, the packager's is %d.%d", track, msn, part, wm, wp)
		}
		if !strings.Contains(pl, "#EXT-X-PRELOAD-HINT:TYPE=PART") || strings.Contains(pl, "#EXT-X-ENDLIST") {
			t.Errorf("%s: a live playlist without a preload hint, or ended:\n%s", track, pl)
		}
	}
	if code, _ := get(t, srv.URL+"/hls/s/subtitles.m3u8"); code != http.StatusNotFound {
		t.Errorf("an unknown track: %d", code)
	}
	if code, _ := get(t, srv.URL+"/hls/nope/index.m3u8"); code != http.StatusNotFound {
		t.Errorf("an unknown stream: %d", code)
	}
}

// A blocking reload for the next part is answered with a playlist that has
// it once the packager makes it; one far ahead is refused at once.
func TestBlockingReload(t *testing.T) {
	src := cmaftest.New(t, cmaf.Config{Window: 6})
	src.Feed(t, 1)
	srv := serve(t, src)
	msn, _ := newest(src.P, "video")
	want := msn + 1
	type answer struct {
		code int
		body string
	}
	got := make(chan answer, 1)
	go func() {
		code, body := get(t, fmt.Sprintf("%s/hls/s/video.m3u8?_HLS_msn=%d&_HLS_part=0", srv.URL, want))
		got <- answer{code, body}
	}()
	src.Feed(t, 1)
	a := <-got
	if a.code != http.StatusOK {
		t.Fatalf("blocking reload: %d %s", a.code, a.body)
	}
	if m, p := hls.LastPart(a.body); m < want || m == want && p < 0 {
		t.Fatalf("asked for %d.0, got a playlist up to %d.%d", want, m, p)
	}
	if code, _ := get(t, fmt.Sprintf("%s/hls/s/video.m3u8?_HLS_msn=%d", srv.URL, want+100)); code != http.StatusBadRequest {
		t.Errorf("_HLS_msn far ahead: %d", code)
	}
	if code, _ := get(t, srv.URL+"/hls/s/video.m3u8?_HLS_part=1"); code != http.StatusBadRequest {
		t.Errorf("_HLS_part alone: %d", code)
	}
	src.End(t)
	if code, pl := get(t, srv.URL+"/hls/s/video.m3u8"); code != http.StatusOK || !strings.Contains(pl, "#EXT-X-ENDLIST") ||
		strings.Contains(pl, "PRELOAD-HINT") {
		t.Errorf("after the end: %d\n%s", code, pl)
	}
}

var lastPartCases = []struct {
	playlist string
	msn      uint64
	part     int
}{
	{"", 0, -1},
	{"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:1.0,\nvideo-7.m4s\n", 0, -1},
	{"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-PART:DURATION=0.2,URI=\"a\"\n#EXT-X-PART:DURATION=0.2,URI=\"b\"\n#EXTINF:0.4,\nvideo-7.m4s\n#EXT-X-PART:DURATION=0.2,URI=\"c\"\n", 8, 0},
	{"#EXT-X-MEDIA-SEQUENCE:3\n#EXT-X-PART:DURATION=0.2,URI=\"a\"\n#EXT-X-PART:DURATION=0.2,URI=\"b\"\n", 3, 1},
	{"#EXT-X-MEDIA-SEQUENCE:nonsense\n#EXT-X-PART:x\n", 0, 0},
}

func TestLastPart(t *testing.T) {
	for _, c := range lastPartCases {
		if msn, part := hls.LastPart(c.playlist); msn != c.msn || part != c.part {
			t.Errorf("LastPart(%q) = %d, %d; want %d, %d", c.playlist, msn, part, c.msn, c.part)
		}
	}
}

func FuzzLastPart(f *testing.F) {
	for _, c := range lastPartCases {
		f.Add(c.playlist)
	}
	f.Fuzz(func(t *testing.T, pl string) {
		msn, part := hls.LastPart(pl)
		if part < -1 || !strings.Contains(pl, "#EXT-X-PART:") && (part != -1 || msn != 0) {
			t.Fatalf("LastPart = %d, %d", msn, part)
		}
	})
}
