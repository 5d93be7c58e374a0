package record

// Retention: the limits, removing recordings past an age or over the byte
// budget, and deleting one.

import (
	"errors"
	"os"
	"strings"
	"time"
)

// SetRetention changes the retention limits; the next Prune applies them.
func (s *Store) SetRetention(maxAge time.Duration, maxBytes int64) {
	s.mu.Lock()
	s.cfg.MaxAge, s.cfg.MaxBytes = maxAge, maxBytes
	s.mu.Unlock()
}

func (s *Store) maxBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg.MaxBytes
}

// Delete removes a finished recording and its files.
func (s *Store) Delete(id string) error {
	s.mu.Lock()
	r, ok := s.recs[id]
	if !ok {
		s.mu.Unlock()
		return ErrNotFound
	}
	r.mu.Lock()
	active := r.active
	r.mu.Unlock()
	if active {
		s.mu.Unlock()
		return ErrBusy
	}
	delete(s.recs, id)
	for k := range s.mp4Cache {
		if strings.HasPrefix(k, id+"/") {
			delete(s.mp4Cache, k)
		}
	}
	s.mu.Unlock()
	return os.RemoveAll(r.dir)
}

// Prune applies retention: finished recordings older than MaxAge go, then
// the oldest finished ones while the total is over MaxBytes. A recording
// being written is never removed.
func (s *Store) Prune(now time.Time) {
	s.mu.Lock()
	maxAge, maxBytes := s.cfg.MaxAge, s.cfg.MaxBytes
	s.mu.Unlock()
	infos := s.List()
	var total int64
	for _, in := range infos {
		total += in.Bytes
	}
	// oldest first
	for i := len(infos) - 1; i >= 0; i-- {
		in := infos[i]
		if in.Status == StatusRecording {
			continue
		}
		reason := ""
		switch {
		case maxAge > 0 && now.Sub(in.EndedAt) > maxAge:
			reason = "older than the retention age"
		case maxBytes > 0 && total > maxBytes:
			reason = "over the retention budget"
		default:
			continue
		}
		if err := s.Delete(in.ID); err != nil {
			if !errors.Is(err, ErrNotFound) {
				s.log.Warn("recording not removed", "recording", in.ID, "err", err)
			}
			continue
		}
		total -= in.Bytes
		s.log.Info("recording removed", "recording", in.ID, "reason", reason, "bytes", in.Bytes)
	}
}

// Bytes is the total size of the recordings.
func (s *Store) Bytes() int64 {
	var total int64
	for _, in := range s.List() {
		total += in.Bytes
	}
	return total
}
