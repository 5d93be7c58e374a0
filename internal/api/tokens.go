package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/glasscast/glasscast/internal/access"
	"github.com/glasscast/glasscast/protocol"
)

// Tokens serves /api/v1/streams/{id}/tokens: the admin mints playback
// tokens with a lifetime of its choosing, or revokes every token of a
// stream issued so far.
type Tokens struct {
	Signer *access.Signer
	URLs   URLs
	// Known says whether a stream or a recording has the id.
	Known func(id string) bool
	// Revoked runs after a stream's tokens are revoked: its WebRTC viewers
	// are cut off. It returns how many.
	Revoked func(id string) int
	// Share, in a cluster, records a revocation's new generation for every
	// node before it takes effect here: when it fails, nothing is revoked
	// anywhere and the call answers 503.
	Share func(ctx context.Context, id string, gen uint32) error
}

// Register adds the route behind admin.
func (t *Tokens) Register(mux *http.ServeMux, admin func(http.Handler) http.Handler) {
	mux.Handle("/api/v1/streams/{id}/tokens", admin(http.HandlerFunc(t.serve)))
}

// TokenRequest is the body of a mint.
type TokenRequest struct {
	// TTL is a Go duration ("2h", "30m"); default one day.
	TTL string `json:"ttl"`
	// Rights are "live" and "recording"; default both.
	Rights []string `json:"rights"`
}

// TokenJSON is a minted token and the URLs that carry it.
type TokenJSON struct {
	Token     string     `json:"token"`
	Rights    string     `json:"rights"`
	ExpiresAt time.Time  `json:"expiresAt"`
	Playback  *Playback  `json:"playback,omitempty"`
	Recording *Recording `json:"recording,omitempty"`
}

// DecodeTokenRequest reads and checks a mint's body.
func DecodeTokenRequest(body io.Reader) (time.Duration, access.Right, error) {
	data, err := io.ReadAll(body)
	if err != nil {
		return 0, 0, err
	}
	var req TokenRequest
	if strings.TrimSpace(string(data)) != "" {
		dec := json.NewDecoder(strings.NewReader(string(data)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return 0, 0, fmt.Errorf("the body is not a valid token request: %w", err)
		}
	}
	ttl := 24 * time.Hour
	if req.TTL != "" {
		if ttl, err = time.ParseDuration(req.TTL); err != nil {
			return 0, 0, fmt.Errorf("ttl: %q is not a duration such as \"2h\"", req.TTL)
		}
	}
	if ttl < access.MinTTL || ttl > access.MaxTTL {
		return 0, 0, fmt.Errorf("ttl: %v is outside %v to %v", ttl, access.MinTTL, access.MaxTTL)
	}
	rights, err := access.ParseRights(req.Rights)
	return ttl, rights, err
}

func (t *Tokens) serve(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !t.Known(id) {
		WriteError(w, http.StatusNotFound, protocol.APINotFound, "no stream with id "+quote(id))
		return
	}
	switch r.Method {
	case http.MethodPost:
		ttl, rights, err := DecodeTokenRequest(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
		if err != nil {
			badBody(w, err)
			return
		}
		exp := time.Now().Add(ttl).Truncate(time.Second)
		tok := t.Signer.Mint(id, rights, exp)
		out := TokenJSON{Token: tok, Rights: rights.String(), ExpiresAt: exp.UTC()}
		if rights&access.Live != 0 {
			p := PlaybackURLs(t.URLs.Public(), tok, tok)
			out.Playback = &p
		}
		if rights&access.Recording != 0 {
			hls, mp4 := RecordingURLs(t.URLs.Public(), tok)
			out.Recording = &Recording{HLS: hls, MP4: mp4}
		}
		writeJSON(w, http.StatusCreated, out)
	case http.MethodDelete:
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		var gen uint32
		var err error
		if t.Share != nil {
			// The cluster first, then here, at the generation it has (this
			// node may hear it back from the cluster before it gets here).
			gen = t.Signer.Generation(id) + 1
			if err := t.Share(ctx, id, gen); err != nil {
				WriteError(w, http.StatusServiceUnavailable, protocol.APIUnavailable, "the revocation could not reach the cluster; nothing was revoked: try again")
				return
			}
			err = t.Signer.RevokeTo(ctx, id, gen)
		} else {
			gen, err = t.Signer.Revoke(ctx, id)
		}
		if err != nil {
			WriteError(w, http.StatusServiceUnavailable, protocol.APIUnavailable, "the revocation could not be stored")
			return
		}
		cut := 0
		if t.Revoked != nil {
			cut = t.Revoked(id)
		}
		writeJSON(w, http.StatusOK, map[string]any{"revoked": true, "generation": gen, "webrtcSessionsEnded": cut})
	default:
		methodNotAllowed(w, "POST, DELETE")
	}
}
