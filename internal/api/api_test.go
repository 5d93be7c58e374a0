package api

import (
	"strings"
	"testing"
)

func TestDecodeCreate(t *testing.T) {
	ok := map[string]CreateRequest{
		``:                                  {},
		`{}`:                                {},
		` {"name":"a","record":true} `:      {Name: "a", Record: true},
		`{"name":"caf\u00e9 \ud83d\ude00"}`: {Name: "café 😀"},
	}
	for in, want := range ok {
		got, err := DecodeCreate(strings.NewReader(in))
		if err != nil || got != want {
			t.Errorf("DecodeCreate(%q) = %+v, %v", in, got, err)
		}
	}
	for _, in := range []string{`[]`, `{"name":1}`, `{"x":1}`, `{}{}`, `{"name":"\u0007"}`, `nul`} {
		if _, err := DecodeCreate(strings.NewReader(in)); err == nil {
			t.Errorf("DecodeCreate(%q) accepted", in)
		}
	}
}

func FuzzDecodeCreate(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"name":"x","record":false}`, `{"name":1}`, `{"a":{}}`, `{}{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := DecodeCreate(strings.NewReader(string(b)))
		if err == nil && len(req.Name) > MaxNameLength {
			t.Fatalf("accepted a name of %d bytes", len(req.Name))
		}
	})
}

func FuzzDecodeOutput(f *testing.F) {
	for _, s := range []string{`{"url":"rtmp://a.rtmp.youtube.com/live2/key"}`, `{"url":"rtmps://x/app/k","name":"n","profile":"twitch"}`,
		`{"url":"http://x/y"}`, `{"url":"rtmp://h/"}`, `{"profile":"nope","url":"rtmp://h/a/b"}`, `[]`, ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := DecodeOutput(strings.NewReader(string(b)))
		if err != nil {
			return
		}
		if u := strings.ToLower(req.URL); !strings.HasPrefix(u, "rtmp://") && !strings.HasPrefix(u, "rtmps://") {
			t.Fatalf("accepted URL %q", req.URL)
		}
		if len(req.Name) > 100 || len(req.URL) > 2048 {
			t.Fatalf("accepted a name of %d or a URL of %d bytes", len(req.Name), len(req.URL))
		}
	})
}
