package cluster

import (
	"bytes"
	"errors"
	"testing"
)

func TestSealer(t *testing.T) {
	a, err := NewSealer([]byte("the-secret-every-node-shares"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewSealer([]byte("the-secret-every-node-shares"))
	other, _ := NewSealer([]byte("another cluster's secret"))
	msg := []byte(`{"url":"rtmp://a.rtmp.youtube.com/live2/the-platform-key"}`)
	sealed := a.Seal("glasscast.node.n2.http", msg)
	if bytes.Contains(sealed, []byte("the-platform-key")) || len(sealed) != len(msg)+a.Overhead() {
		t.Fatalf("sealed: %q", sealed)
	}
	if got, err := b.Open("glasscast.node.n2.http", sealed); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("opened %q, %v", got, err)
	}
	if _, err := b.Open("glasscast.node.n3.http", sealed); !errors.Is(err, ErrUnsealed) {
		t.Fatalf("opened on another subject: %v", err)
	}
	if _, err := other.Open("glasscast.node.n2.http", sealed); !errors.Is(err, ErrUnsealed) {
		t.Fatalf("opened with another secret: %v", err)
	}
	if _, err := b.Open("glasscast.node.n2.http", msg); !errors.Is(err, ErrUnsealed) {
		t.Fatalf("took a message in clear: %v", err)
	}
	if _, err := NewSealer(nil); err == nil {
		t.Fatal("a sealer with no secret")
	}
}

func TestRedacted(t *testing.T) {
	if got := redacted("nats://glasscast:s3cret@10.0.0.2:4222"); got != "nats://glasscast:xxxxx@10.0.0.2:4222" {
		t.Fatalf("redacted: %q", got)
	}
}
