package flv

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/sim"
	"github.com/glasscast/glasscast/internal/stream"
)

// flvSample is what a transcoding ffmpeg writes: both sequence headers, then
// a keyframe, a B-frame-ordered frame and audio.
func flvSample(t testing.TB) ([]byte, *stream.Tracks, []*stream.Unit) {
	tracks := testTracks(t)
	units := []*stream.Unit{
		{Kind: stream.KindVideo, DTS: 0, PTS: 66 * time.Millisecond, Key: true, NALUs: [][]byte{{0x65, 1, 2, 3}, {0x06, 9}}},
		{Kind: stream.KindAudio, DTS: 21 * time.Millisecond, PTS: 21 * time.Millisecond, Key: true, Payload: []byte{0x21, 0x10, 4}},
		{Kind: stream.KindVideo, DTS: 33 * time.Millisecond, PTS: 33 * time.Millisecond, NALUs: [][]byte{{0x41, 7, 7}}},
	}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.Header(tracks); err != nil {
		t.Fatal(err)
	}
	for _, u := range units {
		u.Tracks = tracks
		if err := w.Unit(u, 0); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	return buf.Bytes(), tracks, units
}

func readAll(data []byte) (*Reader, []*stream.Unit, error) {
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, nil, err
	}
	var out []*stream.Unit
	for {
		u, err := r.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return r, out, nil
			}
			return r, out, err
		}
		if u != nil {
			out = append(out, u)
		}
	}
}

func TestFLVReadBack(t *testing.T) {
	data, tracks, want := flvSample(t)
	r, got, err := readAll(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r.tracks.Video.SPS, tracks.Video.SPS) || !reflect.DeepEqual(r.tracks.Video.PPS, tracks.Video.PPS) ||
		r.tracks.Audio.Config != tracks.Audio.Config {
		t.Fatalf("tracks read back: %+v %+v", r.tracks.Video, r.tracks.Audio)
	}
	if len(got) != len(want) {
		t.Fatalf("%d units read back, want %d", len(got), len(want))
	}
	for i, u := range got {
		w := want[i]
		if u.Kind != w.Kind || u.DTS != w.DTS || u.PTS != w.PTS || u.Key != w.Key ||
			!reflect.DeepEqual(u.NALUs, w.NALUs) || !bytes.Equal(u.Payload, w.Payload) {
			t.Fatalf("unit %d: %+v, want %+v", i, u, w)
		}
	}
	// Cut anywhere, it ends with an error, never a panic or a partial unit
	// taken as whole.
	for n := 0; n < len(data); n++ {
		_, units, _ := readAll(data[:n])
		if len(units) > len(want) {
			t.Fatalf("cut at %d: %d units", n, len(units))
		}
	}
}

func FuzzFLVRead(f *testing.F) {
	data, _, _ := flvSample(f)
	f.Add(data)
	f.Add(data[:40])
	f.Fuzz(func(t *testing.T, b []byte) {
		readAll(b)
	})
}

// testTracks are the test clip's tracks (H.264 and AAC-LC).
func testTracks(t testing.TB) *stream.Tracks {
	tracks, err := sim.DefaultTracks()
	if err != nil {
		t.Fatal(err)
	}
	return tracks
}
