package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/sim"
	"github.com/glasscast/glasscast/internal/testport"
)

// readmeCluster is what the README's cluster section says to run.
type readmeCluster struct {
	certs   []string   // the certs command's arguments
	secrets string     // the secrets command's arguments
	nodes   [][]string // each node's serve arguments
	haproxy string     // the balancer's configuration
}

// readReadmeCluster takes the commands and the haproxy configuration out
// of the README's "Several nodes" section, as a reader would paste them.
func readReadmeCluster(t *testing.T) readmeCluster {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	from := strings.Index(text, "### Several nodes")
	to := strings.Index(text[max(from, 0):], "\n## ")
	if from < 0 || to < 0 {
		t.Fatal(`the README has no "### Several nodes" section`)
	}
	section := text[from : from+to]
	// Its code blocks: runs of lines indented four spaces.
	var blocks []string
	var cur []string
	for _, line := range strings.Split(section+"\n", "\n") {
		if strings.HasPrefix(line, "    ") {
			cur = append(cur, strings.TrimPrefix(line, "    "))
			continue
		}
		if len(cur) > 0 {
			blocks = append(blocks, strings.Join(cur, "\n"))
			cur = nil
		}
	}
	var rc readmeCluster
	for _, block := range blocks {
		if strings.HasPrefix(block, "defaults") {
			rc.haproxy = block + "\n"
			continue
		}
		joined := strings.ReplaceAll(block, "\\\n", " ")
		for _, line := range strings.Split(joined, "\n") {
			line, _, _ = strings.Cut(line, "#")
			fields := strings.Fields(line)
			switch {
			case len(fields) > 2 && fields[0] == "glasscast" && fields[1] == "serve":
				rc.nodes = append(rc.nodes, fields[2:])
			case len(fields) > 2 && fields[0] == "glasscast" && fields[1] == "cluster" && fields[2] == "secrets":
				rc.secrets = strings.Join(fields[3:], " ")
			case len(fields) > 2 && fields[0] == "glasscast" && fields[1] == "cluster" && fields[2] == "certs":
				rc.certs = fields[1:]
			}
		}
	}
	if rc.secrets == "" || rc.certs == nil || len(rc.nodes) != 3 || rc.haproxy == "" {
		t.Fatalf("the README's cluster section has certs %q, secrets %q, %d nodes, haproxy %q", rc.certs, rc.secrets, len(rc.nodes), rc.haproxy)
	}
	return rc
}

