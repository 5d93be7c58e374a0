package cluster

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
)

// A Sealer encrypts what nodes tell each other over NATS that may hold a
// secret (a forwarded request's body and its answer, a bridged app
// socket's messages: a platform's stream key in an output, an ingest URL):
// NATS carries it, but only the nodes, which share the JWT secret, read
// it, not a NATS server's operator or a client that got onto the bus.
type Sealer struct {
	aead cipher.AEAD
}

// NewSealer keys a Sealer from the secret every node shares.
func NewSealer(secret []byte) (*Sealer, error) {
	if len(secret) == 0 {
		return nil, errors.New("sealing needs the nodes' shared secret")
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("glasscast: sealed messages between nodes, v1"))
	block, err := aes.NewCipher(m.Sum(nil))
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// Overhead is how many bytes Seal adds.
func (s *Sealer) Overhead() int { return s.aead.NonceSize() + s.aead.Overhead() }

// Seal encrypts and authenticates msg; subject binds it to where it is
// sent, so that a sealed message cannot be replayed onto another subject.
func (s *Sealer) Seal(subject string, msg []byte) []byte {
	out := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(msg)+s.aead.Overhead())
	rand.Read(out)
	return s.aead.Seal(out, out, msg, []byte(subject))
}

// ErrUnsealed is a message that was not sealed by a node for subject.
var ErrUnsealed = errors.New("a message not sealed by a node of this cluster")

// Open returns what Seal sealed for subject.
func (s *Sealer) Open(subject string, sealed []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return nil, ErrUnsealed
	}
	msg, err := s.aead.Open(nil, sealed[:n], sealed[n:], []byte(subject))
	if err != nil {
		return nil, ErrUnsealed
	}
	return msg, nil
}
