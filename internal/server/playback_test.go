package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/api"
	"github.com/glasscast/glasscast/internal/config"
	rtc "github.com/glasscast/glasscast/internal/webrtc"
)

// grantOf is the path element (token) of a stream's HLS URL.
func grantOf(h *harness, hlsURL string) string {
	return strings.TrimSuffix(strings.TrimPrefix(hlsURL, h.base+"/hls/"), "/index.m3u8")
}

// mediaPaths are a stream's media URLs with path element g.
func mediaPaths(g string) []string {
	return []string{"/hls/" + g + "/index.m3u8", "/dash/" + g + "/manifest.mpd", "/watch/" + g, "/watch/" + g + "/status",
		"/thumb/" + g + ".jpg", "/recordings/" + g + "/index.m3u8", "/recordings/" + g + ".mp4"}
}

// TestPrivatePlayback: a stream plays only through the URLs glasscast hands
// out (their token), never by its id; a wrong or altered token is refused
// without saying whether the stream exists; the admin mints tokens with
// their own lifetime and rights, and revokes them all, which also ends the
// WebRTC sessions opened with them; a public stream plays by its id.
func TestPrivatePlayback(t *testing.T) {
	parallel(t)
	needTool(t, "ffprobe")
	h := start(t, nil)
	s := h.createRecorded("private")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	publishSim(ctx, s.Ingest.RTMPURL, nil)
	h.waitPlayable(s.Playback.HLS)
	grant := grantOf(h, s.Playback.HLS)

	// The handed-out URLs play: the playlists' relative URIs carry the token.
	checkProbe(t, s, 1280, 720, 1)
	if v := findStream(probe(t, s.Playback.DASH), "video"); v == nil || v.Width != 1280 {
		t.Fatal("the DASH URL does not play")
	}

	// By id, the stream and one that does not exist answer alike: 401.
	for _, p := range append(mediaPaths(s.ID), mediaPaths("0123456789abcdef")...) {
		code, body := fetch(t, h.base+p)
		if code != http.StatusUnauthorized || strings.Contains(string(body), s.ID) {
			t.Fatalf("%s without a token: %d %s", p, code, body)
		}
	}
	// An altered token, or this one's signature on another id: 403.
	sig := grant[strings.LastIndexByte(grant, '.')+1:]
	altered := []string{
		flipLast(grant),
		strings.Replace(grant, ".1.", ".3.", 1), // more rights than signed
		"0123456789abcdef" + strings.TrimPrefix(grant, s.ID),
		s.ID + ".1.zzzzzz.0." + sig, // a later expiry
	}
	for _, g := range altered {
		if code, _ := fetch(t, h.base+"/hls/"+g+"/index.m3u8"); code != http.StatusForbidden {
			t.Fatalf("altered token %s: %d", g, code)
		}
	}
	// The live token does not open the recording; the recording's does.
	if code, _ := fetch(t, h.base+"/recordings/"+grant+"/index.m3u8"); code != http.StatusForbidden {
		t.Fatalf("the recording with a live-only token: %d", code)
	}
	if code, _ := fetch(t, s.Recording.HLS); code != http.StatusOK {
		t.Fatalf("the recording's own URL: %d", code)
	}
	// WebRTC with the token: a session that counts as a viewer.
	c, err := rtc.Dial(ctx, s.Playback.WebRTC, rtc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
	defer ccancel()
	if err := c.Connected(cctx); err != nil {
		t.Fatal(err)
	}

	// The admin mints a live-only token for an hour.
	code, body := h.call("POST", "/api/v1/streams/"+s.ID+"/tokens", map[string]any{"ttl": "1h", "rights": []string{"live"}})
	var minted api.TokenJSON
	if code != http.StatusCreated || json.Unmarshal(body, &minted) != nil || minted.Playback == nil || minted.Recording != nil {
		t.Fatalf("mint: %d %s", code, body)
	}
	if d := time.Until(minted.ExpiresAt); d < 59*time.Minute || d > time.Hour {
		t.Fatalf("a token for 1h expires in %v", d)
	}
	if v := findStream(probe(t, minted.Playback.HLS), "video"); v == nil {
		t.Fatal("the minted token does not play")
	}
	for _, bad := range []string{`{"ttl":"1s"}`, `{"ttl":"soon"}`, `{"rights":["admin"]}`, `{"x":1}`} {
		if code, body := h.call("POST", "/api/v1/streams/"+s.ID+"/tokens", bad); code != http.StatusBadRequest {
			t.Fatalf("mint %s: %d %s", bad, code, body)
		}
	}
	if code, _ := h.call("POST", "/api/v1/streams/0123456789abcdef/tokens", nil); code != http.StatusNotFound {
		t.Fatalf("mint for an unknown stream: %d", code)
	}

	// Revoking ends every token so far and the WebRTC session.
	code, body = h.call("DELETE", "/api/v1/streams/"+s.ID+"/tokens", nil)
	var revoked struct{ WebRTCSessionsEnded int }
	if code != http.StatusOK || json.Unmarshal(body, &revoked) != nil || revoked.WebRTCSessionsEnded != 1 {
		t.Fatalf("revoke: %d %s", code, body)
	}
	for _, u := range []string{s.Playback.HLS, minted.Playback.HLS, s.Playback.Watch, s.Recording.MP4} {
		if code, _ := fetch(t, u); code != http.StatusForbidden {
			t.Fatalf("%s after the revocation: %d", u, code)
		}
	}
	if v := h.get(s.ID).Viewers; v.WebRTC != 0 {
		t.Fatalf("WebRTC viewers after the revocation: %d", v.WebRTC)
	}
	// The URLs handed out from now on carry a new token, which plays.
	fresh := h.get(s.ID)
	if fresh.Playback.HLS == s.Playback.HLS {
		t.Fatal("the stream still hands out the revoked token")
	}
	if v := findStream(probe(t, fresh.Playback.HLS), "video"); v == nil {
		t.Fatal("the new token does not play")
	}

	// A public stream plays by its id.
	code, body = h.call("POST", "/api/v1/streams", map[string]any{"name": "open", "public": true})
	var pub api.StreamJSON
	if code != http.StatusCreated || json.Unmarshal(body, &pub) != nil || !pub.Public || pub.Playback.HLS != h.base+"/hls/"+pub.ID+"/index.m3u8" {
		t.Fatalf("public stream: %d %s", code, body)
	}
	publishSim(ctx, pub.Ingest.RTMPURL, nil)
	h.waitPlayable(pub.Playback.HLS)
	if code, _ := fetch(t, h.base+"/watch/"+pub.ID); code != http.StatusOK {
		t.Fatalf("a public stream's watch page: %d", code)
	}
}

// flipLast changes a token's last character (its signature's).
func flipLast(s string) string {
	last := byte('A')
	if s[len(s)-1] == 'A' {
		last = 'B'
	}
	return s[:len(s)-1] + string(last)
}

// TestPublicRecordingAfterRestart: a public stream's recording plays by its
// id once the stream is gone from memory (here, after a restart), and a
// private one's still wants a token.
func TestPublicRecordingAfterRestart(t *testing.T) {
	parallel(t)
	data := t.TempDir()
	h := start(t, func(c *config.Config) { c.Data = data })
	var ids []string
	for _, public := range []bool{true, false} {
		code, body := h.call("POST", "/api/v1/streams", map[string]any{"name": "rec", "record": true, "public": public})
		var s api.StreamJSON
		if code != http.StatusCreated || json.Unmarshal(body, &s) != nil {
			t.Fatalf("create: %d %s", code, body)
		}
		h.publishFor(s, 2)
		if code, body := h.call("DELETE", "/api/v1/streams/"+s.ID, nil); code != http.StatusOK {
			t.Fatalf("DELETE stream: %d %s", code, body)
		}
		h.waitRecorded(s.ID)
		ids = append(ids, s.ID)
	}
	h.stop()

	h2 := start(t, func(c *config.Config) { c.Data = data })
	if code, body := fetch(t, h2.base+"/recordings/"+ids[0]+"/index.m3u8"); code != http.StatusOK {
		t.Fatalf("a public stream's recording by its id after a restart: %d %s", code, body)
	}
	if code, _ := fetch(t, h2.base+"/recordings/"+ids[1]+"/index.m3u8"); code != http.StatusUnauthorized {
		t.Fatalf("a private stream's recording by its id after a restart: %d", code)
	}
}
