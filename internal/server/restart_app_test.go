package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/api"
	"github.com/glasscast/glasscast/internal/config"
	"github.com/glasscast/glasscast/protocol"
	"github.com/glasscast/glasscast/sdk"
)

// childAppEnv, set to a childApp in JSON, makes the test binary run a Go
// SDK app server instead of the tests: an app a test can kill with SIGKILL.
const childAppEnv = "GLASSCAST_TEST_CHILD_APP"

type childApp struct {
	Pkg, Key string
	Port     int
}

// runChildApp is the README's first app on the Go SDK, printing what the
// managed-streaming compatibility app prints, and when each session request
// arrives (before the SDK opens the session's socket).
func runChildApp(cfgJSON string) int {
	var c childApp
	if err := json.Unmarshal([]byte(cfgJSON), &c); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	app := sdk.NewAppServer(sdk.Config{PackageName: c.Pkg, APIKey: c.Key})
	app.OnSession(func(ctx context.Context, s *sdk.Session) error {
		fmt.Println("Session started:", s.ID)
		if _, err := s.Camera.StartManagedStream(ctx, sdk.ManagedStreamOptions{}); err != nil {
			fmt.Println("Failed to start stream:", err)
			return err
		}
		live, err := s.Camera.WaitManagedActive(ctx)
		if err != nil {
			fmt.Println("Failed to start stream:", err)
			return err
		}
		fmt.Println("Stream status: active")
		fmt.Println("HLS URL:", live.HLSURL)
		fmt.Println("DASH URL:", live.DASHURL)
		<-ctx.Done()
		return nil
	})
	hooks := app.Handler()
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/webhook" {
			body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
			var head struct{ Type, SessionID string }
			json.Unmarshal(body, &head)
			if head.Type == protocol.WebhookSessionRequest {
				fmt.Println("Session request at", time.Now().UnixMilli(), head.SessionID)
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		hooks.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(c.Port))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return func() int {
		err := (&http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}).Serve(ln)
		fmt.Fprintln(os.Stderr, err)
		return 1
	}()
}

// An app server that restarts (killed, started again at once) and is
// started again from the phone within the grace gets a new session, as
// with the MentraOS cloud: the start call answers once that session is
// open (never "running" before it), and the app's managed stream started
// in the new session plays. For the Go SDK and the unmodified @mentra/sdk
// 2.1.29 alike.
func TestAppServerRestarts(t *testing.T) {
	parallel(t)
	slow(t)
	const goPkg, tsPkg = "com.example.first", "com.example.managedstreaming"
	goPort, tsPort := freePort(t), freePort(t)
	h := compatWorld(t, map[string]int{goPkg: goPort, tsPkg: tsPort}, func(c *config.Config) {
		c.AppGrace = 5 * time.Second // the MentraOS cloud's
		c.ManagedStartTimeout = 20 * time.Second
	})
	runGo := func() *nodeApp {
		cfg, _ := json.Marshal(childApp{Pkg: goPkg, Key: "compat-key-" + goPkg, Port: goPort})
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childAppEnv+"="+string(cfg))
		return runAppProcess(t, cmd, "the Go SDK app", goPkg, goPort)
	}
	runTS := func() *nodeApp {
		return runNodeApp(t, "managed.mjs", tsPkg, "compat-key-"+tsPkg, tsPort)
	}
	for _, c := range []struct {
		name, user, pkg string
		run             func() *nodeApp
	}{
		{"go", "gil@example.com", goPkg, runGo},
		{"mentra-sdk", "tess@example.com", tsPkg, runTS},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			app := c.run()
			_, events := connectGlasses(t, h, c.user)
			startFor(t, h, c.user, c.pkg)
			app.expect(`^Stream status: active`, 30*time.Second)
			waitEvent(t, events, "start", 5*time.Second)

			// The app's server dies and comes straight back, with no session.
			app.kill()
			app = c.run()
			code, errCode, _ := startCall(t, h, c.user, c.pkg)
			answered := time.Now().UnixMilli()
			if code != http.StatusOK {
				t.Fatalf("start after the restart: %d %s", code, errCode)
			}
			m := app.expect(`^Session request at (\d+) (\S+)`, 15*time.Second)
			at, _ := strconv.ParseInt(m[1], 10, 64)
			if m[2] != c.user+"-"+c.pkg {
				t.Fatalf("session request for %s", m[2])
			}
			if at > answered {
				t.Fatalf("the start answered running %d ms before the new session was requested", at-answered)
			}
			app.expect(`^Stream status: active`, 30*time.Second)
			var s api.StreamJSON
			s.Playback.HLS = app.expect(`^HLS URL: (\S+)`, 5*time.Second)[1]
			s.Playback.DASH = app.expect(`^DASH URL: (\S+)`, 5*time.Second)[1]
			checkProbe(t, s, 1280, 720, 1)
		})
	}
}
