// Package thumb serves a stream's thumbnail at /thumb/{id}.jpg: its latest
// keyframe as a JPEG of the source's size, decoded by ffmpeg. A thumbnail is
// kept for a few seconds and made once for everyone who asks meanwhile, and
// at most a few ffmpegs run at once whatever the number of streams. What is
// kept of a stream goes when it ends (Forget); Close stops every ffmpeg.
package thumb

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/glasscast/glasscast/internal/ffmpeg"
	"github.com/glasscast/glasscast/internal/stream"
)

// MaxAge is how long a thumbnail is served before a newer keyframe is
// decoded.
const MaxAge = 5 * time.Second

// maxJPEG bounds what ffmpeg may return.
const maxJPEG = 8 << 20

// Server makes and serves thumbnails.
type Server struct {
	ffmpeg string
	hub    func(id string) (*stream.Hub, bool)
	log    *slog.Logger
	sem    chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	cache  map[string]*thumbnail
}

type thumbnail struct {
	done chan struct{}
	key  *stream.Unit
	made time.Time
	jpeg []byte
	err  error
}

// New makes the thumbnail server. ffmpeg is its path ("" when there is
// none: thumbnails then answer 503); hub finds a stream's hub by id.
func New(ffmpeg string, hub func(id string) (*stream.Hub, bool), log *slog.Logger) *Server {
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{ffmpeg: ffmpeg, hub: hub, log: log, sem: make(chan struct{}, 2), ctx: ctx, cancel: cancel,
		cache: map[string]*thumbnail{}}
}

// Close stops the ffmpegs running and waits for them; thumbnails asked for
// afterwards answer 503.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	s.cancel()
	s.cache = map[string]*thumbnail{}
	s.mu.Unlock()
	s.wg.Wait()
}

// Forget drops what is kept of a stream (its keyframe and JPEG): call it
// when the stream ends.
func (s *Server) Forget(id string) {
	s.mu.Lock()
	delete(s.cache, id)
	s.mu.Unlock()
}

// Cached is how many streams have a thumbnail kept.
func (s *Server) Cached() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.cache)
}

// Register adds /thumb/{file} to mux.
func (s *Server) Register(mux *http.ServeMux) {
	mux.Handle("GET /thumb/{file}", s)
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Access-Control-Allow-Origin", "*")
	id, ok := strings.CutSuffix(r.PathValue("file"), ".jpg")
	if !ok {
		http.Error(w, "no such thumbnail", http.StatusNotFound)
		return
	}
	h, ok := s.hub(id)
	if !ok {
		s.Forget(id)
		http.Error(w, "no such stream", http.StatusNotFound)
		return
	}
	if s.ffmpeg == "" {
		http.Error(w, "thumbnails need ffmpeg, which this server does not have", http.StatusServiceUnavailable)
		return
	}
	key := h.LastKeyframe()
	if key == nil {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "the stream has no picture yet", http.StatusServiceUnavailable)
		return
	}
	t := s.get(id, key)
	if t == nil {
		http.Error(w, "the server is shutting down", http.StatusServiceUnavailable)
		return
	}
	select {
	case <-t.done:
	case <-r.Context().Done():
		return
	}
	if t.err != nil {
		s.log.Warn("thumbnail", "stream", id, "err", t.err)
		http.Error(w, "the thumbnail could not be made", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "image/jpeg")
	w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(int(MaxAge/time.Second)))
	w.Header().Set("Last-Modified", t.made.UTC().Format(http.TimeFormat))
	w.Header().Set("Content-Length", strconv.Itoa(len(t.jpeg)))
	w.Write(t.jpeg)
}

// get returns the stream's thumbnail, starting to make one when the cached
// one is older than MaxAge and there is a newer keyframe; nil once closed.
func (s *Server) get(id string, key *stream.Unit) *thumbnail {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	if t := s.cache[id]; t != nil {
		select {
		case <-t.done:
			if t.key == key || (time.Since(t.made) < MaxAge && t.err == nil) {
				return t
			}
		default:
			return t // being made
		}
	}
	t := &thumbnail{done: make(chan struct{}), key: key}
	s.cache[id] = t
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(t.done)
		t.jpeg, t.err = s.decode(key)
		t.made = time.Now()
	}()
	return t
}

// decode runs ffmpeg on one keyframe.
func (s *Server) decode(key *stream.Unit) ([]byte, error) {
	select {
	case s.sem <- struct{}{}:
	case <-s.ctx.Done():
		return nil, s.ctx.Err()
	}
	defer func() { <-s.sem }()
	var in bytes.Buffer
	for _, n := range key.NALUs {
		in.Write([]byte{0, 0, 0, 1})
		in.Write(n)
	}
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	cmd, stderr := ffmpeg.Command(ctx, s.ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "h264", "-i", "pipe:0",
		"-frames:v", "1", "-q:v", "4", "-f", "mjpeg", "pipe:1")
	cmd.Stdin = &in
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	jpeg, rerr := io.ReadAll(io.LimitReader(out, maxJPEG+1))
	if rerr != nil || len(jpeg) > maxJPEG {
		cmd.Process.Kill()
	}
	err = cmd.Wait()
	switch {
	case rerr != nil:
		return nil, rerr
	case len(jpeg) > maxJPEG:
		return nil, errors.New("ffmpeg's JPEG is too large")
	case err != nil:
		return nil, ffmpeg.Err("ffmpeg", stderr, err)
	case len(jpeg) == 0:
		return nil, errors.New("ffmpeg made no picture")
	}
	return jpeg, nil
}
