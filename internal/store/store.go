// Package store keeps glasscast's persistent state in an embedded SQLite
// database under the data directory: the apps (package name, API key hash,
// webhook base URL, permissions) and the users who have connected glasses.
// API keys are stored hashed and compared in constant time.
package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" driver, pure Go
)

// Errors callers branch on.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("exists")
)

// Apps is where the registered apps are kept: this database on a single
// node, the cluster's shared bucket when the node is part of one.
type Apps interface {
	App(ctx context.Context, pkg string) (App, error) // ErrNotFound
	Apps(ctx context.Context) ([]App, error)          // by package name
	AddApp(ctx context.Context, a App) error          // ErrExists when the package is taken
	PutApp(ctx context.Context, a App) error          // creates or replaces
	DeleteApp(ctx context.Context, pkg string) error  // ErrNotFound
}

// PutApps creates or replaces each of apps in to (the apps of a
// configuration file), giving up after 10 s.
func PutApps(ctx context.Context, to Apps, apps []App) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, app := range apps {
		if err := to.PutApp(ctx, app); err != nil {
			return err
		}
	}
	return nil
}

// PermissionCamera lets an app stream from the glasses' camera.
const PermissionCamera = "CAMERA"

// App is an app glasscast knows.
type App struct {
	PackageName string
	Name        string
	PublicURL   string // the app server's base URL; webhooks go to PublicURL + "/webhook"
	KeyHash     []byte
	Permissions []string
	CreatedAt   time.Time
}

// Has reports whether the app holds a permission.
func (a *App) Has(perm string) bool {
	for _, p := range a.Permissions {
		if p == perm {
			return true
		}
	}
	return false
}

// CheckKey compares an API key with the stored hash in constant time.
func (a *App) CheckKey(key string) bool {
	h := HashKey(key)
	return len(a.KeyHash) == len(h) && subtle.ConstantTimeCompare(a.KeyHash, h) == 1
}

// HashKey hashes an API key for storage. Keys are 160 random bits, so a
// plain SHA-256 is enough: nothing to brute-force.
func HashKey(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:]
}

// NewAPIKey makes a random API key.
func NewAPIKey() string {
	b := make([]byte, 20)
	rand.Read(b)
	return "gck_" + hex.EncodeToString(b)
}

// Store is the database.
type Store struct {
	db *sql.DB
}

// Open opens (creating it if needed) the database in dir.
func Open(dir string) (*Store, error) {
	path := filepath.Join(dir, "glasscast.db")
	// The database holds stream keys and restream destinations' keys: it
	// is made 0600 before SQLite writes a byte into it (its journals take
	// the same mode).
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	f.Close()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)")
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	db.SetMaxOpenConns(4)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := migrate(ctx, db, migrations); err != nil {
		db.Close()
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	// Made before this version, or by another tool.
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		os.Chmod(f, 0o600)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// PutApp creates or replaces an app.
func (s *Store) PutApp(ctx context.Context, a App) error {
	if a.CreatedAt.IsZero() {
		a.CreatedAt = time.Now()
	}
	_, err := s.db.ExecContext(ctx, `
INSERT INTO apps (package_name, name, public_url, key_hash, permissions, created_at) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (package_name) DO UPDATE SET name = excluded.name, public_url = excluded.public_url,
	key_hash = excluded.key_hash, permissions = excluded.permissions`,
		a.PackageName, a.Name, a.PublicURL, a.KeyHash, strings.Join(a.Permissions, ","), a.CreatedAt.UnixMilli())
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// AddApp creates an app; ErrExists if its package name is taken.
func (s *Store) AddApp(ctx context.Context, a App) error {
	if a.CreatedAt.IsZero() {
		a.CreatedAt = time.Now()
	}
	res, err := s.db.ExecContext(ctx, `
INSERT INTO apps (package_name, name, public_url, key_hash, permissions, created_at) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (package_name) DO NOTHING`,
		a.PackageName, a.Name, a.PublicURL, a.KeyHash, strings.Join(a.Permissions, ","), a.CreatedAt.UnixMilli())
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrExists
	}
	return nil
}

func scanApp(row interface{ Scan(...any) error }) (App, error) {
	var a App
	var perms string
	var created int64
	if err := row.Scan(&a.PackageName, &a.Name, &a.PublicURL, &a.KeyHash, &perms, &created); err != nil {
		return a, err
	}
	if perms != "" {
		a.Permissions = strings.Split(perms, ",")
	}
	a.CreatedAt = time.UnixMilli(created)
	return a, nil
}

// App returns an app by package name.
func (s *Store) App(ctx context.Context, pkg string) (App, error) {
	a, err := scanApp(s.db.QueryRowContext(ctx,
		`SELECT package_name, name, public_url, key_hash, permissions, created_at FROM apps WHERE package_name = ?`, pkg))
	if errors.Is(err, sql.ErrNoRows) {
		return a, ErrNotFound
	}
	if err != nil {
		return a, fmt.Errorf("store: %w", err)
	}
	return a, nil
}

// Apps lists the apps by package name.
func (s *Store) Apps(ctx context.Context) ([]App, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT package_name, name, public_url, key_hash, permissions, created_at FROM apps ORDER BY package_name`)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	defer rows.Close()
	var out []App
	for rows.Next() {
		a, err := scanApp(rows)
		if err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// DeleteApp removes an app.
func (s *Store) DeleteApp(ctx context.Context, pkg string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM apps WHERE package_name = ?`, pkg)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM running_apps WHERE package_name = ?`, pkg); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// TouchUser records that a user connected.
func (s *Store) TouchUser(ctx context.Context, id string) error {
	now := time.Now().UnixMilli()
	_, err := s.db.ExecContext(ctx, `
INSERT INTO users (id, created_at, last_seen) VALUES (?, ?, ?)
ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen`, id, now, now)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// UserCount is the number of users who ever connected.
func (s *Store) UserCount(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM users`).Scan(&n)
	return n, err
}

// Generations returns every stream's playback-token generation (streams
// whose tokens were never revoked are at 0 and not listed).
func (s *Store) Generations(ctx context.Context) (map[string]uint32, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT stream_id, generation FROM playback_generations`)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	defer rows.Close()
	out := map[string]uint32{}
	for rows.Next() {
		var id string
		var g int64
		if err := rows.Scan(&id, &g); err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		out[id] = uint32(g)
	}
	return out, rows.Err()
}

// SetGeneration records a stream's playback-token generation.
func (s *Store) SetGeneration(ctx context.Context, streamID string, gen uint32) error {
	_, err := s.db.ExecContext(ctx, `
INSERT INTO playback_generations (stream_id, generation) VALUES (?, ?)
ON CONFLICT (stream_id) DO UPDATE SET generation = excluded.generation`, streamID, int64(gen))
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}
