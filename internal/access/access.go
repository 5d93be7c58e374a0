// Package access makes and checks playback tokens: the capabilities in every
// viewer URL glasscast hands out. A token names one stream, the rights it
// grants (live playback, the recording, or both), when it expires and the
// stream's token generation; an HMAC-SHA256 over those makes it unforgeable.
// Revoking a stream's tokens moves its generation on, so every token issued
// before stops working at once; the generations persist.
//
// A token takes the place of the stream id in a URL's path
// (/hls/{token}/index.m3u8), as Cloudflare Stream's signed URLs do: the
// playlists' relative URIs (segments, parts, manifests) then carry it with no
// rewriting, and a CDN caches each file once per token, the same bytes for
// every viewer holding it, with no cookie or per-request query in its key.
package access

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Right is what a token lets its holder watch.
type Right uint8

// Rights. The zero value grants nothing.
const (
	Live      Right = 1 << iota // the live stream: LL-HLS, DASH, WHEP, thumbnails, the watch page
	Recording                   // the stream's recording: its HLS playlist and MP4
)

// String names the rights ("live", "recording", "live+recording").
func (r Right) String() string {
	switch r {
	case Live:
		return "live"
	case Recording:
		return "recording"
	case Live | Recording:
		return "live+recording"
	}
	return "none"
}

// ParseRights reads names as the API takes them.
func ParseRights(names []string) (Right, error) {
	var r Right
	for _, n := range names {
		switch n {
		case "live":
			r |= Live
		case "recording":
			r |= Recording
		default:
			return 0, errors.New(`rights are "live" and "recording"`)
		}
	}
	if r == 0 {
		return Live | Recording, nil
	}
	return r, nil
}

// Errors of a check. ErrRequired answers 401, the others 403; none says
// whether the stream exists.
var (
	ErrRequired = errors.New("a playback token is required")
	ErrInvalid  = errors.New("the playback token is invalid, expired or revoked")
)

// Limits of a token's lifetime.
const (
	MinTTL = time.Minute
	MaxTTL = 366 * 24 * time.Hour
)

// Generations persists each stream's generation.
type Generations interface {
	Generations(ctx context.Context) (map[string]uint32, error)
	SetGeneration(ctx context.Context, streamID string, gen uint32) error
}

// Signer makes and checks tokens. It is safe for concurrent use.
type Signer struct {
	ttl   time.Duration
	store Generations
	macs  sync.Pool // of hash.Hash keyed with the signing key
	now   func() time.Time

	mu    sync.RWMutex
	gens  map[string]uint32
	cache map[cacheKey]minted
}

type cacheKey struct {
	id     string
	rights Right
}

type minted struct {
	token string
	exp   time.Time
	gen   uint32
}

// New makes a signer with key (at least 32 bytes; derive it from a secret
// kept across restarts) whose handed-out tokens last ttl.
func New(key []byte, ttl time.Duration, store Generations) (*Signer, error) {
	if len(key) < 32 {
		return nil, errors.New("access: the key is shorter than 32 bytes")
	}
	k := append([]byte(nil), key...)
	s := &Signer{ttl: ttl, store: store, now: time.Now, gens: map[string]uint32{}, cache: map[cacheKey]minted{}}
	s.macs.New = func() any { return hmac.New(sha256.New, k) }
	if store != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g, err := store.Generations(ctx)
		if err != nil {
			return nil, err
		}
		s.gens = g
	}
	return s, nil
}

// sigLen is the signature's length in bytes (128 bits) and encoded.
const (
	sigLen    = 16
	sigEncLen = 22
)

func (s *Signer) sign(dst []byte, msg string) []byte {
	m := s.macs.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte(msg))
	var sum [sha256.Size]byte
	out := m.Sum(sum[:0])
	s.macs.Put(m)
	return append(dst, out[:sigLen]...)
}

func (s *Signer) generation(id string) uint32 {
	s.mu.RLock()
	g := s.gens[id]
	s.mu.RUnlock()
	return g
}

// Mint makes a token for stream id granting rights until exp.
func (s *Signer) Mint(id string, rights Right, exp time.Time) string {
	return s.mint(id, rights, exp, s.generation(id))
}

func (s *Signer) mint(id string, rights Right, exp time.Time, gen uint32) string {
	var b strings.Builder
	b.Grow(len(id) + 40)
	b.WriteString(id)
	b.WriteByte('.')
	b.WriteString(strconv.Itoa(int(rights)))
	b.WriteByte('.')
	b.WriteString(strconv.FormatInt(exp.Unix(), 36))
	b.WriteByte('.')
	b.WriteString(strconv.FormatUint(uint64(gen), 36))
	msg := b.String()
	var sig [sigLen]byte
	return msg + "." + base64.RawURLEncoding.EncodeToString(s.sign(sig[:0], msg))
}

// Token is the token glasscast hands out for id with rights: one that
// lasts the signer's ttl, the same one to everybody (so a CDN caches its
// files once) until half its life is gone or the stream's tokens are revoked.
func (s *Signer) Token(id string, rights Right) (string, time.Time) {
	now := s.now()
	k := cacheKey{id, rights}
	s.mu.RLock()
	m, ok := s.cache[k]
	gen := s.gens[id]
	s.mu.RUnlock()
	if ok && m.gen == gen && m.exp.Sub(now) > s.ttl/2 {
		return m.token, m.exp
	}
	exp := now.Add(s.ttl).Truncate(time.Second)
	m = minted{token: s.mint(id, rights, exp, gen), exp: exp, gen: gen}
	s.mu.Lock()
	if len(s.cache) > 100_000 {
		clear(s.cache) // a bound; tokens are cheap to make again
	}
	s.cache[k] = m
	s.mu.Unlock()
	return m.token, m.exp
}

