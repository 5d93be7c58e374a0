package auth

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Throttle slows down guessing: every client address may fail to
// authenticate (a wrong admin token, API key, core token or stream key)
// a few times a minute, and is refused outright, right or wrong, once it
// has failed more. Each address has a bucket of Per failures that refills
// at Per a minute; a nil *Throttle never refuses.
type Throttle struct {
	per   float64
	every time.Duration // time to regain one failure
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
	// share, when set, is told of each failure counted here (outside the
	// lock), for other nodes to count too.
	share atomic.Pointer[func(addr string)]
}

// Share has f told of every failure Failed counts (in a cluster: so that
// every node counts it). f runs on the caller's goroutine and must not
// block.
func (t *Throttle) Share(f func(addr string)) {
	if t != nil {
		t.share.Store(&f)
	}
}

// FailedElsewhere counts a failure another node counted, without telling
// anyone.
func (t *Throttle) FailedElsewhere(addr string) { t.count(addr) }

type bucket struct {
	left float64 // failures still allowed
	at   time.Time
}

// maxAddrs bounds the addresses a throttle remembers: past it, full buckets
// are forgotten, then (a flood from many addresses) the oldest.
const maxAddrs = 1 << 16

// NewThrottle allows per failures a minute per address; per <= 0: nil, no
// throttling.
func NewThrottle(per int) *Throttle {
	if per <= 0 {
		return nil
	}
	return &Throttle{per: float64(per), every: time.Minute / time.Duration(per), now: time.Now, buckets: map[string]*bucket{}}
}

// refill brings b up to now; t.mu is held.
func (t *Throttle) refill(b *bucket, now time.Time) {
	b.left = min(t.per, b.left+float64(now.Sub(b.at))/float64(t.every))
	b.at = now
}

// Blocked says how long addr (a remote address, see ClientAddr) must wait
// before it may try again: 0 if it may now.
func (t *Throttle) Blocked(addr string) time.Duration {
	if t == nil {
		return 0
	}
	addr = ClientAddr(addr)
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buckets[addr]
	if b == nil {
		return 0
	}
	now := t.now()
	t.refill(b, now)
	if b.left >= 1 {
		return 0
	}
	return time.Duration((1 - b.left) * float64(t.every))
}

// Failed counts a failed authentication from addr.
func (t *Throttle) Failed(addr string) {
	if t == nil {
		return
	}
	t.count(addr)
	if f := t.share.Load(); f != nil {
		(*f)(ClientAddr(addr))
	}
}

func (t *Throttle) count(addr string) {
	if t == nil {
		return
	}
	addr = ClientAddr(addr)
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	b := t.buckets[addr]
	if b == nil {
		if len(t.buckets) >= maxAddrs {
			t.forget(now)
		}
		b = &bucket{left: t.per, at: now}
		t.buckets[addr] = b
	}
	t.refill(b, now)
	b.left = max(0, b.left-1)
}

// forget drops the buckets that are full again, and if that is not enough
// those that last failed in the older half of the span; t.mu is held.
func (t *Throttle) forget(now time.Time) {
	var oldest []time.Time
	for a, b := range t.buckets {
		t.refill(b, now)
		if b.left >= t.per {
			delete(t.buckets, a)
		}
	}
	if len(t.buckets) < maxAddrs/2 {
		return
	}
	for _, b := range t.buckets {
		oldest = append(oldest, b.at)
	}
	cut := midpoint(oldest)
	for a, b := range t.buckets {
		if !b.at.After(cut) {
			delete(t.buckets, a)
		}
	}
}

// midpoint is halfway between the earliest and the latest of ts.
func midpoint(ts []time.Time) time.Time {
	lo, hi := ts[0], ts[0]
	for _, t := range ts {
		if t.Before(lo) {
			lo = t
		}
		if t.After(hi) {
			hi = t
		}
	}
	return lo.Add(hi.Sub(lo) / 2)
}

// ClientAddr is the address failures are counted by, from a remote
// address ("ip:port" or an IP): the IP, and an IPv6 address's /64, which
// one host or site holds whole.
func ClientAddr(remote string) string {
	ap, err := netip.ParseAddrPort(remote)
	var ip netip.Addr
	if err == nil {
		ip = ap.Addr()
	} else if ip, err = netip.ParseAddr(remote); err != nil {
		return remote
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}
