package cluster

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// streamsBucket is the directory of the cluster's streams: one entry per
// stream that is not over, written by the node it is published to (its
// origin).
const streamsBucket = "glasscast_streams"

// StreamEntry is a stream as the directory knows it.
type StreamEntry struct {
	ID        string    `json:"id"`
	Name      string    `json:"name,omitempty"`
	Origin    string    `json:"origin"` // the node that holds its media
	Status    string    `json:"status"`
	Public    bool      `json:"public,omitempty"`
	Record    bool      `json:"record,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	Since     time.Time `json:"since"` // when it took its status
	// KeyHash is the SHA-256 of its publish key, in hex: a publish on any
	// node finds the stream by it (the key itself stays on the nodes that
	// were given it).
	KeyHash string `json:"keyHash"`
}

// KeyHash is what the directory keeps of a publish key.
func KeyHash(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

// Streams is the directory of the cluster's streams.
type Streams struct{ c *Cluster }

// Streams is the cluster's stream directory.
func (c *Cluster) Streams() *Streams { return &Streams{c} }

// Lookup finds a stream in this node's copy of the directory, which
// follows the bucket; a stream created a moment ago on another node may
// not be in it yet (Find asks the bucket then).
func (s *Streams) Lookup(id string) (StreamEntry, bool) {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	e, ok := s.c.streams[id]
	return e, ok
}

// ByKey finds the stream a publish key is for, in this node's copy of the
// directory.
func (s *Streams) ByKey(key string) (StreamEntry, bool) {
	h := KeyHash(key)
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	for _, e := range s.c.streams {
		if subtle.ConstantTimeCompare([]byte(e.KeyHash), []byte(h)) == 1 {
			return e, true
		}
	}
	return StreamEntry{}, false
}

// Claim changes a stream's entry with change, unless another node changed
// it first (change sees the entry as it is in the bucket, and may refuse).
func (s *Streams) Claim(ctx context.Context, id string, change func(e *StreamEntry) error) error {
	kv, err := s.kv(ctx)
	if err != nil {
		return err
	}
	got, err := kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return ErrNoStream
	}
	if err != nil {
		return fmt.Errorf("cluster: stream %s: %w", id, err)
	}
	var e StreamEntry
	if err := json.Unmarshal(got.Value(), &e); err != nil {
		return fmt.Errorf("cluster: stream %s: %w", id, err)
	}
	if err := change(&e); err != nil {
		return err
	}
	b, _ := json.Marshal(e)
	if _, err := kv.Update(ctx, id, b, got.Revision()); err != nil {
		return fmt.Errorf("cluster: stream %s changed meanwhile: %w", id, err)
	}
	return nil
}

// Entries lists this node's copy of the directory.
func (s *Streams) Entries() []StreamEntry {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	out := make([]StreamEntry, 0, len(s.c.streams))
	for _, e := range s.c.streams {
		out = append(out, e)
	}
	return out
}

// List reads every entry of the bucket (this node's copy may not have them
// all yet, just after it joined).
func (s *Streams) List(ctx context.Context) ([]StreamEntry, error) {
	kv, err := s.kv(ctx)
	if err != nil {
		return nil, err
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("cluster: streams: %w", err)
	}
	var out []StreamEntry
	for k := range keys.Keys() {
		if e, err := s.Get(ctx, k); err == nil {
			out = append(out, e)
		}
	}
	return out, nil
}

// Find looks a stream up in this node's copy of the directory, then, if
// it is not there, in the bucket.
//
// An id that no stream can have, or one the cluster said it did not have a
// moment ago, is not asked of it again: requests for made-up ids cost no
// key-value read.
func (s *Streams) Find(ctx context.Context, id string) (StreamEntry, error) {
	if e, ok := s.Lookup(id); ok {
		return e, nil
	}
	if !wellFormedID(id) || s.recentlyMissing(id) {
		return StreamEntry{}, ErrNoStream
	}
	e, err := s.Get(ctx, id)
	if errors.Is(err, ErrNoStream) {
		s.missing(id)
	}
	return e, err
}

// wellFormedID says id could be a stream's: 16 lowercase hex digits, as
// every stream id is made (live.Registry).
func wellFormedID(id string) bool {
	if len(id) != 16 {
		return false
	}
	for _, c := range []byte(id) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// How long, and for how many ids at most, a stream the cluster did not
// have is remembered as missing.
const (
	missingFor = 2 * time.Second
	maxMissing = 10_000
)

func (s *Streams) recentlyMissing(id string) bool {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	at, ok := s.c.missing[id]
	return ok && time.Since(at) < missingFor
}

func (s *Streams) missing(id string) {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	if len(s.c.missing) >= maxMissing {
		clear(s.c.missing)
	}
	s.c.missing[id] = time.Now()
}

// watchStreams keeps this node's copy of the directory.
func (c *Cluster) watchStreams() {
	c.follow(c.streamsKV, func(key string, value []byte, deleted bool) {
		var e StreamEntry
		switch {
		case deleted:
			delete(c.streams, key)
		case json.Unmarshal(value, &e) == nil && e.ID == key:
			c.streams[key] = e
		}
	})
}

func (s *Streams) kv(ctx context.Context) (jetstream.KeyValue, error) {
	if err := s.c.WaitReady(ctx); err != nil {
		return nil, err
	}
	return s.c.streamsKV, nil
}

// Put writes a stream's entry.
func (s *Streams) Put(ctx context.Context, e StreamEntry) error {
	kv, err := s.kv(ctx)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(e)
	if _, err := kv.Put(ctx, e.ID, b); err != nil {
		return fmt.Errorf("cluster: stream %s: %w", e.ID, err)
	}
	return nil
}

// ErrNoStream is Get's answer for a stream the directory does not list.
var ErrNoStream = errors.New("cluster: no such stream")

// Get reads a stream's entry.
func (s *Streams) Get(ctx context.Context, id string) (StreamEntry, error) {
	var e StreamEntry
	kv, err := s.kv(ctx)
	if err != nil {
		return e, err
	}
	got, err := kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return e, ErrNoStream
	}
	if err != nil {
		return e, fmt.Errorf("cluster: stream %s: %w", id, err)
	}
	if err := json.Unmarshal(got.Value(), &e); err != nil {
		return e, fmt.Errorf("cluster: stream %s: %w", id, err)
	}
	return e, nil
}

// Delete removes a stream's entry.
func (s *Streams) Delete(ctx context.Context, id string) error {
	kv, err := s.kv(ctx)
	if err != nil {
		return err
	}
	if err := kv.Delete(ctx, id); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("cluster: stream %s: %w", id, err)
	}
	return nil
}
