package auth

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestTokens(t *testing.T) {
	dir := t.TempDir()
	secret, err := LoadSecret("", dir)
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadSecret("", dir)
	if err != nil || string(again) != string(secret) {
		t.Fatalf("the secret changed between loads: %v", err)
	}
	tok, err := Issue(secret, "u@example.com", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if user, err := Verify(secret, tok); err != nil || user != "u@example.com" {
		t.Fatalf("Verify = %q, %v", user, err)
	}
	if _, err := Verify([]byte("another secret, at least 32 bytes!!"), tok); !errors.Is(err, ErrToken) {
		t.Fatalf("wrong secret: %v", err)
	}
	expired, _ := Issue(secret, "u@example.com", -time.Minute)
	if _, err := Verify(secret, expired); !errors.Is(err, ErrToken) {
		t.Fatalf("expired: %v", err)
	}
	none := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"email": "u@example.com"})
	s, _ := none.SignedString(jwt.UnsafeAllowNoneSignatureType)
	if _, err := Verify(secret, s); !errors.Is(err, ErrToken) {
		t.Fatalf("alg none accepted: %v", err)
	}
	forever, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"email": "u@example.com"}).SignedString(secret)
	if _, err := Verify(secret, forever); !errors.Is(err, ErrToken) {
		t.Fatalf("a token that never expires: %v", err)
	}
	noEmail, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "x", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(secret)
	if _, err := Verify(secret, noEmail); !errors.Is(err, ErrNoUser) {
		t.Fatalf("no email: %v", err)
	}
	if _, err := Verify(secret, strings.Repeat("a", MaxTokenBytes+1)); !errors.Is(err, ErrToken) {
		t.Fatal("oversized token accepted")
	}
}

func FuzzVerify(f *testing.F) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	tok, _ := Issue(secret, "u@example.com", time.Hour)
	f.Add(tok)
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, s string) {
		if user, err := Verify(secret, s); err == nil && user == "" {
			t.Fatal("verified a token without a user")
		}
	})
}
