package server_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/api"
	"github.com/glasscast/glasscast/internal/config"
	"github.com/glasscast/glasscast/internal/live"
	"github.com/glasscast/glasscast/internal/restream"
	"github.com/glasscast/glasscast/internal/selfsigned"
	"github.com/glasscast/glasscast/internal/stream"
	"github.com/glasscast/glasscast/sdk"
)

// nginxRTMP is nginx with its RTMP module: a real third-party RTMP server
// that takes a publish and lets ffprobe play it back.
type nginxRTMP struct {
	t    *testing.T
	dir  string
	port int
	cmd  *exec.Cmd
}

const nginxModule = "/usr/lib/nginx/modules/ngx_rtmp_module.so"

func startNginx(t *testing.T) *nginxRTMP {
	t.Helper()
	slow(t)
	needTool(t, "nginx")
	if _, err := os.Stat(nginxModule); err != nil {
		t.Fatalf("nginx's RTMP module is required at %s: run scripts/test, which installs libnginx-mod-rtmp", nginxModule)
	}
	port := freePort(t) // nginx takes a port, not :0
	n := &nginxRTMP{t: t, dir: t.TempDir(), port: port}
	conf := fmt.Sprintf(`load_module %s;
daemon off;
master_process off;
pid %s/nginx.pid;
error_log %s/error.log info;
events { worker_connections 64; }
rtmp {
  server {
    listen 127.0.0.1:%d;
    chunk_size 4096;
    application live { live on; record off; }
  }
}
`, nginxModule, n.dir, n.dir, port)
	if err := os.WriteFile(filepath.Join(n.dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	n.start()
	t.Cleanup(n.stop)
	return n
}

func (n *nginxRTMP) url(key string) string {
	return fmt.Sprintf("rtmp://127.0.0.1:%d/live/%s", n.port, key)
}

func (n *nginxRTMP) start() {
	n.t.Helper()
	n.cmd = exec.Command("nginx", "-p", n.dir, "-c", filepath.Join(n.dir, "nginx.conf"), "-e", filepath.Join(n.dir, "error.log"))
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", n.port))
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(n.dir, "error.log"))
			n.t.Fatalf("nginx did not listen within 10 s: %s", log)
		}
		time.Sleep(20 * time.Millisecond) // waiting for a third-party daemon's port
	}
}

func (n *nginxRTMP) stop() {
	if n.cmd != nil && n.cmd.Process != nil {
		n.cmd.Process.Kill()
		n.cmd.Wait()
		n.cmd = nil
	}
}

// addOutput adds an output with the admin API.
func (h *harness) addOutput(streamID string, body map[string]any) restream.Info {
	h.t.Helper()
	code, b := h.call("POST", "/api/v1/streams/"+streamID+"/outputs", body)
	if code != http.StatusCreated {
		h.t.Fatalf("add output: %d %s", code, b)
	}
	var in restream.Info
	if err := json.Unmarshal(b, &in); err != nil {
		h.t.Fatal(err)
	}
	return in
}

// waitOutput waits, on the event stream, for an output to reach a status.
func (h *harness) waitOutput(streamID, outputID string, status restream.Status, within time.Duration) restream.Info {
	h.t.Helper()
	var got restream.Info
	h.waitSnapshot(within, func(snap api.Snapshot) bool {
		for _, s := range snap.Streams {
			for _, o := range s.Outputs {
				if s.ID == streamID && o.ID == outputID {
					got = o
					return o.Status == status
				}
			}
		}
		return false
	})
	return got
}

// frameKey is a video frame's identity: its slice and SEI NAL units, without
// the parameter sets and delimiters servers may add or drop.
func frameKey(u *stream.Unit) [32]byte {
	h := sha256.New()
	for _, n := range u.NALUs {
		switch n[0] & 0x1f {
		case 7, 8, 9:
			continue
		}
		h.Write(n)
	}
	var k [32]byte
	copy(k[:], h.Sum(nil))
	return k
}

