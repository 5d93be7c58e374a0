package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/glasscast/glasscast/internal/api"
	"github.com/glasscast/glasscast/internal/auth"
	"github.com/glasscast/glasscast/internal/sim"
	"github.com/glasscast/glasscast/internal/store"
)

// glasses runs the glasses simulator.
func glasses(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("glasscast glasses", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "http://localhost:8080", "glasscast's base URL")
	token := fs.String("token", os.Getenv("GLASSCAST_TOKEN"), "the user's core token (glasscast token --user EMAIL; env GLASSCAST_TOKEN)")
	startApp := fs.String("start-app", "", "start this app for the user once connected, as the phone does")
	battery := fs.Int("battery", 100, "battery level in percent (below 15 the glasses refuse to stream)")
	noWifi := fs.Bool("no-wifi", false, "the glasses are not on WiFi")
	videoOnly := fs.Bool("video-only", false, "stream video without audio")
	ignoreKA := fs.Bool("ignore-keepalive", false, "do not acknowledge keep-alives")
	dropAfter := fs.Duration("drop-network-after", 0, "cut the network this long after the first stream starts")
	dropFor := fs.Duration("drop-network-for", 10*time.Second, "how long the network stays down")
	clipFile := fs.String("clip", "", "fragmented MP4 to stream instead of the built-in clip")
	say := fs.String("say", "", "speak this (as a final transcription) once streaming, e.g. \"stop stream\"")
	sayAfter := fs.Duration("say-after", 10*time.Second, "when to speak, after the stream starts")
	caFile := fs.String("ca", "", "PEM file of CA certificates to trust for https:// and rtmps:// besides the system's")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: glasscast glasses --server URL --token TOKEN [--start-app PKG] [flags]")
		fmt.Fprintln(stderr, "\nSimulates a phone with Mentra Live glasses. Lines typed on stdin are spoken (sent as transcriptions).")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *token == "" {
		fmt.Fprintln(stderr, "glasscast glasses: --token is required (glasscast token --user EMAIL prints one)")
		return 2
	}
	tc, err := trustConfig(*caFile)
	if err != nil {
		fmt.Fprintf(stderr, "glasscast glasses: %v\n", err)
		return 1
	}
	g := &sim.Glasses{Server: *server, Token: *token, Battery: *battery, NoWifi: *noWifi, VideoOnly: *videoOnly,
		IgnoreKeepAlive: *ignoreKA, TLS: tc, Log: slog.New(slog.NewTextHandler(stderr, nil))}
	if *clipFile != "" {
		data, err := os.ReadFile(*clipFile)
		if err != nil {
			fmt.Fprintf(stderr, "glasscast glasses: %v\n", err)
			return 1
		}
		if g.Clip, err = sim.LoadClip(data); err != nil {
			fmt.Fprintf(stderr, "glasscast glasses: %v\n", err)
			return 1
		}
	}
	events := make(chan sim.Event, 64)
	g.Events = events
	ctx, stop := signalContext(stderr)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()

	go func() {
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			if line := strings.TrimSpace(sc.Text()); line != "" {
				g.SendTranscription(line, true)
				fmt.Fprintf(stdout, "said: %q\n", line)
			}
		}
	}()
	started := false
	for {
		select {
		case err := <-done:
			if err != nil {
				fmt.Fprintf(stderr, "glasscast glasses: %v\n", err)
				return 1
			}
			return 0
		case e := <-events:
			fmt.Fprintf(stdout, "%s %s %s\n", e.Kind, e.StreamID, e.Text)
			switch e.Kind {
			case "connected":
				if *startApp != "" && !started {
					started = true
					go func() {
						if err := startAppFor(ctx, *server, *token, *startApp); err != nil {
							fmt.Fprintf(stderr, "glasscast glasses: starting %s: %v\n", *startApp, err)
						} else {
							fmt.Fprintf(stdout, "started app %s\n", *startApp)
						}
					}()
				}
			case "streaming":
				if *dropAfter > 0 {
					d := *dropAfter
					*dropAfter = 0
					time.AfterFunc(d, func() { g.DropNetwork(*dropFor) })
				}
				if *say != "" {
					text := *say
					*say = ""
					time.AfterFunc(*sayAfter, func() {
						g.SendTranscription(text, true)
						fmt.Fprintf(stdout, "said: %q\n", text)
					})
				}
			}
		}
	}
}

// startAppFor asks glasscast to start an app for the token's user.
func startAppFor(ctx context.Context, server, token, pkg string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(server, "/")+"/api/v1/me/apps/"+pkg+"/start", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		return fmt.Errorf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return nil
}

