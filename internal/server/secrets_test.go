package server_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/live"
	"github.com/glasscast/glasscast/internal/sim"
	"github.com/glasscast/glasscast/sdk"
)

// TestNoSecretsInLogs runs a bit of everything, wrong secrets included, and
// looks for every secret in every log: the server's, the simulator's and
// the Go SDK's.
func TestNoSecretsInLogs(t *testing.T) {
	parallel(t)
	sdkLog, simLog := &logTail{}, &logTail{}
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(sdkLog, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { slog.SetDefault(old) })
	w := startWorld(t, []string{"com.example.a"}, allowLoopback)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	secrets := map[string]string{"admin token": testToken, "API key": w.apps["com.example.a"].key}

	// Glasses, an app, a managed stream with an output carrying a key.
	token := w.token("sec@example.com")
	secrets["core token"] = token
	_, events := w.glasses("sec@example.com", func(g *sim.Glasses) { g.Log = slog.New(slog.NewTextHandler(simLog, nil)) })
	a := w.startApp("sec@example.com", "com.example.a")
	mirror := w.create("mirror")
	secrets["stream key"] = mirror.Ingest.RTMPURL[strings.LastIndex(mirror.Ingest.RTMPURL, "/")+1:]
	if _, err := a.Camera.StartManagedStream(ctx, sdk.ManagedStreamOptions{RestreamDestinations: []sdk.RestreamDestination{{URL: mirror.Ingest.RTMPURL}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Camera.WaitManagedActive(ctx); err != nil {
		t.Fatal(err)
	}
	w.waitStatus(mirror.ID, live.StatusLive, 20*time.Second)
	waitEvent(t, events, "streaming", 10*time.Second)

	// Wrong secrets of every kind.
	for _, c := range []struct{ path, bearer string }{
		{"/api/v1/streams", "wrong-admin-" + testToken},
		{"/api/streams/x/outputs?packageName=com.example.a", "wrong-" + secrets["API key"]},
		{"/api/v1/me/apps/com.example.a/stop", token + "x"},
	} {
		req, _ := http.NewRequest("GET", w.base+c.path, nil)
		req.Header.Set("Authorization", "Bearer "+c.bearer)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	err := (&sim.Source{Loops: 1}).Publish(ctx, strings.TrimSuffix(mirror.Ingest.RTMPURL, secrets["stream key"])+secrets["stream key"]+"x")
	if err != nil && strings.Contains(err.Error(), secrets["stream key"]) {
		t.Fatalf("a refused publish's error quotes the key: %v", err)
	}

	// Glasses whose server is gone: their reconnect errors quote the URL.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + ln.Addr().String()
	ln.Close()
	lost := make(chan sim.Event, 16)
	g := &sim.Glasses{Server: dead, Token: token, Events: lost, PhoneRetry: 50 * time.Millisecond, Log: slog.New(slog.NewTextHandler(simLog, nil))}
	gctx, gcancel := context.WithCancel(ctx)
	gdone := make(chan error, 1)
	go func() { gdone <- g.Run(gctx) }()
	if e := waitEvent(t, lost, "disconnected", 10*time.Second); strings.Contains(e.Text, token) {
		t.Fatalf("the simulator's event quotes the core token: %s", e.Text)
	}
	gcancel()
	<-gdone

	cancel()
	w.stopApp("sec@example.com", "com.example.a")
	for name, secret := range secrets {
		for where, l := range map[string]*logTail{"server": w.log, "simulator": simLog, "Go SDK": sdkLog} {
			if i := strings.Index(l.String(), secret); i >= 0 {
				line := l.String()[max(0, i-200):min(len(l.String()), i+len(secret)+20)]
				t.Errorf("the %s's log has the %s: …%s", where, name, line)
			}
		}
	}
	if t.Failed() {
		return
	}
	t.Logf("%d, %d and %d bytes of log, no secret", len(w.log.String()), len(simLog.String()), len(sdkLog.String()))
}
