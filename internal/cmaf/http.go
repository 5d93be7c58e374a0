package cmaf

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"time"
)

// Lookup finds the packager of a stream that can be watched.
type Lookup func(id string) (*Packager, bool)

// Begin starts answering a request for a stream's files (LL-HLS or DASH):
// CORS for players on other origins, GET/HEAD/OPTIONS only, and the stream
// looked up by the {id} path value. It returns the packager, or false when
// the request is already answered.
func Begin(w http.ResponseWriter, r *http.Request, lookup Lookup) (*Packager, bool) {
	if !Preflight(w, r) {
		return nil, false
	}
	p, ok := lookup(r.PathValue("id"))
	if !ok {
		http.Error(w, "no such stream", http.StatusNotFound)
		return nil, false
	}
	return p, true
}

// Preflight answers what every media file request needs first: CORS for
// players on other origins (an OPTIONS preflight is answered here), and
// GET/HEAD only. It returns false when the request is already answered.
func Preflight(w http.ResponseWriter, r *http.Request) bool {
	hd := w.Header()
	hd.Set("Access-Control-Allow-Origin", "*")
	hd.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
	hd.Set("Access-Control-Allow-Headers", "Range, Origin, Accept")
	hd.Set("Access-Control-Expose-Headers", "Content-Length, Content-Range, Date")
	switch r.Method {
	case http.MethodOptions:
		w.WriteHeader(http.StatusNoContent)
		return false
	case http.MethodGet, http.MethodHead:
		return true
	default:
		hd.Set("Allow", "GET, HEAD, OPTIONS")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return false
	}
}

// WaitPlayable holds a request for a playlist or manifest until the stream
// can be played, for at most wait. It answers 404 for a stream that ended
// and 503 when the wait runs out, and then returns false.
func WaitPlayable(w http.ResponseWriter, r *http.Request, p *Packager, wait time.Duration) bool {
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	err := p.Wait(ctx, (*View).Playable)
	switch {
	case err == nil:
		return true
	case errors.Is(err, ErrEnded):
		http.Error(w, "stream ended", http.StatusNotFound)
	case r.Context().Err() == nil:
		w.Header().Set("Retry-After", "1")
		http.Error(w, "the stream has no media yet", http.StatusServiceUnavailable)
	}
	return false
}

// WriteText answers with a playlist or manifest that must never be cached.
func WriteText(w http.ResponseWriter, r *http.Request, contentType, body string) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-cache, no-store")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write([]byte(body))
	}
}

// SessionParam is the query parameter that tells one player's requests from
// another's: the multivariant playlist puts a new one in the media playlist
// URIs it hands each player, and the DASH manifest in its Location, so that
// players behind one address (an office, a CDN) count as the viewers they
// are.
const SessionParam = "session"

// Session returns the player session r carries, if it carries a valid one.
func Session(r *http.Request) (string, bool) {
	if r.URL.RawQuery == "" {
		return "", false
	}
	s := r.URL.Query().Get(SessionParam)
	if len(s) == 0 || len(s) > 32 {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return "", false
		}
	}
	return s, true
}

// SessionOf returns r's player session, or a new one.
func SessionOf(r *http.Request) string {
	if s, ok := Session(r); ok {
		return s
	}
	b := make([]byte, 12)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