// token prints a core token for a user.
func token(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("glasscast token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	user := fs.String("user", "", "the user's e-mail, which is their id")
	data := fs.String("data", envOr("GLASSCAST_DATA", "./glasscast-data"), "the server's data directory (where its secret is kept)")
	secret := fs.String("jwt-secret", os.Getenv("GLASSCAST_JWT_SECRET"), "the server's secret, when set in its configuration")
	ttl := fs.Duration("ttl", 365*24*time.Hour, "how long the token is valid")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *user == "" || !strings.Contains(*user, "@") {
		fmt.Fprintln(stderr, "glasscast token: --user EMAIL is required")
		return 2
	}
	key, err := auth.LoadSecret(*secret, *data)
	if err != nil {
		fmt.Fprintf(stderr, "glasscast token: %v\n", err)
		return 1
	}
	tok, err := auth.Issue(key, *user, *ttl)
	if err != nil {
		fmt.Fprintf(stderr, "glasscast token: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, tok)
	return 0
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// apps manages the registered apps in the data directory's store.
func apps(args []string, stdout, stderr io.Writer) int {
	const usage = `Usage: glasscast apps add|list|remove [flags]

  add     register an app (--package, --public-url, --name) and print its API key
  list    the registered apps
  remove  unregister one (--package)

The apps live in the server's data directory (--data, ./glasscast-data). glasscast apps add -h
lists the flags.`
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return 0
	case "add", "list", "remove":
	default:
		fmt.Fprintf(stderr, "glasscast apps: unknown subcommand %q\n\n%s\n", sub, usage)
		return 2
	}
	fs := flag.NewFlagSet("glasscast apps "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", envOr("GLASSCAST_DATA", "./glasscast-data"), "the server's data directory")
	pkg := fs.String("package", "", "the app's package name (com.example.app)")
	publicURL := fs.String("public-url", "", "the app server's base URL; webhooks go to URL/webhook")
	name := fs.String("name", "", "a display name")
	noCamera := fs.Bool("no-camera", false, "do not grant the CAMERA permission")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	st, err := store.Open(*data)
	if err != nil {
		fmt.Fprintf(stderr, "glasscast apps: %v\n", err)
		return 1
	}
	defer st.Close()
	ctx := context.Background()
	switch sub {
	case "add":
		perms := []string{store.PermissionCamera}
		if *noCamera {
			perms = []string{}
		}
		app, key, err := api.CheckApp(api.NewAppRequest{PackageName: *pkg, Name: *name, PublicURL: *publicURL, Permissions: perms})
		if err != nil {
			fmt.Fprintf(stderr, "glasscast apps add: %v\n", err)
			return 2
		}
		if _, err := st.App(ctx, app.PackageName); err == nil {
			fmt.Fprintf(stderr, "glasscast apps add: %s exists (remove it first)\n", app.PackageName)
			return 1
		}
		if err := st.PutApp(ctx, app); err != nil {
			fmt.Fprintf(stderr, "glasscast apps add: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "added %s\napi key (shown once): %s\n", app.PackageName, key)
	case "list":
		list, err := st.Apps(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "glasscast apps list: %v\n", err)
			return 1
		}
		for _, a := range list {
			fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\n", a.PackageName, a.PublicURL, strings.Join(a.Permissions, ","), a.Name)
		}
	case "remove":
		if err := st.DeleteApp(ctx, *pkg); err != nil {
			fmt.Fprintf(stderr, "glasscast apps remove: %s: %v\n", *pkg, err)
			return 1
		}
		fmt.Fprintf(stdout, "removed %s\n", *pkg)
	}
	return 0
}

// clusterCmd is glasscast cluster status: every node of the cluster the
// server belongs to, as GET /api/v1/cluster lists them.
func clusterCmd(args []string, stdout, stderr io.Writer) int {
	const usage = `Usage: glasscast cluster status --server URL --admin-token T

  status  every node of the cluster: name, public URL, version, streams, viewers,
          sessions, CPU and last heartbeat`
	if len(args) == 0 || args[0] != "status" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprintln(stdout, usage)
			return 0
		}
		fmt.Fprintln(stderr, usage)
		return 2
	}
	fs := flag.NewFlagSet("glasscast cluster status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	srv := fs.String("server", envOr("GLASSCAST_SERVER", "http://localhost:8080"), "a node's base URL")
	tok := fs.String("admin-token", os.Getenv("GLASSCAST_ADMIN_TOKEN"), "the admin token")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	req, err := http.NewRequest("GET", strings.TrimRight(*srv, "/")+"/api/v1/cluster", nil)
	if err != nil {
		fmt.Fprintf(stderr, "glasscast cluster status: %v\n", err)
		return 2
	}
	req.Header.Set("Authorization", "Bearer "+*tok)
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "glasscast cluster status: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "glasscast cluster status: %s: %s\n", resp.Status, strings.TrimSpace(string(body)))
		return 1
	}
	var out struct {
		Node    string `json:"node"`
		Cluster bool   `json:"cluster"`
		Nodes   []struct {
			Name      string    `json:"name"`
			Public    string    `json:"publicUrl"`
			Version   string    `json:"version"`
			Heartbeat time.Time `json:"lastHeartbeat"`
			Alive     bool      `json:"alive"`
			Streams   int       `json:"streams"`
			Viewers   int       `json:"viewers"`
			Sessions  int       `json:"sessions"`
			CPU       float64   `json:"cpu"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		fmt.Fprintf(stderr, "glasscast cluster status: %v\n", err)
		return 1
	}
	if !out.Cluster {
		fmt.Fprintf(stdout, "%s is a single node (no cluster flags)\n", out.Node)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tPUBLIC URL\tVERSION\tSTREAMS\tVIEWERS\tSESSIONS\tCPU\tLAST HEARTBEAT\t")
	for _, n := range out.Nodes {
		state := time.Since(n.Heartbeat).Round(100*time.Millisecond).String() + " ago"
		if !n.Alive {
			state += " (silent)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%.1f %%\t%s\t\n", n.Name, n.Public, n.Version, n.Streams, n.Viewers, n.Sessions, n.CPU, state)
	}
	tw.Flush()
	return 0
}
