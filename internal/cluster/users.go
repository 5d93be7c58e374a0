package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// usersBucket holds each user's home node: the node their phone's socket
// last connected to, which holds their session (apps, streams, camera).
const usersBucket = "glasscast_users"

// userHome is a user's entry.
type userHome struct {
	User  string    `json:"user"`
	Node  string    `json:"node"`
	Since time.Time `json:"since"`
	V     int       `json:"v,omitempty"` // entryFormat of the build that wrote it
}

// userKey is a user's key in the bucket (user ids are e-mail addresses,
// which keys cannot carry).
func userKey(user string) string {
	h := sha256.Sum256([]byte(user))
	return hex.EncodeToString(h[:16])
}

// usersTTL is how long the users' buckets keep an entry: a day bounds
// what users who never come back leave behind.
const usersTTL = 24 * time.Hour

// mirrored is an entry of this node's copy of a bucket.
type mirrored struct {
	value   []byte
	created time.Time // by the NATS servers' clock, as the bucket's age limit counts
}

// mirror keeps this node's copy of kv's entries (Cluster.mirrors); ttl is
// the bucket's age limit (0: none), which removes entries without telling
// its watchers: the copy drops them as the bucket does.
func (c *Cluster) mirror(kv jetstream.KeyValue, ttl time.Duration) {
	name := kv.Bucket()
	c.mu.Lock()
	c.mirrors[name], c.ttls[name] = map[string]mirrored{}, ttl
	c.mu.Unlock()
	changes := 0
	c.followEntries(kv, func(e jetstream.KeyValueEntry) {
		m := c.mirrors[name]
		if e.Operation() != jetstream.KeyValuePut {
			delete(m, e.Key())
		} else {
			m[e.Key()] = mirrored{value: e.Value(), created: e.Created()}
		}
		if changes++; ttl > 0 && changes%1024 == 0 {
			for k, v := range m {
				if time.Since(v.created) > ttl {
					delete(m, k)
				}
			}
		}
	})
}

// mirrorRead bounds how long a read waits for a bucket.
const mirrorRead = time.Second

// get reads key: from this node's copy of kv when the copy has it and
// copyFirst (the copy follows the bucket within milliseconds, and answers
// while the bucket has no leader: its leader died and the others are
// electing one, which takes NATS up to about ten seconds), else from kv
// (an entry written a moment ago may not be in the copy yet); a bucket
// that does not answer within mirrorRead is answered from the copy. ok
// false: there is no such entry. Reads that must see every write made
// before them (an app whose key was just replaced) are not copyFirst; a
// bucket that did not answer is not asked again for mirrorRead.
func (c *Cluster) get(ctx context.Context, kv jetstream.KeyValue, key string, copyFirst bool) (value []byte, ok bool, err error) {
	name := kv.Bucket()
	c.mu.Lock()
	m, isMirrored := c.mirrors[name]
	v, ok := m[key]
	ttl := c.ttls[name]
	quiet := time.Since(c.unanswered[name]) < mirrorRead
	c.mu.Unlock()
	ok = ok && (ttl == 0 || time.Since(v.created) <= ttl)
	if ok && (copyFirst || quiet) {
		return v.value, true, nil
	}
	rctx, cancel := context.WithTimeout(ctx, mirrorRead)
	e, err := kv.Get(rctx, key)
	cancel()
	switch {
	case err == nil:
		return e.Value(), true, nil
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil, false, nil
	case errors.Is(err, jetstream.ErrInvalidKey) || !isMirrored || ctx.Err() != nil:
		return nil, false, err
	}
	// Not asked again for a moment: the reads that follow (a restore
	// makes a few) answer from the copy at once.
	c.mu.Lock()
	c.unanswered[name] = time.Now()
	c.mu.Unlock()
	if ok {
		return v.value, true, nil
	}
	return nil, false, nil
}

// Users are the users' home nodes.
type Users struct{ c *Cluster }

// Users is the cluster's record of where each user's session is.
func (c *Cluster) Users() *Users { return &Users{c} }

// Claim makes this node the user's home: their phone connected here.
func (u *Users) Claim(ctx context.Context, user string) error {
	if err := u.c.WaitReady(ctx); err != nil {
		return err
	}
	b, _ := json.Marshal(userHome{User: user, Node: u.c.cfg.Node, Since: time.Now().UTC(), V: writeFormat})
	if _, err := u.c.usersKV.Put(ctx, userKey(user), b); err != nil {
		return fmt.Errorf("cluster: user's home: %w", err)
	}
	return nil
}

// Home is the live node that holds the user's session; "" when none does
// (never connected, or its node is gone).
func (u *Users) Home(ctx context.Context, user string) (string, error) {
	node, err := u.Recorded(ctx, user)
	if err != nil || node == "" || !u.c.Alive(node) {
		return "", err
	}
	return node, nil
}

// Moved records here, ahead of the bucket, that the user's session moved
// to node (which is writing it to the bucket, whose leader may be the
// node that died): Recorded says so for a while, whatever the bucket says.
func (u *Users) Moved(user, node string) {
	c := u.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.moves) > 10_000 {
		clear(c.moves) // a bound; each lasts moveHint
	}
	c.moves[user] = move{node: node, at: time.Now()}
}

// moveHint is how long a move told by the node a session moved to stands
// over what the users' bucket says: long enough for the bucket to elect
// a leader and take the write.
const moveHint = 30 * time.Second

// move is a user's session's move to a node, as it told this one.
type move struct {
	node string
	at   time.Time
}

// managedBucket maps managed streams' ids to their users, so that a node
// finds the home of a managed stream an app names.
const managedBucket = "glasscast_managed"

