package clientip

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"
)

func mustTrust(t testing.TB, list ...string) *Trusted {
	tr, err := Parse(list)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestParse(t *testing.T) {
	tr := mustTrust(t, "10.0.0.0/8", "127.0.0.1", " ::1 ")
	for _, a := range []string{"10.1.2.3", "127.0.0.1", "::1", "::ffff:10.9.9.9"} {
		if !tr.Contains(netip.MustParseAddr(a)) {
			t.Errorf("%s not trusted", a)
		}
	}
	if tr.Contains(netip.MustParseAddr("127.0.0.2")) || tr.Contains(netip.MustParseAddr("192.168.1.1")) {
		t.Error("trusts too much")
	}
	if _, err := Parse([]string{"10.0.0.0/33", "example.com"}); err == nil {
		t.Error("accepted garbage")
	}
	var none *Trusted
	if none.On() || none.Contains(netip.MustParseAddr("127.0.0.1")) {
		t.Error("nil trusts")
	}
}

func TestHTTP(t *testing.T) {
	tr := mustTrust(t, "127.0.0.1/32", "10.0.0.0/8")
	var got string
	h := tr.HTTP(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = r.RemoteAddr }))
	cases := []struct {
		peer    string
		headers map[string]string
		want    string
	}{
		{"127.0.0.1:5000", map[string]string{"X-Forwarded-For": "203.0.113.7"}, "203.0.113.7:0"},
		// a client's own X-Forwarded-For, then the balancer's addition
		{"127.0.0.1:5000", map[string]string{"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}, "203.0.113.7:0"},
		// a chain through two trusted proxies
		{"127.0.0.1:5000", map[string]string{"X-Forwarded-For": "203.0.113.7, 10.1.1.1"}, "203.0.113.7:0"},
		{"127.0.0.1:5000", map[string]string{"X-Forwarded-For": "[2001:db8::1]"}, "[2001:db8::1]:0"},
		{"127.0.0.1:5000", map[string]string{"Forwarded": `for=192.0.2.60;proto=http;by=203.0.113.43`}, "192.0.2.60:0"},
		{"127.0.0.1:5000", map[string]string{"Forwarded": `for="[2001:db8:cafe::17]:4711"`}, "[2001:db8:cafe::17]:0"},
		// garbage, or an obfuscated identifier: the peer stands
		{"127.0.0.1:5000", map[string]string{"X-Forwarded-For": "nonsense"}, "127.0.0.1:5000"},
		{"127.0.0.1:5000", map[string]string{"Forwarded": "for=_hidden"}, "127.0.0.1:5000"},
		// an untrusted peer's headers are ignored
		{"192.0.2.9:5000", map[string]string{"X-Forwarded-For": "203.0.113.7"}, "192.0.2.9:5000"},
		{"192.0.2.9:5000", map[string]string{"Forwarded": "for=203.0.113.7"}, "192.0.2.9:5000"},
		{"127.0.0.1:5000", nil, "127.0.0.1:5000"},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.peer
		for k, v := range c.headers {
			r.Header.Set(k, v)
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
		if got != c.want {
			t.Errorf("%s %v: %s, want %s", c.peer, c.headers, got, c.want)
		}
	}
}

func v2Header(cmd byte, src netip.AddrPort) []byte {
	var b bytes.Buffer
	b.Write(v2sig)
	b.WriteByte(0x20 | cmd)
	if src.Addr().Is4() {
		b.WriteByte(0x11)
		binary.Write(&b, binary.BigEndian, uint16(12+3)) // and a TLV to skip
		a := src.Addr().As4()
		b.Write(a[:])
		b.Write([]byte{127, 0, 0, 1})
	} else {
		b.WriteByte(0x21)
		binary.Write(&b, binary.BigEndian, uint16(36+3))
		a := src.Addr().As16()
		b.Write(a[:])
		b.Write(net.IPv6loopback)
	}
	binary.Write(&b, binary.BigEndian, src.Port())
	binary.Write(&b, binary.BigEndian, uint16(1935))
	b.Write([]byte{0x04, 0, 0}) // PP2_TYPE_NOOP
	return b.Bytes()
}

// pipeFrom is a connection as the server sees it, from peer, whose client
// sends first.
func pipeFrom(t *testing.T, peer string, first []byte) net.Conn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(peer)}}
	c, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go c.Write(first)
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.SetDeadline(time.Now().Add(5 * time.Second))
	return s
}

