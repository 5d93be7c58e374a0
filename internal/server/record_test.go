package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/api"
	"github.com/glasscast/glasscast/internal/config"
	"github.com/glasscast/glasscast/internal/live"
)

// probeFormat runs ffprobe on a URL and returns the container's duration in
// seconds and its streams.
func probeFormat(t *testing.T, url string) (float64, []probeStream) {
	t.Helper()
	needTool(t, "ffprobe")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", url).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("ffprobe %s: %v %s", url, err, stderr)
	}
	var res struct {
		Streams []probeStream `json:"streams"`
		Format  struct {
			Duration string `json:"duration"`
		} `json:"format"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatal(err)
	}
	d, err := strconv.ParseFloat(res.Format.Duration, 64)
	if err != nil {
		t.Fatalf("ffprobe %s: no duration in %s", url, out)
	}
	return d, res.Streams
}

func (h *harness) createRecorded(name string) api.StreamJSON {
	h.t.Helper()
	code, body := h.call("POST", "/api/v1/streams", map[string]any{"name": name, "record": true})
	if code != http.StatusCreated {
		h.t.Fatalf("create: %d %s", code, body)
	}
	var s api.StreamJSON
	if err := json.Unmarshal(body, &s); err != nil {
		h.t.Fatal(err)
	}
	if !s.Record || s.Recording == nil {
		h.t.Fatalf("a stream created with record:true has no recording: %s", body)
	}
	return s
}

func (h *harness) recording(id string) api.RecordingJSON {
	h.t.Helper()
	var r api.RecordingJSON
	h.getJSON("/api/v1/recordings/"+id, &r)
	return r
}

// waitRecorded waits until the stream's recording is finished.
func (h *harness) waitRecorded(id string) api.RecordingJSON {
	h.t.Helper()
	rec, err := h.srv.Recordings().Get(id)
	if err != nil {
		h.t.Fatal(err)
	}
	select {
	case <-rec.Done():
	case <-time.After(20 * time.Second):
		h.t.Fatal("the recording did not finish within 20 s of its stream's end")
	}
	return h.recording(id)
}

// publishFor pushes ffmpeg's test source for secs seconds and waits for the
// stream to notice the publisher has gone.
func (h *harness) publishFor(s api.StreamJSON, secs int) {
	h.t.Helper()
	cmd := publishFFmpeg(h.t, context.Background(), s.Ingest.RTMPURL, "-t", strconv.Itoa(secs))
	h.waitStatus(s.ID, live.StatusLive, 20*time.Second)
	h.waitStatus(s.ID, live.StatusReconnecting, time.Duration(secs+20)*time.Second)
	_ = cmd
}

func TestRecordingAcrossReconnect(t *testing.T) {
	parallel(t)
	slow(t)
	h := start(t, nil)
	s := h.createRecorded("recorded")

	// While the first session is on, the recording is listed as being
	// written and its MP4 is not ready.
	cmd := publishFFmpeg(t, context.Background(), s.Ingest.RTMPURL, "-t", "3")
	h.waitStatus(s.ID, live.StatusLive, 20*time.Second)
	if r := h.recording(s.ID); r.Status != "recording" || r.HLS != s.Recording.HLS || r.MP4 != s.Recording.MP4 {
		t.Fatalf("recording while live: %+v, stream says %+v", r, s.Recording)
	}
	if code, _ := fetch(t, s.Recording.MP4); code != http.StatusConflict {
		t.Fatalf("MP4 of a recording being written: %d, want 409", code)
	}
	h.waitStatus(s.ID, live.StatusReconnecting, 30*time.Second)
	cmd.Wait()
	dropped := time.Now()

	// The publisher comes back within the window: the same recording goes on.
	cmd = publishFFmpeg(t, context.Background(), s.Ingest.RTMPURL, "-t", "3")
	h.waitStatus(s.ID, live.StatusLive, 20*time.Second)
	gap := time.Since(dropped)
	h.waitStatus(s.ID, live.StatusReconnecting, 30*time.Second)
	cmd.Wait()
	if code, body := h.call("DELETE", "/api/v1/streams/"+s.ID, nil); code != http.StatusOK {
		t.Fatalf("DELETE stream: %d %s", code, body)
	}
	r := h.waitRecorded(s.ID)
	if r.Status != "complete" || r.Gaps != 1 || r.EndedAt == nil {
		t.Fatalf("finished recording: %+v, want complete with one gap", r)
	}
	if r.Duration < 5.4 || r.Duration > 6.7 {
		t.Fatalf("recording lasts %.2f s, want about 6 s (two sessions of 3 s)", r.Duration)
	}
	code, body := h.call("GET", "/api/v1/recordings", nil)
	var list struct{ Recordings []api.RecordingJSON }
	if code != http.StatusOK || json.Unmarshal(body, &list) != nil || len(list.Recordings) != 1 || list.Recordings[0].ID != s.ID {
		t.Fatalf("recordings list: %d %s", code, body)
	}

	// The VOD playlist: finished, one discontinuity where the publisher left.
	_, video := fetch(t, strings.TrimSuffix(s.Recording.HLS, "index.m3u8")+"video.m3u8")
	for _, want := range []string{"#EXT-X-PLAYLIST-TYPE:VOD", "#EXT-X-ENDLIST", "#EXT-X-MAP:URI="} {
		if !strings.Contains(string(video), want) {
			t.Fatalf("VOD playlist has no %s:\n%s", want, video)
		}
	}
	if n := strings.Count(string(video), "#EXT-X-DISCONTINUITY\n"); n != 1 {
		t.Fatalf("VOD playlist has %d discontinuities, want 1:\n%s", n, video)
	}

	hlsDur, streams := probeFormat(t, s.Recording.HLS)
	if v := findStream(streams, "video"); v == nil || v.CodecName != "h264" || v.Width != 1280 || v.Height != 720 || findStream(streams, "audio") == nil {
		t.Fatalf("recording's HLS: %s", describe(streams))
	}
	if hlsDur < 5.4 || hlsDur > 6.7 {
		t.Fatalf("ffprobe says the recording's HLS lasts %.2f s, want about 6 s", hlsDur)
	}
	// The MP4 keeps the stream's timeline: the gap is in it.
	mp4Dur, streams := probeFormat(t, s.Recording.MP4)
	if v := findStream(streams, "video"); v == nil || v.Width != 1280 || findStream(streams, "audio") == nil {
		t.Fatalf("recording's MP4: %s", describe(streams))
	}
	if mp4Dur < hlsDur-0.2 || mp4Dur > hlsDur+gap.Seconds()+1.5 {
		t.Fatalf("MP4 lasts %.2f s; HLS %.2f s and the gap %.2f s", mp4Dur, hlsDur, gap.Seconds())
	}
	// A progressive MP4: ftyp, moov with every sample, one mdat.
	_, whole := fetch(t, s.Recording.MP4)
	var boxes []string
	for b := whole; len(b) >= 8; {
		size := int(binary.BigEndian.Uint32(b[:4]))
		boxes = append(boxes, string(b[4:8]))
		if size < 8 || size > len(b) {
			t.Fatalf("a broken box %q of %d bytes in the MP4 (%d left)", b[4:8], size, len(b))
		}
		b = b[size:]
	}
	if strings.Join(boxes, ",") != "ftyp,moov,mdat" {
		t.Fatalf("the MP4's boxes: %v", boxes)
	}
	// Ranges work (players and download managers use them).
	req, _ := http.NewRequest("GET", s.Recording.MP4, nil)
	req.Header.Set("Range", "bytes=100-199")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	part, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || len(part) != 100 {
		t.Fatalf("range of the MP4: %d with %d bytes", resp.StatusCode, len(part))
	}
	// Every video frame decodes without an error. (ffprobe decodes and
	// prints each frame; a null output would re-time the frames to a fixed
	// rate and complain of RTMP's millisecond timestamps instead.)
	var stderr bytes.Buffer
	probeCmd := exec.Command("ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", "frame=pts", "-of", "csv=p=0", s.Recording.MP4)
	probeCmd.Stderr = &stderr
	frames, err := probeCmd.Output()
	if n := strings.Count(string(frames), "\n"); err != nil || stderr.Len() > 0 || n < 170 {
		t.Fatalf("decoding the MP4: %d frames of about 180, %v %s", n, err, stderr.String())
	}
	// and their times only go forward (the source has no B-frames).
	prev := int64(-1)
	for _, line := range strings.Fields(string(frames)) {
		pts, err := strconv.ParseInt(strings.Trim(line, ","), 10, 64)
		if err != nil || pts <= prev {
			t.Fatalf("frame times in the MP4 go from %d to %q", prev, line)
		}
		prev = pts
	}

	if code, _ := h.call("DELETE", "/api/v1/recordings/"+s.ID, nil); code != http.StatusNoContent {
		t.Fatalf("DELETE recording: %d", code)
	}
	if code, _ := fetch(t, s.Recording.HLS); code != http.StatusNotFound {
		t.Fatalf("a deleted recording's playlist: %d, want 404", code)
	}
}

func TestRecordingRetention(t *testing.T) {
	parallel(t)
	h := start(t, nil)
	var ids []string
	for i := range 2 {
		s := h.createRecorded(fmt.Sprintf("take %d", i))
		h.publishFor(s, 2)
		h.call("DELETE", "/api/v1/streams/"+s.ID, nil)
		h.waitRecorded(s.ID)
		ids = append(ids, s.ID)
	}
	older, newer := h.recording(ids[0]), h.recording(ids[1])
	if older.Bytes == 0 || newer.Bytes == 0 {
		t.Fatalf("recordings without bytes: %+v %+v", older, newer)
	}
	dirs := h.srv.Recordings()
	// A budget that holds the newer one only: the older goes.
	dirs.SetRetention(0, newer.Bytes+older.Bytes/2)
	dirs.Prune(time.Now())
	if code, _ := h.call("GET", "/api/v1/recordings/"+ids[0], nil); code != http.StatusNotFound {
		t.Fatalf("the older recording is still there over the budget (%d)", code)
	}
	if code, _ := fetch(t, older.HLS); code != http.StatusNotFound {
		t.Fatalf("the removed recording still plays: %d", code)
	}
	if code, _ := fetch(t, newer.HLS); code != http.StatusOK {
		t.Fatalf("the newer recording, within the budget, is gone: %d", code)
	}
	// By age: an hour later, a 30-minute limit removes it too.
	dirs.SetRetention(30*time.Minute, 0)
	dirs.Prune(time.Now().Add(time.Hour))
	if code, _ := h.call("GET", "/api/v1/recordings/"+ids[1], nil); code != http.StatusNotFound {
		t.Fatalf("a recording past the age limit is still there (%d)", code)
	}
}

// waitSnapshot reads the admin event stream until a snapshot satisfies ok.
func (h *harness) waitSnapshot(within time.Duration, ok func(api.Snapshot) bool) api.Snapshot {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", h.base+"/api/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var last api.Snapshot
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line, found := strings.CutPrefix(sc.Text(), "data: ")
		if !found {
			continue
		}
		last = api.Snapshot{}
		if err := json.Unmarshal([]byte(line), &last); err != nil {
			h.t.Fatalf("snapshot %q: %v", line, err)
		}
		if ok(last) {
			return last
		}
	}
	h.t.Fatalf("no snapshot as wanted within %v; the last: %+v", within, last)
	return last
}

func TestRecordingSurvivesKilledServer(t *testing.T) {
	parallel(t)
	data := t.TempDir()
	c := startChild(t, func(cfg *config.Config) { cfg.Data = data })
	s := c.createRecorded("until the power goes")
	pub := publishFFmpeg(t, context.Background(), s.Ingest.RTMPURL)

	// Wait, on the admin event stream, for three segments on disk.
	c.waitSnapshot(40*time.Second, func(snap api.Snapshot) bool {
		return len(snap.Recordings) == 1 && snap.Recordings[0].Segments >= 3
	})
	c.kill()
	pub.Process.Kill()

	// A new server on the same data brings the stream back, waiting for its
	// publisher, and its recording with what it had, to be continued; the
	// stream ended, the recording is finished and plays.
	h := start(t, func(cfg *config.Config) { cfg.Data = data })
	if st := h.get(s.ID); st.Status != live.StatusReconnecting {
		t.Fatalf("the stream after the kill: %s, want reconnecting", st.Status)
	}
	if r := h.recording(s.ID); r.Status != "recording" || r.Segments < 3 {
		t.Fatalf("after the kill: %+v, want recording with at least 3 segments", r)
	}
	if code, body := h.call("DELETE", "/api/v1/streams/"+s.ID, nil); code != http.StatusOK {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	r := h.waitRecorded(s.ID)
	if r.Status != "complete" || r.Segments < 3 || r.Duration < 3 {
		t.Fatalf("after the kill and the stream's end: %+v, want complete with at least 3 segments", r)
	}
	d, streams := probeFormat(t, r.HLS)
	if findStream(streams, "video") == nil || findStream(streams, "audio") == nil || d < r.Duration-0.5 || d > r.Duration+0.5 {
		t.Fatalf("the recording's HLS: %.2f s (API says %.2f), %s", d, r.Duration, describe(streams))
	}
	if d, streams := probeFormat(t, r.MP4); findStream(streams, "video") == nil || d < r.Duration-0.5 {
		t.Fatalf("the recording's MP4: %.2f s, %s", d, describe(streams))
	}
}
