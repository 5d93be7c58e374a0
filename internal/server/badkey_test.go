package server_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/glasscast/glasscast/sdk"
)

// startCall makes the phone's start call and returns its status and error
// code, and how long it took.
func startCall(t *testing.T, h *harness, user, pkg string) (int, string, time.Duration) {
	t.Helper()
	w := &world{harness: h}
	req, _ := http.NewRequest("POST", h.base+"/api/v1/me/apps/"+pkg+"/start", nil)
	req.Header.Set("Authorization", "Bearer "+w.token(user))
	began := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Error struct{ Code, Message string }
	}
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &body)
	return resp.StatusCode, body.Error.Code, time.Since(began)
}

// TestStartCallBadAPIKey: an app server holding a wrong API key, on either
// SDK, makes the start call say so at once (not a timeout or an
// unreachable app), and the Go SDK says it in the default log.
func TestStartCallBadAPIKey(t *testing.T) {
	parallel(t)
	const pkg, tsPkg = "com.example.wrongkey", "com.example.managedstreaming"
	port := freePort(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := compatWorld(t, map[string]int{pkg: ln.Addr().(*net.TCPAddr).Port, tsPkg: port}, nil)

	// The Go SDK, its logger left unset: slog.Default() gets the failure.
	logged := &logTail{}
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(logged, nil)))
	t.Cleanup(func() { slog.SetDefault(old) })
	app := sdk.NewAppServer(sdk.Config{PackageName: pkg, APIKey: "not-the-key-of-this-app"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	connectGlasses(t, h, "kay@example.com")
	code, errCode, took := startCall(t, h, "kay@example.com", pkg)
	if code != http.StatusBadGateway || errCode != "app_bad_api_key" {
		t.Fatalf("start with the Go SDK holding a wrong key: %d %s", code, errCode)
	}
	t.Logf("Go SDK: answered in %v", took.Round(time.Millisecond))
	logged.waitCount(t, "Invalid API key", 1, 10*time.Second)
	if strings.Contains(logged.String(), "not-the-key-of-this-app") {
		t.Fatal("the Go SDK logs its API key")
	}

	// The TypeScript SDK.
	runNodeApp(t, "managed.mjs", tsPkg, "also-not-the-key", port)
	code, errCode, took = startCall(t, h, "kay@example.com", tsPkg)
	if code != http.StatusBadGateway || errCode != "app_bad_api_key" {
		t.Fatalf("start with the TypeScript SDK holding a wrong key: %d %s", code, errCode)
	}
	t.Logf("TypeScript SDK: answered in %v", took.Round(time.Millisecond))
}
