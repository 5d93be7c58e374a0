// Package record keeps recordings of streams on disk. A recording follows a
// stream's CMAF packager and writes each complete segment, one file per track,
// under DIR/{id}/, with a journal line per segment appended after the files it
// names; a server that is killed therefore leaves every segment the journal
// lists, playable. One recording spans every publisher session of its stream:
// a reconnect, or segments the recorder had to skip, starts a discontinuity.
//
// A recording is served as a VOD HLS playlist (EVENT while it is still being
// written) and as one fragmented MP4 composed on request from the same files
// (ServeContent: ranges, length). Retention removes finished recordings past
// an age and the oldest ones while the total is over a byte budget.
package record

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"github.com/glasscast/glasscast/internal/cmaf"
)

// Config tunes a store. Zero fields take the defaults.
type Config struct {
	// Dir holds one directory per recording.
	Dir string
	// MaxAge removes finished recordings older than this; 0 keeps them.
	MaxAge time.Duration
	// MaxBytes removes the oldest finished recordings while the total is
	// over it; 0 means no budget.
	MaxBytes int64
	// PruneEvery is how often retention runs (it also runs when a
	// recording finishes).
	PruneEvery time.Duration
}

// Status of a recording.
const (
	StatusRecording   = "recording"
	StatusComplete    = "complete"
	StatusInterrupted = "interrupted" // the server stopped without finishing it
	// StatusFailed: the stream is live but its segments cannot be written
	// (a full disk); recording resumes by itself once they can.
	StatusFailed = "failed"
)

// ErrNotFound is returned for an unknown recording.
var ErrNotFound = errors.New("no such recording")

// ErrBusy is returned when deleting a recording still being written.
var ErrBusy = errors.New("the recording is still being written")

// Store holds the recordings.
type Store struct {
	cfg Config
	log *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	recs     map[string]*Recording
	mp4Cache map[string]*mp4Index // by id and segment count
}

// Recording is one stream's recording.
type Recording struct {
	dir string

	mu      sync.Mutex
	meta    meta
	inits   map[int]*initRec
	segs    []*segRec
	bytes   int64
	active  bool // being written
	skipped int  // segments lost because the recorder fell behind
	failing bool // the last write failed
	journal *os.File
	jmu     sync.Mutex    // the journal's writers: the recorder, a merge
	jsize   int64         // the journal's length up to its last whole line
	merging sync.Mutex    // one piece taken in at a time
	done    chan struct{} // closed once the recording is finished
	// A recording continued after a restart numbers its new segments and
	// initializations after the ones it had; the first is a discontinuity.
	seqBase  uint64
	initBase int
	resumed  bool
}

var idPattern = regexp.MustCompile(`^[0-9a-f]{1,64}$`)

// Open loads the recordings under cfg.Dir; any that a previous server left
// unfinished is closed as interrupted, with what its journal lists.
func Open(cfg Config, log *slog.Logger) (*Store, error) {
	if cfg.PruneEvery <= 0 {
		cfg.PruneEvery = time.Minute
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("recordings directory: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Store{cfg: cfg, log: log, ctx: ctx, cancel: cancel, recs: map[string]*Recording{}, mp4Cache: map[string]*mp4Index{}}
	entries, err := os.ReadDir(cfg.Dir)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("recordings directory: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() || !idPattern.MatchString(e.Name()) {
			continue
		}
		rec, err := load(filepath.Join(cfg.Dir, e.Name()))
		if err != nil {
			log.Warn("recording not loaded", "dir", e.Name(), "err", err)
			continue
		}
		if rec.meta.EndedAt == nil {
			end := rec.meta.StartedAt
			if n := len(rec.segs); n > 0 {
				end = rec.segs[n-1].Wall.Add(rec.segDuration(rec.segs[n-1]))
			}
			rec.meta.EndedAt = &end
			rec.meta.Interrupted = true
			if err := rec.writeMeta(); err != nil {
				log.Warn("recording meta not written", "recording", rec.meta.ID, "err", err)
			}
			log.Info("recording interrupted by a stop of the server, closed with what it had",
				"recording", rec.meta.ID, "segments", len(rec.segs))
		}
		s.recs[rec.meta.ID] = rec
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(cfg.PruneEvery)
		defer t.Stop()
		for {
			s.Prune(time.Now())
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return s, nil
}

var trackName = regexp.MustCompile(`^[a-z0-9]{1,16}$`)

// Start records the stream whose packager is p, until the packager ends.
// A finished recording of the same id (its stream restored after a restart)
// is continued: what it had stays, and what comes next follows a
// discontinuity.
func (s *Store) Start(id, name string, public bool, p *cmaf.Packager) (<-chan struct{}, error) {
	if !idPattern.MatchString(id) {
		return nil, fmt.Errorf("bad recording id %q", id)
	}
	dir := filepath.Join(s.cfg.Dir, id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("recording directory: %w", err)
	}
	rec := &Recording{dir: dir, inits: map[int]*initRec{}, active: true, done: make(chan struct{}),
		meta: meta{ID: id, Name: name, StartedAt: time.Now().UTC(), Public: public}}
	s.mu.Lock()
	old := s.recs[id]
	s.mu.Unlock()
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if old != nil {
		old.mu.Lock()
		if old.active {
			old.mu.Unlock()
			return nil, fmt.Errorf("recording %s is already being written", id)
		}
		rec.meta = old.meta
		rec.meta.EndedAt, rec.meta.Interrupted, rec.meta.Error = nil, false, ""
		rec.inits, rec.segs, rec.bytes, rec.jsize = old.inits, old.segs, old.bytes, old.jsize
		for v := range old.inits {
			rec.initBase = max(rec.initBase, v)
		}
		if n := len(old.segs); n > 0 {
			rec.seqBase = old.segs[n-1].Seq + 1
		}
		rec.resumed = len(old.segs) > 0
		old.mu.Unlock()
		flags = os.O_CREATE | os.O_WRONLY
	}
	if err := rec.writeMeta(); err != nil {
		return nil, fmt.Errorf("recording meta: %w", err)
	}
	j, err := os.OpenFile(filepath.Join(dir, "journal.jsonl"), flags, 0o600)
	if err == nil && old != nil {
		err = rec.cutJournal(j)
	}
	if err != nil {
		if j != nil {
			j.Close()
		}
		return nil, fmt.Errorf("recording journal: %w", err)
	}
	rec.journal = j
	s.mu.Lock()
	s.recs[id] = rec
	s.mu.Unlock()
	if old != nil {
		s.log.Info("recording continued", "recording", id, "segments", len(rec.segs), "dir", dir)
	} else {
		s.log.Info("recording", "recording", id, "dir", dir)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.follow(rec, p)
	}()
	return rec.done, nil
}

// Close stops retention and waits for recordings to finish (their streams
// end first).
func (s *Store) Close() {
	s.cancel()
	s.wg.Wait()
}
