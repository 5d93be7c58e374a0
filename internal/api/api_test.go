package api

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/access"
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

// A revocation the cluster could not record revokes nothing: 503, and the
// old token still plays; once recorded, it takes effect.
func TestRevocationAllOrNothing(t *testing.T) {
	signer, err := access.New([]byte("0123456789abcdef0123456789abcdef"), time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := signer.Token("s1", access.Live)
	var shared []uint32
	fail := true
	tokens := &Tokens{Signer: signer, Known: func(string) bool { return true }, Share: func(_ context.Context, id string, gen uint32) error {
		if fail {
			return errors.New("no JetStream leader")
		}
		shared = append(shared, gen)
		return nil
	}}
	mux := http.NewServeMux()
	tokens.Register(mux, func(h http.Handler) http.Handler { return h })
	revoke := func() *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("DELETE", "/api/v1/streams/s1/tokens", nil))
		return rec
	}
	if rec := revoke(); rec.Code != http.StatusServiceUnavailable || strings.Contains(rec.Body.String(), `"revoked": true`) {
		t.Fatalf("a revocation the cluster did not record: %d %s", rec.Code, rec.Body)
	}
	if _, err := signer.Verify(tok, access.Live); err != nil {
		t.Fatalf("the token was revoked here all the same: %v", err)
	}
	fail = false
	if rec := revoke(); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"revoked": true`) || len(shared) != 1 || shared[0] != 1 {
		t.Fatalf("a recorded revocation: %d %s, shared %v", rec.Code, rec.Body, shared)
	}
	if _, err := signer.Verify(tok, access.Live); err == nil {
		t.Fatal("the token plays after its revocation")
	}
}
