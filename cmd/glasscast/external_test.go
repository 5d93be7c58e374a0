package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/cluster/clustertest"
)

// Two glasscast nodes joined through an existing NATS cluster (Debian's
// nats-server, three servers) secured as an operator would: TLS with
// client certificates, and an account of glasscast's own whose users'
// credentials files the nodes are given. They form a cluster, and a stream
// published to one plays from the other.
func TestExternalNATSNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-server NATS cluster and two nodes")
	}
	ext := clustertest.ExternalNATS(t, "x1", "x2")
	const token = "0123456789abcdef0123"
	ctx, cancel := context.WithCancel(context.Background())
	type node struct {
		out, log *watchedBuffer
		done     chan int
		base     string
	}
	var nodes []*node
	defer func() {
		cancel()
		for i, n := range nodes {
			if code := <-n.done; code != 0 {
				t.Errorf("x%d exited %d", i+1, code)
			}
			if t.Failed() {
				t.Logf("x%d's log:\n%s", i+1, n.log.String())
			}
		}
	}()
	for i := range 2 {
		name := fmt.Sprintf("x%d", i+1)
		tf := ext.Certs(name)
		n := &node{out: newWatchedBuffer(), log: newWatchedBuffer(), done: make(chan int, 1)}
		nodes = append(nodes, n)
		args := []string{"--node", name, "--data", t.TempDir(), "--admin-token", token, "--jwt-secret", "the-secret-both-nodes-share-0123456789",
			"--http", "127.0.0.1:0", "--rtmp", "127.0.0.1:0", "--webrtc-udp", "127.0.0.1:0", "--webrtc-tcp", "127.0.0.1:0",
			"--nats", strings.Join(ext.URLs, ","), "--nats-tls-cert", tf.Cert, "--nats-tls-key", tf.Key, "--nats-tls-ca", tf.CA,
			"--nats-creds", ext.Creds(t)}
		go func() {
			n.done <- serveUntil(func(io.Writer) (context.Context, func()) { return ctx, func() {} }, args, n.out, n.log)
		}()
		deadline := time.After(30 * time.Second)
		for n.base == "" {
			if m := regexp.MustCompile(`HTTP +(http://\S+)`).FindStringSubmatch(n.out.String()); m != nil {
				n.base = m[1]
				break
			}
			select {
			case <-n.out.written:
			case <-deadline:
				t.Fatalf("%s did not start:\n%s", name, n.log.String())
			}
		}
	}
	call := func(method, url, body string, out any) int {
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if out != nil {
			json.Unmarshal(b, out)
		}
		return resp.StatusCode
	}
	// They form a cluster.
	for deadline := time.Now().Add(60 * time.Second); ; {
		var st struct {
			Cluster bool
			Nodes   []struct{ Alive bool }
		}
		if call("GET", nodes[1].base+"/api/v1/cluster", "", &st) == http.StatusOK && st.Cluster && len(st.Nodes) == 2 && st.Nodes[0].Alive && st.Nodes[1].Alive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the two nodes did not see each other through the external NATS within 60 s")
		}
		time.Sleep(200 * time.Millisecond) // the cluster forms on its own clock
	}
	// A stream published to x1 plays from x2, at x1's URL's path.
	var s struct {
		ID       string
		Ingest   struct{ RTMPURL string }
		Playback struct{ HLS string }
	}
	if code := call("POST", nodes[0].base+"/api/v1/streams", `{"name":"through the external NATS"}`, &s); code != http.StatusCreated {
		t.Fatalf("create on x1: %d", code)
	}
	publishPlays(t, ctx, s.Ingest.RTMPURL, nodes[1].base+strings.TrimPrefix(s.Playback.HLS, nodes[0].base))
}
