package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/bluenviron/gohlslib/v2"
	"github.com/bluenviron/gohlslib/v2/pkg/codecs"
	"github.com/nats-io/nats.go"

	"github.com/glasscast/glasscast/internal/api"
	"github.com/glasscast/glasscast/internal/cluster"
	"github.com/glasscast/glasscast/internal/cmaf"
	"github.com/glasscast/glasscast/internal/config"
	"github.com/glasscast/glasscast/internal/live"
	"github.com/glasscast/glasscast/internal/restream"
	"github.com/glasscast/glasscast/internal/sim"
	"github.com/glasscast/glasscast/internal/stream"
	rtc "github.com/glasscast/glasscast/internal/webrtc"
	"github.com/glasscast/glasscast/sdk"
)

type clusterView struct {
	Node    string `json:"node"`
	Cluster bool   `json:"cluster"`
	Nodes   []struct {
		Name     string `json:"name"`
		Public   string `json:"publicUrl"`
		Alive    bool   `json:"alive"`
		Streams  int    `json:"streams"`
		Viewers  int    `json:"viewers"`
		Draining bool   `json:"draining"`
	} `json:"nodes"`
}

// waitCluster waits until a node's cluster status lists exactly names,
// all alive, itself first.
func waitCluster(t testing.TB, h *harness, names ...string) clusterView {
	return waitClusterWith(t, h, func(clusterView) bool { return true }, names...)
}

// waitClusterWith waits as waitCluster does, and until also says yes.
func waitClusterWith(t testing.TB, h *harness, also func(clusterView) bool, names ...string) clusterView {
	t.Helper()
	c := h.srv.Cluster()
	deadline := time.After(60 * time.Second)
	for {
		ch := c.Changed()
		var v clusterView
		h.getJSON("/api/v1/cluster", &v)
		ok := v.Cluster && len(v.Nodes) == len(names)
		for i := range v.Nodes {
			ok = ok && v.Nodes[i].Alive && v.Nodes[i].Name == names[i]
		}
		if ok && also(v) {
			return v
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("%s lists %+v, want %v", v.Node, v.Nodes, names)
		}
	}
}

// TestClusterForms: three glasscast nodes with embedded NATS, routed to
// each other, list each other (and each one's streams) in
// GET /api/v1/cluster; a node that shuts down leaves the others' lists.
// One node alone says it is not in a cluster.
func TestClusterForms(t *testing.T) {
	parallel(t)
	alone := start(t, nil)
	var v clusterView
	alone.getJSON("/api/v1/cluster", &v)
	if v.Cluster || len(v.Nodes) != 1 || !v.Nodes[0].Alive || v.Nodes[0].Public != alone.base {
		t.Fatalf("a single node: %+v", v)
	}

	nodes := startNodes(t, 3, nil)
	nodes[1].create("on n2")
	waitCluster(t, nodes[0], "n1", "n2", "n3")
	waitCluster(t, nodes[2], "n3", "n1", "n2")
	v = waitClusterWith(t, nodes[1], func(v clusterView) bool { return v.Nodes[0].Streams == 1 }, "n2", "n1", "n3")
	if v.Nodes[0].Public != nodes[1].base {
		t.Fatalf("n2 says of itself: %+v", v.Nodes[0])
	}
	nodes[2].stop()
	waitCluster(t, nodes[0], "n1", "n2")
	waitCluster(t, nodes[1], "n2", "n1")
}

// startNodes runs n glasscast nodes, n1…, each with an embedded NATS server
// routed to the others'; tweak (when set) adjusts node i's configuration.
func startNodes(t testing.TB, n int, tweak func(i int, c *config.Config)) []*harness {
	t.Helper()
	slow(t)
	ports := make([]int, n)
	for i := range ports {
		ports[i] = freePort(t)
	}
	nodes := make([]*harness, n)
	certs := clusterCerts(t, n)
	for i := range nodes {
		var routes []string
		for j, p := range ports {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
			}
		}
		nodes[i] = start(t, func(c *config.Config) {
			c.Node = fmt.Sprintf("n%d", i+1)
			c.NATSListen = fmt.Sprintf("127.0.0.1:%d", ports[i])
			c.NATSRoutes = routes
			certs(c)
			c.JWTSecret = "the-secret-every-node-shares-0123456789"
			if tweak != nil {
				tweak(i, c)
			}
		})
	}
	return nodes
}

// clusterCerts makes a cluster CA and certificates for nodes n1…nN, as
// glasscast cluster certs does; the func it returns gives a node (by its
// name) its TLS files.
func clusterCerts(t testing.TB, n int) func(c *config.Config) {
	t.Helper()
	dir := t.TempDir()
	var names []string
	for i := range n {
		names = append(names, fmt.Sprintf("n%d", i+1))
	}
	if err := cluster.MakeCerts(dir, names, nil); err != nil {
		t.Fatal(err)
	}
	return func(c *config.Config) {
		c.NATSTLSCert, c.NATSTLSKey = cluster.NodeCertFiles(dir, c.Node)
		c.NATSTLSCA = filepath.Join(dir, cluster.CACertFile)
	}
}

// startFormed starts n nodes and waits until each lists all of them.
func startFormed(t *testing.T, n int, tweak func(i int, c *config.Config)) []*harness {
	t.Helper()
	nodes := startNodes(t, n, tweak)
	for i := range nodes {
		names := []string{fmt.Sprintf("n%d", i+1)}
		for j := range nodes {
			if j != i {
				names = append(names, fmt.Sprintf("n%d", j+1))
			}
		}
		waitCluster(t, nodes[i], names...)
	}
	return nodes
}

