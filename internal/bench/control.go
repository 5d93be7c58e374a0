package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/glasscast/glasscast/internal/auth"
	"github.com/glasscast/glasscast/internal/sim"
	"github.com/glasscast/glasscast/sdk"
)

const (
	benchPackage = "dev.glasscast.bench"
	benchAPIKey  = "bench-app-key-0123456789"
	benchSecret  = "bench-jwt-secret-0123456789abcdef0123456789"
)

// controlEnv is a child glasscast with the bench's app declared, the app's
// server running here on the Go SDK.
type controlEnv struct {
	srv    *server
	app    *sdk.AppServer
	stop   func()
	secret []byte
}

func startControl(ctx context.Context, onSession func(context.Context, *sdk.Session) error, extra ...string) (*controlEnv, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "glasscast-bench-cfg-")
	if err != nil {
		ln.Close()
		return nil, err
	}
	cfg := fmt.Sprintf("jwtSecret: %s\napps:\n  - packageName: %s\n    apiKey: %s\n    publicUrl: http://%s\n", benchSecret, benchPackage, benchAPIKey, ln.Addr())
	file := filepath.Join(dir, "glasscast.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	srv, err := startServer(ctx, append([]string{"--config", file}, extra...)...)
	os.RemoveAll(dir)
	if err != nil {
		ln.Close()
		return nil, err
	}
	app := sdk.NewAppServer(sdk.Config{PackageName: benchPackage, APIKey: benchAPIKey})
	app.OnSession(onSession)
	actx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- app.Serve(actx, ln) }()
	return &controlEnv{srv: srv, app: app, secret: []byte(benchSecret), stop: func() {
		cancel()
		<-done
		srv.stop()
	}}, nil
}

func (e *controlEnv) token(user string) string {
	tok, _ := auth.Issue(e.secret, user, time.Hour)
	return tok
}

func (e *controlEnv) startApp(ctx context.Context, user string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.srv.httpURL+"/api/v1/me/apps/"+benchPackage+"/start", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+e.token(user))
	resp, err := benchClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("start: %d %s", resp.StatusCode, b)
	}
	return nil
}

// managedStart measures managed_stream_request -> active with the simulator.
func managedStart(o options, clip *sim.Clip) (map[string]any, error) {
	fmt.Fprintf(o.out, "\n== managed: managed_stream_request -> active, Go SDK app and simulated glasses (%d trials)\n", o.trials)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		d   time.Duration
		err error
	}
	results := make(chan result, 1)
	next := make(chan struct{})
	env, err := startControl(ctx, func(ctx context.Context, s *sdk.Session) error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-next:
			}
			t0 := time.Now()
			_, err := s.Camera.StartManagedStream(ctx, sdk.ManagedStreamOptions{})
			if err == nil {
				_, err = s.Camera.WaitManagedActive(ctx)
			}
			results <- result{time.Since(t0), err}
			s.Camera.StopManagedStream(ctx)
		}
	})
	if err != nil {
		return nil, err
	}
	defer env.stop()
	events := make(chan sim.Event, 64)
	g := &sim.Glasses{Server: env.srv.httpURL, Token: env.token("bench@example.com"), Clip: clip, Events: events}
	gdone := make(chan error, 1)
	go func() { gdone <- g.Run(ctx) }()
	defer func() { cancel(); <-gdone }()
	if err := waitKind(events, "connected", 10*time.Second); err != nil {
		return nil, err
	}
	if err := env.startApp(ctx, "bench@example.com"); err != nil {
		return nil, err
	}
	var times []time.Duration
	for i := range o.trials {
		next <- struct{}{}
		r := <-results
		if r.err != nil {
			return nil, fmt.Errorf("trial %d: %w", i+1, r.err)
		}
		times = append(times, r.d)
		fmt.Fprintf(o.out, "  trial %d: %s\n", i+1, ms(r.d))
		if err := waitKind(events, "stopped", 10*time.Second); err != nil {
			return nil, err
		}
	}
	s := summarize(times)
	fmt.Fprintf(o.out, "  managed_stream_request -> active: median %s, max %s\n", ms(s.P50), ms(s.Max))
	return map[string]any{"medianMs": s.P50.Milliseconds(), "maxMs": s.Max.Milliseconds(), "trials": o.trials}, nil
}

func waitKind(events <-chan sim.Event, kind string, within time.Duration) error {
	deadline := time.After(within)
	for {
		select {
		case e := <-events:
			if e.Kind == kind {
				return nil
			}
		case <-deadline:
			return fmt.Errorf("the glasses saw no %q within %v", kind, within)
		}
	}
}

