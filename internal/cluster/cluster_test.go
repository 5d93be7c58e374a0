package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/cmaf"
	"github.com/glasscast/glasscast/internal/store"
	"github.com/glasscast/glasscast/internal/store/storetest"
	"github.com/glasscast/glasscast/internal/testport"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func freePort(t *testing.T) int { return testport.Free(t) }

// waitNodes waits until c sees exactly the named nodes, all alive.
func waitNodes(t *testing.T, c *Cluster, names ...string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		ch := c.Changed()
		got := c.Nodes()
		ok := len(got) == len(names)
		for i := range got {
			ok = ok && got[i].Alive && got[i].Name == names[i]
		}
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("%s sees %+v, want %v", c.Node(), got, names)
		}
	}
}

// Three nodes with embedded NATS routed to each other see each other, with
// their figures; one that leaves is gone from the others' view.
func TestThreeNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: runs without -short (./scripts/test runs it)")
	}
	ports := []int{freePort(t), freePort(t), freePort(t)}
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	nodes := make([]*Cluster, 3)
	certs := makeCerts(t, "n1", "n2", "n3")
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var peers []string
			for j, r := range routes {
				if j != i {
					peers = append(peers, r)
				}
			}
			nodes[i], errs[i] = Start(Config{Node: fmt.Sprintf("n%d", i+1), Listen: fmt.Sprintf("127.0.0.1:%d", ports[i]), Routes: peers,
				Dir: t.TempDir(), TLS: certs(fmt.Sprintf("n%d", i+1)), Public: fmt.Sprintf("http://n%d.test", i+1), Version: "test", Heartbeat: 200 * time.Millisecond,
				Stats: func() Stats { return Stats{Streams: i, Sessions: 10 * i} }}, quiet)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i+1, err)
		}
	}
	defer func() {
		for _, c := range nodes {
			if c != nil {
				c.Close()
			}
		}
	}()
	waitNodes(t, nodes[0], "n1", "n2", "n3")
	waitNodes(t, nodes[1], "n2", "n1", "n3")
	waitNodes(t, nodes[2], "n3", "n1", "n2")
	for _, n := range nodes[0].Nodes() {
		want := map[string]int{"n1": 0, "n2": 1, "n3": 2}[n.Name]
		if n.Streams != want || n.Sessions != 10*want || n.Public != "http://"+n.Name+".test" || n.Version != "test" {
			t.Fatalf("n1 sees %+v", n)
		}
	}
	checkApps(t, nodes)
	nodes[2].Close()
	nodes[2] = nil
	waitNodes(t, nodes[0], "n1", "n2")
	waitNodes(t, nodes[1], "n2", "n1")
}

// checkApps: the apps bucket keeps its contract; an app added on one node
// is known on another; two nodes adding the same package at once: one
// wins; a node's own apps move into the cluster when it joins.
func checkApps(t *testing.T, nodes []*Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	storetest.Apps(t, nodes[0].Apps())
	if a, err := nodes[2].Apps().App(ctx, "com.example.a"); err != nil || a.PublicURL != "http://127.0.0.1:3000" {
		t.Fatalf("n3 does not know the app added on n1: %+v %v", a, err)
	}
	for range 10 {
		pkg := "com.example.race" + store.NewAPIKey()[4:12]
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i := range errs {
			wg.Go(func() {
				errs[i] = nodes[i+1].Apps().AddApp(ctx, store.App{PackageName: pkg, PublicURL: fmt.Sprintf("http://n%d", i+2), KeyHash: store.HashKey("k")})
			})
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, store.ErrExists):
				t.Fatalf("a racing add: %v", err)
			}
		}
		if won != 1 {
			t.Fatalf("two nodes adding %s at once: %d won (%v)", pkg, won, errs)
		}
	}

	local, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	for _, pkg := range []string{"com.example.a", "com.example.mine"} {
		if err := local.PutApp(ctx, store.App{PackageName: pkg, PublicURL: "http://local", KeyHash: store.HashKey("l")}); err != nil {
			t.Fatal(err)
		}
	}
	moved, err := nodes[1].Apps().MoveApps(ctx, local)
	if err != nil || moved != 1 {
		t.Fatalf("moved %d apps (%v), want the one the cluster lacked", moved, err)
	}
	if a, err := nodes[0].Apps().App(ctx, "com.example.a"); err != nil || a.PublicURL != "http://127.0.0.1:3000" {
		t.Fatalf("the cluster's app was replaced by a node's own: %+v %v", a, err)
	}
	if a, err := nodes[0].Apps().App(ctx, "com.example.mine"); err != nil || a.PublicURL != "http://local" {
		t.Fatalf("the node's own app is not in the cluster: %+v %v", a, err)
	}
	if left, _ := local.Apps(ctx); len(left) != 0 {
		t.Fatalf("the node still keeps %d apps of its own", len(left))
	}
}

