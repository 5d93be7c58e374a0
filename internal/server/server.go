// Package server is glasscast's composition root: it builds every component
// from the configuration, binds the listeners, runs them, and shuts them down
// in order. Nothing imports it but the command.
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/glasscast/glasscast/internal/clientip"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/glasscast/glasscast/internal/abr"
	"github.com/glasscast/glasscast/internal/access"
	"github.com/glasscast/glasscast/internal/api"
	"github.com/glasscast/glasscast/internal/auth"
	"github.com/glasscast/glasscast/internal/cluster"
	"github.com/glasscast/glasscast/internal/cmaf"
	"github.com/glasscast/glasscast/internal/config"
	"github.com/glasscast/glasscast/internal/control"
	"github.com/glasscast/glasscast/internal/dash"
	"github.com/glasscast/glasscast/internal/ffmpeg"
	"github.com/glasscast/glasscast/internal/hls"
	"github.com/glasscast/glasscast/internal/live"
	"github.com/glasscast/glasscast/internal/member"
	"github.com/glasscast/glasscast/internal/record"
	"github.com/glasscast/glasscast/internal/restream"
	"github.com/glasscast/glasscast/internal/rtmp"
	"github.com/glasscast/glasscast/internal/store"
	"github.com/glasscast/glasscast/internal/stream"
	"github.com/glasscast/glasscast/internal/thumb"
	"github.com/glasscast/glasscast/internal/web"
	rtc "github.com/glasscast/glasscast/internal/webrtc"
)

// Server is a running glasscast.
type Server struct {
	cfg     config.Config
	log     *slog.Logger
	reg     *live.Registry
	ingest  *rtmp.Server
	httpLn  net.Listener
	httpSrv *http.Server
	// With TLS: HTTPS serves everything (httpSrv), plain HTTP redirects
	// (redirSrv), and RTMPS ingests beside RTMP.
	tls        *serverTLS
	httpsLn    net.Listener
	redirSrv   *http.Server
	ingestTLS  *rtmp.Server
	public     string
	rtmpBase   string
	rtmpPlain  string
	adminToken string
	generated  bool
	ready      atomic.Bool
	demoID     string
	demoPlay   api.Playback
	demoMu     sync.Mutex
	store      *store.Store
	apps       store.Apps // the store, or the cluster's apps
	plane      *control.Plane
	sockets    *api.Sockets
	viewers    *httpViewers
	secret     []byte
	proxies    *clientip.Trusted
	access     *access.Signer
	rtc        *rtc.Server
	recs       *record.Store
	outputs    *restream.Manager
	abr        *abr.Manager
	thumbs     *thumb.Server
	// view is where what this node does not hold is: a cluster member's,
	// or a single node's (member.Alone: nowhere).
	view member.View
	cpu  cpuMeter
	// transcoders is the server's budget of ffmpeg encoders.
	transcoders *ffmpeg.Budget
	// undo releases what New made, last made first: on a failure in New,
	// and in Close for a server that was never run.
	undo cleanups
}

// cleanups is a stack of releases.
type cleanups []func()

func (c *cleanups) push(f func()) { *c = append(*c, f) }

// run releases everything, last pushed first, once.
func (c *cleanups) run() {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i]()
	}
	*c = nil
}

// AdminTokenFile keeps the admin token made when none is configured.
const AdminTokenFile = "admin-token"

