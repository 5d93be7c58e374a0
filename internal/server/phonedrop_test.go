package server_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/config"
	"github.com/glasscast/glasscast/internal/sim"
	"github.com/glasscast/glasscast/sdk"
)

// TestPhoneDropsAndComesBack: the phone and its glasses vanish mid-stream
// (no goodbye, as kill -9); the app hears `reconnecting` at once, not
// silence. A phone that connects again inside the window is told to resume
// the same stream; it goes `active` again with the same URLs and the app
// hears it.
func TestPhoneDropsAndComesBack(t *testing.T) {
	parallel(t)
	w := startWorld(t, []string{"com.example.a"}, func(c *config.Config) { c.ReconnectWindow = 20 * time.Second })
	events := make(chan sim.Event, 256)
	first := &sim.Glasses{Server: w.base, Token: w.token("dee@example.com"), Events: events, StatsEvery: 500 * time.Millisecond}
	ctx1, cancel1 := context.WithCancel(context.Background())
	done1 := make(chan error, 1)
	go func() { done1 <- first.Run(ctx1) }()
	var once sync.Once
	kill := func() { once.Do(func() { cancel1(); <-done1 }) }
	t.Cleanup(kill)
	waitEvent(t, events, "connected", 10*time.Second)

	a := w.startApp("dee@example.com", "com.example.a")
	rec := recordManaged(a)
	if _, err := a.Camera.StartManagedStream(context.Background(), sdk.ManagedStreamOptions{}); err != nil {
		t.Fatal(err)
	}
	live, err := a.Camera.WaitManagedActive(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	kill() // socket and RTMP push gone at once, nothing said
	dropped := time.Now()
	m := rec.wait(t, sdk.StatusReconnecting, 15*time.Second)
	t.Logf("the app heard %q %v after the drop", m.Message, time.Since(dropped).Round(time.Millisecond))

	// The phone is back: asked to resume, the same stream goes live again.
	again := make(chan sim.Event, 256)
	second := &sim.Glasses{Server: w.base, Token: w.token("dee@example.com"), Events: again, StatsEvery: 500 * time.Millisecond}
	ctx2, stop2 := context.WithCancel(context.Background())
	done2 := make(chan error, 1)
	go func() { done2 <- second.Run(ctx2) }()
	t.Cleanup(func() { stop2(); <-done2 })
	if e := waitEvent(t, again, "start", 10*time.Second); e.StreamID != live.StreamID {
		t.Fatalf("the phone was told to stream %s, not the managed stream %s", e.StreamID, live.StreamID)
	}
	back := rec.wait(t, sdk.StatusActive, 20*time.Second)
	if back.HLSURL != live.HLSURL || back.StreamID != live.StreamID {
		t.Fatalf("back with other URLs: %+v, was %+v", back, live)
	}
	w.waitPlayable(back.HLSURL)
	t.Logf("live again %v after the drop", time.Since(dropped).Round(time.Millisecond))
}
