package cmaf

import "testing"

func TestParseFile(t *testing.T) {
	good := map[string]File{
		"video-init-1.mp4": {Track: "video", Init: true, Version: 1},
		"audio-12.m4s":     {Track: "audio", Seq: 12},
		"video-p0.m4s":     {Track: "video", IsPart: true, PartID: 0},
		"audio-p1234.m4s":  {Track: "audio", IsPart: true, PartID: 1234},
	}
	for name, want := range good {
		if got, ok := ParseFile(name); !ok || got != want {
			t.Errorf("ParseFile(%q) = %+v, %v", name, got, ok)
		}
		if back := want.Name(); back != name {
			t.Errorf("%+v names %q, want %q", want, back, name)
		}
	}
	for _, name := range []string{"", "video", "video-.m4s", "video-01.m4s", "video-p01.m4s", "video-p.m4s", "text-1.m4s",
		"video-init-0.mp4", "video-init-01.mp4", "video-1.m4s.m4s", "video--1.m4s", "video-1.0.m4s",
		"video-18446744073709551616.m4s", "../video-1.m4s"} {
		if f, ok := ParseFile(name); ok {
			t.Errorf("ParseFile(%q) accepted: %+v", name, f)
		}
	}
}

func FuzzParseFile(f *testing.F) {
	for _, s := range []string{"video-init-1.mp4", "audio-12.m4s", "video-p3.m4s", "video-x.m4s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if file, ok := ParseFile(name); ok && file.Name() != name {
			t.Fatalf("%q parsed as %+v, which names %q", name, file, file.Name())
		}
	})
}
