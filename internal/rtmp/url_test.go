package rtmp

import (
	"strings"
	"testing"
)

var urlCases = []struct {
	in     string
	ok     bool
	client string // ClientURL's answer, when it has one
}{
	{"rtmp://a.rtmp.youtube.com/live2/KEY", true, "rtmp://a.rtmp.youtube.com/live2#KEY"},
	{"rtmps://live-api-s.facebook.com:443/rtmp/KEY?s=1", true, "rtmps://live-api-s.facebook.com:443/rtmp#KEY?s=1"},
	{"rtmp://127.0.0.1:1935/live/abc/", true, "rtmp://127.0.0.1:1935/live#abc"},
	{"rtmp://[::1]:1935/live/abc", true, "rtmp://[::1]:1935/live#abc"},
	{"rtmp://host/only", true, ""}, // parses, but names no application
	{"rtmp://host/app#key", true, "rtmp://host/app#key"},
	{"rtmp://host/app//", true, ""}, // no stream key
	{"rtmp://host//key", true, ""},  // no application
	{"rtmp://host/a/b/key", true, "rtmp://host/a/b#key"},
	{"https://youtube.com/live", false, ""},
	{"rtmp://", false, ""},
	{"rtmp:///live/key", false, ""},
	{"rtmp://host", false, ""},
	{"rtmp://host/", false, ""},
	{"rtmp://ho st/live/key", false, ""},
	{"not a url", false, ""},
	{"rtmp://host/" + strings.Repeat("k", MaxURLLength), false, ""},
}

func TestParseURL(t *testing.T) {
	for _, c := range urlCases {
		_, err := ParseURL(c.in)
		if (err == nil) != c.ok {
			t.Errorf("ParseURL(%q): %v", c.in, err)
			continue
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), "Invalid URL") {
				t.Errorf("ParseURL(%q): %q does not say Invalid URL", c.in, err)
			}
			continue
		}
		u, err := ClientURL(c.in)
		if c.client == "" {
			if err == nil {
				t.Errorf("ClientURL(%q) = %s", c.in, u)
			}
		} else if err != nil || u.String() != c.client {
			t.Errorf("ClientURL(%q) = %v, %v; want %s", c.in, u, err, c.client)
		}
	}
}

func FuzzParseURL(f *testing.F) {
	for _, c := range urlCases {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := ParseURL(raw)
		if err != nil {
			if u != nil || !strings.HasPrefix(err.Error(), "Invalid URL") {
				t.Fatalf("%q: %v, %v", raw, u, err)
			}
			return
		}
		if len(raw) > MaxURLLength || u.Scheme != "rtmp" && u.Scheme != "rtmps" || u.Hostname() == "" {
			t.Fatalf("%q accepted as %#v", raw, u)
		}
		if c, err := ClientURL(raw); err == nil && (c.Fragment == "" || c.Host != u.Host) {
			t.Fatalf("%q: client URL %s has no stream key or another host", raw, c)
		}
	})
}
