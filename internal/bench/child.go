package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

const benchToken = "bench-admin-token-0123456789"

// server is a glasscast started as a child process, so that its CPU time and
// memory are its own and not the load generator's.
type server struct {
	cmd     *exec.Cmd
	dataDir string
	httpURL string
	rtmpURL string // rtmp://host:port/live/
	done    chan error
}

var (
	httpLine = regexp.MustCompile(`HTTPS?\s+(https?://\S+)  \(API`)
	rtmpLine = regexp.MustCompile(`RTMP\s+(rtmp://\S+/live/)`)
)

// startServer runs `glasscast serve` on loopback, with a data directory of
// its own and extra flags.
func startServer(ctx context.Context, extra ...string) (*server, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dataDir, err := os.MkdirTemp("", "glasscast-bench-")
	if err != nil {
		return nil, err
	}
	args := append([]string{"serve", "--http", "127.0.0.1:0", "--rtmp", "127.0.0.1:0", "--data", dataDir,
		"--webrtc-udp", "127.0.0.1:0", "--webrtc-tcp", "127.0.0.1:0",
		"--admin-token", benchToken, "--log-level", "warn"}, append(serverTLSArgs, extra...)...)
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dataDir)
		return nil, err
	}
	s := &server{cmd: cmd, dataDir: dataDir, done: make(chan error, 1)}
	sc := bufio.NewScanner(out)
	deadline := time.AfterFunc(15*time.Second, func() { cmd.Process.Kill() })
	for (s.httpURL == "" || s.rtmpURL == "") && sc.Scan() {
		if m := httpLine.FindStringSubmatch(sc.Text()); m != nil {
			s.httpURL = m[1]
		}
		if m := rtmpLine.FindStringSubmatch(sc.Text()); m != nil {
			s.rtmpURL = m[1]
		}
	}
	deadline.Stop()
	go io.Copy(io.Discard, out)
	go func() { s.done <- cmd.Wait() }()
	if s.httpURL == "" || s.rtmpURL == "" {
		s.stop()
		return nil, errors.New("the server did not print its addresses")
	}
	return s, s.waitHealthy(ctx)
}

func (s *server) waitHealthy(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := http.Get(s.httpURL + "/healthz")
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
			resp.Body.Close()
			// A cluster node joining its cluster serves; it joins once
			// the others are up.
			if resp.StatusCode == http.StatusOK || strings.HasPrefix(string(b), "joining") {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-s.done:
			return fmt.Errorf("the server exited: %v", err)
		case <-tick.C:
		}
	}
}

// stop asks the server to drain, waits for it and removes its data.
func (s *server) stop() {
	s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	os.RemoveAll(s.dataDir)
}

type streamInfo struct {
	ID     string `json:"id"`
	Ingest struct {
		RTMPURL string `json:"rtmpUrl"`
	} `json:"ingest"`
	Playback struct {
		HLS    string `json:"hls"`
		DASH   string `json:"dash"`
		WebRTC string `json:"webrtc"`
	} `json:"playback"`
	Status        string `json:"status"`
	Node          string `json:"node"`
	DroppedFrames uint64 `json:"droppedFrames"`
	FramesIn      uint64 `json:"framesIn"`
}

func (s *server) createStream(name string, record ...bool) (*streamInfo, error) {
	var st streamInfo
	return &st, s.postJSON("/api/v1/streams", map[string]any{"name": name, "record": len(record) > 0 && record[0]}, &st)
}

// postJSON creates an admin API resource (201) and reads it into out.
func (s *server) postJSON(path string, body, out any) error {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", s.httpURL+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+benchToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		msg, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("POST %s: %d %s", path, resp.StatusCode, msg)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func (s *server) getStream(id string) (*streamInfo, error) {
	var st streamInfo
	return &st, s.getJSON("/api/v1/streams/"+id, &st)
}

// getJSON reads an admin API resource into out.
func (s *server) getJSON(path string, out any) error {
	req, _ := http.NewRequest("GET", s.httpURL+path, nil)
	req.Header.Set("Authorization", "Bearer "+benchToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// usage is a process's CPU time and memory, from /proc.
type usage struct {
	cpu time.Duration // user + system
	// childCPU is the CPU time of the children that ended and were waited
	// for.
	childCPU time.Duration
	rss      int64 // bytes resident now
	hwm      int64 // peak bytes resident
}

// clockTick is USER_HZ, 100 on every Linux this runs on.
const clockTick = 100

func procUsage(pid int) (usage, error) {
	var u usage
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u, err
	}
	// Fields after the command name, which is in parentheses.
	rest := string(stat[bytes.LastIndexByte(stat, ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 15 {
		return u, errors.New("short /proc stat")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	u.cpu = time.Duration(ut+st) * time.Second / clockTick
	cut, _ := strconv.ParseInt(f[13], 10, 64)
	cst, _ := strconv.ParseInt(f[14], 10, 64)
	u.childCPU = time.Duration(cut+cst) * time.Second / clockTick
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(fields[0], 10, 64)
		switch k {
		case "VmRSS":
			u.rss = n << 10
		case "VmHWM":
			u.hwm = n << 10
		}
	}
	return u, nil
}

type recordingInfo struct {
	ID       string  `json:"id"`
	Bytes    int64   `json:"bytes"`
	Duration float64 `json:"duration"`
}

// recordings lists the server's recordings.
func (s *server) recordings() ([]recordingInfo, error) {
	var list struct {
		Recordings []recordingInfo `json:"recordings"`
	}
	return list.Recordings, s.getJSON("/api/v1/recordings", &list)
}

// cpuWindow waits the warm-up, then measures the server's CPU and its
// children's (ffmpeg helpers) over the measuring window, in percent of a
// core, and its resident memory at the end in MB.
func (s *server) cpuWindow(o options) (server, children, rssMB float64, err error) {
	time.Sleep(o.warmup) // settling the load, not synchronising
	pid := s.cmd.Process.Pid
	u0, err := procUsage(pid)
	if err != nil {
		return 0, 0, 0, err
	}
	k0 := childrenCPU(pid)
	t0 := time.Now()
	time.Sleep(o.duration) // the measuring window
	u1, err := procUsage(pid)
	if err != nil {
		return 0, 0, 0, err
	}
	k1 := childrenCPU(pid)
	el := float64(time.Since(t0))
	return 100 * float64(u1.cpu-u0.cpu) / el, 100 * float64(k1-k0) / el, float64(u1.rss) / (1 << 20), nil
}