func TestRestreamPassthroughToGlasscast(t *testing.T) {
	parallel(t)
	slow(t)
	src, dst := start(t, nil), start(t, nil)
	in := src.create("glasses")
	out := dst.create("another glasscast")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Every frame the source's hub holds, in order.
	hub, _ := src.srv.Registry().Hub(in.ID)
	srcReader := hub.NewReader("test", 1<<14)
	defer srcReader.Close()
	publishSim(ctx, in.Ingest.RTMPURL, nil)
	src.waitPlayable(in.Playback.HLS)

	o := src.addOutput(in.ID, map[string]any{"url": out.Ingest.RTMPURL, "name": "mirror"})
	if o.Status != restream.StatusConnecting || o.Mode != "" && o.Mode != "passthrough" {
		t.Fatalf("new output: %+v", o)
	}
	src.waitOutput(in.ID, o.ID, restream.StatusActive, 20*time.Second)
	dst.waitStatus(out.ID, live.StatusLive, 20*time.Second)
	dstHub, _ := dst.srv.Registry().Hub(out.ID)
	dstReader := dstHub.NewReader("test", 1<<14)
	defer dstReader.Close()

	// 90 frames at the destination, each one of the source's, in order.
	rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
	defer rcancel()
	var got [][32]byte
	for len(got) < 90 {
		u, err := dstReader.Read(rctx)
		if err != nil {
			t.Fatalf("destination after %d frames: %v", len(got), err)
		}
		if u.Kind == stream.KindVideo {
			got = append(got, frameKey(u))
		}
	}
	index := map[[32]byte]int{}
	for {
		if _, ok := index[got[len(got)-1]]; ok {
			break
		}
		u, err := srcReader.Read(rctx)
		if err != nil {
			t.Fatalf("the source's frames ran out before the destination's last: %v", err)
		}
		if u.Kind == stream.KindVideo {
			index[frameKey(u)] = len(index)
		}
	}
	prev := -1
	for i, k := range got {
		at, ok := index[k]
		if !ok {
			t.Fatalf("frame %d at the destination is not a frame of the source (bytes changed)", i)
		}
		if prev >= 0 && at != prev+1 {
			t.Fatalf("frame %d at the destination is the source's %d, after %d", i, at, prev)
		}
		prev = at
	}
	info := src.get(in.ID).Outputs[0]
	if info.Bytes == 0 || info.Mode != "passthrough" || info.Connects != 1 {
		t.Fatalf("output after 90 frames: %+v", info)
	}

	// Limits: a duplicate URL and an eleventh output are refused.
	if code, b := src.call("POST", "/api/v1/streams/"+in.ID+"/outputs", map[string]any{"url": out.Ingest.RTMPURL + "/"}); code != http.StatusConflict {
		t.Fatalf("duplicate output: %d %s", code, b)
	}
	for i := range 9 {
		src.addOutput(in.ID, map[string]any{"url": fmt.Sprintf("rtmp://127.0.0.1:1/live/dead%d", i)})
	}
	if code, b := src.call("POST", "/api/v1/streams/"+in.ID+"/outputs", map[string]any{"url": "rtmp://127.0.0.1:1/live/eleventh"}); code != http.StatusConflict {
		t.Fatalf("eleventh output: %d %s", code, b)
	}
	if code, b := src.call("POST", "/api/v1/streams/"+in.ID+"/outputs", map[string]any{"url": "http://example.com/x"}); code != http.StatusBadRequest {
		t.Fatalf("an http URL: %d %s", code, b)
	}
	// Nine dead destinations change nothing for the live one.
	before := src.get(in.ID).Outputs[0]
	src.waitSnapshot(10*time.Second, func(snap api.Snapshot) bool {
		o := snap.Streams[0].Outputs[0]
		return o.Bytes > before.Bytes+100_000 && o.Status == restream.StatusActive
	})
	if code, b := src.call("DELETE", "/api/v1/streams/"+in.ID+"/outputs/"+o.ID, nil); code != http.StatusOK {
		t.Fatalf("remove output: %d %s", code, b)
	}
	dst.waitStatus(out.ID, live.StatusReconnecting, 10*time.Second)
}

