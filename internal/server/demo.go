package server

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"time"

	"github.com/glasscast/glasscast/internal/access"
	"github.com/glasscast/glasscast/internal/api"
	"github.com/glasscast/glasscast/internal/auth"
	"github.com/glasscast/glasscast/internal/store"
)

// What the demo (package demo, run beside the server when --demo is on)
// asks of the server.

// Dial is the server's base URL on loopback, for glasses in this process;
// with TLS, by an address its certificate does not name.
func (s *Server) Dial() (string, *tls.Config) {
	if s.httpsLn != nil {
		return "https://" + loopback(s.httpsLn.Addr()), &tls.Config{InsecureSkipVerify: true}
	}
	return "http://" + loopback(s.httpLn.Addr()), nil
}

// RegisterApp adds an app with the camera permission and a new API key.
func (s *Server) RegisterApp(ctx context.Context, pkg, name, publicURL string) (string, error) {
	key := store.NewAPIKey()
	err := s.apps.PutApp(ctx, store.App{PackageName: pkg, Name: name, PublicURL: publicURL,
		KeyHash: store.HashKey(key), Permissions: []string{store.PermissionCamera}})
	return key, err
}

// UserToken is a day's core token for a user.
func (s *Server) UserToken(user string) (string, error) {
	return auth.Issue(s.secret, user, 24*time.Hour)
}

// StartApp starts an app for a user.
func (s *Server) StartApp(ctx context.Context, user, pkg string) error {
	return s.plane.StartApp(ctx, user, pkg)
}

// ShowDemo makes the stream playing at hlsURL the demo the dashboard links.
func (s *Server) ShowDemo(hlsURL string) error {
	grant := strings.TrimSuffix(strings.TrimPrefix(hlsURL, s.public+"/hls/"), "/index.m3u8")
	id, err := s.resolve(grant, access.Live)
	if err != nil {
		return err
	}
	st, err := s.Registry().Get(id)
	if err != nil {
		return err
	}
	play := api.StreamPlayback(s, id, st.Record())
	s.demoMu.Lock()
	s.demoID, s.demoPlay = id, play
	s.demoMu.Unlock()
	return nil
}

// loopback is the address to reach a listener from this host.
func loopback(a net.Addr) string {
	_, port, _ := net.SplitHostPort(a.String())
	return net.JoinHostPort("127.0.0.1", port)
}
