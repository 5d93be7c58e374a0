package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// A node with TLS routes that dials a route address where something else
// waits (a peer that is down and a listener in its place) sends it only a
// TLS ClientHello, nothing it could reuse: no CONNECT, no password.
func TestRouteDialSendsNoSecret(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		// What a NATS server says first, with no TLS asked for.
		fmt.Fprintf(c, "INFO {\"server_id\":\"FAKE\",\"server_name\":\"fake\",\"version\":\"2.10.0\",\"proto\":1,\"host\":\"127.0.0.1\",\"port\":%d,\"tls_required\":false,\"max_payload\":1048576,\"cluster\":\"%s\"}\r\n",
			ln.Addr().(*net.TCPAddr).Port, Name)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, 4096)
		n, _ := io.ReadAtLeast(c, b, 5)
		got <- b[:n]
	}()
	certs := makeCerts(t, "n1")
	c, err := Start(Config{Node: "n1", Listen: fmt.Sprintf("127.0.0.1:%d", freePort(t)), Routes: []string{"nats://" + ln.Addr().String()},
		Dir: t.TempDir(), TLS: certs("n1"), Secret: []byte("the-shared-secret"), Heartbeat: 200 * time.Millisecond}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var b []byte
	select {
	case b = <-got:
	case <-time.After(20 * time.Second):
		t.Fatal("the node never dialled its route")
	}
	if len(b) < 5 || b[0] != 0x16 || b[1] != 0x03 { // a TLS handshake record
		t.Fatalf("the node sent %q, not a TLS ClientHello", b)
	}
	if bytes.Contains(b, []byte("CONNECT")) || bytes.Contains(b, []byte(routePassword([]byte("the-shared-secret")))) {
		t.Fatalf("the node sent %q", b)
	}
}

// A route to a TLS node is refused to a peer without a certificate from
// the cluster CA: one speaking plain NATS with the old route password, and
// one with a certificate from another CA. Neither gets to see a subject.
func TestRouteRefusesNonMembers(t *testing.T) {
	port := freePort(t)
	certs := makeCerts(t, "n1")
	c, err := Start(Config{Node: "n1", Listen: fmt.Sprintf("127.0.0.1:%d", port), Dir: t.TempDir(), TLS: certs("n1"),
		Secret: []byte("the-shared-secret"), Heartbeat: 200 * time.Millisecond}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	// Plain, with the password the routes once took: the node says
	// nothing (not even its INFO: the routes' TLS handshake comes first)
	// and closes the connection.
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "CONNECT {\"user\":\"glasscast\",\"pass\":\"%s\",\"tls_required\":false,\"name\":\"intruder\"}\r\nPING\r\nSUB > 1\r\n", routePassword([]byte("the-shared-secret")))
	rest, err := io.ReadAll(conn) // until the node closes the connection
	conn.Close()
	if err != nil {
		t.Fatalf("the node kept a plain peer's connection open: %v", err)
	}
	if bytes.Contains(rest, []byte("INFO")) || bytes.Contains(rest, []byte("PONG")) || bytes.Contains(rest, []byte("MSG")) {
		t.Fatalf("a plain peer with the old password was answered: %q", rest)
	}

	// TLS with a certificate from another CA.
	other := makeCerts(t, "n9")("n9")
	pair, err := tls.LoadX509KeyPair(other.Cert, other.Key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := os.ReadFile(certs("n1").CA)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	conn, err = net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(conn, &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, ServerName: "127.0.0.1"})
	err = tc.Handshake()
	if err == nil {
		// TLS 1.3 reports the server's refusal of our certificate at the
		// first read.
		fmt.Fprintf(tc, "CONNECT {\"name\":\"intruder\"}\r\nPING\r\n")
		b := make([]byte, 512)
		var n int
		n, err = tc.Read(b)
		if err == nil {
			t.Fatalf("a peer with another CA's certificate was answered: %q", b[:n])
		}
	}
	if !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("refused with %v, want a certificate error", err)
	}
}

