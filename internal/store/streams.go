package store

import (
	"context"
	"fmt"
	"time"
)

// Stream states as kept: a stream that was ever live comes back after a
// restart waiting for its publisher; an idle one comes back idle; an ended
// one stays listed as ended until its retention passes.
const (
	StreamIdle  = "idle"
	StreamLive  = "live"
	StreamEnded = "ended"
)

// Stream is a Streams API stream as kept across restarts.
type Stream struct {
	ID        string
	Key       string
	Name      string
	Record    bool
	Public    bool
	State     string
	CreatedAt time.Time
	EndedAt   time.Time
}

// Output is a restream output of a kept stream.
type Output struct {
	ID        string
	StreamID  string
	URL       string
	Name      string
	Profile   string
	Owner     string
	CreatedAt time.Time
}

func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// PutStream creates or updates a stream.
func (s *Store) PutStream(ctx context.Context, st Stream) error {
	_, err := s.db.ExecContext(ctx, `
INSERT INTO streams (id, stream_key, name, record, public, state, created_at, ended_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET state = excluded.state, ended_at = excluded.ended_at`,
		st.ID, st.Key, st.Name, st.Record, st.Public, st.State, millis(st.CreatedAt), millis(st.EndedAt))
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// Streams lists the kept streams, oldest first.
func (s *Store) Streams(ctx context.Context) ([]Stream, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT id, stream_key, name, record, public, state, created_at, ended_at FROM streams ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	defer rows.Close()
	var out []Stream
	for rows.Next() {
		var st Stream
		var created, ended int64
		if err := rows.Scan(&st.ID, &st.Key, &st.Name, &st.Record, &st.Public, &st.State, &created, &ended); err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		st.CreatedAt, st.EndedAt = fromMillis(created), fromMillis(ended)
		out = append(out, st)
	}
	return out, rows.Err()
}

// ForgetEndedStreams removes the streams that ended before t, and their
// outputs.
func (s *Store) ForgetEndedStreams(ctx context.Context, t time.Time) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM streams WHERE state = ? AND ended_at < ?`, StreamEnded, t.UnixMilli())
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// PutOutput keeps a stream's output.
func (s *Store) PutOutput(ctx context.Context, o Output) error {
	if o.CreatedAt.IsZero() {
		o.CreatedAt = time.Now()
	}
	_, err := s.db.ExecContext(ctx, `
INSERT INTO stream_outputs (id, stream_id, url, name, profile, owner, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO NOTHING`, o.ID, o.StreamID, o.URL, o.Name, o.Profile, o.Owner, millis(o.CreatedAt))
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// DeleteOutput forgets an output.
func (s *Store) DeleteOutput(ctx context.Context, id string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM stream_outputs WHERE id = ?`, id); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// Outputs lists a stream's kept outputs in the order they were added.
func (s *Store) Outputs(ctx context.Context, streamID string) ([]Output, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT id, stream_id, url, name, profile, owner, created_at FROM stream_outputs WHERE stream_id = ? ORDER BY created_at, rowid`, streamID)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	defer rows.Close()
	var out []Output
	for rows.Next() {
		var o Output
		var created int64
		if err := rows.Scan(&o.ID, &o.StreamID, &o.URL, &o.Name, &o.Profile, &o.Owner, &created); err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		o.CreatedAt = fromMillis(created)
		out = append(out, o)
	}
	return out, rows.Err()
}

// SetRunning remembers (or forgets) that an app runs for a user, so that
// it is started again when the user's phone connects after a restart.
func (s *Store) SetRunning(ctx context.Context, userID, pkg string, running bool) error {
	var err error
	if running {
		_, err = s.db.ExecContext(ctx, `
INSERT INTO running_apps (user_id, package_name, started_at) VALUES (?, ?, ?)
ON CONFLICT (user_id, package_name) DO NOTHING`, userID, pkg, time.Now().UnixMilli())
	} else {
		_, err = s.db.ExecContext(ctx, `DELETE FROM running_apps WHERE user_id = ? AND package_name = ?`, userID, pkg)
	}
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// Running lists the apps that run for a user, in the order they started.
func (s *Store) Running(ctx context.Context, userID string) ([]string, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT package_name FROM running_apps WHERE user_id = ? ORDER BY started_at, package_name`, userID)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var pkg string
		if err := rows.Scan(&pkg); err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		out = append(out, pkg)
	}
	return out, rows.Err()
}
