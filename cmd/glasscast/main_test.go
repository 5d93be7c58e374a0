package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestServeCheck(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"serve", "--check", "--data", t.TempDir()}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "configuration OK") {
		t.Fatalf("serve --check: %d %q %q", code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if code := run([]string{"--check", "--http", "bad", "--log-format", "xml"}, &out, &errOut); code != 2 ||
		!strings.Contains(errOut.String(), "http:") || !strings.Contains(errOut.String(), "log-format") {
		t.Fatalf("a bad configuration: %d %q", code, errOut.String())
	}
	if code := run([]string{"frobnicate"}, &out, &errOut); code != 2 {
		t.Fatalf("unknown command: %d", code)
	}
}
