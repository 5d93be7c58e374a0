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
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
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

// SetRetention changes the retention limits; the next Prune applies them.
func (s *Store) SetRetention(maxAge time.Duration, maxBytes int64) {
	s.mu.Lock()
	s.cfg.MaxAge, s.cfg.MaxBytes = maxAge, maxBytes
	s.mu.Unlock()
}

// meta is a recording's meta.json.
type meta struct {
	ID          string     `json:"id"`
	Name        string     `json:"name,omitempty"`
	StartedAt   time.Time  `json:"startedAt"`
	EndedAt     *time.Time `json:"endedAt,omitempty"`
	Interrupted bool       `json:"interrupted,omitempty"`
	// Truncated is set when the recording stopped at the byte budget
	// while its stream went on, or its end could not be written.
	Truncated bool `json:"truncated,omitempty"`
	// Error is the last failure to write it.
	Error string `json:"error,omitempty"`
	// Public: the stream played without a token, and so does this.
	Public bool `json:"public,omitempty"`
}

// initRec is a journal line for a new initialization version.
type initRec struct {
	Version int          `json:"version"`
	Tracks  []cmaf.Track `json:"tracks"`
}

// segRec is a journal line for one complete segment.
type segRec struct {
	Seq    uint64     `json:"seq"`
	Init   int        `json:"init"`
	Disc   bool       `json:"disc,omitempty"`
	Wall   time.Time  `json:"wall"`
	Tracks []trackRec `json:"tracks"`
}

// trackRec is one track's file of a segment.
type trackRec struct {
	Name  string `json:"name"`
	Start uint64 `json:"start"` // in the track's timescale
	Dur   uint64 `json:"dur"`
	Parts []int  `json:"parts"` // sizes of the moof+mdat fragments, in order
}

type journalLine struct {
	Init *initRec `json:"init,omitempty"`
	Seg  *segRec  `json:"seg,omitempty"`
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
	jsize   int64         // the journal's length up to its last whole line
	done    chan struct{} // closed once the recording is finished
	// A recording continued after a restart numbers its new segments and
	// initializations after the ones it had; the first is a discontinuity.
	seqBase  uint64
	initBase int
	resumed  bool
}

// Info describes a recording.
type Info struct {
	ID        string
	Name      string
	Status    string
	StartedAt time.Time
	EndedAt   time.Time
	Duration  time.Duration // media time of the lead track
	Bytes     int64
	Segments  int
	Gaps      int // discontinuities after the first segment
	// Truncated: the recording stopped at the byte budget before its
	// stream ended, or its end could not be written.
	Truncated bool
	// Error is the last failure to write the recording (while Status is
	// failed, the current one).
	Error string
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

// load reads a recording's meta and journal. A torn last line (the server
// died writing it) is ignored, and so is a line naming a missing file.
func load(dir string) (*Recording, error) {
	rec := &Recording{dir: dir, inits: map[int]*initRec{}, done: make(chan struct{})}
	close(rec.done)
	b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &rec.meta); err != nil {
		return nil, fmt.Errorf("meta.json: %w", err)
	}
	f, err := os.Open(filepath.Join(dir, "journal.jsonl"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return rec, nil
		}
		return nil, err
	}
	defer f.Close()
	rec.readJournal(f, rec.segFilesSize)
	for v := range rec.inits {
		for _, t := range rec.inits[v].Tracks {
			if st, err := os.Stat(filepath.Join(dir, initFile(t.Name, v))); err == nil {
				rec.bytes += st.Size()
			}
		}
	}
	return rec, nil
}

// readJournal takes a journal's lines up to the first that does not read
// (torn by a crash), and of its segments those whose files have their
// bytes (filesSize says).
func (r *Recording) readJournal(in io.Reader, filesSize func(*segRec) (int64, bool)) {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var l journalLine
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			break
		}
		r.jsize += int64(len(sc.Bytes())) + 1
		switch {
		case l.Init != nil:
			r.inits[l.Init.Version] = l.Init
		case l.Seg != nil:
			if r.inits[l.Seg.Init] == nil || !safeTracks(l.Seg.Tracks) {
				continue
			}
			size, ok := filesSize(l.Seg)
			if !ok {
				continue
			}
			r.segs = append(r.segs, l.Seg)
			r.bytes += size
		}
	}
}

