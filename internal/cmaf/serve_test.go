package cmaf

import "testing"

func TestParseFile(t *testing.T) {
	good := map[string]File{
		"video-init-1.mp4": {Track: "video", Init: true, Version: 1},
		"audio-12.m4s":     {Track: "audio", Seq: 12, Part: -1},
		"video-3.0.m4s":    {Track: "video", Seq: 3, Part: 0},
		"video-0.17.m4s":   {Track: "video", Seq: 0, Part: 17},
	}
	for name, want := range good {
		if got, ok := ParseFile(name); !ok || got != want {
			t.Errorf("ParseFile(%q) = %+v, %v", name, got, ok)
		}
		// Names built by the package parse back to themselves.
		var back string
		switch f := want; {
		case f.Init:
			back = InitName(f.Track, f.Version)
		case f.Part < 0:
			back = SegmentName(f.Track, f.Seq)
		default:
			back = PartName(f.Track, f.Seq, f.Part)
		}
		if back != name {
			t.Errorf("%+v names %q, want %q", want, back, name)
		}
	}
	for _, name := range []string{"", "video", "video-.m4s", "video-01.m4s", "video-1.01.m4s", "text-1.m4s", "video-init-0.mp4",
		"video-1.m4s.m4s", "video--1.m4s", "video-1.-1.m4s", "video-18446744073709551616.m4s", "../video-1.m4s"} {
		if f, ok := ParseFile(name); ok {
			t.Errorf("ParseFile(%q) accepted: %+v", name, f)
		}
	}
}

func FuzzParseFile(f *testing.F) {
	for _, s := range []string{"video-init-1.mp4", "audio-12.m4s", "video-3.0.m4s", "video-x.m4s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		file, ok := ParseFile(name)
		if !ok {
			return
		}
		var back string
		switch {
		case file.Init:
			back = InitName(file.Track, file.Version)
		case file.Part < 0:
			back = SegmentName(file.Track, file.Seq)
		default:
			back = PartName(file.Track, file.Seq, file.Part)
		}
		if back != name {
			t.Fatalf("%q parsed as %+v, which names %q", name, file, back)
		}
	})
}
