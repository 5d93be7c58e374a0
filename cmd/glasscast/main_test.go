package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/glasscast/glasscast/internal/config"
	"github.com/glasscast/glasscast/internal/server"
)

func TestServeCheck(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"serve", "--check", "--data", t.TempDir()}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "configuration OK") {
		t.Fatalf("serve --check: %d %q %q", code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if code := run([]string{"--check", "--http", "bad", "--log-format", "xml"}, &out, &errOut); code != 2 ||
		!strings.Contains(errOut.String(), "http:") || !strings.Contains(errOut.String(), "log-format") {
		t.Fatalf("a bad configuration: %d %q", code, errOut.String())
	}
	if code := run([]string{"frobnicate"}, &out, &errOut); code != 2 {
		t.Fatalf("unknown command: %d", code)
	}
}

func TestAppsAndToken(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	if code := run([]string{"apps", "add", "--data", dir, "--package", "com.example.cli", "--public-url", "http://127.0.0.1:3000"}, &out, &errOut); code != 0 {
		t.Fatalf("apps add: %d %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "api key (shown once): gck_") {
		t.Fatalf("apps add printed %q", out.String())
	}
	out.Reset()
	if code := run([]string{"apps", "list", "--data", dir}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "com.example.cli\thttp://127.0.0.1:3000\tCAMERA") {
		t.Fatalf("apps list: %d %q", code, out.String())
	}
	if code := run([]string{"apps", "add", "--data", dir, "--package", "not a package", "--public-url", "x"}, &out, &errOut); code != 2 {
		t.Fatalf("apps add with bad input: %d", code)
	}
	out.Reset()
	if code := run([]string{"token", "--user", "u@example.com", "--data", dir}, &out, &errOut); code != 0 || strings.Count(out.String(), ".") != 2 {
		t.Fatalf("token: %d %q %s", code, out.String(), errOut.String())
	}
	if code := run([]string{"apps", "remove", "--data", dir, "--package", "com.example.cli"}, &out, &errOut); code != 0 {
		t.Fatalf("apps remove: %d", code)
	}
	if code := run([]string{"apps", "remove", "--data", dir, "--package", "com.example.cli"}, &out, &errOut); code != 1 {
		t.Fatalf("second remove: %d", code)
	}
}

func TestAppsHelp(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"apps", "-h"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "add     register an app") {
		t.Fatalf("apps -h: %d %q %q", code, out.String(), errOut.String())
	}
	out.Reset()
	if code := run([]string{"apps", "frob"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), `unknown subcommand "frob"`) || !strings.Contains(errOut.String(), "Usage:") {
		t.Fatalf("apps frob: %d %q", code, errOut.String())
	}
}

// glasscast cluster status against a running single node, and with a
// wrong token.
func TestClusterStatus(t *testing.T) {
	cfg := config.Default()
	cfg.HTTP, cfg.RTMP, cfg.WebRTCUDP, cfg.WebRTCTCP = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Data, cfg.AdminToken, cfg.Node = t.TempDir(), "0123456789abcdef0123", "solo"
	srv, err := server.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() { cancel(); <-done }()
	var out, errOut bytes.Buffer
	if code := run([]string{"cluster", "status", "--server", srv.Public(), "--admin-token", cfg.AdminToken}, &out, &errOut); code != 0 ||
		!strings.Contains(out.String(), "solo is a single node") || !strings.Contains(out.String(), "NODE") ||
		!strings.Contains(out.String(), srv.Public()) {
		t.Fatalf("cluster status: %d %q %q", code, out.String(), errOut.String())
	}
	errOut.Reset()
	if code := run([]string{"cluster", "status", "--server", srv.Public(), "--admin-token", "wrong"}, &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), "401") {
		t.Fatalf("a wrong token: %d %q", code, errOut.String())
	}

	// The apps of a running node, through its API.
	remote := []string{"--server", srv.Public(), "--admin-token", cfg.AdminToken}
	out.Reset()
	if code := run(append([]string{"apps", "add", "--package", "com.example.remote", "--public-url", "http://127.0.0.1:3000"}, remote...), &out, &errOut); code != 0 ||
		!strings.Contains(out.String(), "api key (shown once): gck_") {
		t.Fatalf("apps add --server: %d %q %q", code, out.String(), errOut.String())
	}
	key := strings.TrimSpace(out.String()[strings.Index(out.String(), "gck_"):])
	if app, err := srv.Apps().App(ctx, "com.example.remote"); err != nil || !app.CheckKey(key) {
		t.Fatalf("the node does not have the app with the key printed: %+v %v", app, err)
	}
	errOut.Reset()
	if code := run(append([]string{"apps", "add", "--package", "com.example.remote", "--public-url", "http://127.0.0.1:3001"}, remote...), &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), "com.example.remote exists") {
		t.Fatalf("adding it twice: %d %q", code, errOut.String())
	}
	out.Reset()
	if code := run(append([]string{"apps", "list"}, remote...), &out, &errOut); code != 0 || !strings.Contains(out.String(), "com.example.remote\thttp://127.0.0.1:3000\tCAMERA") {
		t.Fatalf("apps list --server: %d %q", code, out.String())
	}
	if code := run(append([]string{"apps", "remove", "--package", "com.example.remote"}, remote...), &out, &errOut); code != 0 {
		t.Fatalf("apps remove --server: %d %q", code, errOut.String())
	}
	errOut.Reset()
	if code := run(append([]string{"apps", "remove", "--package", "com.example.remote"}, remote...), &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "404") {
		t.Fatalf("removing it twice: %d %q", code, errOut.String())
	}
	errOut.Reset()
	if code := run([]string{"apps", "list", "--server", srv.Public(), "--admin-token", "wrong"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "401") {
		t.Fatalf("apps list with a wrong token: %d %q", code, errOut.String())
	}
}