func (r *Recording) segFilesSize(sr *segRec) (int64, bool) {
	var total int64
	for _, t := range sr.Tracks {
		st, err := os.Stat(filepath.Join(r.dir, segFile(t.Name, sr.Seq)))
		want := int64(0)
		for _, p := range t.Parts {
			want += int64(p)
		}
		if err != nil || st.Size() < want {
			return 0, false
		}
		total += want
	}
	return total, true
}

// safeTracks says a journal line's track names are file names of this
// recording's directory (video, audio).
func safeTracks(ts []trackRec) bool {
	for _, t := range ts {
		if !trackName.MatchString(t.Name) {
			return false
		}
	}
	return true
}

var trackName = regexp.MustCompile(`^[a-z0-9]{1,16}$`)

func initFile(track string, version int) string {
	return fmt.Sprintf("init-%s-%d.mp4", track, version)
}

func segFile(track string, seq uint64) string {
	return fmt.Sprintf("%s-%d.m4s", track, seq)
}

func (r *Recording) writeMeta() error {
	b, err := json.MarshalIndent(r.meta, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(r.dir, "meta.json.tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(r.dir, "meta.json"))
}

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

// cutJournal drops a torn last line from a journal being continued and
// leaves j at its end.
func (r *Recording) cutJournal(j *os.File) error {
	st, err := j.Stat()
	if err != nil {
		return err
	}
	if r.jsize > st.Size() { // the last whole line lost only its newline
		if _, err := j.WriteAt([]byte("\n"), st.Size()); err != nil {
			return err
		}
	} else if err := j.Truncate(r.jsize); err != nil {
		return err
	}
	_, err = j.Seek(r.jsize, io.SeekStart)
	return err
}

// Close stops retention and waits for recordings to finish (their streams
// end first).
func (s *Store) Close() {
	s.cancel()
	s.wg.Wait()
}

// pendingSeg is a complete segment copied out of the packager's view.
type pendingSeg struct {
	seq    uint64
	init   *cmaf.Init
	disc   bool
	wall   time.Time
	tracks []pendingTrack
}

type pendingTrack struct {
	name  string
	start uint64
	dur   uint64
	parts [][]byte
}

// follow writes the packager's complete segments as they come. It never
// holds the packager up: it reads the shared view and, if it falls so far
// behind that a segment left the window, marks a discontinuity and goes on.
func (s *Store) follow(rec *Recording, p *cmaf.Packager) {
	defer s.finish(rec)
	var next uint64
	started := false
	var lastInit *cmaf.Init
	for {
		var batch []pendingSeg
		ended := false
		err := p.Wait(s.ctx, func(v *cmaf.View) bool {
			batch = batch[:0]
			for _, seg := range v.Segments {
				if started && seg.Seq < next {
					continue
				}
				if !seg.Complete() {
					break
				}
				batch = append(batch, copySeg(seg))
			}
			ended = v.Ended
			return len(batch) > 0 || ended
		})
		if err != nil && !errors.Is(err, cmaf.ErrEnded) {
			return // the server is stopping
		}
		for i := range batch {
			ps := &batch[i]
			if started && ps.seq > next {
				lost := int(ps.seq - next)
				s.log.Warn("recording fell behind; segments skipped", "recording", rec.meta.ID, "segments", lost)
				rec.mu.Lock()
				rec.skipped += lost
				rec.mu.Unlock()
				ps.disc = true
			}
			if limit := s.maxBytes(); limit > 0 && rec.size()+ps.size() > limit {
				// A stream that never ends must not fill the disk, and
				// retention cannot remove a recording still being written:
				// it stops whole, within the budget.
				s.log.Warn("recording stopped: the next segment would take it past the recordings' byte budget",
					"recording", rec.meta.ID, "bytes", rec.size(), "budget", limit)
				rec.mu.Lock()
				rec.meta.Truncated = true
				rec.mu.Unlock()
				return
			}
			started = true
			next = ps.seq + 1
			// A write that fails (a full disk) loses this segment, not the
			// recording: the next ones are tried, and the first written
			// after the hole starts a new part.
			if ps.init != lastInit {
				if err := rec.writeInit(ps.init); err != nil {
					s.writeFailed(rec, err)
					continue
				}
				lastInit = ps.init
			}
			ps.disc = ps.disc || rec.isFailing()
			if err := rec.writeSeg(ps); err != nil {
				s.writeFailed(rec, err)
				continue
			}
			if rec.recovered() {
				s.log.Info("recording resumed", "recording", rec.meta.ID, "seq", ps.seq)
			}
		}
		if ended || errors.Is(err, cmaf.ErrEnded) {
			return
		}
	}
}

// size is what the segment takes on disk.
func (ps *pendingSeg) size() int64 {
	var n int64
	for _, t := range ps.tracks {
		for _, p := range t.parts {
			n += int64(len(p))
		}
	}
	return n
}

func copySeg(seg *cmaf.Segment) pendingSeg {
	ps := pendingSeg{seq: seg.Seq, init: seg.Init, disc: seg.Discontinuity, wall: seg.Wall}
	for i, ts := range seg.Tracks {
		if !ts.Entered || len(ts.Parts) == 0 {
			continue
		}
		pt := pendingTrack{name: seg.Init.Tracks[i].Name, start: ts.Start, dur: ts.Duration}
		for _, part := range ts.Parts {
			pt.parts = append(pt.parts, part.Data)
		}
		ps.tracks = append(ps.tracks, pt)
	}
	return ps
}

// writeFailed marks the recording failing with err.
func (s *Store) writeFailed(rec *Recording, err error) {
	rec.mu.Lock()
	first := !rec.failing
	rec.failing = true
	rec.meta.Error = err.Error()
	rec.mu.Unlock()
	if first {
		s.log.Error("recording: cannot write; segments are lost until it can", "recording", rec.meta.ID, "err", err)
	}
}

func (r *Recording) isFailing() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failing
}

// recovered clears the failing state and says whether there was one.
func (r *Recording) recovered() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	was := r.failing
	r.failing = false
	return was
}

