package server_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/cluster"
	"github.com/glasscast/glasscast/internal/config"
	"github.com/glasscast/glasscast/internal/sim"
	"github.com/glasscast/glasscast/sdk"
)

// TestClusterHomeKilled: three nodes behind HAProxy, one public URL. A
// user's phone (the simulator) reaches n3 through the balancer, which
// makes n3 their home; a Go SDK app and an unmodified @mentra/sdk 2.1.29
// app share the user's managed stream, the glasses pushing to n3 through
// the balancer's RTMP frontend. n3 is SIGKILLed: the phone reconnects
// through the balancer to another node, which goes on with the session
// from what n3 recorded; both apps' SDKs reconnect and hear the stream is
// active, at the same URLs; the glasses' push comes back; the URLs play;
// the camera lease is the new home's. n3 comes back, and the new home
// drains (SIGTERM): the same, the session handed over by the draining
// node to n3, which runs the stream (an app leaves it there).
func TestClusterHomeKilled(t *testing.T) {
	parallel(t)
	const goPkg, tsPkg, user = "com.example.follows", "com.example.managedstreaming", "kai@example.com"
	lbHTTP, lbRTMP, tsPort := freePort(t), freePort(t), freePort(t)
	httpPorts := []int{freePort(t), freePort(t), freePort(t)}
	rtmpPorts := []int{freePort(t), freePort(t), freePort(t)}
	addr := func(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }
	lb := "http://" + addr(lbHTTP)
	lnGo := reserve(t)
	apps := []config.AppConfig{
		{PackageName: goPkg, APIKey: "key-of-the-go-app-0123456", PublicURL: "http://" + lnGo.Addr().String()},
		{PackageName: tsPkg, APIKey: "compat-key-" + tsPkg, PublicURL: "http://" + addr(tsPort)},
	}
	// The balancer first (the nodes' public URL): phones go to the first
	// node up (n3 while it lives), everything else round robin; RTMP to
	// the first node up.
	bases := []string{"http://" + addr(httpPorts[0]), "http://" + addr(httpPorts[1]), "http://" + addr(httpPorts[2])}
	conf := phonesFirst(balancerConf(lbHTTP, bases...), bases[2], bases[0], bases[1]) +
		strings.Replace(rtmpBalancer(lbRTMP, addr(rtmpPorts[2]), addr(rtmpPorts[0]), addr(rtmpPorts[1])), "balance roundrobin", "balance first", 1)
	startHAProxy(t, conf, lbHTTP)
	n1, n2, n3, n3conf := killableCluster(t, func(i int, c *config.Config) {
		c.Apps = apps
		c.PublicURL = lb
		c.IngestURL = "rtmp://" + addr(lbRTMP) + "/live/"
		c.HTTP, c.RTMP = addr(httpPorts[i]), addr(rtmpPorts[i])
	})

	// Every node serves, and the balancer sees it (its checks of the
	// phones' backend run with those of the others): six answers in a
	// row through it, two from each node.
	n1.waitServing()
	n3.waitServing()
	for ok, deadline := 0, time.Now().Add(30*time.Second); ok < 6; {
		if code, _ := fetch(t, lb+"/healthz"); code == http.StatusOK {
			ok++
		} else {
			ok = 0
		}
		if time.Now().After(deadline) {
			t.Fatal("the balancer does not see the three nodes up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	w := &world{harness: n1, apps: map[string]*testApp{goPkg: serveApp(t, lnGo, goPkg, apps[0].APIKey)}}
	_, events := w.glasses(user, func(g *sim.Glasses) { g.Server, g.RetryBase = lb, 300*time.Millisecond })
	waitHome(t, n1, user, "n3")
	ts := runNodeApp(t, "managed.mjs", tsPkg, apps[1].APIKey, tsPort)

	s := w.startApp(user, goPkg)
	rec := recordManaged(s)
	if _, err := s.Camera.StartManagedStream(context.Background(), sdk.ManagedStreamOptions{Quality: "720p"}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, events, "start", 10*time.Second)
	before, err := s.Camera.WaitManagedActive(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	startFor(t, n1, user, tsPkg) // joins the stream
	ts.expect(`^Stream status: active`, 20*time.Second)
	if got := ts.expect(`^HLS URL: (\S+)`, 5*time.Second)[1]; got != before.HLSURL {
		t.Fatalf("the two apps share one stream, but the TypeScript app's HLS URL is %s, the Go app's %s", got, before.HLSURL)
	}
	if !strings.HasPrefix(before.HLSURL, lb+"/") {
		t.Fatalf("the stream's URLs are not the shared public URL's: %s", before.HLSURL)
	}
	checkProbe(t, toStream(before), 1280, 720, 1)
	waitLease(t, n1, user, func(l cluster.CameraLease, held bool) bool {
		return held && l.Node == "n3" && l.StreamID == before.StreamID
	})
	drain(rec.ch)

	n3.kill()
	killed := time.Now()

	// The phone is back, on another node, which holds the session now.
	waitEvent(t, events, "connected", 10*time.Second)
	home := waitHome(t, n1, user, "")
	if home == "n3" {
		t.Fatalf("the user's home is still n3")
	}
	// Both apps hear the stream is active, at the same URLs.
	after := rec.wait(t, sdk.StatusActive, 30*time.Second)
	if after.StreamID != before.StreamID || after.HLSURL != before.HLSURL || after.DASHURL != before.DASHURL || after.WebRTCURL != before.WebRTCURL {
		t.Fatalf("after n3's death the stream is %+v, before %+v", after, before)
	}
	t.Logf("the Go app heard active again %v after n3 died; the session is on %s", time.Since(killed).Round(time.Millisecond), home)
	ts.expect(`^Stream status: active`, 30*time.Second)
	if got := ts.expect(`^HLS URL: (\S+)`, 5*time.Second)[1]; got != before.HLSURL {
		t.Fatalf("after n3's death the TypeScript app's HLS URL is %s, was %s", got, before.HLSURL)
	}
	// The glasses push again (to the first node up) and the URLs play.
	checkProbe(t, toStream(before), 1280, 720, 1)
	waitLease(t, n1, user, func(l cluster.CameraLease, held bool) bool {
		return held && l.Node == home && l.StreamID == before.StreamID
	})

	// n3 is back (two nodes of three keep the buckets' quorum through
	// the drain below), then a drain (SIGTERM) of the new home: it hands
	// the session itself to the node the phone reaches next (n3, first in
	// the balancer's order), and the same holds.
	n3 = startChild(t, n3conf)
	n3.waitServing() // and the balancer sends the phone to it
	homeNode, other, otherName := n1, n2, "n2"
	if home == "n2" {
		homeNode, other, otherName = n2, n1, "n1"
	}
	waitCluster(t, other, otherName, home, "n3")
	drain(rec.ch)
	stopped := make(chan struct{})
	drained := time.Now()
	go func() { homeNode.stop(); close(stopped) }()
	again := rec.wait(t, sdk.StatusActive, 30*time.Second)
	if again.StreamID != before.StreamID || again.HLSURL != before.HLSURL || again.DASHURL != before.DASHURL || again.WebRTCURL != before.WebRTCURL {
		t.Fatalf("after %s's drain the stream is %+v, before %+v", home, again, before)
	}
	t.Logf("the Go app heard active again %v after %s began to drain", time.Since(drained).Round(time.Millisecond), home)
	ts.expect(`^Stream status: active`, 30*time.Second)
	if got := ts.expect(`^HLS URL: (\S+)`, 5*time.Second)[1]; got != before.HLSURL {
		t.Fatalf("after the drain the TypeScript app's HLS URL is %s, was %s", got, before.HLSURL)
	}
	waitHome(t, other, user, "n3")
	waitLease(t, other, user, func(l cluster.CameraLease, held bool) bool {
		return held && l.Node == "n3" && l.StreamID == before.StreamID
	})
	checkProbe(t, toStream(before), 1280, 720, 1)
	<-stopped

	// n3 runs the stream: the Go app leaves it, the TypeScript app still
	// has it.
	if err := s.Camera.StopManagedStream(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, sdk.StatusStopped, 10*time.Second)
	waitLease(t, other, user, func(l cluster.CameraLease, held bool) bool { return held && l.StreamID == before.StreamID })
}

// phonesFirst sends a balancer's phone sockets (/glasses-ws) to the first
// of nodes up, in their order (a user's sockets land on one node while it
// lives), and the rest as before.
func phonesFirst(conf string, nodes ...string) string {
	var servers strings.Builder
	for i, n := range nodes {
		fmt.Fprintf(&servers, "    server p%d %s check\n", i+1, strings.TrimPrefix(n, "http://"))
	}
	conf = strings.Replace(conf, "    default_backend nodes\n", "    use_backend phones if { path_beg /glasses-ws }\n    default_backend nodes\n", 1)
	return conf + `backend phones
    balance first
    option httpchk GET /healthz
    default-server inter 300ms fall 2 rise 1
` + servers.String()
}

// waitHome waits until the cluster names a live home for the user (want,
// or any when want is "") and returns it.
func waitHome(t *testing.T, n *harness, user, want string) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		home, err := n.srv.Cluster().Users().Home(ctx, user)
		cancel()
		if err == nil && home != "" && (want == "" || home == want) {
			return home
		}
		if time.Now().After(deadline) {
			t.Fatalf("the user's home is %q (%v), want %q", home, err, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func drain[T any](ch chan T) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}