// raiseFileLimit lets this process and its children hold many sockets.
func raiseFileLimit(n uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur >= n {
		return lim.Cur, nil
	}
	want := syscall.Rlimit{Cur: n, Max: max(lim.Max, n)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		// Not allowed to raise the hard limit: take what there is.
		want = syscall.Rlimit{Cur: lim.Max, Max: lim.Max}
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want)
		return lim.Max, err
	}
	return n, nil
}

// idleSessions measures what n idle users cost: each with a glasses
// connection and an app session.
func idleSessions(o options, n int) (map[string]any, error) {
	fmt.Fprintf(o.out, "\n== sessions: %d idle users, each with a glasses connection and an app session\n", n)
	if got, err := raiseFileLimit(uint64(6*n + 8192)); err != nil {
		fmt.Fprintf(o.out, "  (open-file limit is %d: %v)\n", got, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env, err := startControl(ctx, func(ctx context.Context, s *sdk.Session) error { return nil })
	if err != nil {
		return nil, err
	}
	defer env.stop()
	base, err := procUsage(env.srv.cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	quiet := slog.New(slog.DiscardHandler)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	var failed atomic.Int64
	work := make(chan int)
	t0 := time.Now()
	var conn sync.WaitGroup
	for range 64 {
		conn.Add(1)
		go func() {
			defer conn.Done()
			for i := range work {
				user := fmt.Sprintf("user%06d@bench.example", i)
				events := make(chan sim.Event, 8)
				g := &sim.Glasses{Server: env.srv.httpURL, Token: env.token(user), Log: quiet, Events: events}
				wg.Add(1)
				go func() { defer wg.Done(); g.Run(ctx) }()
				if waitKind(events, "connected", 30*time.Second) != nil || env.startApp(ctx, user) != nil {
					failed.Add(1)
				}
			}
		}()
	}
	for i := range n {
		work <- i
		if (i+1)%1000 == 0 {
			fmt.Fprintf(o.out, "  %d users connected (%s)\n", i+1, time.Since(t0).Round(time.Millisecond))
		}
	}
	close(work)
	conn.Wait()
	connectTime := time.Since(t0)
	var counts struct {
		Users              int `json:"users"`
		GlassesConnections int `json:"glassesConnections"`
		AppSessions        int `json:"appSessions"`
	}
	req, _ := http.NewRequest("GET", env.srv.httpURL+"/api/v1/stats", nil)
	req.Header.Set("Authorization", "Bearer "+benchToken)
	if resp, err := benchClient.Do(req); err == nil {
		json.NewDecoder(resp.Body).Decode(&counts)
		resp.Body.Close()
	}
	time.Sleep(o.warmup) // settling, not synchronising
	u0, _ := procUsage(env.srv.cmd.Process.Pid)
	t1 := time.Now()
	time.Sleep(o.duration) // the idle window: pings and nothing else
	u1, err := procUsage(env.srv.cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	cpu := 100 * float64(u1.cpu-u0.cpu) / float64(time.Since(t1))
	rss := float64(u1.rss) / (1 << 20)
	perUser := float64(u1.rss-base.rss) / float64(max(counts.Users, 1)) / 1024
	fmt.Fprintf(o.out, "  connected in %s, %d failures; server holds %d users, %d glasses connections, %d app sessions\n",
		connectTime.Round(time.Millisecond), failed.Load(), counts.Users, counts.GlassesConnections, counts.AppSessions)
	fmt.Fprintf(o.out, "  server RSS %.0f MB (peak %.0f MB; %.1f KB per user above the idle server), CPU %.1f %% of a core while idle\n",
		rss, float64(u1.hwm)/(1<<20), perUser, cpu)
	if !strings.Contains(fmt.Sprint(counts.GlassesConnections), fmt.Sprint(n)) && failed.Load() == 0 {
		fmt.Fprintf(o.out, "  (the server counts %d connections for %d users)\n", counts.GlassesConnections, n)
	}
	return map[string]any{"users": n, "glassesConnections": counts.GlassesConnections, "appSessions": counts.AppSessions,
		"failures": failed.Load(), "rssMB": rss, "peakRssMB": float64(u1.hwm) / (1 << 20), "kbPerUser": perUser,
		"idleCpuPercent": cpu, "connectSeconds": connectTime.Seconds()}, nil
}
