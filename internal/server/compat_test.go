package server_test

import (
	"bufio"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/api"
	"github.com/glasscast/glasscast/internal/config"
	"github.com/glasscast/glasscast/internal/sim"
	"github.com/glasscast/glasscast/internal/testport"
)

// nodeApp is an app written on the unmodified @mentra/sdk 2.1.29, run with
// Node from compat/mentra-sdk.
type nodeApp struct {
	t     *testing.T
	pkg   string
	port  int
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	seen  int // lines expect has gone past
	more  chan struct{}
	done  chan struct{}
}

func compatDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../../compat/mentra-sdk")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@mentra", "sdk", "package.json")); err != nil {
		t.Fatal("@mentra/sdk is not installed: run scripts/test, which installs it")
	}
	return dir
}

func freePort(t testing.TB) int { return testport.Free(t) }

// runNodeApp starts one of the compat apps and waits until it answers.
func runNodeApp(t *testing.T, script, pkg, key string, port int, env ...string) *nodeApp {
	t.Helper()
	slow(t)
	needTool(t, "node")
	dir := compatDir(t)
	cmd := exec.Command("node", filepath.Join(dir, "apps", script))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "NODE_ENV=production", "PACKAGE_NAME="+pkg, "MENTRAOS_API_KEY="+key, "PORT="+strconv.Itoa(port))
	cmd.Env = append(cmd.Env, env...)
	return runAppProcess(t, cmd, script, pkg, port)
}

// runAppProcess starts an app server's process and waits until its health
// check answers on port.
func runAppProcess(t *testing.T, cmd *exec.Cmd, name, pkg string, port int) *nodeApp {
	t.Helper()
	script := name
	a := &nodeApp{t: t, pkg: pkg, port: port, more: make(chan struct{}, 1), done: make(chan struct{}), cmd: cmd}
	out, err := a.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	a.cmd.Stderr = a.cmd.Stdout
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(a.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			a.mu.Lock()
			a.lines = append(a.lines, sc.Text())
			a.mu.Unlock()
			select {
			case a.more <- struct{}{}:
			default:
			}
		}
		a.cmd.Wait()
	}()
	t.Cleanup(a.kill)
	// Up once its health check answers.
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return a
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not come up:\n%s", script, a.output())
		}
		select {
		case <-a.done:
			t.Fatalf("%s exited:\n%s", script, a.output())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (a *nodeApp) kill() {
	if a.cmd.Process != nil {
		a.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-a.done
}

func (a *nodeApp) output() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return strings.Join(a.lines, "\n")
}

// expect waits for a line matching re, after the lines already matched by
// earlier calls, and returns its submatches.
func (a *nodeApp) expect(re string, within time.Duration) []string {
	a.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(within)
	for {
		a.mu.Lock()
		for a.seen < len(a.lines) {
			l := a.lines[a.seen]
			a.seen++
			if m := rx.FindStringSubmatch(l); m != nil {
				a.mu.Unlock()
				return m
			}
		}
		a.mu.Unlock()
		select {
		case <-a.more:
		case <-deadline:
			a.t.Fatalf("%s printed nothing matching %q within %v; output:\n%s", a.pkg, re, within, a.output())
		}
	}
}

// compatWorld is glasscast with apps declared for Node app servers.
func compatWorld(t *testing.T, pkgs map[string]int, tweak func(*config.Config)) *harness {
	var apps []config.AppConfig
	for pkg, port := range pkgs {
		apps = append(apps, config.AppConfig{PackageName: pkg, APIKey: "compat-key-" + pkg, PublicURL: "http://127.0.0.1:" + strconv.Itoa(port)})
	}
	return start(t, func(c *config.Config) {
		c.Apps = apps
		c.AppGrace = 2 * time.Second // past the 2.1.29 SDK's first reconnect
		if tweak != nil {
			tweak(c)
		}
	})
}

func connectGlasses(t *testing.T, h *harness, user string) (*sim.Glasses, chan sim.Event) {
	w := &world{harness: h}
	return w.glasses(user, nil)
}

func startFor(t *testing.T, h *harness, user, pkg string) {
	t.Helper()
	w := &world{harness: h}
	req, _ := http.NewRequest("POST", h.base+"/api/v1/me/apps/"+pkg+"/"+"start", nil)
	req.Header.Set("Authorization", "Bearer "+w.token(user))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("start %s: %d", pkg, resp.StatusCode)
	}
}

