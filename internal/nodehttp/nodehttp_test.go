package nodehttp

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// xorSeal stands for the cluster's sealer: it changes the bytes (so an
// unsealed answer would not read) and checks the subject.
type xorSeal struct{}

func (xorSeal) Seal(subject string, msg []byte) []byte {
	out := append([]byte(subject+"|"), msg...)
	for i := range out {
		out[i] ^= 0x5a
	}
	return out
}

func (xorSeal) Open(subject string, sealed []byte) ([]byte, error) {
	out := bytes.Clone(sealed)
	for i := range out {
		out[i] ^= 0x5a
	}
	rest, ok := bytes.CutPrefix(out, []byte(subject+"|"))
	if !ok {
		return nil, errors.New("sealed for another subject")
	}
	return rest, nil
}

// bus starts a NATS server on loopback whose messages are at most
// maxPayload bytes, and two connections to it: the asking node's and the
// answering node's.
func bus(t *testing.T, maxPayload int32) (asker, answerer *nats.Conn) {
	t.Helper()
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, MaxPayload: maxPayload, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	for _, c := range []**nats.Conn{&asker, &answerer} {
		if *c, err = nats.Connect(ns.ClientURL()); err != nil {
			t.Fatal(err)
		}
		conn := *c
		t.Cleanup(conn.Close)
	}
	return asker, answerer
}

type principalKey struct{}

// A request through a reverse proxy on the transport reaches the other
// node's handler with its method, URI, the headers that matter, body,
// client address and principal — and not its credentials — and the answer
// comes back as it was written.
func TestRequestAndAnswer(t *testing.T) {
	asker, answerer := bus(t, 1<<20)
	stop, err := Serve(answerer, "n2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Seen", fmt.Sprintf("%s %s %s ua=%q auth=%q remote=%s principal=%v",
			r.Method, r.URL.RequestURI(), body, r.UserAgent(), r.Header.Get("Authorization"), r.RemoteAddr, r.Context().Value(principalKey{})))
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, "made")
	}), Options{Seal: xorSeal{}, Principal: func(ctx context.Context, p string) context.Context {
		return context.WithValue(ctx, principalKey{}, p)
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	tr := &Transport{Conn: asker, Seal: xorSeal{}, Principal: func(context.Context) string { return "admin" }}
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = r.WithContext(WithClient(r.Context(), "203.0.113.9:4000"))
		(&httputil.ReverseProxy{Transport: tr, Rewrite: func(pr *httputil.ProxyRequest) { pr.Out.URL.Scheme, pr.Out.URL.Host = "http", "n2" }}).ServeHTTP(w, r)
	}))
	defer front.Close()
	req, _ := http.NewRequest("POST", front.URL+"/api/v1/streams?x=1", strings.NewReader(`{"name":"a"}`))
	req.Header.Set("Authorization", "Bearer secret-token")
	req.Header.Set("User-Agent", "tester")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := `POST /api/v1/streams?x=1 {"name":"a"} ua="tester" auth="" remote=203.0.113.9:4000 principal=admin`
	if resp.StatusCode != http.StatusCreated || string(body) != "made" || resp.Header.Get("X-Seen") != want {
		t.Fatalf("answer %d %q, seen %q; want %q", resp.StatusCode, body, resp.Header.Get("X-Seen"), want)
	}
	// A node that is not there: an error saying so, at once.
	_, err = tr.RoundTrip(httptest.NewRequest("GET", "http://n9/api/v1/streams", nil))
	if !errors.Is(err, ErrNoNode) {
		t.Fatalf("a request to a node that is not there: %v", err)
	}
}

// An answer too large for a NATS message is a 502 that says so, at once,
// not silence until the asker's timeout.
func TestAnswerTooLarge(t *testing.T) {
	asker, answerer := bus(t, 64<<10)
	stop, err := Serve(answerer, "n2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(make([]byte, 40<<10))
		w.Write(make([]byte, 40<<10))
	}), Options{Seal: xorSeal{}})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	tr := &Transport{Conn: asker, Seal: xorSeal{}, Timeout: 20 * time.Second}
	begun := time.Now()
	resp, err := tr.RoundTrip(httptest.NewRequest("GET", "http://n2/big", nil))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "too large to pass between nodes") {
		t.Fatalf("a too-large answer: %d %q", resp.StatusCode, body)
	}
	t.Logf("answered in %v", time.Since(begun).Round(time.Millisecond))
}

