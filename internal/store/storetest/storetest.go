// Package storetest checks an implementation of store.Apps the same way
// whichever keeps the apps (the database, the cluster's bucket).
package storetest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/store"
)

// Apps runs the checks on an empty apps store.
func Apps(t *testing.T, apps store.Apps) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := store.NewAPIKey()
	a := store.App{PackageName: "com.example.a", Name: "A", PublicURL: "http://127.0.0.1:3000",
		KeyHash: store.HashKey(key), Permissions: []string{store.PermissionCamera}}
	if err := apps.AddApp(ctx, a); err != nil {
		t.Fatalf("add: %v", err)
	}
	if err := apps.AddApp(ctx, store.App{PackageName: "com.example.a", PublicURL: "http://x", KeyHash: store.HashKey("other")}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("adding a taken package: %v, want ErrExists", err)
	}
	got, err := apps.App(ctx, "com.example.a")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if !got.CheckKey(key) || got.CheckKey(key+"x") || !got.Has(store.PermissionCamera) || got.PublicURL != a.PublicURL ||
		got.Name != "A" || got.CreatedAt.IsZero() {
		t.Fatalf("app read back: %+v", got)
	}
	if _, err := apps.App(ctx, "com.example.nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown app: %v, want ErrNotFound", err)
	}
	// Put replaces.
	b := store.App{PackageName: "com.example.b", PublicURL: "http://127.0.0.1:3001", KeyHash: store.HashKey("b"), Permissions: []string{}}
	if err := apps.PutApp(ctx, b); err != nil {
		t.Fatal(err)
	}
	b.PublicURL = "http://127.0.0.1:3002"
	if err := apps.PutApp(ctx, b); err != nil {
		t.Fatal(err)
	}
	if got, err := apps.App(ctx, "com.example.b"); err != nil || got.PublicURL != b.PublicURL || got.Has(store.PermissionCamera) {
		t.Fatalf("replaced app: %+v %v", got, err)
	}
	list, err := apps.Apps(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range list {
		names = append(names, a.PackageName)
	}
	if !slices.Equal(names, []string{"com.example.a", "com.example.b"}) {
		t.Fatalf("list: %v", names)
	}
	if err := apps.DeleteApp(ctx, "com.example.a"); err != nil {
		t.Fatal(err)
	}
	if err := apps.DeleteApp(ctx, "com.example.a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second delete: %v, want ErrNotFound", err)
	}
	if _, err := apps.App(ctx, "com.example.a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted app: %v", err)
	}
	// A deleted package can be added again.
	if err := apps.AddApp(ctx, a); err != nil {
		t.Fatalf("add after delete: %v", err)
	}
}
