package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/glasscast/glasscast/internal/store"
)

// appsBucket holds the registered apps, one entry per package name, kept
// on disk (replicated on three servers once there are three).
const appsBucket = "glasscast_apps"

// Apps keeps the apps in the cluster's shared bucket: one added on any
// node is known to all at once. It implements store.Apps.
type Apps struct{ c *Cluster }

// Apps is the cluster's apps.
func (c *Cluster) Apps() *Apps { return &Apps{c} }

var _ store.Apps = (*Apps)(nil)

// appEntry is an app as the bucket stores it.
type appEntry struct {
	PackageName string    `json:"packageName"`
	Name        string    `json:"name,omitempty"`
	PublicURL   string    `json:"publicUrl"`
	KeyHash     []byte    `json:"keyHash"`
	Permissions []string  `json:"permissions"`
	CreatedAt   time.Time `json:"createdAt"`
	V           int       `json:"v,omitempty"` // entryFormat of the build that wrote it
}

func encodeApp(a store.App) []byte {
	if a.CreatedAt.IsZero() {
		a.CreatedAt = time.Now()
	}
	b, _ := json.Marshal(appEntry{PackageName: a.PackageName, Name: a.Name, PublicURL: a.PublicURL, KeyHash: a.KeyHash,
		Permissions: a.Permissions, CreatedAt: a.CreatedAt, V: writeFormat})
	return b
}

func decodeApp(b []byte) (store.App, error) {
	var e appEntry
	if err := json.Unmarshal(b, &e); err != nil {
		return store.App{}, fmt.Errorf("cluster: an app entry: %w", err)
	}
	return store.App{PackageName: e.PackageName, Name: e.Name, PublicURL: e.PublicURL, KeyHash: e.KeyHash,
		Permissions: e.Permissions, CreatedAt: e.CreatedAt}, nil
}

func (a *Apps) kv(ctx context.Context) (jetstream.KeyValue, error) {
	if err := a.c.WaitReady(ctx); err != nil {
		return nil, err
	}
	return a.c.appsKV, nil
}

// App returns an app; store.ErrNotFound when there is none (or the name
// could not be a package's).
func (a *Apps) App(ctx context.Context, pkg string) (store.App, error) {
	kv, err := a.kv(ctx)
	if err != nil {
		return store.App{}, err
	}
	b, ok, err := a.c.get(ctx, kv, pkg, false)
	if errors.Is(err, jetstream.ErrInvalidKey) || err == nil && !ok {
		return store.App{}, store.ErrNotFound
	}
	if err != nil {
		return store.App{}, fmt.Errorf("cluster: app %s: %w", pkg, err)
	}
	return decodeApp(b)
}

// Apps lists the apps by package name.
func (a *Apps) Apps(ctx context.Context) ([]store.App, error) {
	kv, err := a.kv(ctx)
	if err != nil {
		return nil, err
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("cluster: apps: %w", err)
	}
	var out []store.App
	for k := range keys.Keys() {
		if app, err := a.App(ctx, k); err == nil {
			out = append(out, app)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PackageName < out[j].PackageName })
	return out, nil
}

// AddApp creates an app; store.ErrExists when another node or request got
// the package name first.
func (a *Apps) AddApp(ctx context.Context, app store.App) error {
	kv, err := a.kv(ctx)
	if err != nil {
		return err
	}
	_, err = kv.Create(ctx, app.PackageName, encodeApp(app))
	if errors.Is(err, jetstream.ErrKeyExists) {
		return store.ErrExists
	}
	if err != nil {
		return fmt.Errorf("cluster: add app %s: %w", app.PackageName, err)
	}
	return nil
}

// PutApp creates or replaces an app.
func (a *Apps) PutApp(ctx context.Context, app store.App) error {
	kv, err := a.kv(ctx)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, app.PackageName, encodeApp(app)); err != nil {
		return fmt.Errorf("cluster: put app %s: %w", app.PackageName, err)
	}
	return nil
}

// DeleteApp removes an app; store.ErrNotFound when there is none.
func (a *Apps) DeleteApp(ctx context.Context, pkg string) error {
	kv, err := a.kv(ctx)
	if err != nil {
		return err
	}
	e, err := kv.Get(ctx, pkg)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("cluster: app %s: %w", pkg, err)
	}
	// Deleted only as read: a racing delete makes this one not found.
	err = kv.Delete(ctx, pkg, jetstream.LastRevision(e.Revision()))
	if isWrongSequence(err) {
		return store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("cluster: delete app %s: %w", pkg, err)
	}
	return nil
}

// isWrongSequence is JetStream's answer to a write expecting another
// revision.
func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// MoveApps puts the apps a node kept on its own (before it joined) into
// the cluster, unless the cluster has one by the same name, and removes
// them from local: the cluster's copy is the only one from then on.
func (a *Apps) MoveApps(ctx context.Context, local store.Apps) (int, error) {
	list, err := local.Apps(ctx)
	if err != nil {
		return 0, err
	}
	moved := 0
	for _, app := range list {
		switch err := a.AddApp(ctx, app); {
		case err == nil:
			moved++
		case errors.Is(err, store.ErrExists):
		default:
			return moved, err
		}
		if err := local.DeleteApp(ctx, app.PackageName); err != nil && !errors.Is(err, store.ErrNotFound) {
			return moved, err
		}
	}
	return moved, nil
}
