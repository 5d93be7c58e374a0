package server_test

import (
	"net/http"
	"testing"

	"github.com/glasscast/glasscast/internal/config"
)

// TestAdminTokenKept: a generated admin token is kept under --data and is
// the same after a restart.
func TestAdminTokenKept(t *testing.T) {
	data := t.TempDir()
	noToken := func(c *config.Config) { c.Data, c.AdminToken = data, "" }
	h := start(t, noToken)
	first := h.srv.AdminToken()
	if !h.srv.TokenGenerated() || len(first) < 32 {
		t.Fatalf("a generated admin token: %q (generated %v)", first, h.srv.TokenGenerated())
	}
	h.stop()
	h2 := start(t, noToken)
	if h2.srv.AdminToken() != first || h2.srv.TokenGenerated() {
		t.Fatalf("after a restart the admin token is %q (generated %v), was %q", h2.srv.AdminToken(), h2.srv.TokenGenerated(), first)
	}
	req, _ := http.NewRequest("GET", h2.base+"/api/v1/streams", nil)
	req.Header.Set("Authorization", "Bearer "+first)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the first run's admin token after a restart: %d", resp.StatusCode)
	}
}