// The README's haproxy configuration is valid to haproxy itself, without
// a warning.
func TestReadmeHAProxyConfig(t *testing.T) {
	if _, err := exec.LookPath("haproxy"); err != nil {
		t.Fatal("haproxy is not installed: run scripts/test, which installs it")
	}
	rc := readReadmeCluster(t)
	f := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(f, []byte(rc.haproxy), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("haproxy", "-c", "-f", f).CombinedOutput()
	if err != nil || bytes.Contains(bytes.ToUpper(out), []byte("WARNING")) || bytes.Contains(bytes.ToUpper(out), []byte("ALERT")) {
		t.Fatalf("haproxy -c on the README's configuration: %v\n%s", err, out)
	}
}

// The README's cluster section, pasted with its ports moved to free ones:
// the secrets command, three nodes and haproxy in front form a cluster,
// and a stream created through the balancer hands out the balancer's URLs
// and plays through it.
func TestReadmeCluster(t *testing.T) {
	if _, err := exec.LookPath("haproxy"); err != nil {
		t.Fatal("haproxy is not installed: run scripts/test, which installs it")
	}
	if testing.Short() {
		t.Skip("forms a three-node cluster")
	}
	rc := readReadmeCluster(t)
	dir := t.TempDir()

	// Every port the section names moves to a free one, and every listener
	// to loopback.
	ports := map[string]string{}
	movePorts := func(s string) string {
		s = regexp.MustCompile(`(--[a-z-]+ |bind ):(\d+)`).ReplaceAllString(s, "${1}127.0.0.1:$2")
		return regexp.MustCompile(`:(\d{4,5})\b`).ReplaceAllStringFunc(s, func(m string) string {
			p := m[1:]
			if ports[p] == "" {
				ports[p] = strconv.Itoa(testport.Free(t))
			}
			return ":" + ports[p]
		})
	}

	// Files the section names are made in (and read from) the test's
	// directory: it is the reader's working directory.
	inDir := func(args []string) []string {
		for i := range args {
			switch args[i] {
			case "--data", "--dir", "--nats-tls-cert", "--nats-tls-key", "--nats-tls-ca":
				if i+1 < len(args) && !filepath.IsAbs(args[i+1]) {
					args[i+1] = filepath.Join(dir, args[i+1])
				}
			}
		}
		return args
	}
	// The cluster's certificates.
	var out, errOut bytes.Buffer
	if code := run(inDir(rc.certs), &out, &errOut); code != 0 {
		t.Fatalf("%v: %d %s", rc.certs, code, errOut.String())
	}

	// The secrets, made by the command and read into the environment.
	envFile := filepath.Join(dir, filepath.Base(strings.TrimPrefix(rc.secrets, "--out ")))
	out.Reset()
	if code := run([]string{"cluster", "secrets", "--out", envFile}, &out, &errOut); code != 0 {
		t.Fatalf("cluster secrets: %d %s", code, errOut.String())
	}
	if st, err := os.Stat(envFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the secrets file: %v %v", st.Mode(), err)
	}
	envText, _ := os.ReadFile(envFile)
	for _, line := range strings.Split(string(envText), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			t.Setenv(k, v)
		}
	}
	if os.Getenv("GLASSCAST_ADMIN_TOKEN") == "" || os.Getenv("GLASSCAST_JWT_SECRET") == "" {
		t.Fatalf("the secrets file holds %q", envText)
	}
	if bytes.Contains(out.Bytes(), []byte(os.Getenv("GLASSCAST_ADMIN_TOKEN"))) {
		t.Fatal("cluster secrets printed the admin token")
	}

	// The nodes.
	ctx, cancel := context.WithCancel(context.Background())
	var logs []*watchedBuffer
	var dones []chan int
	defer func() {
		cancel()
		for i, d := range dones {
			if code := <-d; code != 0 {
				t.Errorf("node %d exited %d", i+1, code)
			}
		}
		if t.Failed() {
			for i, l := range logs {
				t.Logf("node %d's log:\n%s", i+1, l.String())
			}
		}
	}()
	for _, args := range rc.nodes {
		args = inDir(strings.Fields(movePorts(strings.Join(args, " "))))
		log := newWatchedBuffer()
		done := make(chan int, 1)
		logs, dones = append(logs, log), append(dones, done)
		go func() {
			done <- serveUntil(func(io.Writer) (context.Context, func()) { return ctx, func() {} }, args, io.Discard, log)
		}()
	}

	// The balancer.
	cfg := movePorts(rc.haproxy)
	cfgFile := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	lb := exec.Command("haproxy", "-db", "-f", cfgFile)
	var lbLog bytes.Buffer
	lb.Stdout, lb.Stderr = &lbLog, &lbLog
	if err := lb.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		lb.Process.Kill()
		lb.Wait()
		if t.Failed() {
			t.Logf("haproxy (%s):\n%s", cfg, lbLog.String())
		}
	}()
	balancer := "http://localhost:" + ports["8080"]
	ingest := "rtmp://localhost:" + ports["1935"] + "/live/"

	// The cluster forms: cluster status through the balancer lists three
	// live nodes.
	deadline := time.Now().Add(90 * time.Second)
	for {
		var st struct {
			Cluster bool
			Nodes   []struct{ Alive bool }
		}
		if code := adminJSON("GET", balancer+"/api/v1/cluster", "", &st); code == http.StatusOK {
			alive := 0
			for _, n := range st.Nodes {
				if n.Alive {
					alive++
				}
			}
			if st.Cluster && alive == 3 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the README's three nodes did not form a cluster within 90 s")
		}
		time.Sleep(250 * time.Millisecond) // polling a cluster that forms on its own clock
	}
	out.Reset()
	if code := run([]string{"cluster", "status", "--server", balancer}, &out, &errOut); code != 0 || strings.Count(out.String(), balancer) != 3 {
		t.Fatalf("cluster status through the balancer: %d\n%s%s", code, out.String(), errOut.String())
	}

	// Streams created through the balancer (each call to the next node)
	// hand out the balancer's URLs.
	var hls, key string
	for i := range 3 {
		var s struct {
			Ingest   struct{ RTMPURL string }
			Playback map[string]string
		}
		body := fmt.Sprintf(`{"name":"lobby %d"}`, i)
		if code := adminJSON("POST", balancer+"/api/v1/streams", body, &s); code != http.StatusCreated {
			t.Fatalf("create through the balancer: %d", code)
		}
		if !strings.HasPrefix(s.Ingest.RTMPURL, ingest) {
			t.Fatalf("the ingest URL %s is not the balancer's (%s)", s.Ingest.RTMPURL, ingest)
		}
		for kind, u := range s.Playback {
			if !strings.HasPrefix(u, balancer+"/") {
				t.Fatalf("the %s URL %s is not the balancer's", kind, u)
			}
		}
		hls, key = s.Playback["hls"], s.Ingest.RTMPURL
	}
	// And one plays through it, published through it.
	publishPlays(t, ctx, key, hls)
}

