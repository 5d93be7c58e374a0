package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// watchedBuffer is what a command printed, safe to read while it writes;
// every write is signalled.
type watchedBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	written chan struct{}
}

func newWatchedBuffer() *watchedBuffer { return &watchedBuffer{written: make(chan struct{}, 1)} }

func (b *watchedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case b.written <- struct{}{}:
	default:
	}
	return b.buf.Write(p)
}

func (b *watchedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// The demo, run as the README says, prints one watch URL for its stream (on
// the banner and in the log alike), and it is the one the Streams API hands
// out.
func TestDemoPrintsOneWatchURL(t *testing.T) {
	const token = "0123456789abcdef0123"
	out, logs := newWatchedBuffer(), newWatchedBuffer()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- serveUntil(func(io.Writer) (context.Context, func()) { return ctx, cancel },
			[]string{"--demo", "--data", t.TempDir(), "--admin-token", token, "--http", "127.0.0.1:0", "--rtmp", "127.0.0.1:0",
				"--webrtc-udp", "127.0.0.1:0", "--webrtc-tcp", "127.0.0.1:0"}, out, logs)
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve exited %d:\n%s", code, logs.String())
		}
	}()
	deadline := time.After(60 * time.Second)
	for !strings.Contains(out.String(), "Watch it:") || !strings.Contains(logs.String(), "demo stream is live") {
		select {
		case <-out.written:
		case <-logs.written:
		case code := <-done:
			done <- code
			t.Fatalf("serve exited %d:\n%s\n%s", code, out.String(), logs.String())
		case <-deadline:
			t.Fatalf("the demo did not say it plays within 60 s:\n%s\n%s", out.String(), logs.String())
		}
	}
	watchURL := regexp.MustCompile(`https?://[^\s"]+/watch/[A-Za-z0-9._~-]+`)
	urls := map[string]bool{}
	for _, u := range watchURL.FindAllString(out.String()+logs.String(), -1) {
		urls[u] = true
	}
	if len(urls) != 1 {
		t.Fatalf("the demo printed %d watch URLs, want one: %v\n%s", len(urls), urls, out.String())
	}
	var watch string
	for u := range urls {
		watch = u
	}
	base := regexp.MustCompile(`HTTP +(http://\S+)`).FindStringSubmatch(out.String())
	if base == nil {
		t.Fatalf("no HTTP address printed:\n%s", out.String())
	}
	req, _ := http.NewRequest("GET", base[1]+"/api/v1/streams", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Streams []struct {
			Playback struct{ Watch, HLS string }
		}
	}
	json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	found := false
	for _, s := range list.Streams {
		found = found || s.Playback.Watch == watch
	}
	if !found {
		t.Fatalf("the printed watch URL %s is not the Streams API's: %+v", watch, list.Streams)
	}
	resp, err = http.Get(watch)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", watch, resp.StatusCode)
	}
}