// A stream id no stream can have is not looked up in the cluster, nor one
// it did not have a moment ago: made-up ids cost no key-value reads.
func findSparesTheCluster(t *testing.T, nodes []*Cluster) {
	c := nodes[0]
	reads := make(chan string, 1024)
	sub, err := c.Conn().Subscribe("$JS.API.>", func(m *nats.Msg) {
		if strings.Contains(m.Subject, "glasscast_streams") {
			reads <- m.Subject
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	c.Conn().Flush()
	count := func() int {
		c.Conn().Flush() // every request made so far has reached the subscription
		return len(reads)
	}
	ctx := context.Background()
	for _, id := range []string{"../../etc", "not-an-id", "ABCDEF0123456789", strings.Repeat("a", 4096)} {
		if _, err := c.Streams().Find(ctx, id); !errors.Is(err, ErrNoStream) {
			t.Fatalf("Find(%.20q): %v", id, err)
		}
	}
	if n := count(); n != 0 {
		t.Fatalf("ids no stream can have cost %d key-value reads", n)
	}
	for range 3 {
		if _, err := c.Streams().Find(ctx, "0123456789abcdef"); !errors.Is(err, ErrNoStream) {
			t.Fatal(err)
		}
	}
	if n := count(); n != 1 {
		t.Fatalf("an unknown id asked three times cost %d key-value reads, want 1", n)
	}
}

// Every write of the stream directory is a compare-and-set: a node acting
// on a stale copy of an entry (a sweeper marking a dead node's stream
// reconnecting) cannot undo a takeover made meanwhile, a removal whose
// condition no longer holds removes nothing, and no write is lost among
// nodes writing at once.
func directoryWritesAreCAS(t *testing.T, nodes []*Cluster) {
	ctx := context.Background()
	n1, n2 := nodes[0].Streams(), nodes[1].Streams()
	const id = "0123456789abcdef"
	if wrote, err := n1.Change(ctx, id, func(e *StreamEntry, exists bool) bool {
		*e = StreamEntry{Origin: "n3", Status: "live", KeyHash: "k"}
		return !exists
	}); !wrote || err != nil {
		t.Fatalf("create: %v %v", wrote, err)
	}
	stale, err := n1.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	// n2 takes the stream over.
	if err := n2.Claim(ctx, id, func(e *StreamEntry) error { e.Origin, e.Status = "n2", "idle"; return nil }); err != nil {
		t.Fatal(err)
	}
	// n1, from its stale copy, marks n3's stream reconnecting: only if the
	// entry is still n3's.
	wrote, err := n1.Change(ctx, id, func(e *StreamEntry, exists bool) bool {
		if !exists || e.Origin != stale.Origin {
			return false
		}
		e.Status = "reconnecting"
		return true
	})
	if wrote || err != nil {
		t.Fatalf("a stale change wrote: %v %v", wrote, err)
	}
	if err := n1.Remove(ctx, id, func(e StreamEntry) bool { return e.Origin == "n3" }); err != nil {
		t.Fatal(err)
	}
	if e, err := n2.Get(ctx, id); err != nil || e.Origin != "n2" || e.Status != "idle" {
		t.Fatalf("after the stale change and removal: %+v %v", e, err)
	}
	// Nodes writing at once lose no write.
	var wg sync.WaitGroup
	var mu sync.Mutex
	written := 0
	for i := range 10 {
		wg.Go(func() {
			wrote, _ := nodes[i%2].Streams().Change(ctx, id, func(e *StreamEntry, exists bool) bool {
				n, _ := strconv.Atoi(e.Name)
				e.Name = strconv.Itoa(n + 1)
				return exists
			})
			if wrote {
				mu.Lock()
				written++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	e, err := n1.Get(ctx, id)
	if err != nil || e.Name != strconv.Itoa(written) || written == 0 {
		t.Fatalf("%d writes made, the entry counts %q (%v)", written, e.Name, err)
	}
	if err := n1.Remove(ctx, id, func(e StreamEntry) bool { return e.Origin == "n2" }); err != nil {
		t.Fatal(err)
	}
	if _, err := n2.Get(ctx, id); !errors.Is(err, ErrNoStream) {
		t.Fatalf("after its removal: %v", err)
	}
}

// Two nodes, formed once, for the tests that need a cluster and nothing
// more.
func TestTwoNodes(t *testing.T) {
	certs := makeCerts(t, "n1", "n2")
	ports := []int{freePort(t), freePort(t)}
	var nodes []*Cluster
	for i := range 2 {
		c, err := Start(Config{Node: fmt.Sprintf("n%d", i+1), Listen: fmt.Sprintf("127.0.0.1:%d", ports[i]),
			Routes: []string{fmt.Sprintf("nats://127.0.0.1:%d", ports[1-i])}, Dir: t.TempDir(), TLS: certs(fmt.Sprintf("n%d", i+1)),
			Heartbeat: 200 * time.Millisecond}, quiet)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		nodes = append(nodes, c)
	}
	waitNodes(t, nodes[0], "n1", "n2")
	waitNodes(t, nodes[1], "n2", "n1")
	t.Run("FindSparesTheCluster", func(t *testing.T) { findSparesTheCluster(t, nodes) })
	t.Run("DirectoryWritesAreCAS", func(t *testing.T) { directoryWritesAreCAS(t, nodes) })
	t.Run("LivenessByOwnClock", func(t *testing.T) { livenessByOwnClock(t, nodes) })
	t.Run("GenerationsOnlyRise", func(t *testing.T) { generationsOnlyRise(t, nodes) })
	t.Run("OneOwnerOfADeadNodesStream", func(t *testing.T) { oneOwner(t, nodes) })
	t.Run("NewerFieldsCarried", func(t *testing.T) { newerFieldsCarried(t, nodes) })
}

// An entry a newer build wrote, with a field this build does not know,
// reads as usual here, and keeps that field when this build changes it
// (a rolling upgrade: old and new nodes side by side).
func newerFieldsCarried(t *testing.T, nodes []*Cluster) {
	ctx := context.Background()
	const id = "00000000000000bb"
	newer := `{"id":"` + id + `","origin":"n1","status":"live","createdAt":"2026-12-01T10:00:00Z","since":"2026-12-01T10:00:00Z",` +
		`"keyHash":"` + KeyHash("k") + `","v":2,"region":{"name":"eu-west","weight":3}}`
	if _, err := nodes[0].streamsKV.Create(ctx, id, []byte(newer)); err != nil {
		t.Fatal(err)
	}
	defer nodes[0].Streams().Remove(ctx, id, func(StreamEntry) bool { return true })
	e, err := nodes[1].Streams().Get(ctx, id)
	if err != nil || e.Origin != "n1" || e.Status != "live" || e.V != 2 {
		t.Fatalf("the newer entry read here: %+v %v", e, err)
	}
	if err := nodes[1].Streams().Claim(ctx, id, func(e *StreamEntry) error { e.Origin, e.Status = "n2", "reconnecting"; return nil }); err != nil {
		t.Fatal(err)
	}
	got, err := nodes[0].streamsKV.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(got.Value(), &raw); err != nil {
		t.Fatal(err)
	}
	if string(raw["region"]) != `{"name":"eu-west","weight":3}` || string(raw["origin"]) != `"n2"` ||
		string(raw["status"]) != `"reconnecting"` || string(raw["v"]) != strconv.Itoa(entryFormat) {
		t.Fatalf("after this build's change: %s", got.Value())
	}
	// Nothing carried when there is nothing unknown.
	if b := carryUnknown([]byte(`{"id":"x","v":1}`), []byte(`{"id":"x","status":"live"}`), streamFields()); string(b) != `{"id":"x","status":"live"}` {
		t.Fatalf("carried from a known entry: %s", b)
	}
}

// A playback-token generation only rises: a node recording an older one
// after another recorded a newer (two revocations at once) changes
// nothing.
func generationsOnlyRise(t *testing.T, nodes []*Cluster) {
	ctx := context.Background()
	const id = "00000000000000aa"
	if err := nodes[0].PutGeneration(ctx, id, 5); err != nil {
		t.Fatal(err)
	}
	if err := nodes[1].PutGeneration(ctx, id, 3); err != nil {
		t.Fatal(err)
	}
	got, err := nodes[1].generationsKV.Get(ctx, id)
	if err != nil || string(got.Value()) != "5" {
		t.Fatalf("the generation is %q (%v), want 5", got.Value(), err)
	}
	if err := nodes[1].PutGeneration(ctx, id, 6); err != nil {
		t.Fatal(err)
	}
	if got, err := nodes[0].generationsKV.Get(ctx, id); err != nil || string(got.Value()) != "6" {
		t.Fatalf("the generation is %q (%v), want 6", got.Value(), err)
	}
}

// A node is alive while its heartbeats keep coming, by the hearer's own
// clock, whatever time the node writes in them: one whose clock is 30 s
// behind is alive, one 30 s ahead is not alive forever once it falls
// silent.
func livenessByOwnClock(t *testing.T, nodes []*Cluster) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kv := nodes[1].nodesKV
	beat := func(name string, skew time.Duration) {
		kv.Put(ctx, name, heartbeat(Node{Name: name, Public: "http://" + name + ".test", Heartbeat: time.Now().Add(skew).UTC()}))
	}
	// n8 and n9 keep beating, their clocks off by 30 s either way.
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for ctx.Err() == nil {
			beat("n8", 30*time.Second)
			beat("n9", -30*time.Second)
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
		}
	}()
	waitNodes(t, nodes[0], "n1", "n2", "n8", "n9")
	// Silent from now on: both are silent within a few heartbeats (three
	// of them: 600 ms; well before the 30 s n8 wrote ahead).
	cancel()
	<-done
	silent := time.Now()
	for nodes[0].Alive("n8") || nodes[0].Alive("n9") {
		if time.Since(silent) > 10*time.Second {
			t.Fatalf("n8 or n9 still alive 10 s after its last heartbeat: %+v", nodes[0].Nodes())
		}
		time.Sleep(50 * time.Millisecond) // liveness is a matter of time passing
	}
	kv.Delete(context.Background(), "n8")
	kv.Delete(context.Background(), "n9")
	waitNodes(t, nodes[0], "n1", "n2")
}

// Two nodes claim a dead node's stream at once, 50 times: each time one
// claim wins, the other is refused, and both nodes' copies of the
// directory name the winner.
func oneOwner(t *testing.T, nodes []*Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for round := range 50 {
		id := fmt.Sprintf("%016x", 0xdead0000+round)
		if _, err := nodes[0].Streams().Change(ctx, id, func(e *StreamEntry, exists bool) bool {
			*e = StreamEntry{ID: id, Origin: "gone", Status: "live", KeyHash: KeyHash("k")}
			return !exists
		}); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		won := make([]bool, 2)
		for i, c := range nodes[:2] {
			wg.Go(func() {
				err := c.Streams().Claim(ctx, id, func(e *StreamEntry) error {
					if e.Origin != "gone" {
						return errors.New("taken over already")
					}
					e.Origin, e.Status = c.Node(), "idle"
					return nil
				})
				won[i] = err == nil
			})
		}
		wg.Wait()
		if won[0] == won[1] {
			t.Fatalf("round %d: claims won %v, want one", round, won)
		}
		winner := nodes[0].Node()
		if won[1] {
			winner = nodes[1].Node()
		}
		for _, c := range nodes[:2] {
			deadline := time.Now().Add(10 * time.Second)
			for {
				ch := c.Changed()
				if e, ok := c.Streams().Lookup(id); ok && e.Origin == winner {
					break
				}
				select {
				case <-ch:
				case <-time.After(time.Until(deadline)):
					e, _ := c.Streams().Lookup(id)
					t.Fatalf("round %d: %s's copy names %q, the winner is %s", round, c.Node(), e.Origin, winner)
				}
			}
		}
		nodes[0].Streams().Remove(ctx, id, func(StreamEntry) bool { return true })
	}
}
