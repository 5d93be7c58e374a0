package config

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "glasscast.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaults(t *testing.T) {
	c, err := Load(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP != ":8080" || c.RTMP != ":1935" || c.Data != "./glasscast-data" || c.ReconnectWindow != time.Minute || c.PartTarget != 200*time.Millisecond {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestPrecedence(t *testing.T) {
	file := writeFile(t, "http: 127.0.0.1:1000\nrtmp: 127.0.0.1:2000\nreconnectWindow: 30s\ndemo: true\n")
	c, err := Load([]string{"--config", file, "--rtmp", "127.0.0.1:3000"},
		env(map[string]string{"GLASSCAST_HTTP": "127.0.0.1:4000", "GLASSCAST_RTMP": "127.0.0.1:5000", "GLASSCAST_ADMIN_TOKEN": "0123456789abcdef0123"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// Flags beat the environment, which beats the file, which beats the defaults.
	if c.RTMP != "127.0.0.1:3000" || c.HTTP != "127.0.0.1:4000" || c.ReconnectWindow != 30*time.Second || !c.Demo || c.AdminToken != "0123456789abcdef0123" {
		t.Fatalf("%+v", c)
	}
}

func TestUnknownKeyRejected(t *testing.T) {
	file := writeFile(t, "http: :8080\nrtmpp: :1935\n")
	_, err := Load([]string{"--config", file}, env(nil), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "rtmpp") {
		t.Fatalf("unknown key: %v", err)
	}
}

func TestEveryProblemAtOnce(t *testing.T) {
	_, err := Load([]string{"--http", "nonsense", "--part-target", "5s", "--log-level", "loud", "--public-url", "ftp://x", "--ingest-url", "http://x/live/"},
		env(map[string]string{"GLASSCAST_SEGMENT_WINDOW": "many"}), io.Discard)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"http:", "part-target", "log-level", "public-url", "ingest-url", "GLASSCAST_SEGMENT_WINDOW"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not mention %s:\n%v", want, err)
		}
	}
}

func TestCheckAndHelp(t *testing.T) {
	c, err := Load([]string{"--check"}, env(nil), io.Discard)
	if err != nil || !c.Check {
		t.Fatalf("--check: %+v %v", c, err)
	}
	if _, err := Load([]string{"-h"}, env(nil), io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	if _, err := Load([]string{"--nope"}, env(nil), io.Discard); err == nil {
		t.Fatal("accepted an unknown flag")
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]Size{"0": 0, "1048576": 1 << 20, "20GiB": 20 << 30, "500MB": 500e6, "1.5 GiB": 3 << 29, "64KiB": 64 << 10} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1GB", "ten", "5XB", "1e30"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) succeeded", in)
		}
	}
	if s := Size(20 << 30).String(); s != "20GiB" {
		t.Errorf("String: %s", s)
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "1048576", "20GiB", "500MB", "1.5 GiB", "64KiB", "", "-1GB", "ten", "5XB", "1e30", " 7 TB "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseSize(in)
		if err != nil {
			return
		}
		if s < 0 || s > 1<<62 {
			t.Fatalf("ParseSize(%q) = %d", in, s)
		}
		// What it prints reads back as the same size.
		if back, err := ParseSize(s.String()); err != nil || back != s {
			t.Fatalf("ParseSize(%q) = %d, printed %q, read back %d, %v", in, s, s.String(), back, err)
		}
	})
}

// A cluster runs with TLS between its nodes, or says it runs without.
func TestClusterNeedsTLS(t *testing.T) {
	cases := []struct {
		args []string
		want string // "" for accepted
	}{
		{[]string{"--nats-listen", "127.0.0.1:7422"}, "without TLS"},
		{[]string{"--nats", "nats://10.0.0.1:4222"}, "without TLS"},
		{[]string{"--nats-listen", "127.0.0.1:7422", "--nats-insecure"}, ""},
		{[]string{"--nats-listen", "127.0.0.1:7422", "--nats-tls-cert", "n1.crt", "--nats-tls-key", "n1.key", "--nats-tls-ca", "ca.crt"}, ""},
		{[]string{"--nats-listen", "127.0.0.1:7422", "--nats-tls-ca", "ca.crt"}, "mutual TLS"},
		{[]string{"--nats-listen", "127.0.0.1:7422", "--nats-tls-cert", "n1.crt"}, "nats-tls-key"},
		{[]string{"--nats", "tls://10.0.0.1:4222"}, ""},
		{[]string{"--nats", "nats://10.0.0.1:4222", "--nats-tls-ca", "ca.crt", "--nats-creds", "n.creds"}, ""},
		{[]string{"--nats", "tls://10.0.0.1:4222", "--nats-creds", "n.creds", "--nats-nkey", "n.nk"}, "give one"},
		{[]string{"--nats-listen", "127.0.0.1:7422", "--nats-insecure", "--nats-creds", "n.creds"}, "not nats-listen"},
		{[]string{"--nats-tls-ca", "ca.crt"}, "need nats-listen or nats"},
		{[]string{"--nats", "http://10.0.0.1:4222"}, "nats://HOST:PORT or tls://"},
		{nil, ""}, // a single node needs none of it
	}
	for _, c := range cases {
		_, err := Load(c.args, env(nil), io.Discard)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%v: %v", c.args, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%v: %v, want an error saying %q", c.args, err, c.want)
		}
	}
}
