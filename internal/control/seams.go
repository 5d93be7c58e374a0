package control

import (
	"fmt"
	"sync"
	"time"

	"github.com/glasscast/glasscast/internal/live"
	"github.com/glasscast/glasscast/protocol"
)

// The control plane's seams: what it needs of the rest of glasscast,
// declared here as small interfaces. This file holds the in-process
// implementations a single node uses; a cluster gives its own (package
// server wires them).

// Clock is the plane's time: the real one, or a test's.
type Clock interface {
	Now() time.Time
	// AfterFunc runs f on a goroutine of its own after d, unless stopped.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc.
type Timer interface {
	// Stop prevents the call if it has not started; it reports whether it
	// did.
	Stop() bool
}

type realClock struct{}

func (realClock) Now() time.Time                            { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// Outputs restreams managed streams to the destinations apps name.
type Outputs interface {
	// Check refuses a destination that can never work.
	Check(url, name string) error
	// MaxPerStream is how many outputs a stream may have.
	MaxPerStream() int
	// Add starts an output of the media stream for app owner. A
	// destination the stream already has is kept as it is, without error.
	Add(st *live.Stream, url, name, owner string) error
	// Statuses lists a stream's outputs as app pkg may see them: the URLs
	// of outputs another app added keep their stream keys hidden.
	Statuses(streamID, pkg string) []protocol.OutputStatus
}

// Lease is a hold on a user's camera.
type Lease struct {
	// Exclusive: an unmanaged stream, which holds the camera alone.
	// Otherwise the managed stream, which every app that asks shares.
	Exclusive bool
	// Holder is the app of an unmanaged stream; empty for the managed one.
	Holder string
	// StreamID is the stream the lease is for.
	StreamID string
}

// BusyError is a camera held by a lease that excludes the one asked for.
type BusyError struct{ Held Lease }

func (e *BusyError) Error() string {
	if e.Held.Exclusive {
		return fmt.Sprintf("an unmanaged stream of %s holds the camera", e.Held.Holder)
	}
	return "a managed stream holds the camera"
}

// Camera gives out leases on users' cameras: one exclusive lease, or one
// shared one (the managed stream), per user at a time. Calls must not wait
// on a network: the plane makes them under the user's lock.
type Camera interface {
	// Acquire takes the user's camera for l, or fails with *BusyError
	// naming the lease that holds it. Acquiring the lease already held is
	// not an error.
	Acquire(user string, l Lease) error
	// Release gives back l; a lease no longer held is ignored.
	Release(user string, l Lease)
	// Held is the user's current lease, if any.
	Held(user string) (Lease, bool)
}

// Directory finds the user whose managed stream has an id, for the routes
// that name a stream rather than a user (an app's outputs).
type Directory interface {
	Put(streamID, user string)
	Lookup(streamID string) (user string, ok bool)
	Delete(streamID string)
}

// LocalCamera is the Camera of a single node: leases in memory.
type LocalCamera struct {
	mu     sync.Mutex
	leases map[string]Lease
}

// NewLocalCamera makes an empty one.
func NewLocalCamera() *LocalCamera { return &LocalCamera{leases: map[string]Lease{}} }

func (c *LocalCamera) Acquire(user string, l Lease) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if held, ok := c.leases[user]; ok && held != l {
		return &BusyError{Held: held}
	}
	c.leases[user] = l
	return nil
}

func (c *LocalCamera) Release(user string, l Lease) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leases[user] == l {
		delete(c.leases, user)
	}
}

func (c *LocalCamera) Held(user string) (Lease, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.leases[user]
	return l, ok
}

// LocalDirectory is the Directory of a single node.
type LocalDirectory struct {
	mu sync.Mutex
	m  map[string]string
}

// NewLocalDirectory makes an empty one.
func NewLocalDirectory() *LocalDirectory { return &LocalDirectory{m: map[string]string{}} }

func (d *LocalDirectory) Put(streamID, user string) {
	d.mu.Lock()
	d.m[streamID] = user
	d.mu.Unlock()
}

func (d *LocalDirectory) Lookup(streamID string) (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	u, ok := d.m[streamID]
	return u, ok
}

func (d *LocalDirectory) Delete(streamID string) {
	d.mu.Lock()
	delete(d.m, streamID)
	d.mu.Unlock()
}
