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
	_, err := s.cas(ctx, id, 1, func(e *StreamEntry, exists bool) (bool, error) {
		if !exists {
			return false, ErrNoStream
		}
		return true, change(e)
	})
	return err
}

// Change writes a stream's entry, always as a compare-and-set on the
// revision change saw: change is given the entry as the bucket has it
// (exists false: there is none) and says whether to write it; a write by
// another node in between makes it look again, a few times. It reports
// whether it wrote.
func (s *Streams) Change(ctx context.Context, id string, change func(e *StreamEntry, exists bool) bool) (bool, error) {
	return s.cas(ctx, id, 4, func(e *StreamEntry, exists bool) (bool, error) { return change(e, exists), nil })
}

// cas is Claim's and Change's read, change and conditional write, tried
// up to tries times.
func (s *Streams) cas(ctx context.Context, id string, tries int, change func(e *StreamEntry, exists bool) (bool, error)) (bool, error) {
	kv, err := s.kv(ctx)
	if err != nil {
		return false, err
	}
	for try := 1; ; try++ {
		var e StreamEntry
		var rev uint64
		got, err := kv.Get(ctx, id)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case errors.Is(err, jetstream.ErrInvalidKey):
			return false, ErrNoStream
		case err != nil:
			return false, fmt.Errorf("cluster: stream %s: %w", id, err)
		default:
			if err := json.Unmarshal(got.Value(), &e); err != nil {
				return false, fmt.Errorf("cluster: stream %s: %w", id, err)
			}
			rev = got.Revision()
		}
		exists := rev != 0
		write, err := change(&e, exists)
		if err != nil || !write {
			return false, err
		}
		e.ID = id
		b, _ := json.Marshal(e)
		if exists {
			_, err = kv.Update(ctx, id, b, rev)
		} else {
			_, err = kv.Create(ctx, id, b)
		}
		if err == nil {
			return true, nil
		}
		if try >= tries {
			return false, fmt.Errorf("cluster: stream %s changed meanwhile: %w", id, err)
		}
	}
}

// Remove deletes a stream's entry if still says so of it as the bucket has
// it, and only if nobody wrote it since (a compare-and-set on its
// revision).
func (s *Streams) Remove(ctx context.Context, id string, still func(e StreamEntry) bool) error {
	kv, err := s.kv(ctx)
	if err != nil {
		return err
	}
	got, err := kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cluster: stream %s: %w", id, err)
	}
	var e StreamEntry
	if err := json.Unmarshal(got.Value(), &e); err != nil || !still(e) {
		return err
	}
	if err := kv.Delete(ctx, id, jetstream.LastRevision(got.Revision())); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("cluster: stream %s: %w", id, err)
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
