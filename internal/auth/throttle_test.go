package auth

import (
	"fmt"
	"testing"
	"time"
)

func TestThrottle(t *testing.T) {
	th := NewThrottle(3)
	now := time.Unix(1000, 0)
	th.now = func() time.Time { return now }
	for i := range 3 {
		if d := th.Blocked("a"); d != 0 {
			t.Fatalf("blocked after %d failures: %v", i, d)
		}
		th.Failed("a")
	}
	if d := th.Blocked("a"); d != 20*time.Second {
		t.Fatalf("after 3 failures at 3 a minute: wait %v, want 20s", d)
	}
	if th.Blocked("b") != 0 {
		t.Fatal("another address is blocked")
	}
	now = now.Add(10 * time.Second)
	if d := th.Blocked("a"); d != 10*time.Second {
		t.Fatalf("10 s later: wait %v", d)
	}
	now = now.Add(10 * time.Second)
	if d := th.Blocked("a"); d != 0 {
		t.Fatalf("20 s later: wait %v", d)
	}
	th.Failed("a")
	if th.Blocked("a") == 0 {
		t.Fatal("one failure regained, one spent: blocked again")
	}
	var off *Throttle
	off.Failed("a")
	if NewThrottle(0) != nil || off.Blocked("a") != 0 {
		t.Fatal("a nil throttle refuses")
	}
}

func TestThrottleBounded(t *testing.T) {
	th := NewThrottle(5)
	now := time.Unix(1000, 0)
	th.now = func() time.Time { return now }
	for i := range maxAddrs + 10 {
		now = now.Add(time.Millisecond)
		th.Failed(fmt.Sprint("10.", i>>16, ".", i>>8&255, ".", i&255))
	}
	if n := len(th.buckets); n > maxAddrs {
		t.Fatalf("%d addresses remembered", n)
	}
	// The latest survives.
	last := maxAddrs + 9
	th.Failed(fmt.Sprint("10.", last>>16, ".", last>>8&255, ".", last&255))
	th.Failed(fmt.Sprint("10.", last>>16, ".", last>>8&255, ".", last&255))
	if b := th.buckets[fmt.Sprint("10.", last>>16, ".", last>>8&255, ".", last&255)]; b == nil || b.left > 2.1 {
		t.Fatalf("the latest address was forgotten: %+v", b)
	}
}

func TestClientAddr(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7:5555":             "192.0.2.7",
		"[2001:db8:1:2:3:4:5:6]:443": "2001:db8:1:2::/64",
		"[::ffff:192.0.2.7]:1":       "192.0.2.7",
		"198.51.100.1":               "198.51.100.1",
		"garbage":                    "garbage",
	} {
		if got := ClientAddr(in); got != want {
			t.Errorf("ClientAddr(%q) = %q, want %q", in, got, want)
		}
	}
}
