package cluster_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/cluster"
	"github.com/glasscast/glasscast/internal/cluster/clustertest"
	"github.com/glasscast/glasscast/internal/store/storetest"
)

// seeNodes waits until c sees exactly the named nodes, all alive.
func seeNodes(t *testing.T, c *cluster.Cluster, names ...string) {
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

// Two nodes that join an existing NATS cluster (nothing embedded) over TLS,
// with credentials for an account of their own, see each other.
func TestExternalNATS(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: runs without -short (./scripts/test runs it)")
	}
	ext := clustertest.ExternalNATS(t, "x1", "x2")
	var nodes []*cluster.Cluster
	for i := range 2 {
		name := fmt.Sprintf("x%d", i+1)
		c, err := cluster.Start(cluster.Config{Node: name, URLs: ext.URLs, TLS: ext.Certs(name), Creds: ext.Creds(t), Public: "http://x.test", Version: "test",
			Heartbeat: 200 * time.Millisecond}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		nodes = append(nodes, c)
	}
	seeNodes(t, nodes[0], "x1", "x2")
	seeNodes(t, nodes[1], "x2", "x1")
	// The apps, replicated by the external servers.
	storetest.Apps(t, nodes[1].Apps())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if a, err := nodes[0].Apps().App(ctx, "com.example.a"); err != nil || a.PublicURL != "http://127.0.0.1:3000" {
		t.Fatalf("x1 does not know the app added on x2: %+v %v", a, err)
	}
}
