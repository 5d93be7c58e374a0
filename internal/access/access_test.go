package access

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

type memGens map[string]uint32

func (m memGens) Generations(context.Context) (map[string]uint32, error) {
	out := map[string]uint32{}
	for k, v := range m {
		out[k] = v
	}
	return out, nil
}

func (m memGens) SetGeneration(_ context.Context, id string, g uint32) error { m[id] = g; return nil }

func newSigner(t testing.TB, store Generations) (*Signer, *time.Time) {
	s, err := New([]byte("0123456789abcdef0123456789abcdef"), time.Hour, store)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	s.now = func() time.Time { return now }
	return s, &now
}

func TestTokens(t *testing.T) {
	store := memGens{}
	s, now := newSigner(t, store)
	tok, exp := s.Token("abc", Live)
	if tok2, _ := s.Token("abc", Live); tok2 != tok {
		t.Fatal("the handed-out token changes between two calls")
	}
	if id, err := s.Verify(tok, Live); err != nil || id != "abc" {
		t.Fatalf("verify: %q %v", id, err)
	}
	if _, err := s.Verify(tok, Recording); !errors.Is(err, ErrInvalid) {
		t.Fatal("a live token opens the recording")
	}
	both := s.Mint("abc", Live|Recording, now.Add(time.Minute))
	if _, err := s.Verify(both, Recording); err != nil {
		t.Fatal(err)
	}
	// Expiry.
	*now = exp
	if _, err := s.Verify(tok, Live); !errors.Is(err, ErrInvalid) {
		t.Fatal("an expired token plays")
	}
	// Past half its life, a new one is handed out.
	*now = exp.Add(-20 * time.Minute)
	if tok3, _ := s.Token("abc", Live); tok3 == tok {
		t.Fatal("a token with a third of its life left is still handed out")
	}
	// Tampering, in every byte.
	fresh, _ := s.Token("abc", Live)
	for i := range fresh {
		b := []byte(fresh)
		b[i] ^= 1
		if _, err := s.Verify(string(b), Live); err == nil {
			t.Fatalf("a token altered at byte %d passes", i)
		}
	}
	// Revocation, kept by the store: a new signer on it refuses old tokens.
	if _, err := s.Revoke(context.Background(), "abc"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Verify(fresh, Live); !errors.Is(err, ErrInvalid) {
		t.Fatal("a revoked token plays")
	}
	after, _ := s.Token("abc", Live)
	if after == fresh || !strings.HasPrefix(after, "abc.") {
		t.Fatalf("after revocation: %q", after)
	}
	s2, now2 := newSigner(t, store)
	*now2 = *now
	if _, err := s2.Verify(fresh, Live); err == nil {
		t.Fatal("a revoked token plays after a restart")
	}
	if _, err := s2.Verify(after, Live); err != nil {
		t.Fatalf("a token of the new generation after a restart: %v", err)
	}
	if _, err := New([]byte("short"), time.Hour, nil); err == nil {
		t.Fatal("a short key is taken")
	}
}

func FuzzVerify(f *testing.F) {
	s, _ := newSigner(f, nil)
	tok, _ := s.Token("abc", Live)
	f.Add(tok)
	f.Add("abc.1.zz.0.AAAAAAAAAAAAAAAAAAAAAA")
	f.Fuzz(func(t *testing.T, in string) {
		if id, err := s.Verify(in, Live); err == nil && in != tok {
			t.Fatalf("%q verifies as %q", in, id)
		}
	})
}

// BenchmarkVerify is the token check every LL-HLS part request makes.
func BenchmarkVerify(b *testing.B) {
	s, _ := newSigner(b, nil)
	tok, _ := s.Token("6c1f0e2a9d3b4c57", Live)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Verify(tok, Live); err != nil {
			b.Fatal(err)
		}
	}
}

// A generation from elsewhere (another node revoked the stream's tokens)
// revokes here too, and is kept; an older one changes nothing.
func TestApply(t *testing.T) {
	store := memGens{}
	s, _ := newSigner(t, store)
	tok, _ := s.Token("abc", Live)
	if _, err := s.Verify(tok, Live); err != nil {
		t.Fatal(err)
	}
	if !s.Apply(context.Background(), "abc", 1) {
		t.Fatal("a newer generation was not taken")
	}
	if _, err := s.Verify(tok, Live); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a token of the old generation: %v", err)
	}
	if store["abc"] != 1 || s.Generation("abc") != 1 {
		t.Fatalf("the generation kept: %d, in use: %d", store["abc"], s.Generation("abc"))
	}
	if s.Apply(context.Background(), "abc", 1) || s.Apply(context.Background(), "abc", 0) {
		t.Fatal("a generation not newer was taken")
	}
	fresh, _ := s.Token("abc", Live)
	if fresh == tok {
		t.Fatal("the cached token of the old generation was handed out again")
	}
	if _, err := s.Verify(fresh, Live); err != nil {
		t.Fatalf("a token of the new generation: %v", err)
	}
}
