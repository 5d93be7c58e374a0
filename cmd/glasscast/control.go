package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/glasscast/glasscast/internal/api"
	"github.com/glasscast/glasscast/internal/auth"
	"github.com/glasscast/glasscast/internal/cluster"
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

// apps manages the registered apps: in the data directory's store, or
// through a running node's API (--server), which a cluster needs.
func apps(args []string, stdout, stderr io.Writer) int {
	const usage = `Usage: glasscast apps add|list|remove [flags]

  add     register an app (--package, --public-url, --name) and print its API key
  list    the registered apps
  remove  unregister one (--package)

The apps live in the server's data directory (--data, ./glasscast-data); with
--server URL and --admin-token T they are a running node's (in a cluster: every
node's). glasscast apps add -h lists the flags.`
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
	srv := fs.String("server", os.Getenv("GLASSCAST_SERVER"), "a running node's base URL: manage its apps through its API instead of --data")
	tok := fs.String("admin-token", os.Getenv("GLASSCAST_ADMIN_TOKEN"), "the admin token, with --server")
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
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "glasscast apps "+sub+": "+format+"\n", a...)
		return code
	}
	var book appBook
	if *srv != "" {
		book = &remoteApps{base: strings.TrimRight(*srv, "/"), token: *tok}
	} else {
		st, err := store.Open(*data)
		if err != nil {
			return fail(1, "%v", err)
		}
		defer st.Close()
		book = localApps{st}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch sub {
	case "add":
		perms := []string{store.PermissionCamera}
		if *noCamera {
			perms = []string{}
		}
		req := api.NewAppRequest{PackageName: *pkg, Name: *name, PublicURL: *publicURL, Permissions: perms}
		if _, _, err := api.CheckApp(req); err != nil {
			return fail(2, "%v", err)
		}
		key, err := book.add(ctx, req)
		if errors.Is(err, store.ErrExists) {
			return fail(1, "%s exists (remove it first)", *pkg)
		}
		if err != nil {
			return fail(1, "%v", err)
		}
		fmt.Fprintf(stdout, "added %s\napi key (shown once): %s\n", *pkg, key)
	case "list":
		list, err := book.list(ctx)
		if err != nil {
			return fail(1, "%v", err)
		}
		for _, a := range list {
			fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\n", a.PackageName, a.PublicURL, strings.Join(a.Permissions, ","), a.Name)
		}
	case "remove":
		if err := book.remove(ctx, *pkg); err != nil {
			return fail(1, "%s: %v", *pkg, err)
		}
		fmt.Fprintf(stdout, "removed %s\n", *pkg)
	}
	return 0
}

// appBook is where glasscast apps finds the apps.
type appBook interface {
	add(ctx context.Context, req api.NewAppRequest) (apiKey string, err error) // store.ErrExists
	list(ctx context.Context) ([]api.AppJSON, error)
	remove(ctx context.Context, pkg string) error
}

// localApps are the apps of a data directory.
type localApps struct{ st *store.Store }

func (l localApps) add(ctx context.Context, req api.NewAppRequest) (string, error) {
	app, key, err := api.CheckApp(req)
	if err != nil {
		return "", err
	}
	return key, l.st.AddApp(ctx, app)
}

func (l localApps) list(ctx context.Context) ([]api.AppJSON, error) {
	apps, err := l.st.Apps(ctx)
	out := make([]api.AppJSON, 0, len(apps))
	for _, a := range apps {
		out = append(out, api.AppJSON{PackageName: a.PackageName, Name: a.Name, PublicURL: a.PublicURL, Permissions: a.Permissions})
	}
	return out, err
}

func (l localApps) remove(ctx context.Context, pkg string) error { return l.st.DeleteApp(ctx, pkg) }

// remoteApps are a running node's, through its admin API.
type remoteApps struct{ base, token string }

func (r *remoteApps) add(ctx context.Context, req api.NewAppRequest) (string, error) {
	var out api.AppJSON
	status, err := adminCall(ctx, "POST", r.base+"/api/v1/apps", r.token, req, &out)
	if status == http.StatusConflict {
		return "", store.ErrExists
	}
	return out.APIKey, err
}

func (r *remoteApps) list(ctx context.Context) ([]api.AppJSON, error) {
	var out struct {
		Apps []api.AppJSON `json:"apps"`
	}
	_, err := adminCall(ctx, "GET", r.base+"/api/v1/apps", r.token, nil, &out)
	return out.Apps, err
}

func (r *remoteApps) remove(ctx context.Context, pkg string) error {
	_, err := adminCall(ctx, "DELETE", r.base+"/api/v1/apps/"+url.PathEscape(pkg), r.token, nil, nil)
	return err
}

// adminCall makes a request with the admin token, sends in as JSON (when
// not nil) and reads a 2xx answer into out (when not nil); another status
// is an error carrying the server's message.
func adminCall(ctx context.Context, method, u, token string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
			msg = e.Error.Message
		}
		return resp.StatusCode, fmt.Errorf("%s: %s", resp.Status, msg)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %w", method, u, err)
		}
	}
	return resp.StatusCode, nil
}

