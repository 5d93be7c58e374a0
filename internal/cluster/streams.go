package cluster

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
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
	// Durable: a Streams API stream, kept across restarts by its origin
	// (and by a node that takes it over).
	Durable bool `json:"durable,omitempty"`
	// Outputs are a durable stream's outputs, sealed (their URLs hold
	// platforms' keys): a node that takes the stream over starts them
	// again.
	Outputs string `json:"outputs,omitempty"`
	// V is the format version of the build that last wrote it
	// (entryFormat).
	V int `json:"v,omitempty"`
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
	return s.c.entryLocked(id)
}

// ByKey finds the stream a publish key is for, in this node's copy of the
// directory.
func (s *Streams) ByKey(key string) (StreamEntry, bool) {
	h := KeyHash(key)
	for _, e := range s.Entries() {
		if subtle.ConstantTimeCompare([]byte(e.KeyHash), []byte(h)) == 1 {
			return e, true
		}
	}
	return StreamEntry{}, false
}

// Claim changes a stream's entry with change (which sees the entry as it
// is in the bucket, and may refuse); a write by another node in between
// makes it look again.
func (s *Streams) Claim(ctx context.Context, id string, change func(e *StreamEntry) error) error {
	_, err := s.cas(ctx, id, 4, func(e *StreamEntry, exists bool) (bool, error) {
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
// up to tries times. A bucket that does not answer within casAttempt (its
// leader died and the others are electing one) does not hold the write
// up: it is told to every node as an interim entry, made on this node's
// copy of the entry, and made in the bucket once it answers again.
func (s *Streams) cas(ctx context.Context, id string, tries int, change func(e *StreamEntry, exists bool) (bool, error)) (bool, error) {
	c := s.c
	// Writes wait behind those the bucket did not take yet: in order, and
	// without a second wait on a bucket known not to answer.
	var err error = errAttempt
	if !c.queued() {
		var wrote bool
		wrote, err = s.casOnce(ctx, id, tries, change)
		if !unavailable(err) || ctx.Err() != nil {
			return wrote, err
		}
	}
	c.mu.Lock()
	e, exists := c.entryLocked(id)
	base := c.revs[id]
	c.mu.Unlock()
	write, cerr := change(&e, exists)
	if cerr != nil || !write {
		return false, cerr
	}
	e.ID = id
	c.sayInterim(e, base)
	c.writeLater(laterWrite{id: id, change: change})
	c.log.Info("cluster: the directory's bucket does not answer; the write is told to the nodes and made once it does", "stream", id, "err", err)
	return true, nil
}

// errAttempt marks a try that ran out of casAttempt.
var errAttempt = errors.New("cluster: the directory did not answer in time")

// casOnce is cas without the interim: each try bounded by casAttempt.
func (s *Streams) casOnce(ctx context.Context, id string, tries int, change func(e *StreamEntry, exists bool) (bool, error)) (bool, error) {
	kv, err := s.kv(ctx)
	if err != nil {
		return false, err
	}
	for try := 1; ; try++ {
		wrote, err := s.try(ctx, kv, id, change)
		if err == nil || !conflict(err) {
			return wrote, err
		}
		if try >= tries {
			return false, fmt.Errorf("cluster: stream %s changed meanwhile: %w", id, err)
		}
	}
}

// conflict says a write lost a compare-and-set.
func conflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}

// try is one read, change and conditional write, within casAttempt.
func (s *Streams) try(ctx context.Context, kv jetstream.KeyValue, id string, change func(e *StreamEntry, exists bool) (bool, error)) (bool, error) {
	actx, cancel := context.WithTimeout(ctx, casAttempt)
	defer cancel()
	timedOut := func(err error) error {
		if actx.Err() != nil && ctx.Err() == nil {
			return fmt.Errorf("%w: %w", errAttempt, err)
		}
		return err
	}
	var e StreamEntry
	var rev uint64
	var old []byte
	got, err := kv.Get(actx, id)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case errors.Is(err, jetstream.ErrInvalidKey):
		return false, ErrNoStream
	case err != nil:
		return false, fmt.Errorf("cluster: stream %s: %w", id, timedOut(err))
	default:
		if err := json.Unmarshal(got.Value(), &e); err != nil {
			return false, fmt.Errorf("cluster: stream %s: %w", id, err)
		}
		rev, old = got.Revision(), got.Value()
	}
	exists := rev != 0
	write, err := change(&e, exists)
	if err != nil || !write {
		return false, err
	}
	e.ID, e.V = id, writeFormat
	b, _ := json.Marshal(e)
	b = carryUnknown(old, withNextField(b, s.c.cfg.Node), streamFields())
	var now uint64
	if exists {
		now, err = kv.Update(actx, id, b, rev)
	} else {
		now, err = kv.Create(actx, id, b)
	}
	if err != nil {
		return false, timedOut(err)
	}
	s.c.sayWritten(e, now, false)
	return true, nil
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
	// The delete's own revision is not returned: the one after the entry's
	// is what it took, unless another key was written in between (then
	// the watch brings the delete, as before).
	s.c.sayWritten(StreamEntry{ID: id}, got.Revision()+1, true)
	return nil
}

// Entries lists this node's copy of the directory.
func (s *Streams) Entries() []StreamEntry {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	out := make([]StreamEntry, 0, len(s.c.streams))
	for id := range s.c.streams {
		if e, ok := s.c.entryLocked(id); ok {
			out = append(out, e)
		}
	}
	for id := range s.c.interims {
		if _, listed := s.c.streams[id]; !listed {
			if e, ok := s.c.entryLocked(id); ok {
				out = append(out, e)
			}
		}
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
	var once sync.Once
	loaded := func() { once.Do(func() { close(c.loaded) }) }
	c.followRevisions(c.streamsKV, func(key string, value []byte, deleted bool, rev uint64) {
		if len(c.revs) > 100_000 {
			clear(c.revs) // those of entries long deleted
		}
		if rev < c.revs[key] {
			return // told of a later write already
		}
		c.revs[key] = rev
		if in, ok := c.interims[key]; ok && rev > in.Base {
			delete(c.interims, key) // the bucket says what is true now
		}
		var e StreamEntry
		switch {
		case deleted:
			delete(c.streams, key)
		case json.Unmarshal(value, &e) == nil && e.ID == key:
			c.streams[key] = e
		}
	}, loaded)
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
