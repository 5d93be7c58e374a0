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
	path := filepath.Join(dataDir, SecretFile)
	if b, err := os.ReadFile(path); err == nil {
		s := strings.TrimSpace(string(b))
		if len(s) < 32 {
			return nil, fmt.Errorf("%s: the secret is too short", path)
		}
		return []byte(s), nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return nil, err
	}
	b := make([]byte, 32)
	rand.Read(b)
	s := hex.EncodeToString(b)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return LoadSecret("", dataDir) // another process made it first
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.WriteString(s + "\n"); err != nil {
		return nil, err
	}
	return []byte(s), nil
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
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}))
	if err != nil {
		return "", ErrToken
	}
	if c.Email == "" {
		return "", ErrNoUser
	}
	return c.Email, nil
}