// New builds a server and binds its listeners; Run serves.
func New(cfg config.Config, log *slog.Logger) (_ *Server, err error) {
	if errs := cfg.Validate(); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	// The data directory holds secrets (docs/security.md): glasscast's
	// alone, whatever mode it was made with.
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if err := os.Chmod(cfg.Data, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	s := &Server{cfg: cfg, log: log, adminToken: cfg.AdminToken}
	s.view = member.Alone{Name: cfg.NodeName(), Version: Version(), Stats: s.nodeStats}
	defer func() {
		if err != nil {
			s.undo.run()
		}
	}()
	if s.adminToken == "" {
		// Made once and kept, so it survives restarts.
		if s.adminToken, s.generated, err = auth.Kept(cfg.Data, AdminTokenFile, 24); err != nil {
			return nil, fmt.Errorf("admin token: %w", err)
		}
	}

	if s.store, err = store.Open(cfg.Data); err != nil {
		return nil, err
	}
	s.undo.push(func() { s.store.Close() })
	s.apps = s.store
	cfgApps, err := configApps(cfg.Apps)
	if err != nil {
		return nil, err
	}
	if s.secret, err = auth.LoadSecret(cfg.JWTSecret, cfg.Data); err != nil {
		return nil, fmt.Errorf("jwt secret: %w", err)
	}
	if s.access, err = access.New(playbackKey(s.secret), cfg.PlaybackTTL, s.store); err != nil {
		return nil, fmt.Errorf("playback tokens: %w", err)
	}

	s.recs, err = record.Open(record.Config{Dir: filepath.Join(cfg.Data, "recordings"),
		MaxAge: cfg.RecordMaxAge, MaxBytes: int64(cfg.RecordMaxBytes)}, log.With("component", "record"))
	if err != nil {
		return nil, err
	}
	s.undo.push(s.recs.Close)
	maxTranscodes := cfg.MaxTranscodes
	if maxTranscodes == 0 {
		maxTranscodes = 2 * runtime.NumCPU()
	}
	s.transcoders = ffmpeg.NewBudget(maxTranscodes)
	rcfg := restream.Config{FFmpeg: cfg.FFmpegPath(), Transcoders: s.transcoders}
	if rcfg.Allow, err = restream.ParseAllow(cfg.RestreamAllow); err != nil {
		return nil, fmt.Errorf("restream-allow: %w", err)
	}
	if cfg.RestreamCA != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(cfg.RestreamCA)
		if err == nil && !pool.AppendCertsFromPEM(pem) {
			err = fmt.Errorf("no PEM certificate in %s", cfg.RestreamCA)
		}
		if err != nil {
			return nil, fmt.Errorf("restream-ca: %w", err)
		}
		rcfg.TLS = &tls.Config{RootCAs: pool}
	}
	s.outputs = restream.New(rcfg, log.With("component", "restream"))
	s.undo.push(s.outputs.Close)
	s.reg = live.New(live.Config{
		Keep:            s.keepStream,
		Adopt:           func(key string) (live.Kept, error) { return s.view.Adopt(key) },
		Recorder:        s.recs,
		ReconnectWindow: cfg.ReconnectWindow,
		MaxStreams:      cfg.MaxStreams,
		Packager: cmaf.Config{
			PartTarget: cfg.PartTarget,
			SegmentMin: cfg.SegmentMin,
			Window:     cfg.SegmentWindow,
		},
	}, log)
	s.undo.push(s.reg.Close)
	// A stream's outputs stop when it ends (its "outputs" subscription).
	s.reg.Subscribe("outputs", func(ev live.Event) {
		if ev.Kind == live.EventEnded {
			s.outputs.StopStream(ev.Stream.ID())
		}
	})

	if err := s.restoreStreams(); err != nil {
		return nil, fmt.Errorf("streams: %w", err)
	}

	throttle := auth.NewThrottle(cfg.AuthFailures)
	proxies, err := clientip.Parse(cfg.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("trusted-proxies: %w", err)
	}
	s.proxies = proxies
	s.ingest, err = rtmp.Listen(cfg.RTMP, s.reg, rtmp.Config{MaxConns: cfg.MaxRTMPConns, Throttle: throttle, Proxies: proxies}, log.With("component", "rtmp"))
	if err != nil {
		return nil, err
	}
	s.undo.push(func() { s.ingest.Close() })
	s.httpLn, err = net.Listen("tcp", cfg.HTTP)
	if err != nil {
		return nil, fmt.Errorf("http: %w", err)
	}
	s.undo.push(func() { s.httpLn.Close() })
	if cfg.TLSOn() {
		if err := s.listenTLS(cfg, throttle); err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		s.undo.push(s.closeTLS)
	}
	s.public, s.rtmpBase = s.publicURLs()
	if cfg.ClusterOn() {
		m, err := member.Join(member.Config{
			Cluster: cluster.Config{
				Node: cfg.NodeName(), Listen: cfg.NATSListen, Routes: cfg.NATSRoutes, URLs: cfg.NATS,
				TLS:   cluster.TLSFiles{Cert: cfg.NATSTLSCert, Key: cfg.NATSTLSKey, CA: cfg.NATSTLSCA},
				Creds: cfg.NATSCreds, Nkey: cfg.NATSNkey, Insecure: cfg.NATSInsecure,
				Dir: cfg.Data, Secret: s.secret, Public: s.public, Version: Version(), Stats: s.nodeStats,
			},
			ReconnectWindow: cfg.ReconnectWindow, DrainTimeout: cfg.DrainTimeout,
			Reg: s.reg, Recs: s.recs, Access: s.access, Store: s.store, Throttle: throttle, Apps: cfgApps,
		}, log.With("component", "cluster"))
		if err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		s.view, s.apps = m, m.Apps()
		s.undo.push(m.Close)
	} else {
		s.view = member.Alone{Name: cfg.NodeName(), URL: s.public, Version: Version(), Stats: s.nodeStats}
		if err := store.PutApps(context.Background(), s.apps, cfgApps); err != nil {
			return nil, err
		}
	}
	ffmpeg := cfg.FFmpegPath()
	if cfg.ABR {
		if ffmpeg == "" {
			log.Warn("abr is on but ffmpeg is off or missing: streams are served at their source's rate only")
		} else {
			s.abr = abr.New(abr.Config{FFmpeg: ffmpeg, Ingest: localIngest(s.ingest.Addr()), Transcoders: rcfg.Transcoders}, s.reg, log.With("component", "abr"))
			s.undo.push(s.abr.Close)
		}
	}
	var publicIPs []string
	if cfg.WebRTCPublicIP != "" {
		publicIPs = []string{cfg.WebRTCPublicIP}
	}
	s.rtc, err = rtc.New(rtc.Config{UDP: cfg.WebRTCUDP, TCP: cfg.WebRTCTCP, PublicIPs: publicIPs, STUN: cfg.STUN,
		FFmpeg: ffmpeg, Loopback: isLoopback(cfg.WebRTCUDP), MaxViewers: cfg.WebRTCMaxViewers}, s.hub, log.With("component", "webrtc"))
	if err != nil {
		return nil, err
	}
	s.undo.push(s.rtc.Close)

	s.plane = control.New(control.Config{
		Directory:           s.view.Directory(),
		Camera:              s.view.Camera(),
		Sessions:            s.view.Sessions(),
		KeepAliveInterval:   cfg.KeepAliveInterval,
		AckTimeout:          cfg.AckTimeout,
		MaxMissedAcks:       cfg.MaxMissedAcks,
		ManagedStartTimeout: cfg.ManagedStartTimeout,
		AppGrace:            cfg.AppGrace,
		UserGrace:           cfg.UserGrace,
		PublicURL:           s.public,
		Grant:               s.Grant,
		KeepGrant:           func(g string) { s.access.Keep(g) },
		Record:              cfg.RecordManaged,
		Outputs:             planeOutputs{s.outputs},
		CheckURL:            checkRTMPURL,
		RTMPBase:            s.rtmpBase,
		AppWebSocketURL:     webSocketURL(s.public) + "/app-ws",
	}, s.reg, s.apps, s.store, &api.WebhookClient{HTTP: &http.Client{}}, log.With("component", "control"))
	s.undo.push(s.plane.Close)
	s.sockets = &api.Sockets{Plane: s.plane, Secret: s.secret, Log: log.With("component", "sockets"), Throttle: throttle}

	mux := http.NewServeMux()
	apiServer := api.New(s.reg, s, s.adminToken, log.With("component", "api"))
	s.viewers = newHTTPViewers(func(id string) bool {
		_, err := s.reg.Get(id)
		return err == nil || s.view.Relays() != nil && s.view.Relays().Has(id)
	})
	apiServer.Viewers = s.allViewers
	apiServer.Counts = s.plane.Counts
	apiServer.Throttle = throttle
	apiServer.Recordings = s.recs
	apiServer.Outputs = s.outputs
	// Every request about what another node holds goes through the view.
	elsewhere := s.view.Elsewhere()
	if s.view.Cluster() != nil {
		apiServer.Node = s.view.Node()
	}
	apiServer.Elsewhere = elsewhere
	s.outputs.OnChange(s.plane.OutputsChanged)
	outputsAPI := &api.Outputs{Mgr: s.outputs, Reg: s.reg, Plane: s.plane, Store: s.store, Apps: s.apps, Throttle: throttle,
		Elsewhere: elsewhere}
	outputsAPI.Register(mux, apiServer.Admin)
	apiServer.Register(mux)
	tokens := &api.Tokens{Signer: s.access, URLs: s, Revoked: s.revoked, Share: s.view.ShareRevocation}
	tokens.Known = func(id string) bool {
		if _, err := s.reg.Get(id); err == nil {
			return true
		}
		if _, err := s.recs.Get(id); err == nil {
			return true
		}
		return s.view.Knows(id)
	}
	tokens.Register(mux, apiServer.Admin)
	appsAPI := &api.Apps{Store: s.apps, Plane: s.plane, Secret: s.secret, Throttle: throttle, Elsewhere: elsewhere}
	appsAPI.Register(mux, apiServer.Admin)
	s.sockets.Register(mux)
	mux.Handle("GET /api/v1/stats", apiServer.Admin(http.HandlerFunc(s.stats)))
	mux.Handle("GET /api/v1/cluster", apiServer.Admin(http.HandlerFunc(s.clusterStatus)))
	mux.Handle("GET /metrics", apiServer.Admin(s.metricsHandler()))
	// Every media route wants a grant for its stream (see guard).
	mux.Handle("/hls/{id}/{file}", s.guardID(access.Live, progress(s.viewers.wrap("hls", hls.New(s.packager)))))
	mux.Handle("/dash/{id}/{file}", s.guardID(access.Live, progress(s.viewers.wrap("dash", dash.New(s.packager)))))
	media := http.NewServeMux()
	s.rtc.Register(media)
	mux.Handle("/whep/{id}", s.guard(access.Live, media))
	mux.Handle("/whep/{id}/{session}", s.view.WHEP(media)) // the session's id is its capability
	pages := web.New(s.publicStatus)
	mux.Handle("/assets/", pages)
	mux.Handle("/watch/", s.guard(access.Live, pages))
	s.recs.Register(media)
	mux.Handle("/recordings/", s.guard(access.Recording, progress(s.view.Recordings(media))))
	s.thumbs = thumb.New(ffmpeg, s.hub, log.With("component", "thumb"))
	s.undo.push(s.thumbs.Close)
	s.reg.Subscribe("thumbnails", func(ev live.Event) {
		if ev.Kind == live.EventEnded {
			s.thumbs.Forget(ev.Stream.ID())
		}
	})
	s.thumbs.Register(media)
	mux.Handle("GET /thumb/{file}", s.guard(access.Live, progress(media)))
	mux.HandleFunc("GET /healthz", s.healthz)
	if cfg.Pprof {
		// Profiles for whoever holds the admin token.
		mux.Handle("/debug/pprof/", apiServer.Admin(http.HandlerFunc(pprof.Index)))
		mux.Handle("/debug/pprof/profile", apiServer.Admin(http.HandlerFunc(pprof.Profile)))
		mux.Handle("/debug/pprof/trace", apiServer.Admin(http.HandlerFunc(pprof.Trace)))
	}
	mux.HandleFunc("GET /{$}", web.Dashboard(s.demoWatchPath))
	if err := s.view.Start(member.Parts{Plane: s.plane, RTC: s.rtc, Outputs: s.outputs, Sockets: s.sockets, API: apiServer, Apps: appsAPI,
		Handler: mux, URLs: s, LocalStatus: s.localStatus, Grants: s.grants, Ready: s.ready.Load}); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	var handler http.Handler = s.proxies.HTTP(deadlines(mux))
	if s.tls != nil {
		handler = hsts(handler)
		s.redirSrv = &http.Server{
			Handler:           s.tls.challenges(redirect(s.httpsLn.Addr(), s.healthz)),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       30 * time.Second,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		}
	}
	s.httpSrv = &http.Server{
		Handler:           handler,
		ConnContext:       withConnFlags,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// configApps are the apps of the configuration file, checked.
func configApps(apps []config.AppConfig) ([]store.App, error) {
	var out []store.App
	for _, a := range apps {
		app, _, err := api.CheckApp(api.NewAppRequest{PackageName: a.PackageName, Name: a.Name, PublicURL: a.PublicURL,
			Permissions: a.Permissions, APIKey: a.APIKey})
		if err != nil {
			return nil, fmt.Errorf("app %s: %w", a.PackageName, err)
		}
		out = append(out, app)
	}
	return out, nil
}

// localIngest is the ingest's URL base as this process reaches it.
func localIngest(addr net.Addr) string {
	host, port, _ := net.SplitHostPort(addr.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "rtmp://" + net.JoinHostPort(host, port) + "/" + rtmp.App + "/"
}

// isLoopback reports whether an address is on a loopback IP.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	ip := net.ParseIP(host)
	return err == nil && ip != nil && ip.IsLoopback()
}

// WebRTC is the WHEP server.
func (s *Server) WebRTC() *rtc.Server { return s.rtc }

// webSocketURL turns the public http(s) base into a ws(s) one.
func webSocketURL(public string) string {
	if rest, ok := strings.CutPrefix(public, "https://"); ok {
		return "wss://" + rest
	}
	return "ws://" + strings.TrimPrefix(public, "http://")
}

// JWTSecret is the secret of the core tokens.
func (s *Server) JWTSecret() []byte { return s.secret }

// Store is the server's database.
func (s *Server) Store() *store.Store { return s.store }

// Apps is where the apps are kept: the store, or the cluster's.
func (s *Server) Apps() store.Apps { return s.apps }

// Plane is the control plane.
func (s *Server) Plane() *control.Plane { return s.plane }

// publicURLs derives the URLs handed out: the configured public URL, or one
// built from the HTTP listener; the RTMP base uses the public host and the
// ingest's port.
// publicURLs are the bases of the URLs handed out: the configured public
// URL or one made from the listeners (HTTPS when on), and the ingest's
// (RTMPS when on), on the public URL's host.
func (s *Server) publicURLs() (string, string) {
	host := "localhost"
	public := s.cfg.PublicURL
	web, scheme := s.httpLn.Addr(), "http"
	if s.httpsLn != nil {
		web, scheme = s.httpsLn.Addr(), "https"
	}
	if public == "" {
		h, port, _ := net.SplitHostPort(web.String())
		if ip := net.ParseIP(h); ip != nil && !ip.IsUnspecified() {
			host = h
		}
		if len(s.cfg.ACMEDomains) > 0 {
			host = s.cfg.ACMEDomains[0]
		}
		if scheme == "https" && port == "443" || scheme == "http" && port == "80" {
			public = scheme + "://" + hostOnly(host)
		} else {
			public = scheme + "://" + net.JoinHostPort(host, port)
		}
	} else if u, err := url.Parse(public); err == nil {
		host = u.Hostname()
	}
	for len(public) > 0 && public[len(public)-1] == '/' {
		public = public[:len(public)-1]
	}
	_, rport, _ := net.SplitHostPort(s.ingest.Addr().String())
	s.rtmpPlain = "rtmp://" + net.JoinHostPort(host, rport) + "/" + rtmp.App + "/"
	if in := s.cfg.IngestURL; in != "" {
		return public, strings.TrimSuffix(in, "/") + "/" // a shared ingest address in front of the nodes
	}
	if s.ingestTLS != nil {
		_, rport, _ = net.SplitHostPort(s.ingestTLS.Addr().String())
		return public, "rtmps://" + net.JoinHostPort(host, rport) + "/" + rtmp.App + "/"
	}
	return public, s.rtmpPlain
}

// PlainRTMPBase is rtmp://HOST:PORT/live/ of the plain RTMP ingest, which
// listens with RTMPS on too (RTMPBase is then the RTMPS one).
func (s *Server) PlainRTMPBase() string { return s.rtmpPlain }

// hostOnly brackets an IPv6 address for a URL.
func hostOnly(h string) string {
	if ip := net.ParseIP(h); ip != nil && ip.To4() == nil {
		return "[" + h + "]"
	}
	return h
}

// listenTLS sets up the certificates and binds HTTPS and RTMPS.
func (s *Server) listenTLS(cfg config.Config, throttle *auth.Throttle) error {
	t, err := newServerTLS(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.HTTPS)
	if err != nil {
		return fmt.Errorf("https: %w", err)
	}
	if cfg.RTMPS != "" {
		in, err := rtmp.Listen(cfg.RTMPS, s.reg, rtmp.Config{MaxConns: cfg.MaxRTMPConns, Throttle: throttle, TLS: t.config, Proxies: s.proxies}, s.log.With("component", "rtmps"))
		if err != nil {
			ln.Close()
			return fmt.Errorf("rtmps: %w", err)
		}
		s.ingestTLS = in
	}
	s.tls, s.httpsLn = t, ln
	return nil
}

// closeTLS releases the TLS listeners of a server that was never run.
func (s *Server) closeTLS() {
	if s.httpsLn != nil {
		s.httpsLn.Close()
	}
	if s.ingestTLS != nil {
		s.ingestTLS.Close()
	}
}

// Public implements api.URLs.
func (s *Server) Public() string { return s.public }

// RTMPBase implements api.URLs.
func (s *Server) RTMPBase() string { return s.rtmpBase }

// AdminToken is the admin API's bearer token.
func (s *Server) AdminToken() string { return s.adminToken }

// TokenGenerated says the token was made now because none was configured
// (and kept under --data for the next start).
func (s *Server) TokenGenerated() bool { return s.generated }

// HTTPAddr and RTMPAddr are the bound addresses.
func (s *Server) HTTPAddr() net.Addr { return s.httpLn.Addr() }

// RTMPAddr is the ingest's bound address.
func (s *Server) RTMPAddr() net.Addr { return s.ingest.Addr() }

// HTTPSAddr and RTMPSAddr are the bound TLS addresses (nil without TLS).
func (s *Server) HTTPSAddr() net.Addr {
	if s.httpsLn == nil {
		return nil
	}
	return s.httpsLn.Addr()
}

// RTMPSAddr is the RTMPS ingest's address (nil without it).
func (s *Server) RTMPSAddr() net.Addr {
	if s.ingestTLS == nil {
		return nil
	}
	return s.ingestTLS.Addr()
}

// Registry gives in-process access to the streams.
func (s *Server) Registry() *live.Registry { return s.reg }

// Recordings is the recordings store.
func (s *Server) Recordings() *record.Store { return s.recs }

// DemoID is the demo stream's id, once it exists.
func (s *Server) DemoID() string {
	s.demoMu.Lock()
	defer s.demoMu.Unlock()
	return s.demoID
}

// DemoPlayback is the demo stream's viewer URLs, as the Streams API hands
// them out (zero until it plays).
func (s *Server) DemoPlayback() api.Playback {
	s.demoMu.Lock()
	defer s.demoMu.Unlock()
	return s.demoPlay
}

// demoWatchPath is the path of the demo's watch page, for the dashboard's
// link ("" until it plays).
func (s *Server) demoWatchPath() string {
	return strings.TrimPrefix(s.DemoPlayback().Watch, s.public)
}

// Run serves until ctx ends, then shuts down in order: the ingest stops and
// cuts publishers off, streams end (their outputs finish and release held
// requests), and HTTP drains for up to drain before it is closed.
func (s *Server) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	rtmpCtx, stopRTMP := context.WithCancel(context.Background())
	defer stopRTMP()

	serve := func(name string, run func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	serve("rtmp", func() error { return s.ingest.Run(rtmpCtx) })
	if s.tls == nil {
		serve("http", func() error { return s.httpSrv.Serve(s.httpLn) })
	} else {
		serve("https", func() error { return s.httpSrv.Serve(tls.NewListener(s.httpsLn, s.tls.config)) })
		serve("http", func() error { return s.redirSrv.Serve(s.httpLn) })
		if s.ingestTLS != nil {
			serve("rtmps", func() error { return s.ingestTLS.Run(rtmpCtx) })
		}
		s.tls.warm(s.log)
	}
	s.ready.Store(true)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	if runErr == nil {
		s.view.Drain(stopRTMP)
	}
	s.ready.Store(false)
	s.log.Info("shutting down")
	s.view.Leave()    // the others see this node leave first
	s.plane.Close()   // apps hear the end, glasses are told to stop
	s.sockets.Close() // and their sockets close
	stopRTMP()
	s.rtc.Close()
	if s.abr != nil {
		s.abr.Close()
	}
	s.thumbs.Close()
	s.reg.Close()
	s.outputs.Close()
	s.recs.Close()
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.httpSrv.Shutdown(shutCtx); err != nil {
		s.httpSrv.Close()
	}
	if s.redirSrv != nil {
		if err := s.redirSrv.Shutdown(shutCtx); err != nil {
			s.redirSrv.Close()
		}
	}
	wg.Wait()
	s.store.Close()
	s.log.Info("stopped")
	return runErr
}

// stats answers what the server holds, for operators and the load tool.
func (s *Server) stats(w http.ResponseWriter, _ *http.Request) {
	users, phones, apps := s.plane.Counts()
	streams := 0
	for _, st := range s.reg.List() {
		if st.Status() != live.StatusEnded {
			streams++
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintf(w, `{"users":%d,"glassesConnections":%d,"appSessions":%d,"streams":%d}`+"\n", users, phones, apps, streams)
}

// healthJoining is /healthz's answer (503) while a cluster node joins.
const healthJoining = "joining the cluster"

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if s.view.Draining() {
		http.Error(w, "draining", http.StatusServiceUnavailable) // a balancer sends no one new here
		return
	}
	if !s.ready.Load() {
		http.Error(w, "starting", http.StatusServiceUnavailable)
		return
	}
	if s.view.Joining() {
		// It serves, but a phone or a publisher sent here now would wait
		// for the cluster's view of its session or stream.
		http.Error(w, healthJoining, http.StatusServiceUnavailable)
		return
	}
	w.Write([]byte("ok\n"))
}

// allViewers counts a stream's viewers by protocol: this node's and, in a
// cluster, those the other nodes said (at their last heartbeat) they have
// of it through their relays.
func (s *Server) allViewers(st *live.Stream) api.Viewers {
	return s.view.Watched(st.ID(), s.countViewers(st), false)
}

// countViewers counts a stream's viewers here, by protocol.
func (s *Server) countViewers(st *live.Stream) api.Viewers {
	hls, dash := s.viewers.count(st.ID())
	v := api.Viewers{WebRTC: s.rtc.Viewers(st.Hub()), LLHLS: hls, DASH: dash}
	// A player on an ABR rung is the stream's viewer too; a client that
	// fetched from several rungs in the window is counted on each.
	for _, r := range st.Packager().Variants() {
		hls, dash := s.viewers.count(r.ID)
		v.LLHLS, v.DASH = v.LLHLS+hls, v.DASH+dash
	}
	return v
}

// publicStatus is a stream's public status: this node's stream's, or
// another node's.
func (s *Server) publicStatus(id, grant string) (web.Status, bool) {
	if st, ok := s.localStatus(id, grant); ok {
		return st, true
	}
	return s.view.Status(id, grant)
}

// localStatus is the public status of this node's stream.
func (s *Server) localStatus(id, grant string) (web.Status, bool) {
	st, err := s.reg.Get(id)
	if err != nil {
		return web.Status{}, false
	}
	in := st.Info()
	v := s.allViewers(st)
	out := web.Status{ID: in.ID, Name: in.Name, Status: in.Status.String(), Viewers: v.WebRTC + v.LLHLS + v.DASH}
	if in.Record && s.grants(grant, access.Recording) {
		out.Recording, _ = api.RecordingURLs(s.public, grant)
	}
	if t := in.Stats.Tracks; t != nil && t.Video != nil {
		out.Width, out.Height = t.Video.Width, t.Video.Height
	}
	if in.Status == live.StatusLive {
		out.FPS, out.Bitrate = in.Stats.FPS, in.Stats.Bitrate
	}
	return out, true
}

// packager finds a stream's packager: this node's, or a relay of another
// node's, started on the first request.
func (s *Server) packager(id string) (*cmaf.Packager, bool) {
	if p, ok := s.reg.Packager(id); ok {
		return p, true
	}
	return s.view.Packager(id)
}

// hub finds a stream's hub: this node's, or a relay of another node's
// units, started on the first request.
func (s *Server) hub(id string) (*stream.Hub, bool) {
	if h, ok := s.reg.Hub(id); ok {
		return h, true
	}
	return s.view.Hub(id)
}

// revoked ends the WebRTC sessions of a stream whose playback tokens were
// just revoked here.
func (s *Server) revoked(id string) int { return s.rtc.CloseStream(id) }

// Close releases what New made, for a server that was never run.
func (s *Server) Close() { s.undo.run() }

// Cluster is this node's cluster membership (nil for a single node).
func (s *Server) Cluster() *cluster.Cluster { return s.view.Cluster() }
