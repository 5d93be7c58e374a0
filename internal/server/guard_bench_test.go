package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/access"
)

type noGenerations struct{}

func (noGenerations) Generations(context.Context) (map[string]uint32, error) { return nil, nil }
func (noGenerations) SetGeneration(context.Context, string, uint32) error    { return nil }

// BenchmarkMediaRequest is what an LL-HLS part request costs on its way to
// the packager: the outer mux, the body and write deadlines, the playback
// token check and the progress writer, with a handler that writes a part.
func BenchmarkMediaRequest(b *testing.B) {
	signer, err := access.New(make([]byte, 32), time.Hour, noGenerations{})
	if err != nil {
		b.Fatal(err)
	}
	s := &Server{access: signer}
	part := make([]byte, 60<<10)
	var got string
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = access.Grant(r, r.PathValue("id")) + r.PathValue("file")
		w.Write(part)
	})
	mux := http.NewServeMux()
	mux.Handle("/hls/{id}/{file}", s.guardID(access.Live, progress(handler)))
	h := deadlines(mux)
	tok, _ := signer.Token("0123456789abcdef", access.Live)
	req := httptest.NewRequest("GET", "/hls/"+tok+"/video.7.3.m4s", nil)
	w := &discard{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, req)
	}
	if got != tok+"video.7.3.m4s" {
		b.Fatalf("the handler saw %q", got)
	}
}

type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}
