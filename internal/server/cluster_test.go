package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/glasscast/glasscast/internal/api"
	"github.com/glasscast/glasscast/internal/config"
	"github.com/glasscast/glasscast/sdk"
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

	nodes := startNodes(t, 3, nil)
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

// startNodes runs n glasscast nodes, n1…, each with an embedded NATS server
// routed to the others'; tweak (when set) adjusts node i's configuration.
func startNodes(t *testing.T, n int, tweak func(i int, c *config.Config)) []*harness {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		ports[i] = freePort(t)
	}
	nodes := make([]*harness, n)
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
			if tweak != nil {
				tweak(i, c)
			}
		})
	}
	return nodes
}

// TestClusterApps: an app registered on n1 (POST /api/v1/apps, what
// glasscast apps add --server does) serves a user whose glasses are on n3;
// one in n1's configuration file is known to n2; removed on n2, the app
// can no longer start on n3.
func TestClusterApps(t *testing.T) {
	const pkg, fromFile = "com.example.everywhere", "com.example.fromfile"
	nodes := startNodes(t, 3, func(i int, c *config.Config) {
		if i == 0 {
			c.Apps = []config.AppConfig{{PackageName: fromFile, APIKey: "key-of-the-file-app-0123", PublicURL: "http://127.0.0.1:9"}}
		}
	})
	waitCluster(t, nodes[2], "n3", "n1", "n2")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	code, body := nodes[0].call("POST", "/api/v1/apps", map[string]any{"packageName": pkg, "publicUrl": "http://" + ln.Addr().String()})
	if code != http.StatusCreated {
		t.Fatalf("register on n1: %d %s", code, body)
	}
	var created api.AppJSON
	if err := json.Unmarshal(body, &created); err != nil || created.APIKey == "" {
		t.Fatalf("register on n1: %s", body)
	}
	if code, body := nodes[1].call("POST", "/api/v1/apps", map[string]any{"packageName": pkg, "publicUrl": "http://127.0.0.1:9"}); code != http.StatusConflict {
		t.Fatalf("the same package on n2: %d %s, want 409", code, body)
	}

	// The app's server, holding the key n1 gave, and a user on n3.
	a := &testApp{pkg: pkg, key: created.APIKey, sessions: make(chan *sdk.Session, 8)}
	a.srv = sdk.NewAppServer(sdk.Config{PackageName: pkg, APIKey: a.key})
	a.srv.OnSession(func(ctx context.Context, s *sdk.Session) error {
		a.sessions <- s
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	w := &world{harness: nodes[2], apps: map[string]*testApp{pkg: a}}
	_, events := w.glasses("eve@example.com", nil)
	sess := w.startApp("eve@example.com", pkg)
	if err := sess.Layouts.ShowTextWall("registered on n1", 0); err != nil {
		t.Fatal(err)
	}
	if e := waitEvent(t, events, "display", 10*time.Second); !strings.Contains(e.Text, "registered on n1") {
		t.Fatalf("the glasses on n3 showed %q", e.Text)
	}
	w.stopApp("eve@example.com", pkg)

	// n1's configuration file's app, on n2 (put there once n1 has joined).
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, body := nodes[1].call("GET", "/api/v1/apps/"+fromFile, nil)
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n2 does not know n1's configured app: %d %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Removed on n2: gone for n3.
	if code, body := nodes[1].call("DELETE", "/api/v1/apps/"+pkg, nil); code != http.StatusNoContent {
		t.Fatalf("remove on n2: %d %s", code, body)
	}
	req, _ := http.NewRequest("POST", nodes[2].base+"/api/v1/me/apps/"+pkg+"/start", nil)
	req.Header.Set("Authorization", "Bearer "+w.token("eve@example.com"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Fatal("n3 started an app removed on n2")
	}
}
