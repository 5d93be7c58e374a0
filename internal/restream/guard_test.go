package restream

import (
	"net/netip"
	"testing"
)

func TestInternal(t *testing.T) {
	internal := []string{"127.0.0.1", "127.255.0.9", "::1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
		"fe80::1", "fd00::1", "fc12::9", "224.0.0.1", "ff02::1", "0.0.0.0", "::", "100.64.0.1", "255.255.255.255",
		"::ffff:127.0.0.1", "::ffff:10.1.2.3", "64:ff9b::a9fe:a9fe", "2002:7f00:1::1", "2002:c0a8:101::1", "198.18.0.1"}
	public := []string{"8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1",
		"172.32.0.1", "100.128.0.1", "192.169.0.1"}
	for _, s := range internal {
		if !Internal(netip.MustParseAddr(s)) {
			t.Errorf("%s is not judged internal", s)
		}
	}
	for _, s := range public {
		if Internal(netip.MustParseAddr(s)) {
			t.Errorf("%s is judged internal", s)
		}
	}
}

func TestAllowList(t *testing.T) {
	allow, err := ParseAllow([]string{"127.0.0.0/8", " 10.1.2.3 ", "fd00::/8"})
	if err != nil {
		t.Fatal(err)
	}
	m := &Manager{cfg: Config{Allow: allow}}
	for s, want := range map[string]bool{"127.0.0.1": true, "::ffff:127.0.0.1": true, "10.1.2.3": true, "10.1.2.4": false,
		"fd12::1": true, "169.254.169.254": false, "8.8.8.8": true} {
		if got := m.allowed(netip.MustParseAddr(s)); got != want {
			t.Errorf("allowed(%s) = %v", s, got)
		}
	}
	if _, err := ParseAllow([]string{"10.0.0.0/33", "nope"}); err == nil {
		t.Fatal("a bad allow-list is accepted")
	}
}
