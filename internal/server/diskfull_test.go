package server_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/api"
	"github.com/glasscast/glasscast/internal/config"
	"github.com/glasscast/glasscast/internal/hls"
	"github.com/glasscast/glasscast/internal/live"
)

// smallDisk mounts a tmpfs of size bytes for the test: a disk that fills.
func smallDisk(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs to fill needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// fill writes a file until the disk is full and returns its name.
func fill(t *testing.T, dir string) string {
	t.Helper()
	name := filepath.Join(dir, "ballast")
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 256<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return name
		}
	}
}

// TestRecordingDiskFull: when the disk fills mid-stream, live playback goes
// on, the recording says failed with the cause, and once there is room
// again it resumes as a new part; the finished recording plays, with the
// hole marked.
func TestRecordingDiskFull(t *testing.T) {
	parallel(t)
	slow(t)
	data := smallDisk(t, 48<<20)
	h := start(t, func(c *config.Config) { c.Data = data })
	s := h.createRecorded("full disk")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	publishSim(ctx, s.Ingest.RTMPURL, nil)
	h.waitPlayable(s.Playback.HLS)
	rec := func(ok func(api.RecordingJSON) bool) api.RecordingJSON {
		t.Helper()
		var got api.RecordingJSON
		h.waitSnapshot(30*time.Second, func(snap api.Snapshot) bool {
			for _, r := range snap.Recordings {
				if r.ID == s.ID {
					got = r
					return ok(r)
				}
			}
			return false
		})
		return got
	}
	rec(func(r api.RecordingJSON) bool { return r.Segments >= 2 })

	ballast := fill(t, data)
	failed := rec(func(r api.RecordingJSON) bool { return r.Status == "failed" })
	if !strings.Contains(failed.Error, "no space left") {
		t.Fatalf("a recording on a full disk: %+v", failed)
	}
	// The live stream goes on meanwhile.
	base := strings.TrimSuffix(s.Playback.HLS, "index.m3u8")
	_, body := fetch(t, base+"video.m3u8")
	msn, _ := hls.LastPart(string(body))
	if code, body := fetch(t, fmt.Sprintf("%svideo.m3u8?_HLS_msn=%d", base, msn+2)); code != http.StatusOK {
		t.Fatalf("the live stream on a full disk: %d %s", code, body)
	}
	if st := h.get(s.ID); st.Status != live.StatusLive {
		t.Fatalf("the stream on a full disk: %s %s", st.Status, st.LastError)
	}

	// Room again: it records on, as a new part.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	before := failed.Segments
	resumed := rec(func(r api.RecordingJSON) bool { return r.Status == "recording" && r.Segments >= before+2 })
	if resumed.Gaps < 1 {
		t.Fatalf("the recording resumed without a gap: %+v", resumed)
	}
	cancel()
	if code, body := h.call("DELETE", "/api/v1/streams/"+s.ID, nil); code != http.StatusOK {
		t.Fatalf("DELETE stream: %d %s", code, body)
	}
	done := h.waitRecorded(s.ID)
	if done.Status != "complete" || done.Truncated || done.Gaps < 1 {
		t.Fatalf("the finished recording: %+v", done)
	}
	_, pl := fetch(t, strings.TrimSuffix(s.Recording.HLS, "index.m3u8")+"video.m3u8")
	if !strings.Contains(string(pl), "#EXT-X-DISCONTINUITY") {
		t.Fatalf("the recording's playlist does not mark the hole:\n%s", pl)
	}
	if d, _ := probeFormat(t, s.Recording.MP4); d < 2 {
		t.Fatalf("the MP4 lasts %.1f s", d)
	}
}