// makeCerts makes a cluster CA and certificates for nodes, as glasscast
// cluster certs does, and gives a node's TLS files by its name.
func makeCerts(t *testing.T, nodes ...string) func(node string) TLSFiles {
	t.Helper()
	dir := t.TempDir()
	if err := MakeCerts(dir, nodes, nil); err != nil {
		t.Fatal(err)
	}
	return func(node string) TLSFiles {
		cert, key := NodeCertFiles(dir, node)
		return TLSFiles{Cert: cert, Key: key, CA: filepath.Join(dir, CACertFile)}
	}
}

// Insecure routes (--nats-insecure): a node whose secret is not the
// others' gets no route to them: it stays out of their cluster, and they
// out of its.
func TestOtherSecretKeptOut(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: runs without -short (./scripts/test runs it)")
	}
	ports := []int{freePort(t), freePort(t), freePort(t)}
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	var nodes []*Cluster
	defer func() {
		for _, c := range nodes {
			c.Close()
		}
	}()
	for i, secret := range []string{"shared", "shared", "another"} {
		var peers []string
		for j, r := range routes {
			if j != i {
				peers = append(peers, r)
			}
		}
		c, err := Start(Config{Node: fmt.Sprintf("n%d", i+1), Listen: fmt.Sprintf("127.0.0.1:%d", ports[i]), Routes: peers,
			Dir: t.TempDir(), Secret: []byte(secret), Heartbeat: 200 * time.Millisecond}, quiet)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, c)
	}
	waitNodes(t, nodes[0], "n1", "n2")
	waitNodes(t, nodes[1], "n2", "n1")
	// n3 has been trying its routes all along, and n1 and n2 theirs to it.
	if r := nodes[2].Routes(); r != 0 {
		t.Fatalf("the node with another secret has %d routes", r)
	}
	for _, c := range nodes[:2] {
		if r := c.Routes(); r < 1 {
			t.Fatalf("%s has no route to its peer with the same secret", c.Node())
		}
	}
	if n := nodes[2].Nodes(); len(n) != 0 {
		t.Fatalf("the node with another secret sees %+v", n)
	}
}

// A node watched on more streams than a heartbeat holds tells of its most
// watched ones, within the bound: its heartbeat is still written.
func TestHeartbeatFits(t *testing.T) {
	n := Node{Name: "n1", Stats: Stats{Watched: map[string]Viewers{}}}
	for i := range 5000 {
		n.Watched[fmt.Sprintf("%016x", i)] = Viewers{LLHLS: i % 97}
	}
	var got Node
	b := heartbeat(n)
	if len(b) > maxHeartbeat || json.Unmarshal(b, &got) != nil {
		t.Fatalf("a heartbeat of %d bytes (bound %d)", len(b), maxHeartbeat)
	}
	if len(got.Watched) < 100 {
		t.Fatalf("the heartbeat tells of %d streams", len(got.Watched))
	}
	least := 96
	for _, v := range got.Watched {
		least = min(least, v.LLHLS)
	}
	for id, v := range n.Watched {
		if _, kept := got.Watched[id]; !kept && v.LLHLS > least {
			t.Fatalf("stream %s (%d viewers) left out, one with %d kept", id, v.LLHLS, least)
		}
	}
	// Positions of 1000 streams (a node at --max-streams) do not fit
	// either: those of the most watched are kept.
	n.Watched, n.Positions = map[string]Viewers{}, map[string]cmaf.Position{}
	for i := range 1000 {
		id := fmt.Sprintf("%016x", i)
		n.Watched[id] = Viewers{LLHLS: i % 7}
		n.Positions[id] = cmaf.Position{Seq: uint64(i), TrackSeq: map[string]uint64{"video": 1}, Part: map[string]uint64{"video": 10}}
	}
	got = Node{}
	if b = heartbeat(n); len(b) > maxHeartbeat || json.Unmarshal(b, &got) != nil {
		t.Fatalf("a heartbeat with positions of %d bytes (bound %d)", len(b), maxHeartbeat)
	}
	if len(got.Positions) < 100 || len(got.Watched) < 100 {
		t.Fatalf("the heartbeat tells of %d positions, %d streams' viewers", len(got.Positions), len(got.Watched))
	}
	least = 6
	for id := range got.Positions {
		least = min(least, n.Watched[id].LLHLS)
	}
	for id, v := range n.Watched {
		if _, kept := got.Positions[id]; !kept && v.LLHLS > least {
			t.Fatalf("the position of %s (%d viewers) left out, one with %d kept", id, v.LLHLS, least)
		}
	}
	small := Node{Name: "n1", Stats: Stats{Watched: map[string]Viewers{"a": {DASH: 1}}}}
	if b := heartbeat(small); !bytes.Contains(b, []byte(`"a"`)) {
		t.Fatalf("a small heartbeat lost its stream: %s", b)
	}
}
