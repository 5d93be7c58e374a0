// Package testport hands tests a TCP port to give to a peer that binds it
// itself (a Node app, a second glasscast process, an embedded NATS route).
//
// A port the kernel picked for 127.0.0.1:0 and let go of is in the
// ephemeral range: any outgoing connection made before the peer binds it
// may take it as its local port, and the peer fails with EADDRINUSE. So the
// port comes from below that range, where the kernel never picks one, and
// it is checked free on every interface (peers often bind "::").
package testport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
)

const lowest = 10000

var (
	mu    sync.Mutex
	given = map[int]bool{}
)

// Free returns a port no socket holds now and this process has not handed
// out before.
func Free(t testing.TB) int {
	t.Helper()
	top := ephemeralStart()
	mu.Lock()
	defer mu.Unlock()
	for range 1000 {
		p := lowest + rand.IntN(top-lowest)
		if given[p] || !bindable(p) {
			continue
		}
		given[p] = true
		return p
	}
	t.Fatalf("no free TCP port in [%d, %d)", lowest, top)
	return 0
}

func bindable(port int) bool {
	for _, addr := range []string{fmt.Sprintf(":%d", port), fmt.Sprintf("127.0.0.1:%d", port)} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return false
		}
		ln.Close()
	}
	return true
}

// ephemeralStart is the first port of the kernel's ephemeral range (32768
// when it cannot be read).
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	var lo int
	if err == nil {
		fmt.Sscan(strings.TrimSpace(string(b)), &lo)
	}
	if lo <= lowest+1000 {
		lo = 32768
	}
	return lo
}
