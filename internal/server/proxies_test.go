package server_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/config"
	"github.com/glasscast/glasscast/internal/live"
	"github.com/glasscast/glasscast/internal/sim"
)

// dialFrom dials from a loopback address of its own: to the server,
// another client.
func dialFrom(ip string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return d.DialContext
}

// adminCall is GET /api/v1/streams with token, from client, to base.
func adminCall(t *testing.T, c *http.Client, base, token string, header ...string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/api/v1/streams", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// Behind HAProxy (option forwardfor to HTTP, send-proxy-v2 to RTMP) with
// --trusted-proxies, each client is itself: twenty wrong admin tokens from
// one leave another unaffected (its admin calls answered, its publish
// accepted), and the first's publish is refused as its own. From anyone
// else a PROXY header is refused, and X-Forwarded-For ignored.
func TestTrustedProxies(t *testing.T) {
	parallel(t)
	needTool(t, "haproxy")
	h := start(t, func(c *config.Config) { c.TrustedProxies = []string{"127.0.0.1/32"} })
	lbHTTP, lbRTMP := freePort(t), freePort(t)
	httpAddr := strings.TrimPrefix(h.base, "http://")
	rtmpAddr := strings.TrimSuffix(strings.TrimPrefix(h.srv.PlainRTMPBase(), "rtmp://"), "/live/")
	conf := fmt.Sprintf(`defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend http
    bind 127.0.0.1:%d
    default_backend glasscast
backend glasscast
    option forwardfor
    server g %s
listen rtmp
    mode tcp
    bind 127.0.0.1:%d
    server g %s send-proxy-v2
`, lbHTTP, httpAddr, lbRTMP, rtmpAddr)
	startHAProxy(t, conf, lbHTTP)
	balancer := fmt.Sprintf("http://127.0.0.1:%d", lbHTTP)

	a, b := from("127.0.0.2"), from("127.0.0.3")
	last := 0
	for range 20 {
		last = adminCall(t, a, balancer, "not-the-admin-token")
	}
	if last != http.StatusTooManyRequests {
		t.Fatalf("the 20th wrong token from A through the balancer: %d, want 429", last)
	}
	if code := adminCall(t, b, balancer, testToken); code != http.StatusOK {
		t.Fatalf("B's admin call through the balancer: %d, want 200 (A's failures are A's)", code)
	}
	s := h.create("behind the balancer")
	ingest := fmt.Sprintf("rtmp://127.0.0.1:%d/live/%s", lbRTMP, s.Ingest.RTMPURL[strings.LastIndex(s.Ingest.RTMPURL, "/")+1:])
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A, blocked, is refused as itself, even with the right key.
	if err := (&sim.Source{Dial: dialFrom("127.0.0.2"), Loops: 1}).Publish(ctx, ingest); err == nil || !strings.Contains(err.Error(), "too many failed") {
		t.Fatalf("A's publish through the balancer: %v, want refused for its failures", err)
	}
	// B publishes.
	pub := make(chan error, 1)
	go func() { pub <- (&sim.Source{Dial: dialFrom("127.0.0.3")}).Publish(ctx, ingest) }()
	h.waitStatus(s.ID, live.StatusLive, 15*time.Second)

	// Straight to glasscast, not from the balancer: a PROXY header is
	// refused (the connection closed, no RTMP answer)…
	conn, err := dialFrom("127.0.0.4")(ctx, "tcp", rtmpAddr)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	var hdr bytes.Buffer
	hdr.WriteString("\r\n\r\n\x00\r\nQUIT\n\x21\x11")
	binary.Write(&hdr, binary.BigEndian, uint16(12))
	hdr.Write([]byte{203, 0, 113, 7, 127, 0, 0, 1, 0x1f, 0x90, 0x07, 0x8f})
	hdr.Write(append([]byte{3}, make([]byte, 1536)...)) // RTMP's C0 and C1
	conn.Write(hdr.Bytes())
	if n, err := io.ReadFull(conn, make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("a PROXY header from an untrusted address was answered (%d bytes, %v)", n, err)
	}
	conn.Close()
	// …and X-Forwarded-For ignored: wrong tokens, each from a "new"
	// forwarded address, count against the address they came from.
	spoofer := from("127.0.0.5")
	for i := range 20 {
		last = adminCall(t, spoofer, h.base, "not-the-admin-token", "X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i+1))
	}
	if last != http.StatusTooManyRequests {
		t.Fatalf("the 20th wrong token with a spoofed X-Forwarded-For: %d, want 429", last)
	}
	cancel()
	<-pub
}

// startHAProxy runs haproxy with conf until the test ends, and waits until
// it listens on 127.0.0.1:port.
func startHAProxy(t *testing.T, conf string, port int) {
	t.Helper()
	slow(t)
	file := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	lb := exec.Command("haproxy", "-db", "-f", file)
	var lbLog bytes.Buffer
	lb.Stdout, lb.Stderr = &lbLog, &lbLog
	if err := lb.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		lb.Process.Kill()
		lb.Wait()
		if t.Failed() {
			t.Logf("haproxy (%s):\n%s", conf, lbLog.String())
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy does not listen: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // haproxy says nothing when it listens
	}
}
