// Command glasscast is a self-hostable live-video cloud for camera smart
// glasses: RTMP in, LL-HLS and DASH out, in one binary.
//
//	glasscast [serve] [flags]     run the server (the default)
//	glasscast glasses [flags]     simulate a phone with camera glasses
//	glasscast token --user EMAIL  print a core token for a user
//	glasscast apps add|list|remove
//	glasscast publish URL         push the built-in test stream to an RTMP URL
//	glasscast bench [flags]       measure latency, CPU and memory under load
//	glasscast version
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/glasscast/glasscast/internal/bench"
	"github.com/glasscast/glasscast/internal/config"
	"github.com/glasscast/glasscast/internal/demo"
	"github.com/glasscast/glasscast/internal/server"
	"github.com/glasscast/glasscast/internal/sim"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(args, stdout, stderr)
	case "publish":
		return publish(args, stderr)
	case "glasses":
		return glasses(args, os.Stdin, stdout, stderr)
	case "token":
		return token(args, stdout, stderr)
	case "apps":
		return apps(args, stdout, stderr)
	case "cluster":
		return clusterCmd(args, stdout, stderr)
	case "bench":
		return bench.Main(args, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "glasscast", version())
		return 0
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "glasscast: unknown command %q\n\n", cmd)
		usage(stderr)
		return 2
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage: glasscast <command> [flags]

Commands:
  serve     run the server (default; --demo adds a demo stream)
  glasses   simulate a phone with camera glasses (--server URL --token T)
  token     print a core token for a user (--user EMAIL)
  apps      add, list or remove apps (add --package P --public-url URL)
  cluster   status of the cluster a node belongs to; secrets the nodes share
  publish   push the built-in test stream to an RTMP URL
  bench     measure latency, CPU and memory (see glasscast bench -h)
  version   print the version

Run "glasscast <command> -h" for a command's flags.
`)
}

func version() string { return server.Version() }

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// signalContext ends at the first SIGINT or SIGTERM; a second one exits at once.
func signalContext(stderr io.Writer) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ch
		fmt.Fprintln(stderr, "glasscast: draining (signal again to stop at once)")
		cancel()
		<-ch
		fmt.Fprintln(stderr, "glasscast: stopping at once")
		os.Exit(1)
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}

// gcPercent is the collector's target unless GOGC says otherwise: a media
// server's heap is mostly fragments waiting to be read, and collecting at 1.5x
// the live heap instead of 2x keeps memory per stream down for a few percent
// more CPU (docs/benchmarks.md).
const gcPercent = 50

func serve(args []string, stdout, stderr io.Writer) int {
	return serveUntil(signalContext, args, stdout, stderr)
}

// serveUntil runs the server until the context made by until ends.
func serveUntil(until func(io.Writer) (context.Context, func()), args []string, stdout, stderr io.Writer) int {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	cfg, err := config.Load(args, os.Getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "glasscast: configuration:\n%v\n", err)
		return 2
	}
	if cfg.Check {
		fmt.Fprintln(stdout, "configuration OK")
		return 0
	}
	log := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	srv, err := server.New(*cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "glasscast: %v\n", err)
		return 1
	}
	ctx, stop := until(stderr)
	defer stop()

	fmt.Fprintf(stdout, "glasscast %s\n", version())
	if srv.HTTPSAddr() != nil {
		fmt.Fprintf(stdout, "  HTTPS  %s  (API, LL-HLS, DASH, watch pages)\n", srv.Public())
		fmt.Fprintf(stdout, "  HTTP   http://%s  (redirects to HTTPS)\n", srv.HTTPAddr())
	} else {
		fmt.Fprintf(stdout, "  HTTP   %s  (API, LL-HLS, DASH, watch pages)\n", srv.Public())
	}
	if srv.RTMPSAddr() != nil {
		fmt.Fprintf(stdout, "  RTMPS  %sSTREAM_KEY\n", srv.RTMPBase())
	}
	fmt.Fprintf(stdout, "  RTMP   %sSTREAM_KEY\n", srv.PlainRTMPBase())
	switch {
	case srv.TokenGenerated():
		fmt.Fprintf(stdout, "  admin token (made now, kept in %s): %s\n", filepath.Join(cfg.Data, server.AdminTokenFile), srv.AdminToken())
	case cfg.AdminToken == "":
		fmt.Fprintf(stdout, "  admin token: in %s\n", filepath.Join(cfg.Data, server.AdminTokenFile))
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	demoDone := make(chan struct{})
	if cfg.Demo {
		go announceDemo(ctx, srv, stdout)
		go func() {
			defer close(demoDone)
			demo.Run(ctx, srv, log.With("component", "demo"))
		}()
	} else {
		close(demoDone)
	}
	err = <-done
	<-demoDone
	if err != nil {
		fmt.Fprintf(stderr, "glasscast: %v\n", err)
		return 1
	}
	return 0
}

// announceDemo prints the demo's watch URL once the demo stream plays.
func announceDemo(ctx context.Context, srv *server.Server, stdout io.Writer) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		id := srv.DemoID()
		if id == "" {
			continue
		}
		st, err := srv.Registry().Get(id)
		if err != nil || !st.Info().Playable {
			continue
		}
		play := srv.DemoPlayback()
		if play.Watch == "" {
			continue
		}
		fmt.Fprintf(stdout, "\n  Demo: the app dev.glasscast.demo asked simulated Mentra Live glasses for a managed stream,\n")
		fmt.Fprintf(stdout, "  and it is live. Watch it: %s\n", play.Watch)
		fmt.Fprintf(stdout, "  LL-HLS: %s   DASH: %s\n\n", play.HLS, play.DASH)
		return
	}
}

func publish(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("glasscast publish", flag.ContinueOnError)
	fs.SetOutput(stderr)
	loops := fs.Int("loops", 0, "how many times to play the clip (0: until interrupted)")
	clipFile := fs.String("clip", "", "fragmented MP4 to send instead of the built-in clip")
	noAudio := fs.Bool("video-only", false, "send the video only")
	noVideo := fs.Bool("audio-only", false, "send the audio only")
	caFile := fs.String("ca", "", "PEM file of CA certificates to trust for rtmps:// besides the system's")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: glasscast publish [flags] rtmp[s]://HOST:PORT/live/STREAM_KEY")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	data := sim.DefaultClip
	if *clipFile != "" {
		var err error
		if data, err = os.ReadFile(*clipFile); err != nil {
			fmt.Fprintf(stderr, "glasscast: %v\n", err)
			return 1
		}
	}
	clip, err := sim.LoadClip(data)
	if err != nil {
		fmt.Fprintf(stderr, "glasscast: %v\n", err)
		return 1
	}
	if *noAudio {
		clip = clip.WithoutAudio()
	}
	if *noVideo {
		clip = clip.WithoutVideo()
	}
	ctx, stop := signalContext(stderr)
	defer stop()
	tc, err := trustConfig(*caFile)
	if err != nil {
		fmt.Fprintf(stderr, "glasscast: %v\n", err)
		return 1
	}
	src := &sim.Source{Clip: clip, Loops: *loops, TLS: tc}
	err = src.Publish(ctx, fs.Arg(0))
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "glasscast: %v\n", err)
		return 1
	}
	return 0
}

// trustConfig is a TLS configuration trusting the system's CAs and those in
// caFile; nil when caFile is empty.
func trustConfig(caFile string) (*tls.Config, error) {
	if caFile == "" {
		return nil, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no PEM certificate in %s", caFile)
	}
	return &tls.Config{RootCAs: pool}, nil
}
