package server_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/coder/websocket"

	"github.com/glasscast/glasscast/internal/config"
)

// from is an HTTP client whose connections come from loopback address ip:
// to the server, another client address.
func from(ip string) *http.Client {
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}).DialContext}}
}

// status makes a request and returns its status, Retry-After and body.
func status(t *testing.T, c *http.Client, method, url, auth, body string) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After"), string(b)
}

// TestAuthThrottle: an address that fails to authenticate too often (wrong
// admin token, API key, core token, stream key) is refused with 429 and a
// Retry-After, even with the right secret, while other addresses carry on;
// failed admin logins are logged without the token tried.
func TestAuthThrottle(t *testing.T) {
	parallel(t)
	w := startWorld(t, []string{"com.example.a"}, func(c *config.Config) { c.AuthFailures = 3 })
	key := w.apps["com.example.a"].key

	// Each way in, from an address of its own: three failures are answered
	// as such, the fourth attempt (right or wrong) is throttled.
	cases := []struct {
		name, ip, method, path, wrong, right, body string
		fail                                       int
	}{
		{"admin token", "127.0.0.2", "GET", "/api/v1/streams", "not-the-admin-token-XYZ", testToken, "", 401},
		{"API key", "127.0.0.3", "GET", "/api/streams/m0123456789abcdef/outputs?packageName=com.example.a", "not-the-key-XYZ", key, "", 401},
		{"core token", "127.0.0.4", "POST", "/api/v1/me/apps/com.example.a/stop", "not.a.token", w.token("dee@example.com"), "", 401},
		{"glasses core token", "127.0.0.5", "GET", "/glasses-ws", "not.a.token", w.token("dee@example.com"), "", 401},
	}
	for _, c := range cases {
		cl := from(c.ip)
		for i := range 3 {
			if code, _, body := status(t, cl, c.method, w.base+c.path, c.wrong, c.body); code != c.fail {
				t.Fatalf("%s: failure %d answered %d %s", c.name, i+1, code, body)
			}
		}
		for _, tok := range []string{c.wrong, c.right} {
			code, retry, body := status(t, cl, c.method, w.base+c.path, tok, c.body)
			if code != http.StatusTooManyRequests || retry == "" || !strings.Contains(strings.ToLower(body), "too many failed") {
				t.Fatalf("%s: after 3 failures, answered %d (Retry-After %q) %s", c.name, code, retry, body)
			}
		}
	}
	// Other addresses are not held back.
	if code, _, _ := status(t, http.DefaultClient, "GET", w.base+"/api/v1/streams", testToken, ""); code != 200 {
		t.Fatalf("the admin from another address: %d", code)
	}
	logged := w.log.String()
	if !strings.Contains(logged, "admin refused: wrong admin token") || !strings.Contains(logged, "127.0.0.2") {
		t.Fatal("failed admin logins are not logged with the address")
	}
	if strings.Contains(logged, "not-the-admin-token-XYZ") || strings.Contains(logged, "not-the-key-XYZ") {
		t.Fatal("the log quotes a secret tried")
	}

	// The apps' socket: a wrong API key in tpa_connection_init.
	ws := from("127.0.0.6")
	wsURL := "ws" + strings.TrimPrefix(w.base, "http") + "/app-ws"
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPClient: ws})
		if err != nil {
			t.Fatalf("app socket %d: %v", i+1, err)
		}
		c.Write(ctx, websocket.MessageText, []byte(`{"type":"tpa_connection_init","sessionId":"dee@example.com-com.example.a","packageName":"com.example.a","apiKey":"wrong"}`))
		_, msg, err := c.Read(ctx)
		if err != nil || !strings.Contains(string(msg), "INVALID_API_KEY") {
			t.Fatalf("app socket %d with a wrong key: %s %v", i+1, msg, err)
		}
		c.CloseNow()
		cancel()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, resp, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPClient: ws}); err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("app socket after 3 wrong keys: %v %v", resp, err)
	}

	// RTMP: wrong stream keys.
	s := w.create("throttled")
	u, _ := url.Parse(s.Ingest.RTMPURL)
	publish := func(key string) error {
		pu := *u
		pu.Path = "/live/" + key
		c := &gortmplib.Client{URL: &pu, Publish: true,
			DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.7")}}).DialContext}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := c.Initialize(ctx)
		if err == nil {
			c.Close()
		}
		return err
	}
	realKey := strings.TrimPrefix(u.Path, "/live/")
	for i := range 3 {
		if err := publish(fmt.Sprintf("wrong%d", i)); err == nil || !strings.Contains(err.Error(), "unknown or ended stream key") {
			t.Fatalf("publish %d with a wrong key: %v", i+1, err)
		}
	}
	if err := publish(realKey); err == nil || !strings.Contains(err.Error(), "too many failed") {
		t.Fatalf("publish with the right key after 3 wrong ones: %v", err)
	}
}
