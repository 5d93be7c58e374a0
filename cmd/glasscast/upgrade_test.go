package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
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

	"github.com/glasscast/glasscast/internal/sim"
	"github.com/glasscast/glasscast/internal/testport"
)

// buildGlasscast builds the command into dir as name, with extra go build
// arguments; with the race detector when the test has it (its packages
// are compiled that way already, so only what differs is built).
func buildGlasscast(t *testing.T, dir, name string, extra ...string) string {
	t.Helper()
	out := filepath.Join(dir, name)
	args := []string{"build", "-o", out}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(append(args, extra...), ".")
	cmd := exec.Command("go", args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return out
}

// upgradeNode is one node of the rolling upgrade, in a process of its own.
type upgradeNode struct {
	name  string
	ports map[string]int
	cmd   *exec.Cmd
	log   *watchedBuffer
	done  chan error
	build string
}

func (n *upgradeNode) base() string { return fmt.Sprintf("http://127.0.0.1:%d", n.ports["http"]) }
func (n *upgradeNode) rtmp() string { return fmt.Sprintf("rtmp://127.0.0.1:%d/live/", n.ports["rtmp"]) }

// TestRollingUpgrade: three nodes of this build carry a published,
// watched stream while each in turn is drained (SIGTERM), replaced by the
// next build (a build that writes the next entry format, with a field
// this one does not know, and says it is "next") and started again on the
// same data. Its publisher goes to another node each time, as glasses
// reconnecting through a balancer would; after every step every node says
// the stream is live, on the same node, and its playlist numbers are past
// those before the step; the last takeover goes from this build to the
// next. Nodes of both builds read each other's entries and heartbeats.
func TestRollingUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("builds glasscast twice and runs three nodes")
	}
	dir := t.TempDir()
	const pkg = "github.com/glasscast/glasscast/internal/server.buildVersion"
	builds := map[string]string{
		"this": buildGlasscast(t, dir, "glasscast-this", "-ldflags", "-X "+pkg+"=this"),
		"next": buildGlasscast(t, dir, "glasscast-next", "-tags", "glasscast_nextformat", "-ldflags", "-X "+pkg+"=next"),
	}
	certs := filepath.Join(dir, "certs")
	var out, errOut bytes.Buffer
	if code := run([]string{"cluster", "certs", "--dir", certs, "--nodes", "n1,n2,n3"}, &out, &errOut); code != 0 {
		t.Fatalf("cluster certs: %d %s", code, errOut.String())
	}
	secret := func() string { b := make([]byte, 24); rand.Read(b); return hex.EncodeToString(b) }
	token, jwt := secret(), secret()

	nodes := make([]*upgradeNode, 3)
	for i := range nodes {
		n := &upgradeNode{name: fmt.Sprintf("n%d", i+1), ports: map[string]int{}}
		for _, p := range []string{"http", "rtmp", "udp", "tcp", "nats"} {
			n.ports[p] = testport.Free(t)
		}
		nodes[i] = n
	}
	var mu sync.Mutex // guards each node's cmd/done/build and up
	up := map[int]bool{}
	start := func(i int, build string) {
		n := nodes[i]
		var routes []string
		for j, o := range nodes {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", o.ports["nats"]))
			}
		}
		cmd := exec.Command(builds[build], "serve", "--node", n.name, "--data", filepath.Join(dir, n.name),
			"--http", fmt.Sprintf("127.0.0.1:%d", n.ports["http"]), "--rtmp", fmt.Sprintf("127.0.0.1:%d", n.ports["rtmp"]),
			"--webrtc-udp", fmt.Sprintf("127.0.0.1:%d", n.ports["udp"]), "--webrtc-tcp", fmt.Sprintf("127.0.0.1:%d", n.ports["tcp"]),
			"--nats-listen", fmt.Sprintf("127.0.0.1:%d", n.ports["nats"]), "--nats-routes", strings.Join(routes, ","),
			"--nats-tls-cert", filepath.Join(certs, n.name+".crt"), "--nats-tls-key", filepath.Join(certs, n.name+".key"),
			"--nats-tls-ca", filepath.Join(certs, "ca.crt"), "--drain-timeout", "20s", "--log-level", "debug")
		cmd.Env = append(os.Environ(), "GLASSCAST_ADMIN_TOKEN="+token, "GLASSCAST_JWT_SECRET="+jwt)
		log := newWatchedBuffer()
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		mu.Lock()
		n.cmd, n.log, n.done, n.build = cmd, log, done, build
		up[i] = true
		mu.Unlock()
	}
	defer func() {
		for _, n := range nodes {
			mu.Lock()
			cmd, done := n.cmd, n.done
			mu.Unlock()
			if cmd != nil {
				cmd.Process.Kill()
				<-done
			}
			if t.Failed() && n.log != nil {
				t.Logf("%s (%s)'s log, its end:\n%s", n.name, n.build, tail(n.log.String(), 12000))
			}
		}
	}()
	call := func(n *upgradeNode, method, path, body string, into any) int {
		req, _ := http.NewRequest(method, n.base()+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		if into != nil {
			json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(into)
		}
		return resp.StatusCode
	}
	// eventually polls check (the cluster forms and hands over on its own
	// clock; the API is what an operator would watch) until it says "" or
	// the deadline passes.
	eventually := func(what string, within time.Duration, check func() string) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			why := check()
			if why == "" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %v: %s", what, within, why)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	type clusterJSON struct {
		Nodes []struct {
			Name     string
			Version  string
			Alive    bool
			Draining bool
			V        int
		}
	}
	// formed: every node that is up lists the three, alive, of the builds
	// they run, the next build with its format.
	formed := func() string {
		mu.Lock()
		defer mu.Unlock()
		for i, n := range nodes {
			if !up[i] {
				continue
			}
			var c clusterJSON
			if code := call(n, "GET", "/api/v1/cluster", "", &c); code != http.StatusOK {
				return fmt.Sprintf("%s: %d", n.name, code)
			}
			got := map[string]string{}
			for _, m := range c.Nodes {
				if m.Alive && !m.Draining {
					got[m.Name] = m.Version + "/v" + strconv.Itoa(m.V)
				}
			}
			for _, o := range nodes {
				want := map[string]string{"this": "this/v1", "next": "next/v2"}[o.build]
				if got[o.name] != want {
					return fmt.Sprintf("%s sees %v", n.name, got)
				}
			}
		}
		return ""
	}
	for i := range nodes {
		start(i, "this")
	}
	eventually("three nodes of this build form a cluster", 90*time.Second, formed)

	var s struct {
		ID       string
		Ingest   struct{ RTMPURL string }
		Playback map[string]string
	}
	if code := call(nodes[0], "POST", "/api/v1/streams", `{"name":"upgraded","record":true}`, &s); code != http.StatusCreated {
		t.Fatalf("create: %d", code)
	}
	key := s.Ingest.RTMPURL[strings.LastIndex(s.Ingest.RTMPURL, "/")+1:]
	hls, _ := url.Parse(s.Playback["hls"])
	mediaPath := strings.TrimSuffix(hls.Path, "index.m3u8") + "video.m3u8"

	// The publisher: the test source, to the first node and, whenever its
	// connection ends, to the next node that is up, as glasses behind a
	// balancer would reconnect.
	ctx, cancel := context.WithCancel(context.Background())
	pubDone := make(chan struct{})
	var pubMu sync.Mutex
	publishedTo := 0
	go func() {
		defer close(pubDone)
		cur := 0
		for ctx.Err() == nil {
			pubMu.Lock()
			publishedTo = cur
			pubMu.Unlock()
			(&sim.Source{}).Publish(ctx, nodes[cur].rtmp()+key)
			mu.Lock()
			for j := 1; j <= 3; j++ {
				if next := (cur + j) % 3; up[next] {
					cur = next
					break
				}
			}
			mu.Unlock()
			select { // the glasses' reconnect delay, shortened
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	defer func() { cancel(); <-pubDone }()

	seqRE := regexp.MustCompile(`#EXT-X-MEDIA-SEQUENCE:(\d+)`)
	sequence := func(n *upgradeNode) (int, bool) {
		resp, err := http.Get(n.base() + mediaPath)
		if err != nil {
			return 0, false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		m := seqRE.FindSubmatch(b)
		if resp.StatusCode != http.StatusOK || m == nil || !bytes.Contains(b, []byte("#EXTINF")) {
			return 0, false
		}
		v, _ := strconv.Atoi(string(m[1]))
		return v, true
	}
	// liveEverywhere: every node that is up says live on the same origin,
	// and plays the stream past after (media sequence).
	liveEverywhere := func(after int) func() string {
		return func() string {
			mu.Lock()
			defer mu.Unlock()
			origin := ""
			for i, n := range nodes {
				if !up[i] {
					continue
				}
				var st struct{ Status, Node string }
				if code := call(n, "GET", "/api/v1/streams/"+s.ID, "", &st); code != http.StatusOK || st.Status != "live" {
					return fmt.Sprintf("%s says %d %q", n.name, code, st.Status)
				}
				if origin != "" && st.Node != origin {
					return fmt.Sprintf("%s says its origin is %s, another node %s", n.name, st.Node, origin)
				}
				origin = st.Node
				if seq, ok := sequence(n); !ok || seq <= after {
					return fmt.Sprintf("%s plays media sequence %d (%v), want past %d", n.name, seq, ok, after)
				}
			}
			return ""
		}
	}
	highest := func() int {
		mu.Lock()
		defer mu.Unlock()
		top := -1
		for i, n := range nodes {
			if seq, ok := sequence(n); up[i] && ok && seq > top {
				top = seq
			}
		}
		return top
	}
	eventually("the stream plays on every node", 60*time.Second, liveEverywhere(-1))
	wentLive := time.Now()

	for i, n := range nodes {
		before := highest()
		pubMu.Lock()
		from := publishedTo
		pubMu.Unlock()
		// Drain: SIGTERM, and the node exits by itself once its stream is
		// on another node.
		mu.Lock()
		up[i] = false
		cmd, done := n.cmd, n.done
		mu.Unlock()
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s exited after its drain: %v", n.name, err)
			}
		case <-time.After(40 * time.Second):
			t.Fatalf("%s did not exit within 40 s of SIGTERM", n.name)
		}
		if !strings.Contains(n.log.String(), "draining: done") {
			t.Fatalf("%s stopped without finishing its drain", n.name)
		}
		mu.Lock()
		n.cmd = nil
		mu.Unlock()
		eventually(fmt.Sprintf("with %s drained", n.name), 30*time.Second, liveEverywhere(before))
		// Replaced by the next build, on the same data and ports.
		start(i, "next")
		eventually(fmt.Sprintf("%s back as the next build", n.name), 60*time.Second, formed)
		eventually(fmt.Sprintf("after %s's upgrade", n.name), 30*time.Second, liveEverywhere(before))
		pubMu.Lock()
		to := publishedTo
		pubMu.Unlock()
		t.Logf("%s upgraded: the publisher went from n%d to n%d, media sequence past %d", n.name, from+1, to+1, before)
	}
	// The last drain handed the stream from this build to the next.
	pubMu.Lock()
	last := publishedTo
	pubMu.Unlock()
	if nodes[last].build != "next" {
		t.Fatalf("the publisher ended on %s, of build %s", nodes[last].name, nodes[last].build)
	}

	// The stream was recorded on each origin in turn; each drained node
	// handed its piece to the next before it stopped: one recording, on
	// the last origin's disk alone, with a gap at most at each move, as
	// long as the stream was live but for the moves, that ffprobe reads
	// whole.
	if code := call(nodes[last], "DELETE", "/api/v1/streams/"+s.ID, "", nil); code != http.StatusOK {
		t.Fatalf("end the stream: %d", code)
	}
	elapsed := time.Since(wentLive)
	type recordingJSON struct {
		ID, Status, Node, MP4 string
		Duration              float64
		Gaps                  int
	}
	var rec recordingJSON
	eventually("the recording is finished", 30*time.Second, func() string {
		code := call(nodes[last], "GET", "/api/v1/recordings/"+s.ID, "", &rec)
		if code != http.StatusOK || rec.Status != "complete" {
			return fmt.Sprintf("%d %+v", code, rec)
		}
		return ""
	})
	if rec.Node != nodes[last].name || rec.Gaps < 1 || rec.Gaps > 3 || rec.Duration < elapsed.Seconds()-8 {
		t.Fatalf("the recording after three moves, %.1f s after the stream went live: %+v", elapsed.Seconds(), rec)
	}
	for i, n := range nodes {
		var list struct{ Recordings []recordingJSON }
		call(n, "GET", "/api/v1/recordings", "", &list)
		var found []recordingJSON
		for _, r := range list.Recordings {
			if r.ID == s.ID {
				found = append(found, r)
			}
		}
		if len(found) != 1 || found[0].Node != nodes[last].name {
			t.Fatalf("%s lists the recording as %+v", n.name, found)
		}
		if _, err := os.Stat(filepath.Join(dir, n.name, "recordings", s.ID)); (i == last) != (err == nil) {
			t.Fatalf("%s's disk, for the recording: %v", n.name, err)
		}
	}
	if _, err := exec.LookPath("ffprobe"); err != nil {
		t.Fatal("ffprobe is missing: ./scripts/test installs it")
	}
	probe, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", rec.MP4).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", rec.MP4, err)
	}
	probed, _ := strconv.ParseFloat(strings.TrimSpace(string(probe)), 64)
	t.Logf("the recording: %.1f s (ffprobe: %.1f s) of %.1f s live, %d gaps", rec.Duration, probed, elapsed.Seconds(), rec.Gaps)
	if probed < rec.Duration-3 {
		t.Fatalf("ffprobe reads %.1f s of the recording's %.1f s", probed, rec.Duration)
	}
}

// tail is the last n bytes of s.
func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
