// Package demo shows a newcomer a managed stream end to end, inside the
// glasscast process but over its real sockets: an app written on the Go
// SDK, simulated Mentra Live glasses, and the app started for the demo user
// as a phone would start it. The server knows nothing of the SDK or the
// simulator; it only answers the Host calls below.
package demo

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/glasscast/glasscast/internal/sim"
	"github.com/glasscast/glasscast/sdk"
)

// Identities of the demo.
const (
	Package = "dev.glasscast.demo"
	User    = "demo@glasscast.local"
)

// Host is the server the demo runs in.
type Host interface {
	// Dial is how glasses in this process reach the server: its base URL
	// on loopback, and the TLS settings to use with it (nil for HTTP).
	Dial() (base string, tlsConfig *tls.Config)
	// RegisterApp adds (or replaces) an app with the camera permission and
	// returns its new API key.
	RegisterApp(ctx context.Context, pkg, name, publicURL string) (apiKey string, err error)
	// UserToken is a core token for the user's glasses.
	UserToken(user string) (string, error)
	// StartApp starts an app for a user, as the phone's API does.
	StartApp(ctx context.Context, user, pkg string) error
	// ShowDemo names the demo stream by its LL-HLS URL, once it plays.
	ShowDemo(hlsURL string) error
}

// Run runs the demo until ctx ends.
func Run(ctx context.Context, h Host, log *slog.Logger) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Error("demo app", "err", err)
		return
	}
	key, err := h.RegisterApp(ctx, Package, "glasscast demo", "http://"+ln.Addr().String())
	if err != nil {
		ln.Close()
		log.Error("demo app", "err", err)
		return
	}
	app := sdk.NewAppServer(sdk.Config{PackageName: Package, APIKey: key, Logger: log})
	app.OnSession(func(ctx context.Context, sess *sdk.Session) error { return stream(ctx, h, sess, log) })

	token, err := h.UserToken(User)
	if err != nil {
		ln.Close()
		log.Error("demo token", "err", err)
		return
	}
	events := make(chan sim.Event, 16)
	base, tlsConfig := h.Dial()
	glasses := &sim.Glasses{Server: base, TLS: tlsConfig, Token: token, Events: events, Log: log}

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); app.Serve(ctx, ln) }()
	go func() { defer wg.Done(); glasses.Run(ctx) }()
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-events:
			if e.Kind != "connected" {
				continue
			}
			sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			err := h.StartApp(sctx, User, Package)
			cancel()
			if err != nil && ctx.Err() == nil {
				log.Error("starting the demo app", "err", err)
			}
			<-ctx.Done()
			return
		}
	}
}

// stream is the demo app's session: a newcomer's first managed stream,
// tried again until it plays, shown on the glasses' display.
func stream(ctx context.Context, h Host, sess *sdk.Session, log *slog.Logger) error {
	sess.Camera.OnManagedStreamStatus(func(st sdk.ManagedStreamStatus) {
		sess.Layouts.ShowTextWall("Stream "+st.Status.String(), 0)
	})
	var res sdk.ManagedStreamResult
	for {
		_, err := sess.Camera.StartManagedStream(ctx, sdk.ManagedStreamOptions{Quality: "720p"})
		if err == nil {
			res, err = sess.Camera.WaitManagedActive(ctx)
			if err == nil {
				break
			}
			sess.Camera.StopManagedStream(ctx)
		}
		if ctx.Err() != nil {
			return nil
		}
		log.Warn("the demo stream did not start; trying again in 2 s", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(2 * time.Second):
		}
	}
	if err := h.ShowDemo(res.HLSURL); err != nil {
		log.Error("the demo stream's URLs do not play", "err", err)
		return nil
	}
	log.Info("demo stream is live", "watch", res.PreviewURL)
	<-ctx.Done()
	return nil
}
