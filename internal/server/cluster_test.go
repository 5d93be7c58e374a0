package server_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/config"
)

type clusterView struct {
	Node    string `json:"node"`
	Cluster bool   `json:"cluster"`
	Nodes   []struct {
		Name    string `json:"name"`
		Public  string `json:"publicUrl"`
		Alive   bool   `json:"alive"`
		Streams int    `json:"streams"`
	} `json:"nodes"`
}

// waitCluster waits until a node's cluster status lists exactly names,
// all alive, itself first.
func waitCluster(t *testing.T, h *harness, names ...string) clusterView {
	return waitClusterWith(t, h, func(clusterView) bool { return true }, names...)
}

// waitClusterWith waits as waitCluster does, and until also says yes.
func waitClusterWith(t *testing.T, h *harness, also func(clusterView) bool, names ...string) clusterView {
	t.Helper()
	c := h.srv.Cluster()
	deadline := time.After(60 * time.Second)
	for {
		ch := c.Changed()
		var v clusterView
		h.getJSON("/api/v1/cluster", &v)
		ok := v.Cluster && len(v.Nodes) == len(names)
		for i := range v.Nodes {
			ok = ok && v.Nodes[i].Alive && v.Nodes[i].Name == names[i]
		}
		if ok && also(v) {
			return v
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("%s lists %+v, want %v", v.Node, v.Nodes, names)
		}
	}
}

// TestClusterForms: three glasscast nodes with embedded NATS, routed to
// each other, list each other (and each one's streams) in
// GET /api/v1/cluster; a node that shuts down leaves the others' lists.
// One node alone says it is not in a cluster.
func TestClusterForms(t *testing.T) {
	alone := start(t, nil)
	var v clusterView
	alone.getJSON("/api/v1/cluster", &v)
	if v.Cluster || len(v.Nodes) != 1 || !v.Nodes[0].Alive || v.Nodes[0].Public != alone.base {
		t.Fatalf("a single node: %+v", v)
	}

	ports := []int{freePort(t), freePort(t), freePort(t)}
	nodes := make([]*harness, 3)
	for i := range nodes {
		var routes []string
		for j, p := range ports {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
			}
		}
		nodes[i] = start(t, func(c *config.Config) {
			c.Node = fmt.Sprintf("n%d", i+1)
			c.NATSListen = fmt.Sprintf("127.0.0.1:%d", ports[i])
			c.NATSRoutes = routes
			c.JWTSecret = "the-secret-every-node-shares-0123456789"
		})
	}
	nodes[1].create("on n2")
	waitCluster(t, nodes[0], "n1", "n2", "n3")
	waitCluster(t, nodes[2], "n3", "n1", "n2")
	v = waitClusterWith(t, nodes[1], func(v clusterView) bool { return v.Nodes[0].Streams == 1 }, "n2", "n1", "n3")
	if v.Nodes[0].Public != nodes[1].base {
		t.Fatalf("n2 says of itself: %+v", v.Nodes[0])
	}
	nodes[2].stop()
	waitCluster(t, nodes[0], "n1", "n2")
	waitCluster(t, nodes[1], "n2", "n1")
}
