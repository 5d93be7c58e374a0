package server_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/glasscast/glasscast/internal/config"
)

// startPebble builds and runs Pebble, a real ACME server, validating
// challenges on httpPort (HTTP-01) and tlsPort (TLS-ALPN-01) of localhost.
// It returns its directory URL, the CA file that Pebble's own HTTPS
// chains to, and the root its issued certificates chain to.
func startPebble(t *testing.T, httpPort, tlsPort int, dnsAddr string) (dir, apiCA string, roots *x509.CertPool) {
	t.Helper()
	slow(t)
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "pebble")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/letsencrypt/pebble/v2/cmd/pebble").CombinedOutput(); err != nil {
		t.Fatalf("building pebble: %v %s", err, out)
	}
	// Its test certificates, from the module the build just downloaded
	// (on a fresh machine, asked before that, the module has no directory).
	out, err := exec.Command("go", "mod", "download", "-json", "github.com/letsencrypt/pebble/v2").Output()
	if err != nil {
		t.Fatalf("the pebble module (a tool of go.mod): %v", err)
	}
	var mod struct{ Dir string }
	if json.Unmarshal(out, &mod) != nil || mod.Dir == "" {
		t.Fatalf("the pebble module has no directory: %s", out)
	}
	src := mod.Dir
	listen, mgmt := fmt.Sprint("127.0.0.1:", freePort(t)), fmt.Sprint("127.0.0.1:", freePort(t))
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress": listen, "managementListenAddress": mgmt,
		"certificate": filepath.Join(src, "test/certs/localhost/cert.pem"), "privateKey": filepath.Join(src, "test/certs/localhost/key.pem"),
		"httpPort": httpPort, "tlsPort": tlsPort, "keyAlgorithm": "ecdsa",
	}}
	b, _ := json.Marshal(cfg)
	cfgFile := filepath.Join(tmp, "pebble.json")
	os.WriteFile(cfgFile, b, 0o644)
	cmd := exec.Command(bin, "-config", cfgFile, "-dnsserver", dnsAddr)
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	logged := &logTail{}
	go func() {
		sc := bufio.NewScanner(stdout)
		once := false
		for sc.Scan() {
			logged.Write([]byte(sc.Text() + "\n"))
			if !once && strings.Contains(sc.Text(), "ACME directory available") {
				once = true
				close(ready)
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("pebble's log:\n%s", logged.String())
		}
	})
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatalf("pebble did not start:\n%s", logged.String())
	}
	apiCA = filepath.Join(src, "test/certs/pebble.minica.pem")
	pem, _ := os.ReadFile(apiCA)
	apiPool := x509.NewCertPool()
	apiPool.AppendCertsFromPEM(pem)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: apiPool}}}
	defer c.CloseIdleConnections()
	// Pebble says it listens just before it does: ask until it answers.
	get := func(url string) []byte {
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, err := c.Get(url)
			if err == nil {
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return b
			}
			if time.Now().After(deadline) {
				t.Fatalf("pebble: %v", err)
			}
			<-time.After(20 * time.Millisecond)
		}
	}
	get("https://" + listen + "/dir")
	root := get("https://" + mgmt + "/roots/0")
	roots = x509.NewCertPool()
	if !roots.AppendCertsFromPEM(root) {
		t.Fatalf("pebble's root: %s", root)
	}
	return "https://" + listen + "/dir", apiCA, roots
}

// testDomain is the name the ACME test gets a certificate for: ACME wants a
// dotted name, and the test's own DNS server says it is 127.0.0.1.
const testDomain = "glasses.test"

// fakeDNS answers every A question with 127.0.0.1 and everything else
// (AAAA, CAA) with nothing: the DNS Pebble validates challenges through.
func fakeDNS(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Pebble asks over TCP: the same port on both.
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		t.Fatal(err)
	}
	answer := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		for _, q := range r.Question {
			if q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET}, A: net.IPv4(127, 0, 0, 1)})
			}
		}
		w.WriteMsg(m)
	})
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: answer}, {Listener: ln, Handler: answer}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		done := make(chan struct{})
		go func() { defer close(done); srv.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { srv.Shutdown(); <-done })
	}
	return pc.LocalAddr().String()
}

// dialLoopback makes the default HTTP client reach testDomain on loopback
// for the test.
func dialLoopback(t *testing.T) {
	tr := http.DefaultTransport.(*http.Transport)
	old := tr.DialContext
	d := &net.Dialer{Timeout: 10 * time.Second}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if host, port, err := net.SplitHostPort(addr); err == nil && host == testDomain {
			addr = net.JoinHostPort("127.0.0.1", port)
		}
		return d.DialContext(ctx, network, addr)
	}
	t.Cleanup(func() { tr.CloseIdleConnections(); tr.DialContext = old })
}

// TestACME: with --acme-domains, glasscast gets its certificate from a real
// ACME server (Pebble), answering its challenge itself, and serves HTTPS
// with it; the certificate is kept under --data.
func TestACME(t *testing.T) {
	checkLeaks(t) // Pebble and the DNS server stop before the check
	httpPort, httpsPort := freePort(t), freePort(t)
	dir, apiCA, roots := startPebble(t, httpPort, httpsPort, fakeDNS(t))
	trustFor(t, roots)
	dialLoopback(t)
	data := t.TempDir()
	h := start(t, func(c *config.Config) {
		c.Data = data
		c.HTTP, c.HTTPS = fmt.Sprint("127.0.0.1:", httpPort), fmt.Sprint("127.0.0.1:", httpsPort)
		c.ACMEDomains, c.ACMECA, c.ACMECARoot, c.ACMEEmail = []string{testDomain}, dir, apiCA, "ops@example.com"
	})
	if h.base != fmt.Sprint("https://", testDomain, ":", httpsPort) {
		t.Fatalf("public URL %s", h.base)
	}
	h.log.waitCount(t, "tls: certificate ready", 1, 60*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", h.base+"/healthz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	leaf := resp.TLS.PeerCertificates[0]
	if resp.StatusCode != 200 || leaf.VerifyHostname(testDomain) != nil || !strings.Contains(leaf.Issuer.CommonName, "Pebble") {
		t.Fatalf("HTTPS with the ACME certificate: %d, issued by %q for %v", resp.StatusCode, leaf.Issuer.CommonName, leaf.DNSNames)
	}
	if ents, _ := os.ReadDir(filepath.Join(data, "acme")); len(ents) == 0 {
		t.Fatal("nothing kept under --data/acme: a restart would ask the CA again")
	}
}
