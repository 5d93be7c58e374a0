// Package event delivers values in order to one function on a goroutine of
// its own: the way glasscast's components hear of each other's changes
// without blocking the one that changed and without a goroutine per
// notification. A Queue never blocks its producers; what its consumer has
// not taken yet waits in memory, in order.
package event

import (
	"context"
	"runtime/pprof"
	"sync"
)

// Queue hands what is pushed to its function, one at a time, in the order
// pushed, on the queue's own goroutine.
type Queue[T any] struct {
	name string
	wg   *sync.WaitGroup
	fn   func(T)
	wake chan struct{}
	done chan struct{}

	mu      sync.Mutex
	pending []T
	closed  bool
}

// NewQueue starts a queue calling fn on a goroutine labelled
// queue=name (goroutine profiles show it). wg, when set, counts the
// goroutine until the queue is closed and drained. Close stops it.
func NewQueue[T any](name string, wg *sync.WaitGroup, fn func(T)) *Queue[T] {
	q := &Queue[T]{name: name, wg: wg, fn: fn, wake: make(chan struct{}, 1), done: make(chan struct{})}
	if wg != nil {
		wg.Add(1)
	}
	go pprof.Do(context.Background(), pprof.Labels("queue", name), func(context.Context) { q.run() })
	return q
}

// Push queues v; it never blocks. It reports false once the queue is
// closed (v is dropped).
func (q *Queue[T]) Push(v T) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	q.pending = append(q.pending, v)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return true
}

// Close stops taking values; what was pushed before is still delivered.
// It does not wait (the function may be the one calling it): Done says
// when the last call has returned.
func (q *Queue[T]) Close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Done is closed once the queue is closed and its function has returned
// for the last time.
func (q *Queue[T]) Done() <-chan struct{} { return q.done }

// Len is how many values wait to be delivered.
func (q *Queue[T]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}

func (q *Queue[T]) run() {
	defer func() {
		close(q.done)
		if q.wg != nil {
			q.wg.Done()
		}
	}()
	var batch []T
	for {
		q.mu.Lock()
		batch, q.pending = q.pending, batch[:0]
		closed := q.closed
		q.mu.Unlock()
		for i, v := range batch {
			q.fn(v)
			var zero T
			batch[i] = zero // let what was delivered go
		}
		if len(batch) > 0 {
			continue // more may have come meanwhile
		}
		if closed {
			return
		}
		<-q.wake
	}
}
