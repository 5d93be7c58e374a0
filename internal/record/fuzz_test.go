package record

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/cmaf"
	"github.com/glasscast/glasscast/internal/cmaf/cmaftest"
)

// someParts are fragments as the packager makes them, both tracks.
func someParts(tb testing.TB) [][]byte {
	src := cmaftest.New(tb, cmaf.Config{Window: 4})
	src.Feed(tb, 1)
	var out [][]byte
	src.P.View(func(v *cmaf.View) {
		for _, ts := range v.Segments[0].Tracks {
			for _, p := range ts.Parts[:min(2, len(ts.Parts))] {
				out = append(out, p.Data)
			}
		}
	})
	return out
}

func TestReadMoofOfPackagedParts(t *testing.T) {
	for i, data := range someParts(t) {
		fi, err := readMoof(bytes.NewReader(data), 0, nil)
		if err != nil || len(fi.samples) == 0 {
			t.Fatalf("part %d: %d samples, %v", i, len(fi.samples), err)
		}
		var size uint32
		for _, s := range fi.samples {
			size += s.size
		}
		if int(fi.dataAt)+int(size) != len(data) {
			t.Fatalf("part %d: samples at %d of %d bytes end past or before the part's %d", i, fi.dataAt, size, len(data))
		}
	}
}

func FuzzReadMoof(f *testing.F) {
	for _, p := range someParts(f) {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fi, err := readMoof(bytes.NewReader(b), 0, nil)
		if err == nil && len(fi.samples) > maxFragSamples {
			t.Fatalf("%d samples", len(fi.samples))
		}
	})
}

// journalSample is a journal as a recording writes it: an init, two
// segments, and a line torn by a crash.
func journalSample(tb testing.TB) []byte {
	lines := []journalLine{
		{Init: &initRec{Version: 1, Tracks: []cmaf.Track{{Name: "video", Timescale: 90000}, {Name: "audio", Timescale: 48000}}}},
		{Seg: &segRec{Seq: 0, Init: 1, Wall: time.Unix(1e9, 0).UTC(), Tracks: []trackRec{{Name: "video", Dur: 90000, Parts: []int{3}}, {Name: "audio", Dur: 48000, Parts: []int{2}}}}},
		{Seg: &segRec{Seq: 1, Init: 1, Disc: true, Tracks: []trackRec{{Name: "video", Start: 90000, Dur: 90000, Parts: []int{3}}}}},
	}
	var b bytes.Buffer
	for _, l := range lines {
		j, err := json.Marshal(l)
		if err != nil {
			tb.Fatal(err)
		}
		b.Write(j)
		b.WriteByte('\n')
	}
	b.WriteString(`{"seg":{"seq":2,"init":1,"tra`)
	return b.Bytes()
}

// writeRecording lays out a recording directory with journal j and the
// segment files journalSample names.
func writeRecording(tb testing.TB, dir string, j []byte) {
	files := map[string]string{"meta.json": `{"id":"abc123","name":"n","startedAt":"2026-01-01T00:00:00Z"}`,
		"journal.jsonl": string(j), "video-0.m4s": "vvv", "audio-0.m4s": "aa", "video-1.m4s": "vvv"}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

func TestLoadJournal(t *testing.T) {
	dir := t.TempDir()
	writeRecording(t, dir, journalSample(t))
	rec, err := load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.segs) != 2 || rec.inits[1] == nil || rec.bytes != 8 {
		t.Fatalf("loaded %d segments, init %v, %d bytes", len(rec.segs), rec.inits[1] != nil, rec.bytes)
	}
	// A line naming a file outside the recording is not taken.
	bad := append(journalSample(t)[:0:0], journalSample(t)...)
	bad = append(bad[:bytes.LastIndexByte(bad, '\n')+1], `{"seg":{"seq":5,"init":1,"tracks":[{"name":"../x","parts":[]}]}}`+"\n"...)
	writeRecording(t, dir, bad)
	if rec, err = load(dir); err != nil || len(rec.segs) != 2 {
		t.Fatalf("a journal naming ../x: %d segments, %v", len(rec.segs), err)
	}
}

func FuzzLoadJournal(f *testing.F) {
	f.Add(journalSample(f))
	f.Add([]byte("{}\n{\"init\":null}\n"))
	f.Fuzz(func(t *testing.T, j []byte) {
		rec := &Recording{inits: map[int]*initRec{}}
		rec.readJournal(bytes.NewReader(j), func(sr *segRec) (int64, bool) { return int64(len(sr.Tracks)), true })
		for _, s := range rec.segs {
			if rec.inits[s.Init] == nil || !safeTracks(s.Tracks) {
				t.Fatalf("segment %d taken with init %d, tracks %+v", s.Seq, s.Init, s.Tracks)
			}
		}
		if rec.jsize > int64(len(j))+1 {
			t.Fatalf("journal size %d of %d bytes", rec.jsize, len(j))
		}
	})
}