func TestRestreamNginxDownAndUp(t *testing.T) {
	parallel(t)
	ng := startNginx(t)
	h := start(t, nil)
	in := h.create("glasses")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	publishSim(ctx, in.Ingest.RTMPURL, nil)
	h.waitPlayable(in.Playback.HLS)

	o := h.addOutput(in.ID, map[string]any{"url": ng.url("mirror")})
	h.waitOutput(in.ID, o.ID, restream.StatusActive, 20*time.Second)
	streams := probe(t, ng.url("mirror"))
	if v := findStream(streams, "video"); v == nil || v.Width != 1280 || findStream(streams, "audio") == nil {
		t.Fatalf("nginx plays back: %s", describe(streams))
	}

	ng.stop()
	down := h.waitOutput(in.ID, o.ID, restream.StatusReconnecting, 20*time.Second)
	if down.Error == "" {
		t.Fatalf("a reconnecting output without its error: %+v", down)
	}
	// The viewers never noticed.
	if code, _ := fetch(t, in.Playback.HLS); code != http.StatusOK {
		t.Fatalf("HLS with the destination down: %d", code)
	}
	ng.start()
	up := h.waitOutput(in.ID, o.ID, restream.StatusActive, 40*time.Second)
	if up.Connects != 2 {
		t.Fatalf("after nginx came back: %+v", up)
	}
	if v := findStream(probe(t, ng.url("mirror")), "video"); v == nil {
		t.Fatal("nginx has no video after the output came back")
	}
}

func TestRestreamTranscodesForPlatform(t *testing.T) {
	parallel(t)
	ng := startNginx(t)
	h := start(t, func(c *config.Config) { c.MaxTranscodes = 1 })
	in := h.create("glasses")
	// A 4 s GOP and 64 kbit/s mono AAC: YouTube's rules want both changed.
	publishFFmpeg(t, context.Background(), in.Ingest.RTMPURL, "-g", "120", "-keyint_min", "120", "-sc_threshold", "0")
	h.waitPlayable(in.Playback.HLS)

	o := h.addOutput(in.ID, map[string]any{"url": ng.url("yt"), "profile": "youtube"})
	active := h.waitOutput(in.ID, o.ID, restream.StatusActive, 40*time.Second)
	if active.Mode != "transcode video+audio" || len(active.Violations) < 2 {
		t.Fatalf("output to YouTube rules from a 4 s GOP and 64 kbit/s audio: %+v", active)
	}

	// Seven seconds of what nginx serves, copied to a file and examined.
	file := filepath.Join(t.TempDir(), "yt.flv")
	cctx, ccancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer ccancel()
	if out, err := exec.CommandContext(cctx, "ffmpeg", "-v", "error", "-i", ng.url("yt"), "-t", "7", "-c", "copy", file).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg reading nginx: %v %s", err, out)
	}
	out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", "packet=pts_time,flags", "-of", "csv=p=0", file).Output()
	if err != nil {
		t.Fatal(err)
	}
	var keys []float64
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, ",")
		if len(f) == 2 && strings.HasPrefix(f[1], "K") {
			ts, _ := strconv.ParseFloat(f[0], 64)
			keys = append(keys, ts)
		}
	}
	if len(keys) < 3 {
		t.Fatalf("keyframes in 7 s: %v", keys)
	}
	for i := 1; i < len(keys); i++ {
		if d := keys[i] - keys[i-1]; d < 1.95 || d > 2.05 {
			t.Fatalf("keyframes at %v: an interval of %.3f s, want 2 s", keys, d)
		}
	}
	out, err = exec.Command("ffprobe", "-v", "error", "-select_streams", "a", "-show_entries", "stream=codec_name,channels,sample_rate,bit_rate:packet=size,duration_time", "-of", "json", file).Output()
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Streams []struct {
			CodecName  string `json:"codec_name"`
			Channels   int    `json:"channels"`
			SampleRate string `json:"sample_rate"`
			BitRate    string `json:"bit_rate"`
		} `json:"streams"`
		Packets []struct {
			Size     string `json:"size"`
			Duration string `json:"duration_time"`
		} `json:"packets"`
	}
	json.Unmarshal(out, &res)
	if len(res.Streams) != 1 || res.Streams[0].CodecName != "aac" || res.Streams[0].Channels != 2 || res.Streams[0].SampleRate != "48000" {
		t.Fatalf("audio at nginx: %s", out)
	}
	var bytesA, secs float64
	for _, p := range res.Packets {
		n, _ := strconv.ParseFloat(p.Size, 64)
		d, _ := strconv.ParseFloat(p.Duration, 64)
		bytesA, secs = bytesA+n, secs+d
	}
	// The encoder spends less than its 128 kbit/s on a sine tone, but far
	// more than the source's 64.
	if kbps := bytesA * 8 / secs / 1000; kbps < 90 || kbps > 140 {
		t.Fatalf("audio at nginx is %.0f kbit/s, want about 128", kbps)
	}

	// The server's one transcoder is taken: a second transcoded output says
	// so, and starts once the first is removed.
	o2 := h.addOutput(in.ID, map[string]any{"url": ng.url("twitch"), "profile": "youtube"})
	if w := h.waitOutput(in.ID, o2.ID, restream.StatusError, 20*time.Second); !strings.Contains(w.Error, "most transcoders (1, --max-transcodes)") {
		t.Fatalf("an output past the budget: %+v", w)
	}
	if code, b := h.call("DELETE", "/api/v1/streams/"+in.ID+"/outputs/"+o.ID, nil); code != http.StatusOK && code != http.StatusNoContent {
		t.Fatalf("removing the first output: %d %s", code, b)
	}
	h.waitOutput(in.ID, o2.ID, restream.StatusActive, 40*time.Second)
}

