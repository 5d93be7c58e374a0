// Package testenv runs a whole glasscast in a test: the server on loopback,
// apps declared in its configuration, and simulated glasses. The SDK's
// runnable examples and the example apps' tests use it.
package testenv

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/glasscast/glasscast/internal/auth"
	"github.com/glasscast/glasscast/internal/config"
	"github.com/glasscast/glasscast/internal/server"
	"github.com/glasscast/glasscast/internal/sim"
)

// Env is a running glasscast.
type Env struct {
	Server *server.Server
	// Base is the server's http:// base URL.
	Base string
	// Apps are the declared apps: listener, package name and key.
	Apps map[string]*App

	stop    func()
	cleanup []func()
	dir     string
}

// App is an app declared in the environment, with the listener its server
// should serve on.
type App struct {
	Package  string
	APIKey   string
	Listener net.Listener
}

// Start runs glasscast with the given apps (package names) declared.
func Start(tweak func(*config.Config), packages ...string) (*Env, error) {
	env := &Env{Apps: map[string]*App{}}
	cfg := config.Default()
	cfg.HTTP, cfg.RTMP = "127.0.0.1:0", "127.0.0.1:0"
	cfg.WebRTCUDP, cfg.WebRTCTCP = "127.0.0.1:0", "127.0.0.1:0"
	dir, err := os.MkdirTemp("", "glasscast-env-")
	if err != nil {
		return nil, err
	}
	env.dir = dir
	cfg.Data = dir
	cfg.AdminToken = "testenv-admin-token-0123456789"
	for _, pkg := range packages {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			env.Close()
			return nil, err
		}
		a := &App{Package: pkg, APIKey: "testenv-key-" + pkg, Listener: ln}
		env.Apps[pkg] = a
		cfg.Apps = append(cfg.Apps, config.AppConfig{PackageName: pkg, APIKey: a.APIKey, PublicURL: "http://" + ln.Addr().String()})
	}
	if tweak != nil {
		tweak(&cfg)
	}
	srv, err := server.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		env.Close()
		return nil, err
	}
	env.Server = srv
	env.Base = srv.Public()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	env.stop = func() { cancel(); <-done }
	if err := env.waitHealthy(); err != nil {
		env.Close()
		return nil, err
	}
	return env, nil
}

func (e *Env) waitHealthy() error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(e.Base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(10 * time.Millisecond) // polling a health check, with a deadline
	}
	return fmt.Errorf("glasscast did not become healthy")
}

// Token is a core token for a user.
func (e *Env) Token(user string) string {
	tok, err := auth.Issue(e.Server.JWTSecret(), user, time.Hour)
	if err != nil {
		panic(err)
	}
	return tok
}

// Glasses connects simulated glasses for a user and returns once they are
// connected; their events (display, start, stopped…) come on the channel.
func (e *Env) Glasses(user string, tweak func(*sim.Glasses)) (*sim.Glasses, <-chan sim.Event, error) {
	events := make(chan sim.Event, 256)
	g := &sim.Glasses{Server: e.Base, Token: e.Token(user), Events: events, StatsEvery: time.Second, PhoneRetry: 200 * time.Millisecond}
	if tweak != nil {
		tweak(g)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	e.cleanup = append(e.cleanup, func() { cancel(); <-done })
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.Kind == "connected" {
				return g, events, nil
			}
		case err := <-done:
			return nil, nil, fmt.Errorf("glasses: %v", err)
		case <-timeout:
			return nil, nil, fmt.Errorf("the glasses did not connect")
		}
	}
}

// StartApp starts an app for a user, as the phone does.
func (e *Env) StartApp(user, pkg string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return e.Server.Plane().StartApp(ctx, user, pkg)
}

// WaitEvent waits for the glasses to report an event of a kind.
func WaitEvent(events <-chan sim.Event, kind string, within time.Duration) (sim.Event, error) {
	deadline := time.After(within)
	for {
		select {
		case ev := <-events:
			if ev.Kind == kind {
				return ev, nil
			}
		case <-deadline:
			return sim.Event{}, fmt.Errorf("no %q from the glasses within %v", kind, within)
		}
	}
}

// Close stops everything.
func (e *Env) Close() {
	for i := len(e.cleanup) - 1; i >= 0; i-- {
		e.cleanup[i]()
	}
	e.cleanup = nil
	if e.stop != nil {
		e.stop()
		e.stop = nil
	}
	for _, a := range e.Apps {
		a.Listener.Close()
	}
	if e.dir != "" {
		os.RemoveAll(e.dir)
	}
}