// publishPlays publishes the test source to ingest and waits until the
// LL-HLS playlist at hls answers.
func publishPlays(t *testing.T, ctx context.Context, ingest, hls string) {
	t.Helper()
	pub := make(chan error, 1)
	go func() { pub <- (&sim.Source{}).Publish(ctx, ingest) }()
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := http.Get(hls)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && bytes.Contains(b, []byte("#EXTM3U")) {
				return
			}
		}
		select {
		case err := <-pub:
			t.Fatalf("the publish to %s ended: %v", ingest[:strings.LastIndex(ingest, "/")], err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not play", hls)
		}
		time.Sleep(200 * time.Millisecond) // the playlist comes once the first part is made
	}
}

// adminJSON calls the admin API with the token from the environment and
// decodes its answer into out; it returns the status (0: no answer).
func adminJSON(method, url, body string, out any) int {
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+os.Getenv("GLASSCAST_ADMIN_TOKEN"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	json.NewDecoder(resp.Body).Decode(out)
	return resp.StatusCode
}

// The README's go.mod for an app of one's own builds the first app against
// this clone of the SDK.
func TestReadmeGoModule(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go mod tidy and go build")
	}
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	from := strings.Index(text, "\n    module ")
	if from < 0 {
		t.Fatal("the README shows no go.mod")
	}
	var mod []string
	for _, line := range strings.Split(text[from+1:], "\n") {
		if line != "" && !strings.HasPrefix(line, "    ") {
			break
		}
		mod = append(mod, strings.TrimPrefix(line, "    "))
	}
	goMod := strings.Join(mod, "\n")
	if !strings.Contains(goMod, "require github.com/glasscast/glasscast") || !strings.Contains(goMod, "replace github.com/glasscast/glasscast => ") {
		t.Fatalf("the README's go.mod has no require and replace:\n%s", goMod)
	}
	clone, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	goMod = regexp.MustCompile(`(replace github.com/glasscast/glasscast => )\S+`).ReplaceAllString(goMod, "${1}"+clone)
	dir := t.TempDir()
	app, err := os.ReadFile("../../examples/first/main.go")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(goMod), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), app, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"mod", "tidy"}, {"build", "-o", filepath.Join(dir, "first"), "."}} {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s with the README's go.mod:\n%s\n%s", strings.Join(args, " "), goMod, out)
		}
	}
}
