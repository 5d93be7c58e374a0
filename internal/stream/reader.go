package stream

import (
	"context"
	"sync"
	"sync/atomic"
)

// Reader takes units out of a hub through a bounded queue. When the queue is
// full the reader loses everything queued and everything up to the next
// keyframe (so it resumes with something decodable), and the loss is counted.
// Read is meant for one goroutine.
type Reader struct {
	hub  *Hub
	name string

	mu      sync.Mutex
	buf     []*Unit
	head, n int
	waitKey bool // dropping until a unit a decoder can start from
	err     error
	notify  chan struct{}

	dropped atomic.Uint64
	lags    atomic.Uint64
}

// Name is what the reader was created as.
func (r *Reader) Name() string { return r.name }

// Dropped counts the units this reader lost to a full queue.
func (r *Reader) Dropped() uint64 { return r.dropped.Load() }

// Lags counts the times this reader's queue overflowed.
func (r *Reader) Lags() uint64 { return r.lags.Load() }

// startable says whether a decoder can begin at u.
func startable(u *Unit) bool {
	return u.Kind == KindEnd || u.Key && (u.Kind == KindVideo || u.Tracks == nil || u.Tracks.Video == nil)
}

// push runs in the publisher's goroutine with the hub locked. It never blocks.
func (r *Reader) push(u *Unit) {
	r.mu.Lock()
	if r.err != nil {
		r.mu.Unlock()
		return
	}
	if r.waitKey {
		if !startable(u) {
			r.mu.Unlock()
			r.dropped.Add(1)
			totals.dropped.Add(1)
			return
		}
		r.waitKey = false
	}
	if r.n == len(r.buf) {
		lost := r.n
		clear(r.buf)
		r.head, r.n = 0, 0
		r.lags.Add(1)
		if !startable(u) {
			r.waitKey = true
			r.mu.Unlock()
			r.dropped.Add(uint64(lost) + 1)
			totals.dropped.Add(uint64(lost) + 1)
			return
		}
		r.dropped.Add(uint64(lost))
		totals.dropped.Add(uint64(lost))
	}
	r.buf[(r.head+r.n)%len(r.buf)] = u
	r.n++
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// Read returns the next unit, waiting for one until ctx ends. After the hub
// closes, queued units are still returned, then ErrClosed.
func (r *Reader) Read(ctx context.Context) (*Unit, error) {
	for {
		r.mu.Lock()
		if r.n > 0 {
			u := r.buf[r.head]
			r.buf[r.head] = nil
			r.head = (r.head + 1) % len(r.buf)
			r.n--
			r.mu.Unlock()
			return u, nil
		}
		err := r.err
		r.mu.Unlock()
		if err != nil {
			return nil, err
		}
		select {
		case <-r.notify:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Len is the number of queued units.
func (r *Reader) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

func (r *Reader) closeWith(err error) {
	r.mu.Lock()
	if r.err == nil {
		r.err = err
	}
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// Close detaches the reader from the hub.
func (r *Reader) Close() {
	r.hub.removeReader(r)
	r.mu.Lock()
	if r.err == nil {
		r.err = ErrClosed
	}
	clear(r.buf)
	r.n = 0
	r.mu.Unlock()
}
