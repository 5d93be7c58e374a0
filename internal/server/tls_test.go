package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/config"
	"github.com/glasscast/glasscast/internal/selfsigned"
	"github.com/glasscast/glasscast/internal/sim"
	"github.com/glasscast/glasscast/sdk"
)

// testCert makes a CA and a certificate it signs for localhost and
// 127.0.0.1, written to files; it returns them and a pool trusting the CA.
func testCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	f, err := selfsigned.Write(t.TempDir(), "localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return f.Cert, f.Key, f.Pool
}

// trustFor makes the default HTTP client trust pool for the test (the
// harness and the SDK use it).
func trustFor(t *testing.T, pool *x509.CertPool) {
	tr := http.DefaultTransport.(*http.Transport)
	old := tr.TLSClientConfig
	tr.CloseIdleConnections()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, NextProtos: []string{"h2", "http/1.1"}}
	t.Cleanup(func() { tr.CloseIdleConnections(); tr.TLSClientConfig = old })
}

// TestTLS: with a certificate, everything is served over HTTPS (HTTP/2,
// HSTS) and plain HTTP redirects; ingest URLs are RTMPS and a publisher
// pushes over it; managed streams send the glasses RTMPS.
func TestTLS(t *testing.T) {
	slow(t)
	cert, key, pool := testCert(t)
	trustFor(t, pool)
	w := startWorld(t, []string{"com.example.a"}, func(c *config.Config) {
		c.TLSCert, c.TLSKey = cert, key
		c.HTTPS, c.RTMPS = "127.0.0.1:0", "127.0.0.1:0"
	})
	if !strings.HasPrefix(w.base, "https://127.0.0.1:") {
		t.Fatalf("public URL %s", w.base)
	}
	httpsAddr, rtmpsAddr := w.srv.HTTPSAddr().String(), w.srv.RTMPSAddr().String()

	// Plain HTTP: a redirect to the same path over HTTPS; the health check
	// answers there too.
	plain := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := plain.Get("http://" + w.srv.HTTPAddr().String() + "/api/v1/streams?x=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != "https://127.0.0.1:"+portOf(httpsAddr)+"/api/v1/streams?x=1" {
		t.Fatalf("plain HTTP: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if code, _ := fetch(t, "http://"+w.srv.HTTPAddr().String()+"/healthz"); code != http.StatusOK {
		t.Fatalf("health check over plain HTTP: %d", code)
	}
	resp, err = http.Get(w.base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 || !strings.Contains(resp.Header.Get("Strict-Transport-Security"), "max-age=") {
		t.Fatalf("HTTPS: %d %s, HSTS %q", resp.StatusCode, resp.Proto, resp.Header.Get("Strict-Transport-Security"))
	}

	// Streams API: RTMPS ingest, which verifies like any TLS server.
	s := w.create("over tls")
	if !strings.HasPrefix(s.Ingest.RTMPURL, "rtmps://127.0.0.1:"+portOf(rtmpsAddr)+"/live/") {
		t.Fatalf("ingest URL %s", s.Ingest.RTMPURL)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := (&sim.Source{Loops: 1}).Publish(ctx, s.Ingest.RTMPURL); err == nil || !errors.As(err, new(x509.UnknownAuthorityError)) && !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a publisher that does not trust the certificate: %v", err)
	}
	go (&sim.Source{TLS: &tls.Config{RootCAs: pool}}).Publish(ctx, s.Ingest.RTMPURL)
	w.waitPlayable(s.Playback.HLS)

	// A managed stream: the glasses are told to push RTMPS.
	_, events := w.glasses("tls@example.com", func(g *sim.Glasses) { g.TLS = &tls.Config{RootCAs: pool} })
	a := w.startApp("tls@example.com", "com.example.a")
	if _, err := a.Camera.StartManagedStream(ctx, sdk.ManagedStreamOptions{}); err != nil {
		t.Fatal(err)
	}
	if e := waitEvent(t, events, "start", 10*time.Second); !strings.HasPrefix(e.Text, "rtmps://") {
		t.Fatalf("the glasses were told to push to %s", e.Text)
	}
	res, err := a.Camera.WaitManagedActive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.HLSURL, "https://") {
		t.Fatalf("managed HLS URL %s", res.HLSURL)
	}
	w.waitPlayable(res.HLSURL)
}

func portOf(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }
