package server_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/sim"
	"github.com/glasscast/glasscast/sdk"
)

// silentDestination accepts TCP connections and never answers: an RTMP
// server that hangs in the handshake. It sends each connection on conns.
func silentDestination(t *testing.T) (addr string, conns <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan net.Conn, 16)
	var mu sync.Mutex
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
			select {
			case ch <- c:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	return ln.Addr().String(), ch
}

// TestSilentDestinationStallsNobody: a managed stream restreams to a
// destination that accepts TCP and never answers. Its user stopping the
// stream and starting another, and another user starting theirs meanwhile,
// are all answered promptly: nothing waits for the destination while
// holding what other requests need. The output stops with its stream.
func TestSilentDestinationStallsNobody(t *testing.T) {
	parallel(t)
	w := startWorld(t, []string{"com.example.a", "com.example.b"}, allowLoopback)
	addr, conns := silentDestination(t)
	w.glasses("ann@example.com", nil)
	w.glasses("bob@example.com", nil)
	a := w.startApp("ann@example.com", "com.example.a")
	b := w.startApp("bob@example.com", "com.example.b")
	recA, recB := recordManaged(a), recordManaged(b)
	ctx := context.Background()

	if _, err := a.Camera.StartManagedStream(ctx, sdk.ManagedStreamOptions{
		RestreamDestinations: []sdk.RestreamDestination{{URL: "rtmp://" + addr + "/live/silent", Name: "silent"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Camera.WaitManagedActive(ctx); err != nil {
		t.Fatal(err)
	}
	var conn net.Conn
	select {
	case conn = <-conns:
	case <-time.After(20 * time.Second):
		t.Fatal("the output never connected to the destination")
	}

	// The destination holds the output in its handshake. The output's own
	// connect timeout is 10 s: a request waiting for it would take that
	// long, so every answer below must come well inside it.
	const prompt = 5 * time.Second
	begun := time.Now()
	if err := a.Camera.StopManagedStream(ctx); err != nil {
		t.Fatal(err)
	}
	bStarted := make(chan error, 1)
	go func() {
		_, err := b.Camera.StartManagedStream(ctx, sdk.ManagedStreamOptions{})
		bStarted <- err
	}()
	recA.wait(t, sdk.StatusStopped, prompt)
	if _, err := a.Camera.StartManagedStream(ctx, sdk.ManagedStreamOptions{}); err != nil {
		t.Fatal(err)
	}
	recA.wait(t, sdk.StatusInitializing, prompt)
	check, err := a.Camera.CheckExistingStream(ctx)
	if err != nil || !check.HasActiveStream {
		t.Fatalf("status check after the restart: %+v %v", check, err)
	}
	recB.wait(t, sdk.StatusInitializing, prompt)
	if err := <-bStarted; err != nil {
		t.Fatal(err)
	}
	t.Logf("stop, start again, a status check and another user's start answered in %v", time.Since(begun).Round(time.Millisecond))

	// The stopped stream's output let go of the destination.
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.Copy(io.Discard, conn); err != nil && !errors.Is(err, net.ErrClosed) {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("the stopped stream's output still holds its connection to the destination")
		}
	}
	recA.wait(t, sdk.StatusActive, 30*time.Second)
	recB.wait(t, sdk.StatusActive, 30*time.Second)
}

// TestEndedStreamsLeaveNothing creates, publishes, watches the thumbnail of
// and ends 300 streams; the server's heap afterwards is back within a small
// bound of what it was after the first few: an ended stream keeps no
// media (no segments, no cached GOP, no keyframe, no JPEG), though it stays
// listed as ended for its retention.
func TestEndedStreamsLeaveNothing(t *testing.T) {
	slow(t)
	needTool(t, "ffmpeg")
	h := start(t, nil)
	clip, err := sim.LoadClip(sim.DefaultClip)
	if err != nil {
		t.Fatal(err)
	}
	one := func() {
		s := h.create("short-lived")
		ctx, cancel := context.WithCancel(context.Background())
		done := publishSim(ctx, s.Ingest.RTMPURL, clip)
		h.waitPlayable(s.Playback.HLS)
		code, body := fetch(t, s.Playback.Thumbnail)
		if code != http.StatusOK || len(body) < 1000 {
			t.Errorf("thumbnail of %s: %d, %d bytes", s.ID, code, len(body))
		}
		if code, _ := h.call("DELETE", "/api/v1/streams/"+s.ID, nil); code != http.StatusOK {
			t.Errorf("delete %s: %d", s.ID, code)
		}
		cancel()
		<-done
	}
	run := func(n int) {
		const workers = 12
		var wg sync.WaitGroup
		next := make(chan struct{})
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range next {
					one()
				}
			}()
		}
		for range n {
			next <- struct{}{}
		}
		close(next)
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
	}
	heap := func() uint64 {
		// Wait for the last ends to be finished (their "ended" events
		// delivered: caches dropped) before measuring.
		h.waitEnded()
		var m runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	run(16) // warm up: pools, buffers, the HTTP clients' connections
	before := heap()
	run(300)
	after := heap()
	grown := int64(after) - int64(before)
	t.Logf("heap %.1f MB after 16 streams, %.1f MB after 300 more (%+.1f MB, %.1f KB per stream)",
		float64(before)/1e6, float64(after)/1e6, float64(grown)/1e6, float64(grown)/300/1e3)
	// One ended stream's media would be hundreds of KB (a GOP, segments, a
	// keyframe and a JPEG); what stays listed is its identity and counters.
	if grown > 300*16<<10 {
		t.Fatalf("the heap grew by %.1f MB for 300 ended streams", float64(grown)/1e6)
	}
}
