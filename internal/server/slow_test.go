package server_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/live"
)

// openFilesUnder counts this process's open files whose path holds part:
// the server runs in the test's process.
func openFilesUnder(part string) int {
	ents, _ := os.ReadDir("/proc/self/fd")
	n := 0
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && strings.Contains(target, part) {
			n++
		}
	}
	return n
}

// rawRequest opens a connection that reads as little as it can and sends
// head: a client that then stops.
func rawRequest(t *testing.T, rawURL, head string) *net.TCPConn {
	t.Helper()
	u, _ := url.Parse(rawURL)
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	tc := c.(*net.TCPConn)
	tc.SetReadBuffer(4096)
	t.Cleanup(func() { tc.Close() })
	if _, err := io.WriteString(tc, strings.ReplaceAll(head, "{path}", u.RequestURI())); err != nil {
		t.Fatal(err)
	}
	return tc
}

// TestSlowClients: clients that send a body a byte at a time, and
// downloads that stop reading, are cut off; a stalled download holds a few
// files, not one per segment, and none once cut off.
func TestSlowClients(t *testing.T) {
	parallel(t)
	slow(t)
	h := start(t, nil)
	s := h.createRecorded("big")
	// Lossless video makes a recording of tens of MB: far more than the
	// sockets' buffers hold.
	cmd := publishFFmpeg(t, context.Background(), s.Ingest.RTMPURL, "-t", "5", "-qp", "0")
	h.waitStatus(s.ID, live.StatusLive, 20*time.Second)
	cmd.Wait()
	if code, body := h.call("DELETE", "/api/v1/streams/"+s.ID, nil); code != http.StatusOK {
		t.Fatalf("DELETE stream: %d %s", code, body)
	}
	h.waitRecorded(s.ID)
	resp, err := http.Head(s.Recording.MP4)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	size, _ := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64)
	if size < 8<<20 {
		t.Fatalf("the recording is %d bytes: too small to stall a download", size)
	}

	live := h.create("live")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	publishSim(ctx, live.Ingest.RTMPURL, nil)
	h.waitPlayable(live.Playback.HLS)

	// Slow bodies: a WHEP offer and an app's outputs call, a byte every
	// two seconds of the thousand announced.
	began := time.Now()
	var slow []*net.TCPConn
	for i := range 10 {
		target, path := live.Playback.WebRTC, "{path}"
		if i%2 == 1 {
			target, path = h.base+"/api/streams/m0123456789abcdef/outputs", "{path}?packageName=x"
		}
		c := rawRequest(t, target, "POST "+path+" HTTP/1.1\r\nHost: x\r\nContent-Type: application/sdp\r\nContent-Length: 1000\r\n\r\nv")
		slow = append(slow, c)
		go func() {
			tick := time.NewTicker(2 * time.Second) // the client's own pace
			defer tick.Stop()
			for range tick.C {
				if _, err := c.Write([]byte("=")); err != nil {
					return
				}
			}
		}()
	}
	// Stalled downloads of the recording.
	const stalled = 5
	var downloads []*net.TCPConn
	for range stalled {
		downloads = append(downloads, rawRequest(t, s.Recording.MP4, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"))
	}

	// Each slow body is answered or cut within the body timeout and a
	// margin, long before the client would have finished (2,000 s).
	for i, c := range slow {
		c.SetReadDeadline(time.Now().Add(40 * time.Second))
		b, err := io.ReadAll(c)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("slow body %d still held after %v: %q", i, time.Since(began), b)
		}
	}
	t.Logf("slow bodies cut after %v", time.Since(began).Round(100*time.Millisecond))

	// The stalled downloads hold a few files each, then none.
	most := 0
	deadline := time.Now().Add(60 * time.Second)
	for {
		n := openFilesUnder(s.ID)
		most = max(most, n)
		if n > 4*stalled {
			t.Fatalf("%d stalled downloads hold %d recording files", stalled, n)
		}
		if n == 0 && most > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stalled downloads still hold %d recording files after %v", n, time.Since(began))
		}
		<-time.After(100 * time.Millisecond) // sampling the file table
	}
	t.Logf("stalled downloads let go of their files after %v (at most %d open)", time.Since(began).Round(100*time.Millisecond), most)
	// None gets the whole file: what the kernel had buffered, then the end
	// (or, the server's side gone, nothing more).
	until := time.Now().Add(3 * time.Second)
	for i, c := range downloads {
		c.SetReadDeadline(until)
		if n, _ := io.Copy(io.Discard, c); n >= size {
			t.Fatalf("download %d got all %d bytes", i, n)
		}
	}
}