// A node answers at most MaxInFlight requests at once; the next gets 503
// with Retry-After at once, and is answered once one is done.
func TestBoundedInFlight(t *testing.T) {
	asker, answerer := bus(t, 1<<20)
	release := make(chan struct{})
	entered := make(chan struct{}, 2)
	stop, err := Serve(answerer, "n2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			entered <- struct{}{}
			<-release
		}
		io.WriteString(w, "ok")
	}), Options{Seal: xorSeal{}, MaxInFlight: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	tr := &Transport{Conn: asker, Seal: xorSeal{}}
	held := make(chan int, 2)
	for range 2 {
		go func() {
			resp, err := tr.RoundTrip(httptest.NewRequest("GET", "http://n2/hold", nil))
			if err != nil {
				held <- 0
				return
			}
			held <- resp.StatusCode
		}()
	}
	for range 2 {
		select {
		case <-entered:
		case code := <-held:
			t.Fatalf("a request to hold was answered %d", code)
		case <-time.After(10 * time.Second):
			t.Fatal("the requests to hold did not reach the handler")
		}
	}
	resp, err := tr.RoundTrip(httptest.NewRequest("GET", "http://n2/other", nil))
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("a third request while two are held: %v %v", resp, err)
	}
	close(release)
	for range 2 {
		if code := <-held; code != http.StatusOK {
			t.Fatalf("a held request: %d", code)
		}
	}
	if resp, err := tr.RoundTrip(httptest.NewRequest("GET", "http://n2/other", nil)); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("after: %v %v", resp, err)
	}
}

// A file on the other node, read in pieces smaller than it and served by
// http.ServeContent: whole, ranges across pieces, its last bytes, HEAD,
// and a range past its end passed on as the holder answered it.
func TestFileThroughServeContent(t *testing.T) {
	asker, answerer := bus(t, 1<<20)
	data := make([]byte, 300_000)
	rand.Read(data)
	modified := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	stop, err := Serve(answerer, "n2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/recordings/") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "video/mp4")
		http.ServeContent(w, r, "", modified, bytes.NewReader(data))
	}), Options{Seal: xorSeal{}})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	client := &http.Client{Transport: &Transport{Conn: asker, Seal: xorSeal{}}}
	const chunk = 64 << 10
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := ServeFile(w, r, client, "n2", r.URL.Path, 0, chunk); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
		}
	}))
	defer front.Close()
	get := func(method, path, rng string) (*http.Response, []byte) {
		req, _ := http.NewRequest(method, front.URL+path, nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	if resp, b := get("GET", "/recordings/a.mp4", ""); resp.StatusCode != http.StatusOK || !bytes.Equal(b, data) || resp.Header.Get("Content-Type") != "video/mp4" {
		t.Fatalf("whole: %d, %d bytes, %q", resp.StatusCode, len(b), resp.Header.Get("Content-Type"))
	}
	n := len(data)
	for _, c := range []struct {
		rng        string
		start, end int
	}{
		{"bytes=0-99", 0, 99},
		{fmt.Sprintf("bytes=%d-%d", chunk-10, chunk+10), chunk - 10, chunk + 10},
		{fmt.Sprintf("bytes=%d-", 3*chunk+5), 3*chunk + 5, n - 1},
		{"bytes=-3000", n - 3000, n - 1},
	} {
		resp, b := get("GET", "/recordings/a.mp4", c.rng)
		want := fmt.Sprintf("bytes %d-%d/%d", c.start, c.end, n)
		if resp.StatusCode != http.StatusPartialContent || resp.Header.Get("Content-Range") != want || !bytes.Equal(b, data[c.start:c.end+1]) {
			t.Fatalf("%s: %d %q, %d bytes; want %s", c.rng, resp.StatusCode, resp.Header.Get("Content-Range"), len(b), want)
		}
	}
	if resp, _ := get("HEAD", "/recordings/a.mp4", ""); resp.StatusCode != http.StatusOK || resp.ContentLength != int64(n) {
		t.Fatalf("HEAD: %d, %d", resp.StatusCode, resp.ContentLength)
	}
	if resp, _ := get("GET", "/recordings/a.mp4", ""); resp.Header.Get("Last-Modified") != modified.Format(http.TimeFormat) {
		t.Fatalf("Last-Modified %q", resp.Header.Get("Last-Modified"))
	}
	if resp, _ := get("GET", "/elsewhere", ""); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("not a file: %d", resp.StatusCode)
	}
}
