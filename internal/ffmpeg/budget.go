// Package ffmpeg runs glasscast's ffmpeg processes, the one way: each in a
// process group of its own killed whole (Command), within a budget of
// encoders the whole server shares (Budget), with the tail of its stderr
// for its last error (Tail, Err).
package ffmpeg

import (
	"context"
	"fmt"
	"strings"
	"sync"
)

// Budget bounds the encoders (ffmpeg running libx264) the whole server runs
// at once: transcoded outputs and ABR ladders share it. A nil *Budget has
// no bound.
type Budget struct {
	slots chan struct{}
}

// NewBudget makes a budget of n encoders; n <= 0 means no bound (nil).
func NewBudget(n int) *Budget {
	if n <= 0 {
		return nil
	}
	return &Budget{slots: make(chan struct{}, n)}
}

// Cap is the budget's size (0: no bound).
func (b *Budget) Cap() int {
	if b == nil {
		return 0
	}
	return cap(b.slots)
}

// InUse is how many encoders run now.
func (b *Budget) InUse() int {
	if b == nil {
		return 0
	}
	return len(b.slots)
}

// TryAcquire takes a slot if one is free.
func (b *Budget) TryAcquire() bool {
	if b == nil {
		return true
	}
	select {
	case b.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

// Acquire waits for a slot until ctx ends.
func (b *Budget) Acquire(ctx context.Context) error {
	if b == nil {
		return nil
	}
	select {
	case b.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Release gives a slot back.
func (b *Budget) Release() {
	if b != nil {
		<-b.slots
	}
}

// Full is the text of a transcoder refused for want of a slot.
func (b *Budget) Full() string {
	return fmt.Sprintf("the server already runs its most transcoders (%d, --max-transcodes); this starts as soon as one stops", b.Cap())
}

// Tail keeps the last 4 KiB written to it: a helper process's
// stderr, for its last error.
type Tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *Tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 4096 {
		t.buf = t.buf[len(t.buf)-4096:]
	}
	return len(p), nil
}

func (t *Tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// LastLine is the last line of s.
func LastLine(s string) string {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