// appendJournal writes one line; a line written in part (a full disk) is
// cut off again, so the journal stays whole lines.
func (r *Recording) appendJournal(l journalLine) error {
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	n, err := r.journal.Write(append(b, '\n'))
	if err != nil {
		if n > 0 {
			r.journal.Truncate(r.jsize)
			r.journal.Seek(r.jsize, io.SeekStart)
		}
		return err
	}
	r.jsize += int64(n)
	return nil
}

func (r *Recording) writeInit(in *cmaf.Init) error {
	var size int64
	var written []string
	undo := func(err error) error {
		for _, f := range written {
			os.Remove(f)
		}
		return err
	}
	version := in.Version + r.initBase
	for i, t := range in.Tracks {
		name := filepath.Join(r.dir, initFile(t.Name, version))
		written = append(written, name)
		if err := os.WriteFile(name, in.Data[i], 0o600); err != nil {
			return undo(err)
		}
		size += int64(len(in.Data[i]))
	}
	ir := &initRec{Version: version, Tracks: in.Tracks}
	if err := r.appendJournal(journalLine{Init: ir}); err != nil {
		return undo(err)
	}
	r.mu.Lock()
	r.inits[version] = ir
	r.bytes += size
	r.mu.Unlock()
	return nil
}

func (r *Recording) writeSeg(ps *pendingSeg) error {
	seq := ps.seq + r.seqBase
	sr := &segRec{Seq: seq, Init: ps.init.Version + r.initBase, Disc: ps.disc || r.resumed, Wall: ps.wall.UTC()}
	var size int64
	var written []string
	undo := func(err error) error {
		for _, f := range written {
			os.Remove(f) // what a full disk took in part gives room back
		}
		return err
	}
	for _, t := range ps.tracks {
		name := filepath.Join(r.dir, segFile(t.name, seq))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return undo(err)
		}
		written = append(written, name)
		tr := trackRec{Name: t.name, Start: t.start, Dur: t.dur}
		for _, d := range t.parts {
			if _, err := f.Write(d); err != nil {
				f.Close()
				return undo(err)
			}
			tr.Parts = append(tr.Parts, len(d))
			size += int64(len(d))
		}
		if err := f.Close(); err != nil {
			return undo(err)
		}
		sr.Tracks = append(sr.Tracks, tr)
	}
	if len(sr.Tracks) == 0 {
		return nil
	}
	if err := r.appendJournal(journalLine{Seg: sr}); err != nil {
		return undo(err)
	}
	r.mu.Lock()
	r.segs = append(r.segs, sr)
	r.bytes += size
	r.resumed = false
	r.mu.Unlock()
	return nil
}

