package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestApps(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	// It holds keys: its owner's alone.
	if st, err := os.Stat(filepath.Join(dir, "glasscast.db")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the database's mode: %v %v", st.Mode(), err)
	}
	key := NewAPIKey()
	if err := s.PutApp(ctx, App{PackageName: "com.example.a", Name: "A", PublicURL: "http://127.0.0.1:3000", KeyHash: HashKey(key), Permissions: []string{PermissionCamera}}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// Reopened, the app is still there.
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a, err := s.App(ctx, "com.example.a")
	if err != nil {
		t.Fatal(err)
	}
	if !a.CheckKey(key) || a.CheckKey(key+"x") || a.CheckKey("") || !a.Has(PermissionCamera) || a.PublicURL != "http://127.0.0.1:3000" {
		t.Fatalf("app %+v", a)
	}
	if string(a.KeyHash) == key {
		t.Fatal("the key is stored in the clear")
	}
	if _, err := s.App(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown app: %v", err)
	}
	apps, err := s.Apps(ctx)
	if err != nil || len(apps) != 1 {
		t.Fatalf("apps %v %v", apps, err)
	}
	if err := s.DeleteApp(ctx, "com.example.a"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteApp(ctx, "com.example.a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if err := s.TouchUser(ctx, "u@example.com"); err != nil {
		t.Fatal(err)
	}
	if err := s.TouchUser(ctx, "u@example.com"); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.UserCount(ctx); n != 1 {
		t.Fatalf("%d users", n)
	}
}

func TestStreamsKept(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	created := time.UnixMilli(time.Now().UnixMilli()).UTC()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.PutStream(ctx, Stream{ID: "a1", Key: "k1", Name: "one", Record: true, State: StreamIdle, CreatedAt: created}))
	must(s.PutStream(ctx, Stream{ID: "b2", Key: "k2", Public: true, State: StreamIdle, CreatedAt: created.Add(time.Second)}))
	must(s.PutStream(ctx, Stream{ID: "a1", Key: "ignored", State: StreamLive, CreatedAt: created}))
	must(s.PutOutput(ctx, Output{ID: "o1", StreamID: "a1", URL: "rtmp://x/app/key", Owner: "admin"}))
	must(s.PutOutput(ctx, Output{ID: "o2", StreamID: "b2", URL: "rtmp://y/app/key", Owner: "admin", Profile: "youtube"}))
	must(s.SetRunning(ctx, "u1", "com.example.a", true))
	must(s.SetRunning(ctx, "u1", "com.example.b", true))
	must(s.SetRunning(ctx, "u1", "com.example.b", false))
	s.Close()
	if st, err := os.Stat(filepath.Join(dir, "glasscast.db")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("database file: %v %v", st.Mode(), err)
	}

	s, err = Open(dir)
	must(err)
	defer s.Close()
	got, err := s.Streams(ctx)
	must(err)
	want := []Stream{
		{ID: "a1", Key: "k1", Name: "one", Record: true, State: StreamLive, CreatedAt: created},
		{ID: "b2", Key: "k2", Public: true, State: StreamIdle, CreatedAt: created.Add(time.Second)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("streams\n got %+v\nwant %+v", got, want)
	}
	outs, err := s.Outputs(ctx, "a1")
	must(err)
	if len(outs) != 1 || outs[0].ID != "o1" || outs[0].URL != "rtmp://x/app/key" {
		t.Fatalf("outputs %+v", outs)
	}
	running, err := s.Running(ctx, "u1")
	must(err)
	if !reflect.DeepEqual(running, []string{"com.example.a"}) {
		t.Fatalf("running %v", running)
	}

	// An ended stream is forgotten after its retention, with its outputs.
	ended := time.Now().Add(-2 * time.Hour)
	must(s.PutStream(ctx, Stream{ID: "a1", State: StreamEnded, EndedAt: ended}))
	must(s.ForgetEndedStreams(ctx, time.Now().Add(-time.Hour)))
	got, err = s.Streams(ctx)
	must(err)
	if len(got) != 1 || got[0].ID != "b2" {
		t.Fatalf("after forgetting: %+v", got)
	}
	if outs, _ := s.Outputs(ctx, "a1"); len(outs) != 0 {
		t.Fatalf("outputs of a forgotten stream: %+v", outs)
	}
}
