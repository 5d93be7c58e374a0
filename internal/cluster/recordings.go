package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// recordingsBucket is the index of the cluster's recordings (on disk): a
// recording's files stay on the node that wrote them, and every node knows
// where each one is.
const recordingsBucket = "glasscast_recordings"

// RecordingEntry is a recording as the index knows it.
type RecordingEntry struct {
	ID        string     `json:"id"`
	Node      string     `json:"node"` // the node whose disk holds it
	Name      string     `json:"name,omitempty"`
	Status    string     `json:"status"`
	StartedAt time.Time  `json:"startedAt"`
	EndedAt   *time.Time `json:"endedAt,omitempty"`
	Duration  float64    `json:"duration"`
	Bytes     int64      `json:"bytes"`
	Segments  int        `json:"segments"`
	Gaps      int        `json:"gaps,omitempty"`
	Truncated bool       `json:"truncated,omitempty"`
	Error     string     `json:"error,omitempty"`
	V         int        `json:"v,omitempty"` // entryFormat of the build that wrote it
}

// Recordings is the index of the cluster's recordings.
type Recordings struct{ c *Cluster }

// Recordings is the cluster's recordings index.
func (c *Cluster) Recordings() *Recordings { return &Recordings{c} }

// watchRecordings keeps this node's copy of the index.
func (c *Cluster) watchRecordings() {
	c.follow(c.recordingsKV, func(key string, value []byte, deleted bool) {
		var e RecordingEntry
		switch {
		case deleted:
			delete(c.recordings, key)
		case json.Unmarshal(value, &e) == nil && e.ID == key:
			c.recordings[key] = e
		}
	})
}

// Put writes a recording's entry.
func (r *Recordings) Put(ctx context.Context, e RecordingEntry) error {
	if err := r.c.WaitReady(ctx); err != nil {
		return err
	}
	e.V = writeFormat
	b, _ := json.Marshal(e)
	if _, err := r.c.recordingsKV.Put(ctx, e.ID, b); err != nil {
		return fmt.Errorf("cluster: recording %s: %w", e.ID, err)
	}
	return nil
}

// Delete takes a recording out of the index.
func (r *Recordings) Delete(ctx context.Context, id string) error {
	if err := r.c.WaitReady(ctx); err != nil {
		return err
	}
	err := r.c.recordingsKV.Delete(ctx, id)
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("cluster: recording %s: %w", id, err)
	}
	return nil
}

// Lookup finds a recording in this node's copy of the index.
func (r *Recordings) Lookup(id string) (RecordingEntry, bool) {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	e, ok := r.c.recordings[id]
	return e, ok
}

// List is this node's copy of the index, newest first.
func (r *Recordings) List() []RecordingEntry {
	r.c.mu.Lock()
	out := make([]RecordingEntry, 0, len(r.c.recordings))
	for _, e := range r.c.recordings {
		out = append(out, e)
	}
	r.c.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].StartedAt.Equal(out[j].StartedAt) {
			return out[i].StartedAt.After(out[j].StartedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}