// ManagedUser is the user of a managed stream any node started; "" when
// none did.
func (u *Users) ManagedUser(ctx context.Context, streamID string) (string, error) {
	if err := u.c.WaitReady(ctx); err != nil {
		return "", err
	}
	e, err := u.c.managedKV.Get(ctx, streamID)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("cluster: managed stream %s: %w", streamID, err)
	}
	return string(e.Value()), nil
}

// PutManaged records a managed stream's user.
func (u *Users) PutManaged(ctx context.Context, streamID, user string) error {
	if err := u.c.WaitReady(ctx); err != nil {
		return err
	}
	_, err := u.c.managedKV.Put(ctx, streamID, []byte(user))
	return err
}

// DeleteManaged forgets a managed stream.
func (u *Users) DeleteManaged(ctx context.Context, streamID string) error {
	if err := u.c.WaitReady(ctx); err != nil {
		return err
	}
	err := u.c.managedKV.Delete(ctx, streamID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	return err
}

// cameraBucket records each user's camera lease: which stream holds it,
// for which app, on which node. The user's home node arbitrates the camera
// (its per-user lock); the record lets every node see who holds it.
const cameraBucket = "glasscast_camera"

// CameraLease is a user's camera lease as the cluster records it.
type CameraLease struct {
	User string `json:"user"`
	Node string `json:"node"` // the user's home, which gave it out
	// Exclusive: an unmanaged stream of Holder; otherwise the managed
	// stream every app shares.
	Exclusive bool      `json:"exclusive,omitempty"`
	Holder    string    `json:"holder,omitempty"`
	StreamID  string    `json:"streamId"`
	Since     time.Time `json:"since"`
	V         int       `json:"v,omitempty"` // entryFormat of the build that wrote it
}

// PutLease records the user's camera lease, given out by this node.
func (u *Users) PutLease(ctx context.Context, l CameraLease) error {
	if err := u.c.WaitReady(ctx); err != nil {
		return err
	}
	l.Node, l.V = u.c.cfg.Node, writeFormat
	b, _ := json.Marshal(l)
	if _, err := u.c.cameraKV.Put(ctx, userKey(l.User), b); err != nil {
		return fmt.Errorf("cluster: camera lease: %w", err)
	}
	return nil
}

// DeleteLease forgets the user's camera lease for streamID, if it is still
// the one recorded.
func (u *Users) DeleteLease(ctx context.Context, user, streamID string) error {
	if err := u.c.WaitReady(ctx); err != nil {
		return err
	}
	e, err := u.c.cameraKV.Get(ctx, userKey(user))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cluster: camera lease: %w", err)
	}
	var l CameraLease
	if json.Unmarshal(e.Value(), &l) == nil && l.StreamID != streamID {
		return nil // a newer lease
	}
	err = u.c.cameraKV.Delete(ctx, userKey(user), jetstream.LastRevision(e.Revision()))
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
			return nil // replaced meanwhile
		}
		return fmt.Errorf("cluster: camera lease: %w", err)
	}
	return nil
}

// Lease is the user's camera lease as recorded; false when none is, or
// the node that gave it out is gone.
func (u *Users) Lease(ctx context.Context, user string) (CameraLease, bool, error) {
	if err := u.c.WaitReady(ctx); err != nil {
		return CameraLease{}, false, err
	}
	b, ok, err := u.c.get(ctx, u.c.cameraKV, userKey(user), true)
	if err != nil {
		return CameraLease{}, false, fmt.Errorf("cluster: camera lease: %w", err)
	}
	var l CameraLease
	if !ok || json.Unmarshal(b, &l) != nil || l.User != user || !u.c.Alive(l.Node) {
		return CameraLease{}, false, nil
	}
	return l, true, nil
}

// sessionsBucket holds each user's session as their home last recorded
// it (sealed: it names the glasses' publish key), for the node that goes
// on with it when the home dies.
const sessionsBucket = "glasscast_sessions"

// PutSession records a user's session (sealed by the caller); nil forgets
// it.
func (u *Users) PutSession(ctx context.Context, user string, sealed []byte) error {
	if err := u.c.WaitReady(ctx); err != nil {
		return err
	}
	var err error
	if sealed == nil {
		err = u.c.sessionsKV.Delete(ctx, userKey(user))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			err = nil
		}
	} else {
		_, err = u.c.sessionsKV.Put(ctx, userKey(user), sealed)
	}
	if err != nil {
		return fmt.Errorf("cluster: user's session: %w", err)
	}
	return nil
}

// Session is a user's session as recorded (sealed); nil when none is.
func (u *Users) Session(ctx context.Context, user string) ([]byte, error) {
	if err := u.c.WaitReady(ctx); err != nil {
		return nil, err
	}
	b, _, err := u.c.get(ctx, u.c.sessionsKV, userKey(user), true)
	if err != nil {
		return nil, fmt.Errorf("cluster: user's session: %w", err)
	}
	return b, nil
}

// Recorded is the node recorded as the user's home, alive or not ("":
// none).
func (u *Users) Recorded(ctx context.Context, user string) (string, error) {
	if err := u.c.WaitReady(ctx); err != nil {
		return "", err
	}
	u.c.mu.Lock()
	mv, moved := u.c.moves[user]
	u.c.mu.Unlock()
	if moved && time.Since(mv.at) < moveHint {
		return mv.node, nil
	}
	b, ok, err := u.c.get(ctx, u.c.usersKV, userKey(user), true)
	if err != nil {
		return "", fmt.Errorf("cluster: user's home: %w", err)
	}
	var h userHome
	if !ok || json.Unmarshal(b, &h) != nil || h.User != user {
		return "", nil
	}
	return h.Node, nil
}