func TestMentraSDKManaged(t *testing.T) {
	parallel(t)
	const pkg = "com.example.managedstreaming"
	port := freePort(t)
	h := compatWorld(t, map[string]int{pkg: port}, nil)
	app := runNodeApp(t, "managed.mjs", pkg, "compat-key-"+pkg, port)
	g, events := connectGlasses(t, h, "nia@example.com")
	startFor(t, h, "nia@example.com", pkg)

	app.expect(`^Existing stream: .*"hasActiveStream":false`, 15*time.Second)
	app.expect(`^Stream status: initializing`, 15*time.Second)
	app.expect(`^Stream status: active`, 20*time.Second)
	hls := app.expect(`^HLS URL: (\S+)`, 5*time.Second)[1]
	dash := app.expect(`^DASH URL: (\S+)`, 5*time.Second)[1]
	// The promise resolves with URLs that play.
	m := app.expect(`^Stream request resolved: (\S+) (\S+)`, 5*time.Second)
	if m[1] != hls || m[2] != dash {
		t.Fatalf("resolved with %v, status said %s %s", m, hls, dash)
	}
	var s api.StreamJSON
	s.Playback.HLS, s.Playback.DASH = hls, dash
	checkProbe(t, s, 1280, 720, 1)
	if e := waitEvent(t, events, "display", 5*time.Second); !strings.Contains(e.Text, "Stream is live") {
		t.Fatalf("the glasses showed %q", e.Text)
	}

	// Stop flow 1: the voice command.
	g.SendTranscription("stop stream", true)
	app.expect(`^Heard: stop stream`, 10*time.Second)
	app.expect(`^Stream status: stopped`, 10*time.Second)
	waitEvent(t, events, "stopped", 10*time.Second)

	// Stop flow 2: the user stops the app while it streams.
	stopFor(t, h, "nia@example.com", pkg)
	app.expect(`^Session stopped:`, 10*time.Second)
	startFor(t, h, "nia@example.com", pkg)
	app.expect(`^Stream status: active`, 20*time.Second)
	stopFor(t, h, "nia@example.com", pkg)
	waitEvent(t, events, "stopped", 10*time.Second)
}

func stopFor(t *testing.T, h *harness, user, pkg string) {
	t.Helper()
	w := &world{harness: h}
	req, _ := http.NewRequest("POST", h.base+"/api/v1/me/apps/"+pkg+"/stop", nil)
	req.Header.Set("Authorization", "Bearer "+w.token(user))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stop %s: %d", pkg, resp.StatusCode)
	}
}

func TestMentraSDKExclusivity(t *testing.T) {
	parallel(t)
	const managed, unmanaged = "com.example.managedstreaming", "com.example.unmanagedstreaming"
	mport, uport := freePort(t), freePort(t)
	h := compatWorld(t, map[string]int{managed: mport, unmanaged: uport}, nil)
	target := h.create("the unmanaged app's server")
	mapp := runNodeApp(t, "managed.mjs", managed, "compat-key-"+managed, mport)
	uapp := runNodeApp(t, "unmanaged.mjs", unmanaged, "compat-key-"+unmanaged, uport, "RTMP_URL="+target.Ingest.RTMPURL)
	g, events := connectGlasses(t, h, "ola@example.com")

	startFor(t, h, "ola@example.com", managed)
	mapp.expect(`^Stream status: active`, 20*time.Second)
	exclusiveBothWays(t, h, "ola@example.com", mapp, uapp, g, events, target)
}

