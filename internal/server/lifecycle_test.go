package server_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

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