func TestConn(t *testing.T) {
	tr := mustTrust(t, "127.0.0.1/32")
	rtmpC0 := []byte{3, 1, 2, 3}
	cases := []struct {
		name, peer string
		first      []byte
		remote     string // "" for the peer
		err        error
	}{
		{"plain RTMP from anyone", "127.0.0.2", rtmpC0, "", nil},
		{"plain RTMP from the balancer", "127.0.0.1", rtmpC0, "", nil},
		{"v1", "127.0.0.1", append([]byte("PROXY TCP4 203.0.113.7 127.0.0.1 56324 1935\r\n"), rtmpC0...), "203.0.113.7:56324", nil},
		{"v1 IPv6", "127.0.0.1", append([]byte("PROXY TCP6 2001:db8::7 ::1 4000 1935\r\n"), rtmpC0...), "[2001:db8::7]:4000", nil},
		{"v1 unknown", "127.0.0.1", append([]byte("PROXY UNKNOWN\r\n"), rtmpC0...), "", nil},
		{"v2", "127.0.0.1", append(v2Header(1, netip.MustParseAddrPort("198.51.100.4:6000")), rtmpC0...), "198.51.100.4:6000", nil},
		{"v2 IPv6", "127.0.0.1", append(v2Header(1, netip.MustParseAddrPort("[2001:db8::9]:7000")), rtmpC0...), "[2001:db8::9]:7000", nil},
		{"v2 local", "127.0.0.1", append(v2Header(0, netip.MustParseAddrPort("198.51.100.4:6000")), rtmpC0...), "", nil},
		{"v1 from an untrusted peer", "127.0.0.2", append([]byte("PROXY TCP4 203.0.113.7 127.0.0.1 56324 1935\r\n"), rtmpC0...), "", ErrUntrustedProxy},
		{"v2 from an untrusted peer", "127.0.0.2", append(v2Header(1, netip.MustParseAddrPort("198.51.100.4:6000")), rtmpC0...), "", ErrUntrustedProxy},
		{"v1 garbage", "127.0.0.1", []byte("PROXY TCP4 nope 127.0.0.1 1 2\r\n"), "", ErrBadProxyHeader},
		{"v1 too long", "127.0.0.1", bytes.Repeat([]byte("P"), 200), "", ErrBadProxyHeader},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := pipeFrom(t, c.peer, c.first)
			got, err := tr.Conn(s)
			if !errors.Is(err, c.err) {
				t.Fatalf("err %v, want %v", err, c.err)
			}
			if err != nil {
				return
			}
			want := c.remote
			if want == "" {
				want = s.RemoteAddr().String()
			}
			if got.RemoteAddr().String() != want {
				t.Fatalf("remote %s, want %s", got.RemoteAddr(), want)
			}
			// The bytes after the header are the protocol's, all there.
			b := make([]byte, len(rtmpC0))
			if _, err := io.ReadFull(got, b); err != nil || !bytes.Equal(b, rtmpC0) {
				t.Fatalf("read %v %v after the header", b, err)
			}
		})
	}
}

func FuzzReadHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 203.0.113.7 127.0.0.1 56324 1935\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add(v2Header(1, netip.MustParseAddrPort("198.51.100.4:6000")))
	f.Add(v2Header(1, netip.MustParseAddrPort("[2001:db8::9]:7000")))
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		src, err := readHeader(bufioReader(b))
		if err == nil && src.IsValid() && src.Addr().Is4In6() {
			t.Fatalf("a mapped address %v", src)
		}
	})
}

func FuzzHTTPHeaders(f *testing.F) {
	f.Add("203.0.113.7, 10.1.1.1", "")
	f.Add("", `for="[2001:db8:cafe::17]:4711";proto=https`)
	f.Add("[::1]", "for=_hidden")
	tr := mustTrust(f, "10.0.0.0/8")
	f.Fuzz(func(t *testing.T, xff, fw string) {
		h := http.Header{}
		if xff != "" {
			h.Set("X-Forwarded-For", xff)
		}
		if fw != "" {
			h.Set("Forwarded", fw)
		}
		if a, ok := tr.fromHeaders(h); ok && !a.IsValid() {
			t.Fatal("an invalid address taken")
		}
	})
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
