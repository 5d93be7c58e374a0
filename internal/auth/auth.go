// Package auth issues and checks the glasses' core tokens: HS256 JWTs whose
// "email" claim is the user id, signed with the server's secret. The secret
// comes from the configuration or is generated once and kept in the data
// directory.
package auth

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Errors of Verify.
var (
	ErrNoUser = errors.New("invalid core token: no user id")
	ErrToken  = errors.New("invalid core token")
)

// SecretFile is the secret's file name in the data directory.
const SecretFile = "jwt-secret"

// MaxTokenBytes bounds the tokens Verify looks at.
const MaxTokenBytes = 8 << 10

// LoadSecret returns the configured secret, or the one kept in dataDir,
// generating and keeping one the first time.
func LoadSecret(configured, dataDir string) ([]byte, error) {
	if configured != "" {
		return []byte(configured), nil
	}
	s, _, err := Kept(dataDir, SecretFile, 32)
	return []byte(s), err
}

// Kept returns the secret kept in dataDir/name (0600), generating one of n
// random bytes (hex) the first time; made says it was made now.
func Kept(dataDir, name string, n int) (secret string, made bool, err error) {
	path := filepath.Join(dataDir, name)
	if b, err := os.ReadFile(path); err == nil {
		s := strings.TrimSpace(string(b))
		if len(s) < 32 {
			return "", false, fmt.Errorf("%s: the secret is too short", path)
		}
		return s, false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", false, err
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return "", false, err
	}
	b := make([]byte, n)
	rand.Read(b)
	s := hex.EncodeToString(b)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		s, _, err := Kept(dataDir, name, n) // another process made it first
		return s, false, err
	}
	if err != nil {
		return "", false, err
	}
	defer f.Close()
	if _, err := f.WriteString(s + "\n"); err != nil {
		return "", false, err
	}
	return s, true, nil
}

type claims struct {
	Email string `json:"email"`
	jwt.RegisteredClaims
}

// Issue makes a core token for a user, valid for ttl.
func Issue(secret []byte, user string, ttl time.Duration) (string, error) {
	if user == "" {
		return "", ErrNoUser
	}
	now := time.Now()
	c := claims{Email: user, RegisteredClaims: jwt.RegisteredClaims{
		Subject:   user,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}

// Verify checks a core token and returns its user.
func Verify(secret []byte, token string) (string, error) {
	if len(token) > MaxTokenBytes {
		return "", ErrToken
	}
	var c claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), jwt.WithExpirationRequired())
	if err != nil {
		return "", ErrToken
	}
	if c.Email == "" {
		return "", ErrNoUser
	}
	return c.Email, nil
}
