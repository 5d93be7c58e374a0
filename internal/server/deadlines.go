package server

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// Slow clients may not hold the server's goroutines, sockets and files:
// a request's body must arrive within bodyTimeout, and a media response or
// download must make progress (each write finishing) within stallTimeout.
const (
	bodyTimeout  = 15 * time.Second
	stallTimeout = 20 * time.Second
)

// connFlags is per connection: whether a media response left a write
// deadline on it that the next request must clear.
type connFlags struct{ writeDeadline atomic.Bool }

type connKey struct{}

func withConnFlags(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, &connFlags{})
}

// deadlines wraps every route: the body of a request is read under a
// deadline, lifted once it has been read whole (so a handler that works on
// longer is not cut off), and a write deadline a media response left on a
// kept-alive connection is cleared for the next request.
func deadlines(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cf, _ := r.Context().Value(connKey{}).(*connFlags); cf != nil && cf.writeDeadline.Swap(false) {
			http.NewResponseController(w).SetWriteDeadline(time.Time{})
		}
		if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
			rc := http.NewResponseController(w)
			if rc.SetReadDeadline(time.Now().Add(bodyTimeout)) == nil {
				r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// deadlineBody lifts the read deadline once the body has been read.
type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	done bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !b.done {
		b.done = true
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			b.rc.SetReadDeadline(time.Time{})
		}
	}
	return n, err
}

// progress wraps media and download routes: every write must finish
// within stallTimeout of its start, so a client that stops reading is cut
// off and its goroutine, socket and files are let go.
func progress(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pw := &progressWriter{ResponseWriter: w}
		pw.dl, _ = w.(writeDeadliner)
		next.ServeHTTP(pw, r)
		if !pw.set.IsZero() {
			// The rest of the response is flushed after the handler: keep a
			// deadline for it, and have the next request clear it.
			pw.dl.SetWriteDeadline(time.Now().Add(stallTimeout))
			if cf, _ := r.Context().Value(connKey{}).(*connFlags); cf != nil {
				cf.writeDeadline.Store(true)
			}
		}
	})
}

// writeDeadliner is the server's own ResponseWriter (what
// http.ResponseController calls), asked directly to save an allocation on
// every media request.
type writeDeadliner interface {
	SetWriteDeadline(time.Time) error
}

type progressWriter struct {
	http.ResponseWriter
	dl  writeDeadliner // nil: not the server's writer, no deadlines
	set time.Time      // when the deadline was last moved
}

func (p *progressWriter) Write(b []byte) (int, error) {
	// Moving the deadline costs a timer update; once a second is enough.
	if p.dl != nil {
		if now := time.Now(); now.Sub(p.set) > time.Second {
			if p.dl.SetWriteDeadline(now.Add(stallTimeout)) == nil {
				p.set = now
			}
		}
	}
	n, err := p.ResponseWriter.Write(b)
	httpBytesOut.Add(uint64(n))
	return n, err
}

// httpBytesOut counts what media routes and downloads wrote, for metrics.
var httpBytesOut atomic.Uint64

// Unwrap lets http.ResponseController reach the connection.
func (p *progressWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }

// Flush passes flushes through.
func (p *progressWriter) Flush() { http.NewResponseController(p.ResponseWriter).Flush() }