// IsToken says whether a path element is a token rather than a bare id.
func IsToken(seg string) bool { return strings.IndexByte(seg, '.') >= 0 }

// Keep makes tok, a token of this signer's key another node handed out,
// the one this signer hands out for its stream and rights while it has
// more than half its life left: the URLs given out stay the same when
// the stream's session moves to this node. It reports whether it did.
func (s *Signer) Keep(tok string) bool {
	id, rights, exp, err := s.parse(tok)
	if err != nil || exp.Sub(s.now()) <= s.ttl/2 {
		return false
	}
	k := cacheKey{id, rights}
	s.mu.Lock()
	defer s.mu.Unlock()
	if m, ok := s.cache[k]; ok && m.exp.After(exp) {
		return false // one that lasts longer is handed out already
	}
	s.cache[k] = minted{token: tok, exp: exp, gen: s.gens[id]}
	return true
}

// Verify checks a token for the rights need and returns its stream's id.
func (s *Signer) Verify(tok string, need Right) (string, error) {
	id, rights, _, err := s.parse(tok)
	if err != nil || rights&need != need {
		return "", ErrInvalid
	}
	return id, nil
}

// parse checks a token's signature, that it has not expired and that its
// generation is its stream's, and returns what it grants.
func (s *Signer) parse(tok string) (string, Right, time.Time, error) {
	dot := strings.LastIndexByte(tok, '.')
	if dot < 0 || len(tok)-dot-1 != sigEncLen || dot > 256 {
		return "", 0, time.Time{}, ErrInvalid
	}
	msg := tok[:dot]
	var got [sigLen + 2]byte
	n, err := base64.RawURLEncoding.Strict().Decode(got[:], []byte(tok[dot+1:]))
	if err != nil || n != sigLen {
		return "", 0, time.Time{}, ErrInvalid
	}
	var want [sigLen]byte
	if !hmac.Equal(got[:sigLen], s.sign(want[:0], msg)) {
		return "", 0, time.Time{}, ErrInvalid
	}
	// Signed, so well formed: id.rights.exp.gen
	id, rest, _ := strings.Cut(msg, ".")
	r, rest, _ := strings.Cut(rest, ".")
	e, g, _ := strings.Cut(rest, ".")
	rights, err1 := strconv.Atoi(r)
	exp, err2 := strconv.ParseInt(e, 36, 64)
	gen, err3 := strconv.ParseUint(g, 36, 32)
	if err1 != nil || err2 != nil || err3 != nil {
		return "", 0, time.Time{}, ErrInvalid
	}
	if s.now().Unix() >= exp || uint32(gen) != s.generation(id) {
		return "", 0, time.Time{}, ErrInvalid
	}
	return id, Right(rights), time.Unix(exp, 0), nil
}

// Revoke ends every token of a stream issued so far and returns the new
// generation.
func (s *Signer) Revoke(ctx context.Context, id string) (uint32, error) {
	s.mu.Lock()
	gen := s.gens[id] + 1
	s.mu.Unlock()
	if s.store != nil {
		if err := s.store.SetGeneration(ctx, id, gen); err != nil {
			return 0, err
		}
	}
	s.mu.Lock()
	if gen > s.gens[id] {
		s.gens[id] = gen
	}
	for k := range s.cache {
		if k.id == id {
			delete(s.cache, k)
		}
	}
	s.mu.Unlock()
	return gen, nil
}

// RevokeTo revokes a stream's tokens older than gen (a generation the
// cluster already has), keeping gen; a signer already there stays.
func (s *Signer) RevokeTo(ctx context.Context, id string, gen uint32) error {
	s.mu.Lock()
	newer := gen > s.gens[id]
	s.mu.Unlock()
	if !newer {
		return nil
	}
	if s.store != nil {
		if err := s.store.SetGeneration(ctx, id, gen); err != nil {
			return err
		}
	}
	s.Apply(ctx, id, gen)
	return nil
}

// Generation is a stream's generation: tokens minted at an older one are
// revoked.
func (s *Signer) Generation(id string) uint32 { return s.generation(id) }

// Apply takes a stream's generation from elsewhere (another node revoked
// its tokens): tokens older than gen stop working here too, and gen is
// kept. It reports whether gen was newer than this signer's.
func (s *Signer) Apply(ctx context.Context, id string, gen uint32) bool {
	s.mu.Lock()
	newer := gen > s.gens[id]
	if newer {
		s.gens[id] = gen
		for k := range s.cache {
			if k.id == id {
				delete(s.cache, k)
			}
		}
	}
	s.mu.Unlock()
	if newer && s.store != nil {
		s.store.SetGeneration(ctx, id, gen)
	}
	return newer
}

// GrantValue is the request path value under which the guard of the media
// routes leaves the path element a request was made with (a token, or a
// public stream's id): the URLs a page or a playlist builds from it must
// carry it on.
const GrantValue = "glasscast-grant"

// Grant is the path element request r was made with, or id when it came
// without one.
func Grant(r *http.Request, id string) string {
	if g := r.PathValue(GrantValue); g != "" {
		return g
	}
	return id
}

// VariantSep joins a grant and the id of one of its stream's renditions
// (an ABR rung) in a path element: the grant of the stream covers them.
const VariantSep = "~"
