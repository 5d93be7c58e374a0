package store

import (
	"context"
	"errors"
	"testing"
)

func TestApps(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
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