func (s *Store) maxBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg.MaxBytes
}

func (r *Recording) size() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bytes
}

// finish closes a recording whose stream ended.
func (s *Store) finish(rec *Recording) {
	rec.mu.Lock()
	now := time.Now().UTC()
	rec.meta.EndedAt = &now
	rec.active = false
	if rec.failing {
		rec.meta.Truncated = true // its end is missing
	}
	if rec.journal != nil {
		rec.journal.Sync()
		rec.journal.Close()
		rec.journal = nil
	}
	err := rec.writeMeta()
	info := rec.infoLocked()
	close(rec.done)
	rec.mu.Unlock()
	if err != nil {
		s.log.Error("recording meta not written", "recording", info.ID, "err", err)
	}
	s.log.Info("recording finished", "recording", info.ID, "duration", info.Duration.Round(time.Millisecond),
		"bytes", info.Bytes, "gaps", info.Gaps)
	if s.ctx.Err() == nil {
		s.Prune(time.Now())
	}
}

// lead is the track whose durations measure the recording: video if any.
func (r *Recording) lead(sr *segRec) *trackRec {
	for i := range sr.Tracks {
		if sr.Tracks[i].Name == "video" {
			return &sr.Tracks[i]
		}
	}
	if len(sr.Tracks) > 0 {
		return &sr.Tracks[0]
	}
	return nil
}

func (r *Recording) timescale(version int, track string) uint32 {
	in := r.inits[version]
	if in == nil {
		return 0
	}
	for _, t := range in.Tracks {
		if t.Name == track {
			return t.Timescale
		}
	}
	return 0
}

func (r *Recording) segDuration(sr *segRec) time.Duration {
	t := r.lead(sr)
	if t == nil {
		return 0
	}
	scale := r.timescale(sr.Init, t.Name)
	if scale == 0 {
		return 0
	}
	return cmaf.Duration(t.Dur, scale)
}

func (r *Recording) infoLocked() Info {
	in := Info{ID: r.meta.ID, Name: r.meta.Name, StartedAt: r.meta.StartedAt, Bytes: r.bytes, Segments: len(r.segs),
		Truncated: r.meta.Truncated, Error: r.meta.Error}
	switch {
	case r.active && r.failing:
		in.Status = StatusFailed
	case r.active:
		in.Status = StatusRecording
	case r.meta.Interrupted:
		in.Status = StatusInterrupted
	default:
		in.Status = StatusComplete
	}
	if r.meta.EndedAt != nil {
		in.EndedAt = *r.meta.EndedAt
	}
	for i, sr := range r.segs {
		in.Duration += r.segDuration(sr)
		if i > 0 && sr.Disc {
			in.Gaps++
		}
	}
	return in
}

// Public says whether the recording plays without a token.
func (r *Recording) Public() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.meta.Public
}

// Done is closed once the recording is finished.
func (r *Recording) Done() <-chan struct{} { return r.done }

// Info describes the recording.
func (r *Recording) Info() Info {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.infoLocked()
}

// List returns every recording, newest first.
func (s *Store) List() []Info {
	s.mu.Lock()
	recs := make([]*Recording, 0, len(s.recs))
	for _, r := range s.recs {
		recs = append(recs, r)
	}
	s.mu.Unlock()
	out := make([]Info, 0, len(recs))
	for _, r := range recs {
		out = append(out, r.Info())
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].StartedAt.Equal(out[j].StartedAt) {
			return out[i].StartedAt.After(out[j].StartedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Get returns a recording.
func (s *Store) Get(id string) (*Recording, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.recs[id]
	if !ok {
		return nil, ErrNotFound
	}
	return r, nil
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

// snapshot copies what serving needs out of the recording.
type snapshot struct {
	dir    string
	active bool
	start  time.Time
	inits  map[int]*initRec
	segs   []*segRec
}

func (r *Recording) snapshot() snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	inits := make(map[int]*initRec, len(r.inits))
	for k, v := range r.inits {
		inits[k] = v
	}
	return snapshot{dir: r.dir, active: r.active, start: r.meta.StartedAt, inits: inits,
		segs: append([]*segRec(nil), r.segs...)}
}
