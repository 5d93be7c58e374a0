package store

import (
	"context"
	"database/sql"
	"fmt"
)

// A migration takes the database from the version before it to its own.
// The database's version is SQLite's user_version: how many migrations of
// the list below have run on it. A migration is never edited once
// released; a change to the schema is a new migration at the end, so a
// database made by any earlier build reaches this build's schema with its
// rows.
type migration struct {
	version int
	what    string
	sql     string
}

var migrations = []migration{
	{1, "apps, users, playback generations, streams, outputs, running apps", `
CREATE TABLE IF NOT EXISTS apps (
	package_name TEXT PRIMARY KEY,
	name         TEXT NOT NULL DEFAULT '',
	public_url   TEXT NOT NULL,
	key_hash     BLOB NOT NULL,
	permissions  TEXT NOT NULL DEFAULT '',
	created_at   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
	id         TEXT PRIMARY KEY,
	created_at INTEGER NOT NULL,
	last_seen  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS playback_generations (
	stream_id  TEXT PRIMARY KEY,
	generation INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS streams (
	id         TEXT PRIMARY KEY,
	stream_key TEXT NOT NULL,
	name       TEXT NOT NULL DEFAULT '',
	record     INTEGER NOT NULL DEFAULT 0,
	public     INTEGER NOT NULL DEFAULT 0,
	state      TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	ended_at   INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS stream_outputs (
	id         TEXT PRIMARY KEY,
	stream_id  TEXT NOT NULL REFERENCES streams (id) ON DELETE CASCADE,
	url        TEXT NOT NULL,
	name       TEXT NOT NULL DEFAULT '',
	profile    TEXT NOT NULL DEFAULT '',
	owner      TEXT NOT NULL,
	created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS running_apps (
	user_id      TEXT NOT NULL,
	package_name TEXT NOT NULL,
	started_at   INTEGER NOT NULL,
	PRIMARY KEY (user_id, package_name)
);`},
	// Version 1 is every table as builds before versioned schemas made
	// them (IF NOT EXISTS: their databases, at user_version 0, keep their
	// rows and are marked 1).
}

// SchemaVersion is the schema version this build makes and reads.
func SchemaVersion() int { return migrations[len(migrations)-1].version }

// migrate runs the migrations the database has not had, each in a
// transaction of its own that also sets the version (so a crash leaves it
// at a version, never between two). Another process opening the same
// database waits on the write lock and then finds the work done. A
// database from a newer build is refused: this build does not know its
// columns' meaning.
func migrate(ctx context.Context, db *sql.DB, list []migration) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	latest := list[len(list)-1].version
	for _, m := range list {
		if err := migrateOne(ctx, conn, m, latest); err != nil {
			return err
		}
	}
	return nil
}

// migrateOne runs m if the database is at the version before it.
func migrateOne(ctx context.Context, conn *sql.Conn, m migration, latest int) (err error) {
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("schema: %w", err)
	}
	defer func() {
		if err != nil {
			conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	var v int
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("schema version: %w", err)
	}
	if v > latest {
		return fmt.Errorf("the database's schema is version %d, newer than this build's %d: run the newer glasscast on it (or a copy of an older database)", v, latest)
	}
	if v >= m.version {
		_, err := conn.ExecContext(ctx, "COMMIT")
		return err
	}
	if v != m.version-1 {
		return fmt.Errorf("the database's schema is version %d; migration %d needs %d", v, m.version, m.version-1)
	}
	if _, err := conn.ExecContext(ctx, m.sql); err != nil {
		return fmt.Errorf("schema migration %d (%s): %w", m.version, m.what, err)
	}
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", m.version)); err != nil {
		return fmt.Errorf("schema migration %d: %w", m.version, err)
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("schema migration %d: %w", m.version, err)
	}
	return nil
}