// exclusiveBothWays: with the managed app's stream active, the unmanaged
// app's start is refused with the guide's phrase; with the unmanaged
// app's stream active (pushed to target), the managed start's promise
// rejects. Voice commands stop each. h holds the user's session.
func exclusiveBothWays(t *testing.T, h *harness, user string, mapp, uapp *nodeApp, g *sim.Glasses, events chan sim.Event, target api.StreamJSON) {
	t.Helper()
	const managed, unmanaged = "com.example.managedstreaming", "com.example.unmanagedstreaming"
	startFor(t, h, user, unmanaged)
	uapp.expect(`^RTMP stream request sent`, 10*time.Second)
	uapp.expect(`^Stream error: .*managed stream active`, 10*time.Second)
	g.SendTranscription("stop stream", true) // both apps hear it; the managed one stops
	mapp.expect(`^Stream status: stopped`, 10*time.Second)
	waitEvent(t, events, "stopped", 10*time.Second)
	stopFor(t, h, user, managed)
	stopFor(t, h, user, unmanaged)

	// Unmanaged first: the managed start's promise rejects.
	startFor(t, h, user, unmanaged)
	uapp.expect(`^Stream status: active`, 20*time.Second)
	h.waitPlayable(target.Playback.HLS)
	startFor(t, h, user, managed)
	mapp.expect(`^Failed to start stream: .*Already streaming`, 10*time.Second)
	uapp.expect(`^Drop rate: \d`, 10*time.Second) // the guide's health check has the stats it needs
	g.SendTranscription("stop stream", true)
	uapp.expect(`^Stream status: stopped`, 10*time.Second)
	waitEvent(t, events, "stopped", 10*time.Second)
}

func TestMentraSDKAppDies(t *testing.T) {
	parallel(t)
	const pkg = "com.example.managedstreaming"
	port := freePort(t)
	h := compatWorld(t, map[string]int{pkg: port}, nil)
	app := runNodeApp(t, "managed.mjs", pkg, "compat-key-"+pkg, port)
	_, events := connectGlasses(t, h, "pia@example.com")
	startFor(t, h, "pia@example.com", pkg)
	hls := app.expect(`^HLS URL: (\S+)`, 20*time.Second)[1]
	app.kill() // the app server dies without a word
	waitEvent(t, events, "stopped", 15*time.Second)
	if code, _ := fetch(t, hls); code != http.StatusNotFound {
		t.Fatalf("the dead app's stream still answers: %d", code)
	}
}

// TestMentraSDKRestream: an unmodified TypeScript app names an RTMP
// destination in restreamDestinations; the output goes active, its status
// reaches the app in outputs[], and nginx-rtmp plays what it receives.
func TestMentraSDKRestream(t *testing.T) {
	parallel(t)
	const pkg = "com.example.restream"
	ng := startNginx(t)
	port := freePort(t)
	h := compatWorld(t, map[string]int{pkg: port}, allowLoopback)
	app := runNodeApp(t, "restream.mjs", pkg, "compat-key-"+pkg, port, "RESTREAM_URL="+ng.url("social"))
	connectGlasses(t, h, "ola@example.com")
	startFor(t, h, "ola@example.com", pkg)

	// The status handler prints the outputs right after the status line.
	app.expect(`^Stream status: active`, 20*time.Second)
	m := app.expect(`^Outputs: (.*"status":"active".*)`, 30*time.Second)
	if !strings.Contains(m[1], ng.url("social")) || !strings.Contains(m[1], `"name":"Live"`) {
		t.Fatalf("the app's outputs: %s", m[1])
	}
	if v := findStream(probe(t, ng.url("social")), "video"); v == nil || v.Width != 1280 {
		t.Fatal("nginx has no video from the app's restream destination")
	}
}
