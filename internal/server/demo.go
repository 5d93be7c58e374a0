package server

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/glasscast/glasscast/internal/access"
	"github.com/glasscast/glasscast/internal/auth"
	"github.com/glasscast/glasscast/internal/sim"
	"github.com/glasscast/glasscast/internal/store"
	"github.com/glasscast/glasscast/sdk"
)

// Demo identities.
const (
	demoPackage = "dev.glasscast.demo"
	demoUser    = "demo@glasscast.local"
)

// runDemo shows a managed stream end to end, in the same process but over
// the real sockets: a demo app on the Go SDK, simulated glasses, and the app
// started for the demo user as a phone would. Once the stream plays, DemoID
// names it. Saying "stop stream" (glasscast glasses ... lines on stdin) is
// not wired here: the demo streams until the server stops.
func (s *Server) runDemo(ctx context.Context) {
	log := s.log.With("component", "demo")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Error("demo app", "err", err)
		return
	}
	key := store.NewAPIKey()
	err = s.store.PutApp(ctx, store.App{PackageName: demoPackage, Name: "glasscast demo",
		PublicURL: "http://" + ln.Addr().String(), KeyHash: store.HashKey(key), Permissions: []string{store.PermissionCamera}})
	if err != nil {
		ln.Close()
		log.Error("demo app", "err", err)
		return
	}

	app := sdk.NewAppServer(sdk.Config{PackageName: demoPackage, APIKey: key, Logger: log})
	app.OnSession(func(ctx context.Context, sess *sdk.Session) error {
		sess.Camera.OnManagedStreamStatus(func(st sdk.ManagedStreamStatus) {
			sess.Layouts.ShowTextWall("Stream "+st.Status.String(), 0)
		})
		// A newcomer's first stream: try again until it plays.
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
		grant := strings.TrimSuffix(strings.TrimPrefix(res.HLSURL, s.public+"/hls/"), "/index.m3u8")
		id, err := s.resolve(grant, access.Live)
		if err != nil {
			log.Error("the demo stream's URLs do not play", "err", err)
			return nil
		}
		s.demoMu.Lock()
		s.demoID, s.demoGrant = id, grant
		s.demoMu.Unlock()
		log.Info("demo stream is live", "watch", res.PreviewURL)
		<-ctx.Done()
		return nil
	})

	token, err := auth.Issue(s.secret, demoUser, 24*time.Hour)
	if err != nil {
		ln.Close()
		log.Error("demo token", "err", err)
		return
	}
	events := make(chan sim.Event, 16)
	glasses := &sim.Glasses{Server: "http://" + loopback(s.httpLn.Addr()), Token: token, Events: events, Log: log}
	if s.httpsLn != nil {
		// The demo's glasses dial this very process on loopback, by an
		// address its certificate does not name.
		glasses.Server = "https://" + loopback(s.httpsLn.Addr())
		glasses.TLS = &tls.Config{InsecureSkipVerify: true}
	}

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
			err := s.plane.StartApp(sctx, demoUser, demoPackage)
			cancel()
			if err != nil && ctx.Err() == nil {
				log.Error("starting the demo app", "err", err)
			}
			<-ctx.Done()
			return
		}
	}
}

// loopback is the address to reach a listener from this host.
func loopback(a net.Addr) string {
	_, port, _ := net.SplitHostPort(a.String())
	return net.JoinHostPort("127.0.0.1", port)
}
