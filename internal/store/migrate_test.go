package store

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// oldDatabase writes, in dir, the database a build before versioned
// schemas made, with a row in every table.
func oldDatabase(t *testing.T, dir string) {
	t.Helper()
	script, err := os.ReadFile("testdata/before-versions.sql")
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "glasscast.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(string(script)); err != nil {
		t.Fatal(err)
	}
}

func userVersion(t *testing.T, dir string) int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "glasscast.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// A database made before versioned schemas opens with every row, and is
// marked with this build's version.
func TestOpenDatabaseFromBeforeVersions(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	oldDatabase(t, dir)
	if v := userVersion(t, dir); v != 0 {
		t.Fatalf("the old database is at version %d", v)
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.App(ctx, "com.example.kept")
	if err != nil || a.Name != "Kept" || !a.Has(PermissionCamera) || len(a.KeyHash) != 32 {
		t.Fatalf("app %+v %v", a, err)
	}
	if n, err := s.UserCount(ctx); n != 1 || err != nil {
		t.Fatalf("users %d %v", n, err)
	}
	if g, err := s.Generations(ctx); err != nil || g["s1"] != 3 {
		t.Fatalf("generations %v %v", g, err)
	}
	streams, err := s.Streams(ctx)
	if err != nil || len(streams) != 1 || streams[0].Key != "key-of-s1" || streams[0].State != StreamLive || !streams[0].Record ||
		!streams[0].CreatedAt.Equal(time.UnixMilli(1780000000000)) {
		t.Fatalf("streams %+v %v", streams, err)
	}
	if outs, err := s.Outputs(ctx, "s1"); err != nil || len(outs) != 1 || outs[0].Name != "mirror" {
		t.Fatalf("outputs %+v %v", outs, err)
	}
	if r, err := s.Running(ctx, "wearer@example.com"); err != nil || len(r) != 1 {
		t.Fatalf("running %v %v", r, err)
	}
	s.Close()
	if v := userVersion(t, dir); v != SchemaVersion() {
		t.Fatalf("version %d after opening, want %d", v, SchemaVersion())
	}
	// Opened again: nothing runs twice.
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

// A migration added later reaches a database made before it: a new
// column is there, with its default, on the rows it had.
func TestMigrationReachesAnExistingDatabase(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	oldDatabase(t, dir)
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	next := SchemaVersion() + 1
	later := append(migrations[:len(migrations):len(migrations)],
		migration{next, "streams.region", `ALTER TABLE streams ADD COLUMN region TEXT NOT NULL DEFAULT 'here'`})
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "glasscast.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(ctx, db, later); err != nil {
		t.Fatal(err)
	}
	var key, region string
	if err := db.QueryRow(`SELECT stream_key, region FROM streams WHERE id = 's1'`).Scan(&key, &region); err != nil || key != "key-of-s1" || region != "here" {
		t.Fatalf("row after the migration: %q %q %v", key, region, err)
	}
	// Run again (the next start): nothing to do, no error.
	if err := migrate(ctx, db, later); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if v := userVersion(t, dir); v != next {
		t.Fatalf("version %d, want %d", v, next)
	}

	// This build opening the newer database refuses it, saying why.
	_, err = Open(dir)
	if err == nil || !strings.Contains(err.Error(), "newer than this build") {
		t.Fatalf("opening a newer database: %v", err)
	}
}

// A migration that fails leaves the database at the version before it.
func TestFailedMigrationChangesNothing(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	bad := append(migrations[:len(migrations):len(migrations)],
		migration{SchemaVersion() + 1, "two statements, the second wrong", `CREATE TABLE extra (x INTEGER); ALTER TABLE nowhere ADD COLUMN y INTEGER`})
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "glasscast.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := migrate(ctx, db, bad); err == nil || !strings.Contains(err.Error(), "two statements") {
		t.Fatalf("a failing migration: %v", err)
	}
	var n int
	db.QueryRow(`SELECT COUNT(*) FROM sqlite_master WHERE name = 'extra'`).Scan(&n)
	if n != 0 {
		t.Fatal("the failed migration's first statement stayed")
	}
	if v := userVersion(t, dir); v != SchemaVersion() {
		t.Fatalf("version %d after a failed migration", v)
	}
}