// waitOutputs reads managed statuses until one's outputs satisfy ok.
func (st *statuses) waitOutputs(t *testing.T, within time.Duration, ok func([]sdk.OutputStatus) bool) sdk.ManagedStreamStatus {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case m := <-st.ch:
			if ok(m.Outputs) {
				return m
			}
		case <-deadline:
			st.mu.Lock()
			defer st.mu.Unlock()
			t.Fatalf("no managed status with the outputs wanted within %v; got %+v", within, st.list)
		}
	}
}

// allowLoopback lets apps' outputs reach this machine: the tests' RTMP
// servers listen on loopback.
func allowLoopback(c *config.Config) { c.RestreamAllow = []string{"127.0.0.0/8", "::1/128"} }

func TestManagedRestream(t *testing.T) {
	parallel(t)
	ng := startNginx(t)
	w := startWorld(t, []string{"com.example.a", "com.example.b", "com.example.c"}, allowLoopback)
	w.glasses("cy@example.com", nil)
	a := w.startApp("cy@example.com", "com.example.a")
	b := w.startApp("cy@example.com", "com.example.b")
	recA, recB := recordManaged(a), recordManaged(b)
	ctx := context.Background()

	// A destination with a bad URL is refused up front.
	if _, err := a.Camera.StartManagedStream(ctx, sdk.ManagedStreamOptions{
		RestreamDestinations: []sdk.RestreamDestination{{URL: "https://youtube.com/live"}}}); !errors.Is(err, sdk.ErrInvalidOptions) {
		t.Fatalf("managed request with an https destination: %v", err)
	}
	res, err := a.Camera.StartManagedStream(ctx, sdk.ManagedStreamOptions{
		RestreamDestinations: []sdk.RestreamDestination{{URL: ng.url("from-a"), Name: "nginx"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Camera.WaitManagedActive(ctx); err != nil {
		t.Fatal(err)
	}
	m := recA.waitOutputs(t, 30*time.Second, func(o []sdk.OutputStatus) bool {
		return len(o) == 1 && o[0].Status == restream.StatusActive
	})
	if m.Message != "Outputs updated" && m.Message != "Stream is now live" || m.Outputs[0].URL != ng.url("from-a") || m.Outputs[0].AddedBy != "com.example.a" {
		t.Fatalf("status with the output: %+v", m)
	}
	if v := findStream(probe(t, ng.url("from-a")), "video"); v == nil {
		t.Fatal("nginx has no video from the managed stream")
	}

	// b joins: it sees a's output with the key hidden, and adds its own to a
	// second glasscast ingest through the MentraOS routes.
	if _, err := b.Camera.StartManagedStream(ctx, sdk.ManagedStreamOptions{}); err != nil {
		t.Fatal(err)
	}
	seen := recB.waitOutputs(t, 10*time.Second, func(o []sdk.OutputStatus) bool { return len(o) == 1 })
	if strings.Contains(seen.Outputs[0].URL, "from-a") {
		t.Fatalf("b sees a's stream key: %+v", seen.Outputs[0])
	}
	other := w.create("b's mirror")
	idB, err := b.Camera.AddOutput(ctx, res.StreamID, sdk.RestreamDestination{URL: other.Ingest.RTMPURL, Name: "mirror"})
	if err != nil {
		t.Fatal(err)
	}
	recA.waitOutputs(t, 30*time.Second, func(o []sdk.OutputStatus) bool {
		return len(o) == 2 && o[1].ID == idB && o[1].Status == restream.StatusActive
	})
	w.waitStatus(other.ID, live.StatusLive, 10*time.Second)
	if _, err := b.Camera.AddOutput(ctx, res.StreamID, sdk.RestreamDestination{URL: ng.url("from-a")}); !errors.Is(err, sdk.ErrDuplicateOutput) {
		t.Fatalf("duplicate destination: %v", err)
	}
	if _, err := b.Camera.AddOutput(ctx, "m-nope", sdk.RestreamDestination{URL: ng.url("x")}); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("unknown stream: %v", err)
	}
	list, err := b.Camera.Outputs(ctx, res.StreamID)
	if err != nil || len(list) != 2 {
		t.Fatalf("b's list: %+v %v", list, err)
	}
	idA := list[0].ID
	if err := b.Camera.RemoveOutput(ctx, res.StreamID, idA); !errors.Is(err, sdk.ErrNotOwner) {
		t.Fatalf("b removing a's output: %v", err)
	}
	// c, with its own valid key but not viewing, gets for every route the
	// very answer of a stream that does not exist: it cannot probe ids.
	asC := func(method, streamID, rest, body string) string {
		req, _ := http.NewRequest(method, w.base+"/api/streams/"+streamID+"/outputs"+rest+"?packageName=com.example.c", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer key-of-com.example.c-0123456789")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return fmt.Sprintf("%d %s", resp.StatusCode, b)
	}
	add := `{"url":"` + ng.url("from-c") + `"}`
	for _, c := range [][3]string{{"GET", "", ""}, {"POST", "", add}, {"DELETE", "/" + idB, ""}} {
		there, nothere := asC(c[0], res.StreamID, c[1], c[2]), asC(c[0], "m0123456789abcdef", c[1], c[2])
		if there != nothere || !strings.HasPrefix(there, "404 ") || !strings.Contains(there, "STREAM_NOT_FOUND") {
			t.Fatalf("%s by a non-viewer: %q, for an unknown stream: %q", c[0], there, nothere)
		}
	}
	// A wrong key is refused.
	req, _ := http.NewRequest("GET", w.base+"/api/streams/"+res.StreamID+"/outputs?packageName=com.example.a", nil)
	req.Header.Set("Authorization", "Bearer wrong")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong API key: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if err := a.Camera.RemoveOutput(ctx, res.StreamID, idA); err != nil {
		t.Fatal(err)
	}
	recB.waitOutputs(t, 10*time.Second, func(o []sdk.OutputStatus) bool { return len(o) == 1 && o[0].ID == idB })
}

// tlsProxy terminates TLS with a certificate for 127.0.0.1 from its own CA
// and forwards each connection to target: an RTMPS front for an RTMP
// server. It returns the proxy's address and the CA's PEM file.
func tlsProxy(t *testing.T, target string) (string, string) {
	t.Helper()
	f, err := selfsigned.Write(t.TempDir(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := f.CA
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, up)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(up, c); up.Close() }()
			go func() { defer wg.Done(); io.Copy(c, up); c.Close() }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String(), caFile
}

func TestRestreamRTMPS(t *testing.T) {
	parallel(t)
	slow(t)
	dst := start(t, nil)
	out := dst.create("behind TLS")
	proxy, ca := tlsProxy(t, dst.srv.RTMPAddr().String())
	src := start(t, func(c *config.Config) { c.RestreamCA = ca })
	in := src.create("glasses")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	publishSim(ctx, in.Ingest.RTMPURL, nil)
	src.waitPlayable(in.Playback.HLS)

	key := out.Ingest.RTMPURL[strings.LastIndex(out.Ingest.RTMPURL, "/")+1:]
	o := src.addOutput(in.ID, map[string]any{"url": "rtmps://" + proxy + "/live/" + key})
	src.waitOutput(in.ID, o.ID, restream.StatusActive, 20*time.Second)
	dst.waitStatus(out.ID, live.StatusLive, 20*time.Second)
	dst.waitPlayable(out.Playback.HLS)

	// Without the CA, the same server's certificate is refused.
	plain := start(t, nil)
	in2 := plain.create("glasses")
	publishSim(ctx, in2.Ingest.RTMPURL, nil)
	plain.waitPlayable(in2.Playback.HLS)
	o2 := plain.addOutput(in2.ID, map[string]any{"url": "rtmps://" + proxy + "/live/other"})
	refused := plain.waitOutput(in2.ID, o2.ID, restream.StatusReconnecting, 20*time.Second)
	if !strings.Contains(refused.Error, "certificate") {
		t.Fatalf("an untrusted certificate: %+v", refused)
	}
}

// TestAppOutputsRefuseInternalAddresses: an app's outputs may not reach the
// machine glasscast runs on (by address, by a name that resolves to it) and
// the app learns nothing of what listens there; the operator's allow-list
// lets them through.
func TestAppOutputsRefuseInternalAddresses(t *testing.T) {
	parallel(t)
	w := startWorld(t, []string{"com.example.a"}, nil)
	// An RTMP server the outputs must never reach, counting connections.
	var reached atomic.Int32
	var lns []net.Listener
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue // no IPv6 loopback here
		}
		lns = append(lns, ln)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				reached.Add(1)
				c.Close()
			}
		}()
		t.Cleanup(func() { ln.Close() }) // before the leak check, registered earlier
	}
	port := lns[0].Addr().(*net.TCPAddr).Port
	targets := []string{
		fmt.Sprintf("rtmp://127.0.0.1:%d/live/a", port),
		fmt.Sprintf("rtmp://localhost:%d/live/b", port),
		fmt.Sprintf("rtmp://127.8.9.10:%d/live/c", port),
	}
	if len(lns) > 1 {
		targets = append(targets, fmt.Sprintf("rtmp://[::1]:%d/live/d", lns[1].Addr().(*net.TCPAddr).Port))
	}

	w.glasses("di@example.com", nil)
	a := w.startApp("di@example.com", "com.example.a")
	rec := recordManaged(a)
	ctx := context.Background()
	res, err := a.Camera.StartManagedStream(ctx, sdk.ManagedStreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Camera.WaitManagedActive(ctx); err != nil {
		t.Fatal(err)
	}
	for _, u := range targets {
		if _, err := a.Camera.AddOutput(ctx, res.StreamID, sdk.RestreamDestination{URL: u}); err != nil {
			t.Fatalf("add %s: %v", u, err)
		}
	}
	m := rec.waitOutputs(t, 20*time.Second, func(o []sdk.OutputStatus) bool {
		if len(o) != len(targets) {
			return false
		}
		for _, x := range o {
			if x.Status != restream.StatusReconnecting {
				return false
			}
		}
		return true
	})
	for _, o := range m.Outputs {
		if o.Error != "could not connect to the destination" {
			t.Fatalf("the app is told more than that the connection failed: %+v", o)
		}
	}
	if n := reached.Load(); n != 0 {
		t.Fatalf("%d connections reached the internal listener", n)
	}
	if !strings.Contains(w.log.String(), "not allowed") {
		t.Fatal("the operator's log does not say why the outputs failed")
	}

	// With the operator's allow-list, an app's output reaches loopback.
	w2 := startWorld(t, []string{"com.example.a"}, allowLoopback)
	w2.glasses("ed@example.com", nil)
	a2 := w2.startApp("ed@example.com", "com.example.a")
	rec2 := recordManaged(a2)
	res2, err := a2.Camera.StartManagedStream(ctx, sdk.ManagedStreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a2.Camera.WaitManagedActive(ctx); err != nil {
		t.Fatal(err)
	}
	mirror := w2.create("mirror")
	if _, err := a2.Camera.AddOutput(ctx, res2.StreamID, sdk.RestreamDestination{URL: mirror.Ingest.RTMPURL}); err != nil {
		t.Fatal(err)
	}
	rec2.waitOutputs(t, 30*time.Second, func(o []sdk.OutputStatus) bool {
		return len(o) == 1 && o[0].Status == restream.StatusActive
	})
	w2.waitStatus(mirror.ID, live.StatusLive, 10*time.Second)
}

// TestTranscodedOutputVerifiesTLS: an output that ffmpeg transcodes is
// published by glasscast itself, so RTMPS verifies the destination's
// certificate (against --restream-ca too) and the destination's key is in
// no error and no log line.
func TestTranscodedOutputVerifiesTLS(t *testing.T) {
	parallel(t)
	slow(t)
	needTool(t, "ffmpeg")
	dst := start(t, nil)
	out := dst.create("behind TLS")
	proxy, ca := tlsProxy(t, dst.srv.RTMPAddr().String())
	key := out.Ingest.RTMPURL[strings.LastIndex(out.Ingest.RTMPURL, "/")+1:]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Without the CA: refused, and the key is nowhere.
	plain := start(t, nil)
	in := plain.create("glasses")
	publishFFmpeg(t, ctx, in.Ingest.RTMPURL) // 64 kbit/s mono: YouTube's rules want the audio changed
	plain.waitPlayable(in.Playback.HLS)
	o := plain.addOutput(in.ID, map[string]any{"url": "rtmps://" + proxy + "/live/" + key, "profile": "youtube"})
	refused := plain.waitOutput(in.ID, o.ID, restream.StatusReconnecting, 30*time.Second)
	if !strings.Contains(refused.Error, "certificate") || !strings.HasPrefix(refused.Mode, "transcode") {
		t.Fatalf("a transcoded output to an untrusted certificate: %+v", refused)
	}
	if strings.Contains(refused.Error, key) || strings.Contains(plain.log.String(), key) {
		t.Fatal("the destination's key is in the output's error or the log")
	}
	if dst.get(out.ID).Status != live.StatusIdle {
		t.Fatal("the destination received a stream over an unverified connection")
	}

	// With it: published, and the destination plays.
	src := start(t, func(c *config.Config) { c.RestreamCA = ca })
	in2 := src.create("glasses")
	publishFFmpeg(t, ctx, in2.Ingest.RTMPURL)
	src.waitPlayable(in2.Playback.HLS)
	o2 := src.addOutput(in2.ID, map[string]any{"url": "rtmps://" + proxy + "/live/" + key, "profile": "youtube"})
	active := src.waitOutput(in2.ID, o2.ID, restream.StatusActive, 40*time.Second)
	if active.Mode != "transcode audio" {
		t.Fatalf("mode: %+v", active)
	}
	dst.waitPlayable(out.Playback.HLS)
	a := findStream(probe(t, out.Playback.HLS), "audio")
	if a == nil || a.Channels != 2 {
		t.Fatalf("the destination's audio after the transcode: %+v", a)
	}
	if strings.Contains(src.log.String(), key) {
		t.Fatal("the destination's key is in the log")
	}
}
