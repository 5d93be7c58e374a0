package server

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"net/http"
	"strings"

	"github.com/glasscast/glasscast/internal/access"
)

// playbackKey derives the playback tokens' key from the server's secret, so
// tokens survive a restart and no key serves two purposes.
func playbackKey(secret []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("glasscast playback tokens v1"))
	return m.Sum(nil)
}

// isPublic says whether stream id plays without a token.
func (s *Server) isPublic(id string) bool {
	if s.cfg.PublicPlayback {
		return true
	}
	if st, err := s.reg.Get(id); err == nil {
		return st.Public()
	}
	// A stream gone from memory: its recording remembers.
	if rec, err := s.recs.Get(id); err == nil {
		return rec.Public()
	}
	return s.view.Public(id) // another node's
}

// Grant is the path element of the viewer URLs glasscast hands out for
// stream id: the id itself for a public stream, otherwise a token granting
// right, the same for everybody until it is half used up.
func (s *Server) Grant(id string, right access.Right) string {
	if s.isPublic(id) {
		return id
	}
	tok, _ := s.access.Token(id, right)
	return tok
}

// grants says whether a path element grants right over its stream.
func (s *Server) grants(grant string, right access.Right) bool {
	_, err := s.resolve(grant, right)
	return err == nil
}

// resolve turns a media URL's path element into the stream it may play:
// a token (checked for need), a public stream's id, or either followed by
// "~" and the id of one of that stream's renditions.
func (s *Server) resolve(elem string, need access.Right) (string, error) {
	grant, variant, isVariant := strings.Cut(elem, access.VariantSep)
	var id string
	if access.IsToken(grant) {
		var err error
		if id, err = s.access.Verify(grant, need); err != nil {
			return "", err
		}
	} else if s.isPublic(grant) {
		id = grant
	} else {
		return "", access.ErrRequired
	}
	if !isVariant {
		return id, nil
	}
	if p, ok := s.packager(id); ok { // this node's stream, or a relay of another's
		for _, v := range p.Variants() {
			if v.ID == variant {
				return variant, nil
			}
		}
	}
	return "", access.ErrInvalid
}

// refuse answers a media request without a valid grant: 401 without a
// token, 403 for a bad, expired or revoked one, the same whether the stream
// exists or not.
func refuse(w http.ResponseWriter, err error) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Cache-Control", "no-store")
	code := http.StatusForbidden
	if errors.Is(err, access.ErrRequired) {
		code = http.StatusUnauthorized
	}
	http.Error(w, err.Error(), code)
}

// guardID is guard for routes whose handler reads the stream from the
// route's {id} (LL-HLS, DASH): the grant is checked and the path values
// set in place, the cheapest way for the requests every viewer makes
// several times a second.
func (s *Server) guardID(need access.Right, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elem := r.PathValue("id")
		if r.Method == http.MethodOptions || elem == "" {
			next.ServeHTTP(w, r) // a CORS preflight carries no rights
			return
		}
		id, err := s.resolve(elem, need)
		if err != nil {
			refuse(w, err)
			return
		}
		r.SetPathValue("id", id)
		r.SetPathValue(access.GrantValue, elem)
		next.ServeHTTP(w, r)
	})
}

// guard lets a media request through only with a grant for its stream: the
// path element after the route's prefix (with an ending such as ".jpg"
// cut off it) must be a valid token or a public stream's id. The request
// goes on with that element replaced by the stream's id, in its URL (for
// a mux behind) and path values, and the grant in its path values.
// Without one it is refused (see refuse).
func (s *Server) guard(need access.Right, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			next.ServeHTTP(w, r) // a CORS preflight carries no rights
			return
		}
		parts := strings.SplitN(r.URL.Path, "/", 4) // "", prefix, element, rest
		if len(parts) < 3 || parts[2] == "" {
			http.NotFound(w, r)
			return
		}
		elem, ext := parts[2], ""
		if len(parts) == 3 {
			for _, e := range []string{".jpg", ".mp4"} {
				if cut, ok := strings.CutSuffix(elem, e); ok {
					elem, ext = cut, e
				}
			}
		}
		id, err := s.resolve(elem, need)
		if err != nil {
			refuse(w, err)
			return
		}
		parts[2] = id + ext
		r2 := new(http.Request)
		*r2 = *r
		u := *r.URL
		u.Path, u.RawPath = strings.Join(parts, "/"), ""
		r2.URL = &u
		r2.SetPathValue(access.GrantValue, elem)
		// The routes' own path values, for handlers matched by this mux.
		if r.PathValue("id") == elem {
			r2.SetPathValue("id", id)
		}
		if r.PathValue("file") == elem+ext {
			r2.SetPathValue("file", id+ext)
		}
		next.ServeHTTP(w, r2)
	})
}