// clusterCmd is glasscast cluster status: every node of the cluster the
// server belongs to, as GET /api/v1/cluster lists them.
func clusterCmd(args []string, stdout, stderr io.Writer) int {
	const usage = `Usage: glasscast cluster status --server URL --admin-token T
       glasscast cluster secrets --out FILE
       glasscast cluster certs --dir DIR --nodes n1,n2,n3 [--hosts H1,H2]
       glasscast cluster nkey --out FILE

  status   every node of the cluster: name, public URL, version, streams, viewers,
           sessions, CPU and last heartbeat
  secrets  makes the secrets every node shares (GLASSCAST_ADMIN_TOKEN and
           GLASSCAST_JWT_SECRET) in a new file only its owner can read, to load
           into each node's environment: set -a; . ./FILE; set +a
  certs    makes the cluster's CA (or uses the one in DIR) and a certificate and
           key for each node, files 0600: a node is a member because it holds
           one (--nats-tls-cert DIR/n1.crt --nats-tls-key DIR/n1.key
           --nats-tls-ca DIR/ca.crt); --hosts adds the names or addresses the
           routes dial besides localhost
  nkey     makes a NATS user nkey: its seed into a new 0600 FILE (for --nats-nkey)
           and its public key printed, for an existing NATS cluster's account`
	if len(args) > 0 && args[0] == "secrets" {
		return clusterSecrets(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "certs" {
		return clusterCerts(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "nkey" {
		return clusterNkey(args[1:], stdout, stderr)
	}
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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := adminCall(ctx, "GET", strings.TrimRight(*srv, "/")+"/api/v1/cluster", *tok, nil, &out); err != nil {
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

// clusterSecrets writes a new environment file with the admin token and
// JWT secret every node of a cluster shares; it prints no secret.
func clusterSecrets(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("glasscast cluster secrets", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "the file to create (mode 0600; an existing file is not overwritten)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *out == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "Usage: glasscast cluster secrets --out FILE")
		return 2
	}
	secret := func() string {
		b := make([]byte, 32)
		rand.Read(b)
		return hex.EncodeToString(b)
	}
	body := "# The secrets every glasscast node of one cluster shares. Keep this file private;\n" +
		"# load it into a node's environment with: set -a; . ./" + filepath.Base(*out) + "; set +a\n" +
		"GLASSCAST_ADMIN_TOKEN=" + secret() + "\n" +
		"GLASSCAST_JWT_SECRET=" + secret() + "\n"
	if err := writeNew(*out, []byte(body)); err != nil {
		fmt.Fprintf(stderr, "glasscast cluster secrets: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s (GLASSCAST_ADMIN_TOKEN, GLASSCAST_JWT_SECRET; mode 0600)\n", *out)
	return 0
}

// clusterCerts makes the cluster's CA and its nodes' certificates.
func clusterCerts(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("glasscast cluster certs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "the directory to write into (made 0700; a CA already there is used)")
	nodes := fs.String("nodes", "", "the nodes' names, comma-separated (as each node's --node)")
	hosts := fs.String("hosts", "", "names or addresses the routes dial, comma-separated, put in every node's certificate (localhost, 127.0.0.1 and ::1 always are)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	split := func(v string) []string {
		var out []string
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				out = append(out, f)
			}
		}
		return out
	}
	if *dir == "" || *nodes == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "Usage: glasscast cluster certs --dir DIR --nodes n1,n2,n3 [--hosts H1,H2]")
		return 2
	}
	names := split(*nodes)
	if err := cluster.MakeCerts(*dir, names, split(*hosts)); err != nil {
		fmt.Fprintf(stderr, "glasscast cluster certs: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote the cluster CA %s and, mode 0600:\n", filepath.Join(*dir, cluster.CACertFile))
	for _, n := range names {
		cert, key := cluster.NodeCertFiles(*dir, n)
		fmt.Fprintf(stdout, "  %s: --nats-tls-cert %s --nats-tls-key %s --nats-tls-ca %s\n", n, cert, key, filepath.Join(*dir, cluster.CACertFile))
	}
	fmt.Fprintf(stdout, "Copy each node's two files and ca.crt to it; keep ca.key to add nodes later.\n")
	return 0
}

// clusterNkey makes a NATS user nkey for --nats-nkey: the seed into a new
// file, the public key (which the NATS servers' account lists) printed.
func clusterNkey(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("glasscast cluster nkey", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "the seed file to create (mode 0600; an existing file is not overwritten)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *out == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "Usage: glasscast cluster nkey --out FILE")
		return 2
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		fmt.Fprintf(stderr, "glasscast cluster nkey: %v\n", err)
		return 1
	}
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	if err := writeNew(*out, append(seed, '\n')); err != nil {
		fmt.Fprintf(stderr, "glasscast cluster nkey: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, pub)
	return 0
}

// writeNew creates path (0600) with body; an existing file is an error.
func writeNew(path string, body []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(body); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}