// TestClusterApps: an app registered on n1 (POST /api/v1/apps, what
// glasscast apps add --server does) serves a user whose glasses are on n3;
// one in n1's configuration file is known to n2; removed on n2, the app
// can no longer start on n3.
func TestClusterApps(t *testing.T) {
	parallel(t)
	const pkg, fromFile = "com.example.everywhere", "com.example.fromfile"
	nodes := startNodes(t, 3, func(i int, c *config.Config) {
		if i == 0 {
			c.Apps = []config.AppConfig{{PackageName: fromFile, APIKey: "key-of-the-file-app-0123", PublicURL: "http://127.0.0.1:9"}}
		}
	})
	waitCluster(t, nodes[2], "n3", "n1", "n2")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	code, body := nodes[0].call("POST", "/api/v1/apps", map[string]any{"packageName": pkg, "publicUrl": "http://" + ln.Addr().String()})
	if code != http.StatusCreated {
		t.Fatalf("register on n1: %d %s", code, body)
	}
	var created api.AppJSON
	if err := json.Unmarshal(body, &created); err != nil || created.APIKey == "" {
		t.Fatalf("register on n1: %s", body)
	}
	if code, body := nodes[1].call("POST", "/api/v1/apps", map[string]any{"packageName": pkg, "publicUrl": "http://127.0.0.1:9"}); code != http.StatusConflict {
		t.Fatalf("the same package on n2: %d %s, want 409", code, body)
	}

	// The app's server, holding the key n1 gave, and a user on n3.
	a := serveApp(t, ln, pkg, created.APIKey)
	w := &world{harness: nodes[2], apps: map[string]*testApp{pkg: a}}
	_, events := w.glasses("eve@example.com", nil)
	sess := w.startApp("eve@example.com", pkg)
	if err := sess.Layouts.ShowTextWall("registered on n1", 0); err != nil {
		t.Fatal(err)
	}
	if e := waitEvent(t, events, "display", 10*time.Second); !strings.Contains(e.Text, "registered on n1") {
		t.Fatalf("the glasses on n3 showed %q", e.Text)
	}
	w.stopApp("eve@example.com", pkg)

	// n1's configuration file's app, on n2 (put there once n1 has joined).
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, body := nodes[1].call("GET", "/api/v1/apps/"+fromFile, nil)
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n2 does not know n1's configured app: %d %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Removed on n2: gone for n3.
	if code, body := nodes[1].call("DELETE", "/api/v1/apps/"+pkg, nil); code != http.StatusNoContent {
		t.Fatalf("remove on n2: %d %s", code, body)
	}
	req, _ := http.NewRequest("POST", nodes[2].base+"/api/v1/me/apps/"+pkg+"/start", nil)
	req.Header.Set("Authorization", "Bearer "+w.token("eve@example.com"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Fatal("n3 started an app removed on n2")
	}

	// A client's failed authentications count on every node: ten wrong
	// admin tokens spread over the three nodes (three or four each) use up
	// its one budget, and n1 then refuses it even the right token.
	guesser := from("127.0.0.7")
	for i := range 10 {
		status(t, guesser, "GET", nodes[i%3].base+"/api/v1/streams", "not-the-admin-token-0123", "")
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		code, _, _ := status(t, guesser, "GET", nodes[0].base+"/api/v1/streams", testToken, "")
		if code == http.StatusTooManyRequests {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n1 still answers %d to a client that failed ten times across the cluster", code)
		}
		time.Sleep(50 * time.Millisecond) // the other nodes' failures arrive over NATS
	}
	if code, _, _ := status(t, from("127.0.0.8"), "GET", nodes[0].base+"/api/v1/streams", testToken, ""); code != http.StatusOK {
		t.Fatalf("another client: %d", code)
	}
}

// onNode is url with its scheme and host replaced by node's.
func onNode(node *harness, url string) string {
	u, err := neturl.Parse(url)
	if err != nil {
		panic(err)
	}
	return node.base + u.RequestURI()
}

// TestClusterPlayAnywhere: ffmpeg publishes to n1; n2 and n3, which relay
// the stream over NATS, play it (ffprobe on LL-HLS and DASH, gohlslib's
// client on n3); every part
// n1's playlist lists answers the same bytes on every node while the
// stream is live, and once the publisher has gone, every playlist, init
// segment and part of the stream does.
func TestClusterPlayAnywhere(t *testing.T) {
	parallel(t)
	nodes := startFormed(t, 3, nil)
	s := nodes[0].create("relayed")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub := publishFFmpeg(t, ctx, s.Ingest.RTMPURL)
	nodes[0].waitPlayable(s.Playback.HLS)

	// n2 and n3 play it, once their copy of the directory has it (on a
	// loaded machine JetStream may take seconds).
	for _, n := range nodes[1:] {
		waitRemote(t, n, s.ID, live.StatusLive, 20*time.Second)
		var there api.StreamJSON
		there.Playback.HLS, there.Playback.DASH = onNode(n, s.Playback.HLS), onNode(n, s.Playback.DASH)
		checkProbe(t, there, 1280, 720, 1)
	}
	// gohlslib's client reads 60 frames through n3, timestamps rising.
	readHLS(t, onNode(nodes[2], s.Playback.HLS), 60, 30*time.Second)
	// n2's watch page, and its status as n1 tells it.
	if code, page := fetch(t, onNode(nodes[1], s.Playback.Watch)); code != http.StatusOK || !strings.Contains(string(page), "relayed") {
		t.Fatalf("the watch page on n2: %d %s", code, clip(page))
	}
	var ws struct {
		Status        string
		Width, Height int
		FPS           float64
	}
	if code, body := fetch(t, onNode(nodes[1], s.Playback.Watch)+"/status"); code != http.StatusOK || json.Unmarshal(body, &ws) != nil ||
		ws.Status != "live" || ws.Width != 1280 || ws.Height != 720 || ws.FPS == 0 {
		t.Fatalf("the watch page's status on n2: %d %s", code, body)
	}

	// Every node's Streams API lists the same streams, newest first, once
	// the directory has reached it.
	other := nodes[1].create("made on n2")
	want := []string{other.ID + " n2 idle", s.ID + " n1 live"}
	for _, n := range nodes {
		deadline := time.After(10 * time.Second)
		for {
			ch := n.srv.Cluster().Changed()
			var list struct{ Streams []api.StreamJSON }
			n.getJSON("/api/v1/streams", &list)
			var got []string
			for _, st := range list.Streams {
				got = append(got, st.ID+" "+st.Node+" "+st.Status.String())
			}
			if slices.Equal(got, want) {
				break
			}
			select {
			case <-ch:
			case <-deadline:
				t.Fatalf("%s lists %v, want %v", n.base, got, want)
			}
		}
	}
	// An output of n1's stream added through n2 runs on n1 (it restreams
	// into n2's stream, which goes live), and n3 lists and removes it.
	out := nodes[1].addOutput(s.ID, map[string]any{"url": other.Ingest.RTMPURL, "name": "to n2"})
	nodes[1].waitStatus(other.ID, live.StatusLive, 20*time.Second)
	var outs struct{ Outputs []restream.Info }
	nodes[2].getJSON("/api/v1/streams/"+s.ID+"/outputs", &outs)
	if len(outs.Outputs) != 1 || outs.Outputs[0].ID != out.ID || outs.Outputs[0].Name != "to n2" {
		t.Fatalf("n3 lists n1's outputs %+v", outs.Outputs)
	}
	if code, body := nodes[2].call("DELETE", "/api/v1/streams/"+s.ID+"/outputs/"+out.ID, nil); code != http.StatusNoContent && code != http.StatusOK {
		t.Fatalf("remove n1's output through n3: %d %s", code, body)
	}
	nodes[1].waitStatus(other.ID, live.StatusReconnecting, 20*time.Second)

	// WebRTC on n3 (units relayed as they come, audio as Opus), and a
	// thumbnail on n2.
	viewer := watchWHEP(t, ctx, onNode(nodes[2], s.Playback.WebRTC))
	// Its session ended through n1 (a balancer may send the player's
	// DELETE to any node): n3's session is gone.
	session, err := neturl.Parse(viewer.Location())
	if err != nil {
		t.Fatal(err)
	}
	del := func(n *harness, path string) int {
		req, _ := http.NewRequest("DELETE", n.base+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := del(nodes[0], session.Path+"x"); code != http.StatusNotFound {
		t.Fatalf("DELETE of no such session through n1: %d", code)
	}
	if code := del(nodes[0], session.Path); code != http.StatusOK {
		t.Fatalf("DELETE of n3's WebRTC session through n1: %d", code)
	}
	if code := del(nodes[2], session.Path); code != http.StatusNotFound {
		t.Fatalf("n3 still has the session ended through n1: %d", code)
	}
	viewer.Close()
	checkThumbnail(t, onNode(nodes[1], s.Playback.Thumbnail), 1280, 720)

	// Live: the parts n1 lists are the same bytes everywhere.
	base := strings.TrimSuffix(s.Playback.HLS, "index.m3u8")
	_, playlist := fetch(t, base+"video.m3u8")
	parts := uris(string(playlist))
	if len(parts) < 5 {
		t.Fatalf("n1's playlist lists %d files:\n%s", len(parts), playlist)
	}
	for _, p := range parts[len(parts)-5:] {
		sameEverywhere(t, nodes, base+p, 0)
	}

	// The publisher gone, nothing changes any more: every file of the
	// stream is the same on every node.
	pub.Process.Kill()
	nodes[0].waitStatus(s.ID, live.StatusReconnecting, 10*time.Second)
	files := []string{"index.m3u8?" + cmaf.SessionParam + "=the-same-player", "video.m3u8", "audio.m3u8"}
	_, mv := fetch(t, base+files[0])
	for _, f := range []string{"video.m3u8", "audio.m3u8"} {
		if !strings.Contains(string(mv), f) {
			t.Fatalf("the multivariant playlist does not list %s:\n%s", f, mv)
		}
		_, pl := fetch(t, base+f)
		files = append(files, uris(string(pl))...)
	}
	for _, f := range files {
		sameEverywhere(t, nodes, base+f, 10*time.Second)
	}
	// DASH: the manifest, and each track's init segment and segments.
	dashBase := strings.TrimSuffix(s.Playback.DASH, "manifest.mpd")
	dashFiles := []string{"manifest.mpd?" + cmaf.SessionParam + "=the-same-player"}
	_, mpd := fetch(t, dashBase+dashFiles[0])
	for _, m := range segmentTemplate.FindAllStringSubmatch(string(mpd), -1) {
		first, _ := strconv.Atoi(m[3])
		dashFiles = append(dashFiles, m[1], fmt.Sprintf("%s-%d.m4s", m[2], first), fmt.Sprintf("%s-%d.m4s", m[2], first+1))
	}
	if len(dashFiles) != 7 {
		t.Fatalf("the manifest has %d segment templates, want video and audio:\n%s", (len(dashFiles)-1)/3, mpd)
	}
	for _, f := range dashFiles {
		sameEverywhere(t, nodes, dashBase+f, 10*time.Second)
	}
	t.Logf("%d files the same on three nodes", len(files)+len(dashFiles))
	// The relay nodes count their viewers of n1's stream.
	waitClusterWith(t, nodes[0], func(v clusterView) bool { return v.Nodes[1].Viewers > 0 && v.Nodes[2].Viewers > 0 }, "n1", "n2", "n3")

	// Tokens revoked on n1 stop working on every node; one minted on n2
	// works on n1.
	if code, body := nodes[0].call("DELETE", "/api/v1/streams/"+s.ID+"/tokens", nil); code != http.StatusOK {
		t.Fatalf("revoke on n1: %d %s", code, body)
	}
	for _, n := range nodes {
		deadline := time.Now().Add(10 * time.Second)
		for {
			code, _ := fetch(t, onNode(n, s.Playback.HLS))
			if code == http.StatusForbidden {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still answers %d to a revoked token", n.base, code)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	code, body := nodes[1].call("POST", "/api/v1/streams/"+s.ID+"/tokens", map[string]any{"ttl": "1h", "rights": []string{"live"}})
	var minted api.TokenJSON
	if code != http.StatusCreated || json.Unmarshal(body, &minted) != nil || minted.Playback == nil {
		t.Fatalf("a token minted on n2: %d %s", code, body)
	}
	if code, _ := fetch(t, onNode(nodes[0], minted.Playback.HLS)); code != http.StatusOK {
		t.Fatalf("n1 refuses a token minted on n2: %d", code)
	}
}

// TestClusterLadder: a stream with an ABR ladder (480p and 360p rungs
// encoded on its origin, n1) plays on n2 with the same ladder: the
// multivariant playlist and the DASH manifest are n1's bytes, a rung plays
// through n2, and the rung's parts are the same bytes on both nodes.
func TestClusterLadder(t *testing.T) {
	parallel(t)
	needTool(t, "ffmpeg")
	nodes := startFormed(t, 2, func(_ int, c *config.Config) { c.ABR = true })
	s := nodes[0].create("ladder")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	publishSim(ctx, s.Ingest.RTMPURL, nil)
	nodes[0].waitPlayable(s.Playback.HLS)

	base := strings.TrimSuffix(s.Playback.HLS, "index.m3u8")
	index := base + "index.m3u8?" + cmaf.SessionParam + "=the-same-player"
	waitLadder(t, index)
	mv := sameNow(t, nodes, index)
	dashBase := strings.TrimSuffix(s.Playback.DASH, "manifest.mpd")
	mpd := sameNow(t, nodes, dashBase+"manifest.mpd?"+cmaf.SessionParam+"=the-same-player")
	if n := strings.Count(mpd, `<Representation id="video`); n != 3 {
		t.Fatalf("the manifest has %d video representations:\n%s", n, mpd)
	}
	var rung string
	for _, line := range strings.Split(mv, "\n") {
		if strings.HasPrefix(line, "../") {
			rung = line
		}
	}
	if rung == "" {
		t.Fatalf("no rung in\n%s", mv)
	}
	rungURL := base + rung // "../<grant>~<rung>/video.m3u8?..." resolves from base
	if u, err := neturl.Parse(base); err == nil {
		rungURL = u.ResolveReference(&neturl.URL{Path: strings.SplitN(rung, "?", 2)[0]}).String()
	}
	streams := probe(t, onNode(nodes[1], rungURL))
	if v := findStream(streams, "video"); v == nil || v.Height != 360 {
		t.Fatalf("the 360p rung through n2: %s", describe(streams))
	}
	rungBase := strings.TrimSuffix(rungURL, "video.m3u8")
	_, playlist := fetch(t, rungURL)
	parts := uris(string(playlist))
	if len(parts) < 3 {
		t.Fatalf("the rung's playlist on n1 lists %d files:\n%s", len(parts), playlist)
	}
	for _, p := range append(parts[:1], parts[len(parts)-3:]...) {
		sameEverywhere(t, nodes, rungBase+p, 5*time.Second)
	}
}

// TestClusterRecordings: a recording written on n1's disk is listed by n2
// (naming n1), described by n2 as n1 describes it, plays through n2's URLs
// (n2 sends the player to n1: the same MP4 bytes), and a DELETE on n2
// removes it from n1 and from every list.
func TestClusterRecordings(t *testing.T) {
	parallel(t)
	nodes := startFormed(t, 2, nil)
	s := nodes[0].createRecorded("kept on n1")
	nodes[0].publishFor(s, 3)
	nodes[0].call("DELETE", "/api/v1/streams/"+s.ID, nil)
	want := nodes[0].waitRecorded(s.ID)
	if want.Node != "n1" || want.Status != "complete" {
		t.Fatalf("n1's recording: %+v", want)
	}

	var listed api.RecordingJSON
	deadline := time.Now().Add(20 * time.Second)
	for listed.Status != want.Status {
		var list struct{ Recordings []api.RecordingJSON }
		nodes[1].getJSON("/api/v1/recordings", &list)
		for _, r := range list.Recordings {
			if r.ID == s.ID {
				listed = r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("n2 lists %+v, want n1's recording %s %s", list.Recordings, s.ID, want.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if listed.Node != "n1" || listed.Bytes != want.Bytes || listed.Duration != want.Duration || !strings.HasPrefix(listed.HLS, nodes[1].base) {
		t.Fatalf("n2 lists %+v; n1 says %+v", listed, want)
	}
	// n2's dashboard shows it too.
	nodes[1].waitSnapshot(10*time.Second, func(snap api.Snapshot) bool {
		return len(snap.Recordings) == 1 && snap.Recordings[0].ID == s.ID && snap.Recordings[0].Node == "n1"
	})
	var described api.RecordingJSON
	nodes[1].getJSON("/api/v1/recordings/"+s.ID, &described)
	if described.Bytes != want.Bytes || described.Node != "n1" || described.HLS != want.HLS {
		t.Fatalf("n2 describes %+v; n1 %+v", described, want)
	}
	// Through n2: ffprobe plays the HLS recording, the MP4 is n1's.
	d, streams := probeFormat(t, listed.HLS)
	if findStream(streams, "video") == nil || d < 2 {
		t.Fatalf("the recording through n2: %.1f s, %s", d, describe(streams))
	}
	code, viaN2 := fetch(t, listed.MP4)
	_, fromN1 := fetch(t, want.MP4)
	if code != http.StatusOK || len(fromN1) == 0 || !bytes.Equal(viaN2, fromN1) {
		t.Fatalf("the MP4 through n2: %d, %d bytes; n1's %d", code, len(viaN2), len(fromN1))
	}
	if code, body := nodes[1].call("DELETE", "/api/v1/recordings/"+s.ID, nil); code != http.StatusNoContent {
		t.Fatalf("DELETE on n2: %d %s", code, body)
	}
	if code, _ := nodes[0].call("GET", "/api/v1/recordings/"+s.ID, nil); code != http.StatusNotFound {
		t.Fatalf("n1 still has the recording deleted on n2: %d", code)
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		code, _ := nodes[1].call("GET", "/api/v1/recordings/"+s.ID, nil)
		if code == http.StatusNotFound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n2 still describes the deleted recording: %d", code)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// recordedOnOneURL starts two nodes that share one public URL (n1's
// address), records 4 s on n1 and waits until n2's index has the finished
// recording; viaN2 turns one of its URLs into the same on n2.
func recordedOnOneURL(t testing.TB) (want api.RecordingJSON, viaN2 func(string) string) {
	port := freePort(t)
	shared := fmt.Sprintf("http://127.0.0.1:%d", port)
	nodes := startNodes(t, 2, func(i int, c *config.Config) {
		c.PublicURL = shared
		if i == 0 {
			c.HTTP = fmt.Sprintf("127.0.0.1:%d", port)
		}
	})
	n2 := "http://" + nodes[1].srv.HTTPAddr().String()
	nodes[1].base = n2 // the test's own calls to n2 go to n2
	waitCluster(t, nodes[0], "n1", "n2")
	waitCluster(t, nodes[1], "n2", "n1")

	s := nodes[0].createRecorded("kept on n1, one URL")
	nodes[0].publishFor(s, 4)
	nodes[0].call("DELETE", "/api/v1/streams/"+s.ID, nil)
	want = nodes[0].waitRecorded(s.ID)
	if !strings.HasPrefix(want.MP4, shared) {
		t.Fatalf("the recording's URL %s is not on the shared public URL %s", want.MP4, shared)
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		if e, ok := nodes[1].srv.Cluster().Recordings().Lookup(s.ID); ok && e.Node == "n1" && e.Status == want.Status {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n2's index does not have n1's recording %s as %s", s.ID, want.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return want, func(url string) string { return n2 + strings.TrimPrefix(url, shared) }
}

// BenchmarkRecordingRelay: a recording's MP4 fetched whole from the node
// that holds it and through a node that shares its public URL (over NATS,
// a range at a time).
func BenchmarkRecordingRelay(b *testing.B) {
	want, viaN2 := recordedOnOneURL(b)
	for _, c := range []struct{ name, url string }{{"holder", want.MP4}, {"relayed", viaN2(want.MP4)}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				resp, err := http.Get(c.url)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					b.Fatalf("%d %v", resp.StatusCode, err)
				}
				b.SetBytes(n)
			}
		})
	}
}

// TestClusterRecordingsOneURL: nodes that share one public URL (a
// balancer's; here n1's own address) cannot send a player to the holder's
// URL: n2 passes on n1's recording, fetched over NATS a range at a time.
// Through n2 ffprobe plays the HLS recording, and the MP4 (whole, in
// ranges across the pieces it came in, its last bytes, its length for a
// HEAD) is n1's bytes.
func TestClusterRecordingsOneURL(t *testing.T) {
	parallel(t)
	want, viaN2 := recordedOnOneURL(t)
	d, streams := probeFormat(t, viaN2(want.HLS))
	if findStream(streams, "video") == nil || findStream(streams, "audio") == nil || d < 3 {
		t.Fatalf("the recording through n2: %.1f s, %s", d, describe(streams))
	}
	_, fromN1 := fetch(t, want.MP4)
	code, whole := fetch(t, viaN2(want.MP4))
	if code != http.StatusOK || !bytes.Equal(whole, fromN1) {
		t.Fatalf("the MP4 through n2: %d, %d bytes; n1's %d", code, len(whole), len(fromN1))
	}
	const piece = 512 << 10 // what one answer over NATS carries
	if len(fromN1) < 2*piece {
		t.Fatalf("the MP4 is %d bytes: too short to come in several pieces", len(fromN1))
	}
	size := len(fromN1)
	for _, c := range []struct {
		rng        string
		start, end int // the bytes wanted, end included
	}{
		{"bytes=0-99", 0, 99},
		{fmt.Sprintf("bytes=%d-%d", piece-10, piece+10), piece - 10, piece + 10},
		{fmt.Sprintf("bytes=%d-", piece/2), piece / 2, size - 1},
		{"bytes=-3000", size - 3000, size - 1},
		{fmt.Sprintf("bytes=%d-%d", size-10, size+1000), size - 10, size - 1},
	} {
		req, _ := http.NewRequest("GET", viaN2(want.MP4), nil)
		req.Header.Set("Range", c.rng)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		wantRange := fmt.Sprintf("bytes %d-%d/%d", c.start, c.end, size)
		if err != nil || resp.StatusCode != http.StatusPartialContent || resp.Header.Get("Content-Range") != wantRange ||
			!bytes.Equal(body, fromN1[c.start:c.end+1]) {
			t.Fatalf("Range %s through n2: %d %q, %d bytes (%v); want %s, n1's bytes", c.rng, resp.StatusCode,
				resp.Header.Get("Content-Range"), len(body), err, wantRange)
		}
	}
	req, _ := http.NewRequest("GET", viaN2(want.MP4), nil)
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-", size+10))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Fatalf("a range past the end through n2: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	resp, err := http.Head(viaN2(want.MP4))
	if err != nil || resp.StatusCode != http.StatusOK || resp.ContentLength != int64(size) {
		t.Fatalf("HEAD through n2: %v %v", resp, err)
	}
	resp.Body.Close()
}

// TestClusterViewersCounted: a stream on n1 watched only through n2 (one
// LL-HLS player, gohlslib's client) has one viewer in n1's and n2's
// Streams API and on its watch page: the nodes tell of their viewers by
// stream in their heartbeats.
func TestClusterViewersCounted(t *testing.T) {
	parallel(t)
	nodes := startFormed(t, 2, nil)
	s := nodes[0].create("watched elsewhere")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	publishSim(ctx, s.Ingest.RTMPURL, nil)
	for deadline := time.Now().Add(30 * time.Second); !nodes[0].get(s.ID).Playable; {
		if time.Now().After(deadline) {
			t.Fatal("the stream did not become playable")
		}
		time.Sleep(100 * time.Millisecond)
	}
	c := quietClient(t, onNode(nodes[1], s.Playback.HLS))
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() { ended <- c.Wait2() }()
	defer func() { c.Close(); <-ended }()

	deadline := time.Now().Add(20 * time.Second)
	for {
		st, there := nodes[0].get(s.ID), nodes[1].get(s.ID)
		var status struct{ Viewers int }
		_, body := fetch(t, s.Playback.Watch+"/status")
		json.Unmarshal(body, &status)
		if st.Viewers == (api.Viewers{LLHLS: 1}) && there.Viewers == st.Viewers && status.Viewers == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n1 counts %+v viewers, n2 %+v, the watch page %d; want the one LL-HLS player on n2", st.Viewers, there.Viewers, status.Viewers)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// sameNow fetches a live URL that changes now and then (a multivariant
// playlist's peak bandwidths, a manifest's window) from n1, the other
// nodes, and n1 again, until the other nodes answered what n1 did both
// times; it returns that.
func sameNow(t *testing.T, nodes []*harness, url string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, before := fetch(t, url)
		same := true
		var got []byte
		for _, n := range nodes[1:] {
			_, got = fetch(t, onNode(n, url))
			same = same && bytes.Equal(got, before)
		}
		_, after := fetch(t, url)
		if same && bytes.Equal(before, after) {
			return string(before)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: another node answers\n%s\nn1:\n%s", url, clip(got), clip(after))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var segmentTemplate = regexp.MustCompile(`initialization="([^"]+)" media="([^"]+)-\$Number\$\.m4s" startNumber="(\d+)"`)

// uris lists the files a media playlist names: its init segment, segments
// and parts.
func uris(playlist string) []string {
	var out []string
	for _, line := range strings.Split(playlist, "\n") {
		if i := strings.Index(line, `URI="`); i >= 0 && (strings.HasPrefix(line, "#EXT-X-MAP") || strings.HasPrefix(line, "#EXT-X-PART:")) {
			out = append(out, strings.SplitN(line[i+5:], `"`, 2)[0])
		} else if line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out
}

// sameEverywhere fetches url from n1, then the same path from the other
// nodes, until each answers n1's bytes or settle has passed.
func sameEverywhere(t *testing.T, nodes []*harness, url string, settle time.Duration) {
	t.Helper()
	code, want := fetch(t, url)
	if code != http.StatusOK || len(want) == 0 {
		t.Fatalf("n1: GET %s: %d", url, code)
	}
	for i, n := range nodes[1:] {
		deadline := time.Now().Add(settle)
		for {
			code, got := fetch(t, onNode(n, url))
			if code == http.StatusOK && bytes.Equal(got, want) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("n%d: GET %s: %d, %d bytes unlike n1's %d:\n%s\nn1:\n%s", i+2, url, code, len(got), len(want), clip(got), clip(want))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func clip(b []byte) string {
	if len(b) > 2000 || !utf8.Valid(b) {
		return fmt.Sprintf("(%d bytes)", len(b))
	}
	return string(b)
}

// watchWHEP plays a stream over WebRTC until it has 60 video frames, the
// first a keyframe, and Opus audio beside them.
func watchWHEP(t *testing.T, ctx context.Context, url string) *rtc.Client {
	t.Helper()
	var mu sync.Mutex
	var frames []rtc.Frame
	audio := 0
	// Enough: 60 frames (the cached GOP comes at once) and 20 Opus packets
	// (audio comes in real time, once the transcoder has started).
	enough := make(chan struct{})
	done := false
	check := func() {
		if !done && len(frames) >= 60 && audio >= 20 {
			done = true
			close(enough)
		}
	}
	joined := time.Now()
	c, err := rtc.Dial(ctx, url, rtc.Options{Frame: func(f rtc.Frame) {
		mu.Lock()
		defer mu.Unlock()
		frames = append(frames, f)
		check()
	}, Audio: func(rtc.AudioPacket) {
		mu.Lock()
		defer mu.Unlock()
		audio++
		check()
	}})
	if err != nil {
		t.Fatalf("WHEP %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	select {
	case <-enough:
	case <-time.After(20 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("%d frames and %d Opus packets over WebRTC from %s in 20 s", len(frames), audio, url)
	}
	mu.Lock()
	defer mu.Unlock()
	if !frames[0].Key || audio < 20 {
		t.Fatalf("WebRTC from %s: first frame a keyframe %v, %d Opus packets", url, frames[0].Key, audio)
	}
	t.Logf("WebRTC from %s: first frame %v after joining, %d Opus packets", url, frames[0].Received.Sub(joined), audio)
	return c
}

// TestClusterNodeKilled: n3, in a process of its own, holds a live stream
// that n1 lists and plays; n3 is killed with SIGKILL. n1 says the stream is
// reconnecting, then, once the reconnect window has passed, ended, and
// stops playing it; n1's own stream plays on throughout.
// killableCluster forms three nodes: n1 and n2 in this process, n3 in a
// child process (which a test can SIGKILL and start again with n3conf, on
// the same data directory); tweak sets each one up (i from 0).
func killableCluster(t *testing.T, tweak func(i int, c *config.Config)) (n1, n2 *harness, n3 *childNode, n3conf func(*config.Config)) {
	t.Helper()
	ports := []int{freePort(t), freePort(t), freePort(t)}
	certs := clusterCerts(t, 3)
	node := func(i int) func(c *config.Config) {
		return func(c *config.Config) {
			c.Node = fmt.Sprintf("n%d", i+1)
			certs(c)
			c.NATSListen = fmt.Sprintf("127.0.0.1:%d", ports[i])
			c.NATSRoutes = nil
			for j, p := range ports {
				if j != i {
					c.NATSRoutes = append(c.NATSRoutes, fmt.Sprintf("nats://127.0.0.1:%d", p))
				}
			}
			c.JWTSecret = "the-secret-every-node-shares-0123456789"
			c.ReconnectWindow = 3 * time.Second
			if tweak != nil {
				tweak(i, c)
			}
		}
	}
	n1, n2 = start(t, node(0)), start(t, node(1))
	for _, n := range []*harness{n1, n2} {
		n.base = "http://" + n.srv.HTTPAddr().String() // the test's own calls go to the node, whatever its public URL
	}
	n3data := t.TempDir() // kept for n3 back after a crash
	n3conf = func(c *config.Config) { node(2)(c); c.Data = n3data }
	n3 = startChild(t, n3conf)
	waitCluster(t, n1, "n1", "n2", "n3")
	waitCluster(t, n2, "n2", "n1", "n3")
	return n1, n2, n3, n3conf
}

func TestClusterNodeKilled(t *testing.T) {
	parallel(t)
	n1, n2, n3, n3conf := killableCluster(t, nil)
	var c3 config.Config
	n3conf(&c3)
	n3data := c3.Data // n3 comes back on it

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mine := n1.create("n1's own")
	publishSim(ctx, mine.Ingest.RTMPURL, nil)
	n1.waitPlayable(mine.Playback.HLS)
	theirs := n3.createRecorded("on the node that dies")
	publishSim(ctx, theirs.Ingest.RTMPURL, nil)
	n3.waitPlayable(theirs.Playback.HLS)

	st := waitRemote(t, n1, theirs.ID, live.StatusLive, 20*time.Second)
	if st.Node != "n3" || st.Name != "on the node that dies" {
		t.Fatalf("n1 describes n3's stream as %+v", st)
	}
	relayed := onNode(n1, theirs.Playback.HLS)
	if code, _ := fetch(t, relayed); code != http.StatusOK {
		t.Fatalf("n1 does not play n3's stream: %d", code)
	}

	// Another stream of n3's, watched through n1 by a gohlslib client,
	// published in a reconnect loop (the test source: an x264 encoder
	// beside Chromium and three nodes is more than this machine carries
	// steadily): to n3 and, once that connection ends, through HAProxy's
	// RTMP frontend (n2 and n3 behind it: it finds n3 dead and sends the
	// publisher to n2).
	moves := n3.createRecorded("moves when its node dies")
	key := moves.Ingest.RTMPURL[strings.LastIndex(moves.Ingest.RTMPURL, "/")+1:]
	lbHTTP, lbRTMP := freePort(t), freePort(t)
	publishSimLoop(t, ctx, moves.Ingest.RTMPURL, fmt.Sprintf("rtmp://127.0.0.1:%d/live/%s", lbRTMP, key))
	n3.waitPlayable(moves.Playback.HLS)
	movesLive := time.Now()
	movesBase := strings.TrimSuffix(onNode(n1, moves.Playback.HLS), "index.m3u8")
	watcher := followHLS(t, onNode(n1, moves.Playback.HLS))
	watcher.waitFrames(t, 30, 30*time.Second)
	rtcViewer := followWHEP(t, ctx, onNode(n1, moves.Playback.WebRTC))
	rtcViewer.waitFrames(t, 30, 30*time.Second)
	// It has an output: a copy of it published to a stream of n1's.
	copied := n1.create("a copy of the stream that moves")
	out := n3.addOutput(moves.ID, map[string]any{"url": copied.Ingest.RTMPURL, "name": "copy"})
	n3.waitOutput(moves.ID, out.ID, restream.StatusActive, 20*time.Second)
	n1.waitStatus(copied.ID, live.StatusLive, 20*time.Second)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if e, _ := n1.srv.Cluster().Streams().Lookup(moves.ID); e.Outputs != "" && !strings.Contains(e.Outputs, "rtmp") {
			break // in its entry, sealed
		}
		if time.Now().After(deadline) {
			t.Fatal("the output is not in the stream's directory entry")
		}
	}
	// And the watch page through HAProxy in front of the three nodes, as
	// an operator runs them (health checks every 300 ms; a request that
	// fails to connect, or whose node dies under it, is tried on another
	// node), in Chromium over WebRTC, hls.js and dash.js: their requests go
	// to each node in turn, n3 until it is found dead.
	n3rtmp, _ := neturl.Parse(moves.Ingest.RTMPURL)
	startHAProxy(t, balancerConf(lbHTTP, n1.base, n2.base, n3.base)+rtmpBalancer(lbRTMP, n2.srv.RTMPAddr().String(), n3rtmp.Host), lbHTTP)
	throughLB := func(url string) string {
		u, _ := neturl.Parse(url)
		return fmt.Sprintf("http://127.0.0.1:%d%s", lbHTTP, u.RequestURI())
	}
	pages := openFailoverPages(t, ctx, fmt.Sprintf("http://127.0.0.1:%d", lbHTTP), moves)
	_, pl := fetch(t, movesBase+"video.m3u8")
	lastBefore, _ := lastPart(t, string(pl))

	// Both nodes say reconnecting, then ended (each one's statuses are
	// recorded as they change: a node that looks late may find the window
	// has passed already).
	seen1, seen2 := statusesOf(n1, theirs.ID), statusesOf(n2, theirs.ID)
	// n3 leads the directory's bucket when it dies: the takeover does not
	// wait for the others to elect a new leader.
	leadDirectory(t, n1, "n3")
	n3.kill()
	killedAt := time.Now()
	t.Logf("n3 killed at %s", killedAt.Format("15:04:05.000"))
	pages.killed()

	// The moving stream's publisher comes back through the balancer, to n2:
	// n2 takes the stream over at once, at the same URLs, and n1's client
	// plays on without a restart, later in time and at higher numbers.
	framesAtKill, rtcAtKill := watcher.count(), rtcViewer.count()
	back := killedAt
	waitRemoteOn(t, n1, moves.ID, live.StatusLive, "n2", 20*time.Second)
	liveAgain := time.Since(back)
	// Its output, kept with it, starts again from n2 (asked through n1):
	// the copy on n1 gets frames again.
	copyHub, _ := n1.srv.Registry().Hub(copied.ID)
	copyReader := copyHub.NewReader("test", 1<<12)
	defer copyReader.Close()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var o restream.Info
		code, body := n1.call("GET", "/api/v1/streams/"+moves.ID+"/outputs/"+out.ID, nil)
		if json.Unmarshal(body, &o) == nil && code == http.StatusOK && o.Status == restream.StatusActive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the output through n1 after the takeover: %d %s", code, body)
		}
	}
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	for frames := 0; frames < 30; {
		u, err := copyReader.Read(rctx)
		if err != nil {
			t.Fatalf("the copy on n1 after the takeover, %d frames: %v", frames, err)
		}
		if u.Kind == stream.KindVideo {
			frames++
		}
	}
	rcancel()
	watcher.waitFrames(t, framesAtKill+60, 30*time.Second)
	rtcViewer.waitFrames(t, rtcAtKill+60, 30*time.Second) // the same WebRTC session
	t.Logf("n3 killed, its publisher back through the balancer on n2: from the kill, live again on n1 after %v, the first new frame at n1's WebRTC viewer after %v",
		liveAgain, rtcViewer.firstAfter(back))
	// The pages play on, none reloaded, 6 s of media after the kill (more
	// than either buffers): the watch page over WebRTC offers again by
	// itself if its session was on n3; hls.js reads on through the
	// discontinuity. dash.js is neither reloaded nor failing, but does not
	// always play on yet: the segment n3 was sending as it died is cut (n2,
	// which took the window its relay had, has it, finished), and the new
	// period starts up to a second after it ends; dash.js's gap handling
	// takes that for the end of the stream in some runs. What it saw is
	// logged.
	for name, r := range pages.results(t) {
		t.Logf("%s through the balancer: played %.1f s after the kill, longest still picture %.0f ms, status %s", name, r.PlayedAfter, r.LongestStallMs, r.Status)
		if (name != "dashjs" && r.PlayedAfter < 6) || r.Reloaded || len(r.PageErrors) > 0 {
			t.Errorf("%s through the balancer after the kill: %+v", name, r)
		}
	}
	// The URLs n3 handed out play through the balancer.
	var viaLB api.StreamJSON
	viaLB.Playback.HLS, viaLB.Playback.DASH = throughLB(moves.Playback.HLS), throughLB(moves.Playback.DASH)
	checkProbe(t, viaLB, 1280, 720, 1)
	_, pl = fetch(t, movesBase+"video.m3u8")
	if msn, _ := lastPart(t, string(pl)); msn <= lastBefore || !strings.Contains(string(pl), "#EXT-X-DISCONTINUITY") {
		t.Fatalf("n1's playlist after the takeover ends at %d (before: %d):\n%s", msn, lastBefore, pl)
	}
	// The URLs n3 handed out play on both nodes.
	for _, n := range []*harness{n1, n2} {
		var there api.StreamJSON
		there.Playback.HLS, there.Playback.DASH = onNode(n, moves.Playback.HLS), onNode(n, moves.Playback.DASH)
		checkProbe(t, there, 1280, 720, 1)
	}
	waitRemote(t, n1, theirs.ID, live.StatusEnded, 60*time.Second)
	waitRemote(t, n2, theirs.ID, live.StatusEnded, 10*time.Second)
	for i, got := range [][]live.Status{seen1(), seen2()} {
		if r := slices.Index(got, live.StatusReconnecting); r < 0 || !slices.Contains(got[r:], live.StatusEnded) {
			t.Fatalf("n%d said %v of n3's stream, want reconnecting then ended", i+1, got)
		}
	}

	// Its recording, on n3's disk, is listed as unavailable until n3 is
	// back, and its files and API answer 503 saying why.
	var recs struct{ Recordings []api.RecordingJSON }
	n1.getJSON("/api/v1/recordings", &recs)
	var rec *api.RecordingJSON
	for i, r := range recs.Recordings {
		if r.ID == theirs.ID {
			rec = &recs.Recordings[i]
		}
	}
	if rec == nil || rec.Status != "unavailable" || rec.Node != "n3" || !strings.Contains(rec.Error, "n3") {
		t.Fatalf("n1 lists the dead node's recording as %+v (of %+v)", rec, recs.Recordings)
	}
	if code, body := n1.call("GET", "/api/v1/recordings/"+theirs.ID, nil); code != http.StatusServiceUnavailable || !strings.Contains(string(body), "recording_unavailable") {
		t.Fatalf("GET the dead node's recording on n1: %d %s", code, body)
	}
	if code, body := fetch(t, rec.HLS); code != http.StatusServiceUnavailable || !strings.Contains(string(body), "not reachable") {
		t.Fatalf("the dead node's recording's playlist on n1: %d %s", code, body)
	}

	// n1 no longer plays it; its own stream plays on.
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, _ := fetch(t, relayed)
		if code == http.StatusNotFound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n1 still answers %d for the dead node's stream", code)
		}
		time.Sleep(200 * time.Millisecond)
	}
	base := strings.TrimSuffix(mine.Playback.HLS, "index.m3u8")
	_, body := fetch(t, base+"video.m3u8")
	msn, part := lastPart(t, string(body))
	if code, _ := fetch(t, base+"video.m3u8?_HLS_msn="+itoa(msn)+"&_HLS_part="+itoa(uint64(part+1))); code != http.StatusOK {
		t.Fatalf("n1's own stream after n3 died: %d", code)
	}

	// n3 comes back on its disk: the piece of the moved stream's
	// recording it made before it died goes to n2, which records the
	// stream now. One recording, on n2, with the gap the crash made, read
	// whole by ffprobe once the stream ends; n3 keeps its other
	// recording.
	n3 = startChild(t, n3conf)
	waitCluster(t, n1, "n1", "n2", "n3")
	var one api.RecordingJSON
	deadline = time.Now().Add(30 * time.Second)
	for n3dir := filepath.Join(n3data, "recordings", moves.ID); ; time.Sleep(200 * time.Millisecond) {
		code, body := n1.call("GET", "/api/v1/recordings/"+moves.ID, nil)
		json.Unmarshal(body, &one)
		_, err := os.Stat(n3dir)
		if code == http.StatusOK && one.Node == "n2" && one.Gaps >= 1 && os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the moved stream's recording with n3 back: %d %s; n3's copy: %v", code, body, err)
		}
	}
	if code, _ := n1.call("DELETE", "/api/v1/streams/"+moves.ID, nil); code != http.StatusOK {
		t.Fatalf("end the moved stream through n1: %d", code)
	}
	ended := time.Now()
	for deadline = time.Now().Add(30 * time.Second); one.Status != "complete"; time.Sleep(200 * time.Millisecond) {
		_, body := n1.call("GET", "/api/v1/recordings/"+moves.ID, nil)
		json.Unmarshal(body, &one)
		if time.Now().After(deadline) {
			t.Fatalf("the moved stream's recording did not finish: %s", body)
		}
	}
	probed, _ := probeFormat(t, one.MP4)
	t.Logf("the moved stream's recording: %.1f s over n3 and n2 (ffprobe %.1f s), %d gaps", one.Duration, probed, one.Gaps)
	// Both pieces: what n3 recorded until it died (but the segment it
	// was writing) and what n2 recorded since.
	if both := killedAt.Sub(movesLive) + ended.Sub(back) - 4*time.Second; one.Gaps < 1 || one.Gaps > 2 || probed < one.Duration-3 || one.Duration < both.Seconds() {
		t.Fatalf("the moved stream's recording: %+v, ffprobe %.1f s; want over %v", one, probed, both)
	}
	if _, err := os.Stat(filepath.Join(n3data, "recordings", theirs.ID)); err != nil {
		t.Fatalf("n3's own recording after it came back: %v", err)
	}
}

// hlsFollower is a gohlslib client left playing: it counts the video
// frames it gets, each later than the last.
type hlsFollower struct {
	mu      sync.Mutex
	frames  int
	at      []time.Time // when each frame came
	last    int64
	bad     error
	asked   []string // the last files asked for
	changed chan struct{}
	ended   chan error
}

// balancerConf is HAProxy in front of nodes (base URLs) as an operator
// runs it: round robin, /healthz checked every 300 ms (a node that fails
// twice is out, back after one success; a check may take 2 s on a busy
// machine), a request whose connection fails or whose node dies before
// answering tried again on another node.
func balancerConf(port int, nodes ...string) string {
	var servers strings.Builder
	for i, n := range nodes {
		u, _ := neturl.Parse(n)
		fmt.Fprintf(&servers, "    server n%d %s check\n", i+1, u.Host)
	}
	return fmt.Sprintf(`global
    maxconn 512
defaults
    mode http
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    timeout check 2s
    retries 3
    retry-on conn-failure empty-response
    option redispatch 1
frontend http
    bind 127.0.0.1:%d
    default_backend nodes
backend nodes
    balance roundrobin
    option httpchk GET /healthz
    default-server inter 300ms fall 2 rise 1
%s`, port, servers.String())
}

// rtmpBalancer is HAProxy's RTMP frontend on port in front of addrs, in
// TCP mode: round robin, each checked (a TCP connect) every 300 ms, a
// connection that fails tried on another.
func rtmpBalancer(port int, addrs ...string) string {
	var servers strings.Builder
	for i, a := range addrs {
		fmt.Fprintf(&servers, "    server r%d %s check\n", i+1, a)
	}
	return fmt.Sprintf(`frontend rtmp
    mode tcp
    bind 127.0.0.1:%d
    default_backend rtmp
backend rtmp
    mode tcp
    balance roundrobin
    default-server inter 300ms fall 2 rise 1
%s`, port, servers.String())
}

// followHLS starts a gohlslib client on url; it stops with the test, and
// the test fails if it stopped before.
func followHLS(t *testing.T, url string) *hlsFollower {
	f := &hlsFollower{last: -1 << 62, changed: make(chan struct{}), ended: make(chan error, 1)}
	c := quietClient(t, url)
	asked := func(u string) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.asked = append(f.asked[max(0, len(f.asked)-5):], time.Now().Format("15:04:05.000")+" "+u[strings.LastIndex(u, "/")+1:])
	}
	c.OnDownloadStreamPlaylist, c.OnDownloadPart, c.OnDownloadSegment = asked, asked, asked
	c.OnTracks = func(tracks []*gohlslib.Track) error {
		for _, tr := range tracks {
			if _, ok := tr.Codec.(*codecs.H264); ok {
				c.OnDataH26x(tr, func(pts, dts int64, au [][]byte) {
					f.mu.Lock()
					defer f.mu.Unlock()
					if dts <= f.last && f.bad == nil {
						f.bad = fmt.Errorf("DTS went from %d to %d at %s, after %d frames; it last asked for %q",
							f.last, dts, time.Now().Format("15:04:05.000"), f.frames, f.asked)
					}
					f.last = dts
					f.frames++
					f.at = append(f.at, time.Now())
					close(f.changed)
					f.changed = make(chan struct{})
				})
			}
		}
		return nil
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { f.ended <- c.Wait2() }()
	t.Cleanup(func() { c.Close(); <-f.ended })
	return f
}

func (f *hlsFollower) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.frames
}

// firstAfter is how long after t the first frame after t came.
func (f *hlsFollower) firstAfter(t time.Time) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, at := range f.at {
		if at.After(t) {
			return at.Sub(t)
		}
	}
	return -1
}

// longestGap is the longest time between two frames after t.
func (f *hlsFollower) longestGap(t time.Time) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	var gap time.Duration
	for i := 1; i < len(f.at); i++ {
		if f.at[i].After(t) {
			gap = max(gap, f.at[i].Sub(f.at[i-1]))
		}
	}
	return gap
}

// waitFrames waits until the client has n frames, each later than the
// last.
func (f *hlsFollower) waitFrames(t *testing.T, n int, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		f.mu.Lock()
		got, bad, ch := f.frames, f.bad, f.changed
		f.mu.Unlock()
		if bad != nil {
			t.Fatal(bad)
		}
		if got >= n {
			return
		}
		select {
		case <-ch:
		case err := <-f.ended:
			f.ended <- err
			f.mu.Lock()
			defer f.mu.Unlock()
			t.Fatalf("the HLS client stopped after %d frames: %v; it last asked for %q", got, err, f.asked)
		case <-deadline:
			t.Fatalf("the HLS client got %d of %d frames in %v", got, n, within)
		}
	}
}

// leadDirectory makes node the JetStream leader of the stream directory's
// bucket (a stepdown with that node preferred), and waits until it is.
func leadDirectory(t *testing.T, via *harness, node string) {
	t.Helper()
	nc := via.srv.Cluster().Conn()
	deadline := time.Now().Add(20 * time.Second)
	for {
		msg, err := nc.Request("$JS.API.STREAM.INFO.KV_glasscast_streams", nil, 2*time.Second)
		var info struct {
			Cluster struct{ Leader string } `json:"cluster"`
		}
		if err == nil && json.Unmarshal(msg.Data, &info) == nil && info.Cluster.Leader == node {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not lead the directory's bucket: %v", node, err)
		}
		nc.Request("$JS.API.STREAM.LEADER.STEPDOWN.KV_glasscast_streams", []byte(`{"placement":{"preferred":"`+node+`"}}`), 2*time.Second)
		time.Sleep(200 * time.Millisecond)
	}
}

// followWHEP is a WebRTC viewer left playing, counting its video frames
// (an hlsFollower's counters).
func followWHEP(t *testing.T, ctx context.Context, url string) *hlsFollower {
	t.Helper()
	f := &hlsFollower{changed: make(chan struct{}), ended: make(chan error, 1)}
	c, err := rtc.Dial(ctx, url, rtc.Options{Frame: func(fr rtc.Frame) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.frames++
		f.at = append(f.at, fr.Received)
		close(f.changed)
		f.changed = make(chan struct{})
	}})
	if err != nil {
		t.Fatalf("WHEP %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	return f
}

// waitRemote waits, on n's changes of the cluster, until n's Streams API
// gives stream id the status want.
func waitRemote(t *testing.T, n *harness, id string, want live.Status, within time.Duration) api.StreamJSON {
	t.Helper()
	return waitRemoteOn(t, n, id, want, "", within)
}

// waitRemoteOn waits until n's Streams API says stream id is want on
// node origin (any node: "").
func waitRemoteOn(t *testing.T, n *harness, id string, want live.Status, origin string, within time.Duration) api.StreamJSON {
	t.Helper()
	deadline := time.After(within)
	for {
		ch := n.srv.Cluster().Changed()
		code, body := n.call("GET", "/api/v1/streams/"+id, nil)
		var st api.StreamJSON
		if code == http.StatusOK && json.Unmarshal(body, &st) == nil && st.Status == want && (origin == "" || st.Node == origin) {
			return st
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("%s: stream %s is %d %s, want %s on %s", n.base, id, code, body, want, origin)
		}
	}
}

// statusesOf records the statuses node n's Streams API gives a stream as
// they change, until the returned func, which looks once more (the caller
// may have seen the last change before the recorder did) and lists them.
func statusesOf(n *harness, id string) func() []live.Status {
	var got []live.Status
	look := func(ctx context.Context) {
		req, _ := http.NewRequestWithContext(ctx, "GET", n.base+"/api/v1/streams/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		var st api.StreamJSON
		if resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&st) == nil && (len(got) == 0 || got[len(got)-1] != st.Status) {
			got = append(got, st.Status)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			ch := n.srv.Cluster().Changed()
			look(ctx)
			select {
			case <-ch:
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() []live.Status {
		cancel()
		<-done
		look(context.Background())
		return got
	}
}

// TestClusterIngestAnywhere: a stream made on n1 is published to n2 with
// its key; n2 becomes its origin, every node's Streams API says so, and n1
// and n3 play it from n2 at the URLs n1 handed out.
func TestClusterIngestAnywhere(t *testing.T) {
	parallel(t)
	nodes := startFormed(t, 3, nil)
	s := nodes[0].create("made on n1")
	waitRemote(t, nodes[1], s.ID, live.StatusIdle, 10*time.Second)

	key := s.Ingest.RTMPURL[strings.LastIndex(s.Ingest.RTMPURL, "/")+1:]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	publishFFmpeg(t, ctx, nodes[1].srv.RTMPBase()+key)
	nodes[1].waitPlayable(onNode(nodes[1], s.Playback.HLS))
	for _, n := range []*harness{nodes[0], nodes[2]} {
		if st := waitRemote(t, n, s.ID, live.StatusLive, 20*time.Second); st.Node != "n2" {
			t.Fatalf("%s says the stream is on %q", n.base, st.Node)
		}
	}
	nodes[0].waitPlayable(s.Playback.HLS) // n1's relay has it (seconds, under load)
	var there api.StreamJSON
	there.Playback.HLS, there.Playback.DASH = s.Playback.HLS, onNode(nodes[2], s.Playback.DASH)
	checkProbe(t, there, 1280, 720, 1)

	// A wrong key is refused on every node.
	for _, n := range nodes {
		if err := (&sim.Source{}).Publish(ctx, n.srv.RTMPBase()+"not-"+key); err == nil {
			t.Fatalf("%s took a publish with a wrong key", n.base)
		}
	}

	// Deleted through n1's Streams API: n2, which holds it, ends it.
	code, body := nodes[0].call("DELETE", "/api/v1/streams/"+s.ID, nil)
	var gone api.StreamJSON
	if code != http.StatusOK || json.Unmarshal(body, &gone) != nil || gone.Status != live.StatusEnded || gone.Node != "n2" {
		t.Fatalf("DELETE on n1: %d %s", code, body)
	}
	nodes[1].waitStatus(s.ID, live.StatusEnded, 10*time.Second)
	waitRemote(t, nodes[2], s.ID, live.StatusEnded, 10*time.Second)

	// Draining: n2 holds a stream, watched on n1 over WebRTC and LL-HLS,
	// whose publisher goes where a balancer would send it (the first node
	// whose health check answers, n2 then n3). n2 stops (as at SIGTERM):
	// it says it drains, its publisher moves to n3, which takes the
	// stream over; n2 exits once it has; n1's viewers play on.
	d := nodes[0].create("drained")
	dkey := d.Ingest.RTMPURL[strings.LastIndex(d.Ingest.RTMPURL, "/")+1:]
	balanced := make(chan string, 16) // the node each publish went to
	go func() {
		for ctx.Err() == nil {
			for _, n := range []*harness{nodes[1], nodes[2]} {
				if resp, err := http.Get(n.base + "/healthz"); err == nil && resp.Body.Close() == nil && resp.StatusCode == http.StatusOK {
					select {
					case balanced <- n.base:
					default:
					}
					(&sim.Source{}).Publish(ctx, n.srv.RTMPBase()+dkey) // until cut off
					break
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond): // the publisher's own reconnect delay
			}
		}
	}()
	waitRemoteOn(t, nodes[0], d.ID, live.StatusLive, "n2", 20*time.Second)
	hlsViewer := followHLS(t, onNode(nodes[0], d.Playback.HLS))
	rtcViewer := followWHEP(t, ctx, onNode(nodes[0], d.Playback.WebRTC))
	hlsViewer.waitFrames(t, 30, 30*time.Second)
	rtcViewer.waitFrames(t, 30, 30*time.Second)
	hlsAt, rtcAt := hlsViewer.count(), rtcViewer.count()
	seenDraining := make(chan struct{})
	go func() {
		defer close(seenDraining)
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
			ch := nodes[0].srv.Cluster().Changed()
			var v clusterView
			nodes[0].getJSON("/api/v1/cluster", &v)
			for _, n := range v.Nodes {
				if n.Name == "n2" && n.Draining {
					return
				}
			}
			select {
			case <-ch:
			case <-time.After(time.Until(deadline)):
			}
		}
		t.Error("n1 never said n2 was draining")
	}()
	began := time.Now()
	nodes[1].stop() // returns once n2 has drained and stopped
	drained := time.Since(began)
	<-seenDraining
	if st := waitRemoteOn(t, nodes[0], d.ID, live.StatusLive, "n3", 10*time.Second); st.Playback.HLS == "" {
		t.Fatalf("the drained stream on n1: %+v", st)
	}
	hlsViewer.waitFrames(t, hlsAt+60, 30*time.Second)
	rtcViewer.waitFrames(t, rtcAt+60, 30*time.Second) // in the session it had
	if !strings.Contains(nodes[1].log.String(), "draining: done") {
		t.Fatal("n2 did not say it drained")
	}
	t.Logf("n2 drained in %v; the longest wait between frames at n1's WebRTC viewer: %v", drained, rtcViewer.longestGap(began))
}

// TestIngestURL: with --ingest-url (a cluster's shared ingest address) the
// streams' RTMP URLs name it, not the node.
func TestIngestURL(t *testing.T) {
	parallel(t)
	h := start(t, func(c *config.Config) { c.IngestURL = "rtmp://ingest.example.com:1935/live" })
	s := h.create("behind a balancer")
	if !strings.HasPrefix(s.Ingest.RTMPURL, "rtmp://ingest.example.com:1935/live/") || len(s.Ingest.RTMPURL) < len("rtmp://ingest.example.com:1935/live/")+20 {
		t.Fatalf("the ingest URL handed out: %s", s.Ingest.RTMPURL)
	}
}

// TestClusterBehindBalancer: two nodes behind haproxy, which sends each
// HTTP request to the next node in turn and each RTMP connection to either:
// a stream made on n1 and published through the balancer plays through the
// balancer (ffprobe on LL-HLS and DASH, every request to whichever node)
// with no stickiness.
func TestClusterBehindBalancer(t *testing.T) {
	parallel(t)
	needTool(t, "haproxy")
	needBrowser(t)
	lbHTTP, lbRTMP := freePort(t), freePort(t)
	ingest := fmt.Sprintf("rtmp://127.0.0.1:%d/live/", lbRTMP)
	nodes := startFormed(t, 2, func(_ int, c *config.Config) { c.IngestURL = ingest })

	var httpServers, rtmpServers strings.Builder
	for i, n := range nodes {
		u, _ := neturl.Parse(n.base)
		fmt.Fprintf(&httpServers, "    server n%d %s\n", i+1, u.Host)
		rtmpHost := strings.TrimSuffix(strings.TrimPrefix(n.srv.PlainRTMPBase(), "rtmp://"), "/live/")
		fmt.Fprintf(&rtmpServers, "    server n%d %s\n", i+1, rtmpHost)
	}
	conf := fmt.Sprintf(`global
    maxconn 512
defaults
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend http
    mode http
    bind 127.0.0.1:%d
    default_backend nodes
backend nodes
    mode http
    balance roundrobin
%slisten rtmp
    mode tcp
    bind 127.0.0.1:%d
    balance roundrobin
%s`, lbHTTP, httpServers.String(), lbRTMP, rtmpServers.String())
	startHAProxy(t, conf, lbHTTP)
	balanced := func(url string) string {
		u, _ := neturl.Parse(url)
		return fmt.Sprintf("http://127.0.0.1:%d%s", lbHTTP, u.RequestURI())
	}

	s := nodes[0].create("balanced")
	if !strings.HasPrefix(s.Ingest.RTMPURL, ingest) {
		t.Fatalf("the ingest URL %s is not the balancer's", s.Ingest.RTMPURL)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	publishSim(ctx, s.Ingest.RTMPURL, nil) // the Go test source: its SEI stamps give the page its WebRTC latency
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, _ := fetch(t, balanced(s.Playback.HLS))
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stream does not play through the balancer: %d", code)
		}
		time.Sleep(200 * time.Millisecond)
	}
	var there api.StreamJSON
	there.Playback.HLS, there.Playback.DASH = balanced(s.Playback.HLS), balanced(s.Playback.DASH)
	checkProbe(t, there, 1280, 720, 1)
	// Each request to the next node: every file answers on both.
	base := strings.TrimSuffix(there.Playback.HLS, "index.m3u8")
	_, pl := fetch(t, base+"video.m3u8")
	files := uris(string(pl))
	for _, f := range files[max(0, len(files)-6):] {
		for range 2 {
			if code, body := fetch(t, base+f); code != http.StatusOK || len(body) == 0 {
				t.Fatalf("GET %s through the balancer: %d", f, code)
			}
		}
	}
	// The watch page through the balancer, in Chromium: WebRTC, hls.js and
	// dash.js play, each request of theirs going to the next node.
	out, stderr := runBrowserScript(t, ctx, "play.mjs", fmt.Sprintf("http://127.0.0.1:%d", lbHTTP), s, "players")
	checkPlayers(t, out, stderr)
}

// TestClusterAppStartAnywhere: a user's phone is on n2, which holds their
// session; the phone's start and stop of an app sent to n1 reach n2: the
// app server gets its session from n2 and shows text on the glasses, and
// the stop through n1 ends it.
func TestClusterAppStartAnywhere(t *testing.T) {
	parallel(t)
	const pkg = "com.example.anywhere"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	app := config.AppConfig{PackageName: pkg, APIKey: "key-of-the-anywhere-app-0123", PublicURL: "http://" + ln.Addr().String()}
	nodes := startFormed(t, 2, func(_ int, c *config.Config) { c.Apps = []config.AppConfig{app} })

	a := serveApp(t, ln, pkg, app.APIKey)
	_, events := (&world{harness: nodes[1]}).glasses("zoe@example.com", nil)
	viaN1 := &world{harness: nodes[0], apps: map[string]*testApp{pkg: a}}
	sess := viaN1.startApp("zoe@example.com", pkg)
	if err := sess.Layouts.ShowTextWall("started through n1", 0); err != nil {
		t.Fatal(err)
	}
	if e := waitEvent(t, events, "display", 10*time.Second); !strings.Contains(e.Text, "started through n1") {
		t.Fatalf("the glasses on n2 showed %q", e.Text)
	}
	if _, _, apps := nodes[0].srv.Plane().Counts(); apps != 0 {
		t.Fatalf("n1 holds %d app sessions: the session should be n2's", apps)
	}
	viaN1.stopApp("zoe@example.com", pkg)
	select {
	case <-sess.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the app's session did not end after the stop through n1")
	}
}

// TestClusterAppsAnywhere: a user's phone is on n2; app A's socket reaches
// n2, app B's reaches n1 (its webhook is rewritten, as a load balancer
// would send it anywhere) and is bridged to n2. B's display reaches the
// glasses, and the two race for the camera 50 times: one wins each time,
// the other hears the camera is busy.
func TestClusterAppsAnywhere(t *testing.T) {
	parallel(t)
	const appA, appB = "com.example.direct", "com.example.bridged"
	lnA, lnB, lnP := reserve(t), reserve(t), reserve(t)
	apps := []config.AppConfig{
		{PackageName: appA, APIKey: "key-of-the-direct-app-0123", PublicURL: "http://" + lnA.Addr().String()},
		{PackageName: appB, APIKey: "key-of-the-bridged-app-0123", PublicURL: "http://" + lnP.Addr().String()},
	}
	nodes := startFormed(t, 2, func(_ int, c *config.Config) {
		c.Apps = apps
		allowLoopback(c) // B's output below
	})
	// B's webhooks pass a proxy that sends its socket to n1.
	sendSocketsTo(t, lnP, nodes[1], nodes[0], lnB.Addr().String())
	// Everything on the bus, as a member sees it.
	bus := recordBus(t, nodes[0])

	w := &world{harness: nodes[1], apps: map[string]*testApp{
		appA: serveApp(t, lnA, appA, apps[0].APIKey),
		appB: serveApp(t, lnB, appB, apps[1].APIKey),
	}}
	_, events := w.glasses("uma@example.com", nil)
	a := w.startApp("uma@example.com", appA)
	b := w.startApp("uma@example.com", appB)
	if _, _, n := nodes[1].srv.Plane().Counts(); n != 2 {
		t.Fatalf("n2 holds %d app sessions, want both", n)
	}
	if _, _, n := nodes[0].srv.Plane().Counts(); n != 0 {
		t.Fatalf("n1 holds %d app sessions: B's socket should be bridged to n2", n)
	}
	if err := b.Layouts.ShowTextWall("from the bridged app", 0); err != nil {
		t.Fatal(err)
	}
	if e := waitEvent(t, events, "display", 10*time.Second); !strings.Contains(e.Text, "from the bridged app") {
		t.Fatalf("the glasses showed %q", e.Text)
	}

	target := nodes[1].create("the apps' server")
	ctx := context.Background()
	wins := map[string]int{}
	for i := range 50 {
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for j, s := range []*sdk.Session{a, b} {
			wg.Go(func() { errs[j] = s.Camera.StartStream(ctx, sdk.RTMPStreamOptions{RTMPURL: target.Ingest.RTMPURL}) })
		}
		wg.Wait()
		var winner *sdk.Session
		for j, err := range errs {
			switch {
			case err == nil && winner == nil:
				winner = []*sdk.Session{a, b}[j]
				wins[[]string{"A (n2)", "B (bridged from n1)"}[j]]++
			case err == nil:
				t.Fatalf("race %d: both apps got the camera", i)
			case !errors.Is(err, sdk.ErrCameraBusy):
				t.Fatalf("race %d: %v, want camera busy", i, err)
			}
		}
		if winner == nil {
			t.Fatalf("race %d: nobody got the camera: %v", i, errs)
		}
		if err := winner.Camera.StopStream(ctx); err != nil {
			t.Fatalf("race %d: stop: %v", i, err)
		}
	}
	t.Logf("50 races, one winner each: %v", wins)

	// The camera's lease, given out by the user's home (n2), is known to
	// every node: n1 sees B's unmanaged stream hold it, then nothing.
	if err := b.Camera.StartStream(ctx, sdk.RTMPStreamOptions{RTMPURL: target.Ingest.RTMPURL}); err != nil {
		t.Fatal(err)
	}
	waitLease(t, nodes[0], "uma@example.com", func(l cluster.CameraLease, ok bool) bool {
		return ok && l.Exclusive && l.Holder == appB && l.Node == "n2"
	})
	if err := b.Camera.StopStream(ctx); err != nil {
		t.Fatal(err)
	}
	waitLease(t, nodes[0], "uma@example.com", func(_ cluster.CameraLease, ok bool) bool { return !ok })

	// B's managed stream is n2's; its outputs calls, made to n1 (where its
	// socket is), are answered by n2 — the first at the moment the app first
	// hears the stream's id, before the glasses push.
	first := make(chan string, 1)
	unsubscribe := b.Camera.OnManagedStreamStatus(func(st sdk.ManagedStreamStatus) {
		if st.StreamID != "" {
			select {
			case first <- st.StreamID:
			default:
			}
		}
	})
	started := make(chan error, 1)
	var res sdk.ManagedStreamResult
	go func() {
		var err error
		res, err = b.Camera.StartManagedStream(ctx, sdk.ManagedStreamOptions{})
		started <- err
	}()
	select {
	case id := <-first:
		if list, err := b.Camera.Outputs(ctx, id); err != nil || len(list) != 0 {
			t.Fatalf("outputs through n1 as soon as the app knows the stream: %v %v", list, err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no managed status with the stream's id")
	}
	unsubscribe()
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	waitLease(t, nodes[0], "uma@example.com", func(l cluster.CameraLease, ok bool) bool {
		return ok && !l.Exclusive && l.StreamID == res.StreamID && l.Node == "n2"
	})
	oid, err := b.Camera.AddOutput(ctx, res.StreamID, sdk.RestreamDestination{URL: target.Ingest.RTMPURL, Name: "mirror"})
	if err != nil {
		t.Fatalf("add an output through n1: %v", err)
	}
	if list, err := b.Camera.Outputs(ctx, res.StreamID); err != nil || len(list) != 1 || list[0].Name != "mirror" {
		t.Fatalf("outputs through n1 after adding one: %+v %v", list, err)
	}
	if err := b.Camera.RemoveOutput(ctx, res.StreamID, oid); err != nil {
		t.Fatalf("remove the output through n1: %v", err)
	}
	if _, err := b.Camera.Outputs(ctx, "no-such-stream"); err == nil {
		t.Fatal("outputs of a stream that does not exist")
	}
	// An admin's output of n2's stream to a platform (here another of n2's
	// streams), made through n1 and carried out by n2.
	platform := nodes[1].create("a platform")
	code, body := nodes[0].call("POST", "/api/v1/streams/"+target.ID+"/outputs", map[string]any{"url": platform.Ingest.RTMPURL, "name": "platform"})
	if code != http.StatusCreated {
		t.Fatalf("an output of n2's stream through n1: %d %s", code, body)
	}
	// None of it put a secret on the bus: not the admin token, not the
	// bridged app's API key (its init went through n1), not a stream key
	// in the apps' stream requests, the outputs and their answers.
	key := func(ingest string) string { return ingest[strings.LastIndex(ingest, "/")+1:] }
	bus.none(t, map[string]string{"the admin token": testToken, "an API key": apps[1].APIKey,
		"the apps' stream key": key(target.Ingest.RTMPURL), "the platform's stream key": key(platform.Ingest.RTMPURL)})
}

// busRecord is every message a member's connection saw.
type busRecord struct {
	mu    sync.Mutex
	msgs  []busMsg
	bytes int
}

type busMsg struct {
	subject string
	all     []byte // data and headers
}

// recordBus records, on node's own NATS connection, every message any node
// publishes from now on (up to 256 MB).
func recordBus(t *testing.T, node *harness) *busRecord {
	t.Helper()
	b := &busRecord{}
	sub, err := node.srv.Cluster().Conn().Subscribe(">", func(m *nats.Msg) {
		var all bytes.Buffer
		all.Write(m.Data)
		for k, v := range m.Header {
			fmt.Fprintf(&all, "\n%s: %s", k, strings.Join(v, ","))
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.bytes < 256<<20 {
			b.msgs = append(b.msgs, busMsg{m.Subject, all.Bytes()})
			b.bytes += all.Len()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	sub.SetPendingLimits(-1, -1)
	node.srv.Cluster().Conn().Flush()
	t.Cleanup(func() { sub.Unsubscribe() })
	return b
}

// none fails the test if any of the secrets (by name) was in a message.
func (b *busRecord) none(t *testing.T, secrets map[string]string) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	subjects := map[string]bool{}
	for _, m := range b.msgs {
		subjects[strings.Join(strings.Split(m.subject, ".")[:min(3, strings.Count(m.subject, ".")+1)], ".")] = true
		for name, secret := range secrets {
			if bytes.Contains(m.all, []byte(secret)) {
				t.Errorf("%s on the bus, on %s: %.300q", name, m.subject, m.all)
			}
		}
	}
	for _, want := range []string{"glasscast.node.n2", "glasscast.appsock.n1"} { // forwarded requests and bridged sockets
		if !subjects[want] {
			t.Errorf("the recorder saw nothing on %s.…; it saw %v", want, subjects)
		}
	}
}

// waitLease waits until node's view of the user's camera lease satisfies
// ok.
func waitLease(t *testing.T, node *harness, user string, ok func(cluster.CameraLease, bool) bool) {
	t.Helper()
	// Recorded on a queue, which waits out the election of the camera
	// bucket's leader when the node that led it died.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		l, held, err := node.srv.Cluster().Users().Lease(ctx, user)
		if err == nil && ok(l, held) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: the camera lease of %s is %+v (held %v, %v)", node.base, user, l, held, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// reserve is a loopback listener for a server the test starts later.
func reserve(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// sendSocketsTo serves on ln an app server's webhook that passes every
// webhook to the app server at target with from's /app-ws URL turned into
// to's: the app's socket goes to another node than the one that holds the
// session, as it may behind a load balancer.
func sendSocketsTo(t *testing.T, ln net.Listener, from, to *harness, target string) {
	fromWS, toWS := strings.Replace(from.base, "http://", "ws://", 1), strings.Replace(to.base, "http://", "ws://", 1)
	proxy := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		body = bytes.ReplaceAll(body, []byte(fromWS), []byte(toWS))
		resp, err := http.Post("http://"+target+r.URL.Path, r.Header.Get("Content-Type"), bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	})}
	go proxy.Serve(ln)
	t.Cleanup(func() { proxy.Close() })
}

// TestMentraSDKAcrossNodes: the unmodified TypeScript SDK's apps with their
// sockets on n2 (bridged) and the glasses on n3, which holds the session:
// a managed stream starts, plays from n2, and stops by voice; the
// exclusivity of the camera holds both ways; an unmanaged stream is pushed
// to its app's server.
func TestMentraSDKAcrossNodes(t *testing.T) {
	parallel(t)
	const managed, unmanaged = "com.example.managedstreaming", "com.example.unmanagedstreaming"
	ports := map[string]int{managed: freePort(t), unmanaged: freePort(t)}
	hooks := map[string]net.Listener{managed: reserve(t), unmanaged: reserve(t)}
	var apps []config.AppConfig
	for pkg := range ports {
		apps = append(apps, config.AppConfig{PackageName: pkg, APIKey: "compat-key-" + pkg, PublicURL: "http://" + hooks[pkg].Addr().String()})
	}
	nodes := startNodes(t, 3, func(_ int, c *config.Config) {
		c.Apps = apps
		c.AppGrace = 2 * time.Second // past the 2.1.29 SDK's first reconnect
	})
	for pkg, ln := range hooks {
		sendSocketsTo(t, ln, nodes[2], nodes[1], "127.0.0.1:"+strconv.Itoa(ports[pkg]))
	}
	waitCluster(t, nodes[1], "n2", "n1", "n3")
	waitCluster(t, nodes[2], "n3", "n1", "n2")
	n3 := nodes[2]
	target := n3.create("the unmanaged app's server")
	mapp := runNodeApp(t, "managed.mjs", managed, "compat-key-"+managed, ports[managed])
	uapp := runNodeApp(t, "unmanaged.mjs", unmanaged, "compat-key-"+unmanaged, ports[unmanaged], "RTMP_URL="+target.Ingest.RTMPURL)
	g, events := connectGlasses(t, n3, "ada@example.com")

	// Managed: active, playing on n2, stopped by voice.
	startFor(t, n3, "ada@example.com", managed)
	mapp.expect(`^Stream status: active`, 20*time.Second)
	hlsURL := mapp.expect(`^HLS URL: (\S+)`, 5*time.Second)[1]
	dashURL := mapp.expect(`^DASH URL: (\S+)`, 5*time.Second)[1]
	var there api.StreamJSON
	there.Playback.HLS, there.Playback.DASH = onNode(nodes[1], hlsURL), onNode(nodes[1], dashURL)
	checkProbe(t, there, 1280, 720, 1)
	if _, _, n := nodes[1].srv.Plane().Counts(); n != 0 {
		t.Fatalf("n2 holds %d app sessions: its sockets should be bridged to n3", n)
	}

	exclusiveBothWays(t, n3, "ada@example.com", mapp, uapp, g, events, target)
}
