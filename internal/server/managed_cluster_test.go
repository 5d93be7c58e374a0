package server_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/config"
	"github.com/glasscast/glasscast/sdk"
)

// TestClusterManagedIngestElsewhere: a user's session is on n2, and the
// ingest address the nodes hand out is another node's (as a shared RTMP
// address in front of the nodes sends the glasses anywhere): the managed
// stream comes up active, stays active while the glasses push to n1, and
// plays.
func TestClusterManagedIngestElsewhere(t *testing.T) {
	parallel(t)
	const pkg = "com.example.elsewhere"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	app := config.AppConfig{PackageName: pkg, APIKey: "key-of-the-elsewhere-app-0123", PublicURL: "http://" + ln.Addr().String()}
	rtmpPort := freePort(t)
	nodes := startFormed(t, 2, func(i int, c *config.Config) {
		c.Apps = []config.AppConfig{app}
		if i == 0 {
			c.RTMP = fmt.Sprintf("127.0.0.1:%d", rtmpPort)
		}
		c.IngestURL = fmt.Sprintf("rtmp://127.0.0.1:%d/live/", rtmpPort)
	})
	w := &world{harness: nodes[1], apps: map[string]*testApp{pkg: serveApp(t, ln, pkg, app.APIKey)}}
	_, events := w.glasses("ivy@example.com", nil)
	s := w.startApp("ivy@example.com", pkg)
	rec := recordManaged(s)
	if _, err := s.Camera.StartManagedStream(context.Background(), sdk.ManagedStreamOptions{Quality: "720p"}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, events, "start", 5*time.Second)
	active, err := s.Camera.WaitManagedActive(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	checkProbe(t, toStream(active), 1280, 720, 1)
	// For three heartbeats more (n2 tends the directory at each), no
	// status but active: the stream stays the app's while its media is on n1.
	over := time.After(3 * nodes[0].srv.Cluster().Heartbeat())
	for waiting := true; waiting; {
		select {
		case m := <-rec.ch:
			if m.Status != sdk.StatusActive && m.Status != sdk.StatusInitializing {
				t.Fatalf("the managed stream went %q while its glasses pushed to another node: %+v", m.Status, m)
			}
		case <-over:
			waiting = false
		}
	}
	checkProbe(t, toStream(active), 1280, 720, 1)

	// The app stops it: the glasses are told to stop, and the stream ends
	// on the node that holds its media.
	if err := s.Camera.StopManagedStream(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, sdk.StatusStopped, 5*time.Second)
	waitEvent(t, events, "stopped", 5*time.Second)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if code, _ := fetch(t, active.HLSURL); code == http.StatusNotFound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the managed stream's HLS still answers after its app stopped it")
		}
	}
}
