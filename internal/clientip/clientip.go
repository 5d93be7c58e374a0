// Package clientip finds a client's own address behind the proxies an
// operator trusts (--trusted-proxies): from X-Forwarded-For or Forwarded on
// HTTP and WebSocket requests, from the PROXY protocol (v1 and v2) on RTMP
// connections. Throttling, viewer counting and logs then see the client,
// not the balancer. From any other address those headers are ignored and a
// PROXY header is refused.
package clientip

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
)

// Trusted is the set of proxies whose word on the client's address is
// taken. The zero value (and nil) trusts nobody.
type Trusted struct {
	nets []netip.Prefix
}

// Parse reads CIDRs or single addresses ("10.0.0.0/8", "127.0.0.1").
func Parse(list []string) (*Trusted, error) {
	t := &Trusted{}
	var bad []string
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			t.nets = append(t.nets, p.Masked())
			continue
		}
		if a, err := netip.ParseAddr(s); err == nil {
			t.nets = append(t.nets, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		bad = append(bad, s)
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("%q: not a CIDR or an address", bad)
	}
	return t, nil
}

// On says some proxy is trusted.
func (t *Trusted) On() bool { return t != nil && len(t.nets) > 0 }

// Contains says a is a trusted proxy's address.
func (t *Trusted) Contains(a netip.Addr) bool {
	if t == nil {
		return false
	}
	a = a.Unmap()
	for _, p := range t.nets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func addrOf(hostport string) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(hostport)
	if err == nil {
		return ap.Addr().Unmap(), true
	}
	a, err := netip.ParseAddr(hostport)
	return a.Unmap(), err == nil
}

// HTTP sets each request's RemoteAddr to its client's address when the
// peer is a trusted proxy that said it; other requests pass as they came.
func (t *Trusted) HTTP(next http.Handler) http.Handler {
	if !t.On() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if peer, ok := addrOf(r.RemoteAddr); ok && t.Contains(peer) {
			if c, ok := t.fromHeaders(r.Header); ok {
				r2 := r.Clone(r.Context())
				r2.RemoteAddr = netip.AddrPortFrom(c, 0).String()
				r = r2
			}
		}
		next.ServeHTTP(w, r)
	})
}

// maxHops bounds how many addresses of a forwarding chain are looked at.
const maxHops = 32

// fromHeaders is the client's address in a trusted proxy's headers:
// walking the chain from the nearest hop, the first address that is not a
// trusted proxy's (or the farthest one, if all are).
func (t *Trusted) fromHeaders(h http.Header) (netip.Addr, bool) {
	var chain []netip.Addr
	if fw := h.Values("Forwarded"); len(fw) > 0 {
		chain = forwardedFor(fw)
	} else {
		for _, v := range h.Values("X-Forwarded-For") {
			for _, f := range strings.Split(v, ",") {
				f = strings.TrimSpace(f)
				a, ok := addrOf(f)
				if !ok {
					a, ok = addrOf(strings.Trim(f, "[]"))
				}
				if !ok {
					return netip.Addr{}, false // a chain with garbage in it says nothing
				}
				chain = append(chain, a)
			}
		}
	}
	if len(chain) == 0 || len(chain) > maxHops {
		return netip.Addr{}, false
	}
	for i := len(chain) - 1; i >= 0; i-- {
		if !t.Contains(chain[i]) {
			return chain[i], true
		}
	}
	return chain[0], true
}

// forwardedFor is the for= addresses of Forwarded headers (RFC 7239), in
// order; nil if one is not an address (obfuscated or unknown).
func forwardedFor(values []string) []netip.Addr {
	var out []netip.Addr
	for _, v := range values {
		for _, elem := range strings.Split(v, ",") {
			for _, pair := range strings.Split(elem, ";") {
				k, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if !ok || !strings.EqualFold(k, "for") {
					continue
				}
				val = strings.Trim(val, `"`)
				if h, _, err := net.SplitHostPort(val); err == nil {
					val = h
				}
				a, err := netip.ParseAddr(strings.Trim(val, "[]"))
				if err != nil {
					return nil
				}
				out = append(out, a.Unmap())
			}
		}
	}
	return out
}

// Errors of Conn.
var (
	// ErrUntrustedProxy is a PROXY header from an address not trusted to
	// send one.
	ErrUntrustedProxy = errors.New("a PROXY protocol header from an address that is not a trusted proxy")
	// ErrBadProxyHeader is a PROXY header that could not be read.
	ErrBadProxyHeader = errors.New("a malformed PROXY protocol header")
)

// v2sig opens a PROXY protocol v2 header.
var v2sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// Conn reads a PROXY protocol header at the start of c, if one is there
// (v1 or v2), within the deadline already set on c: from a trusted proxy
// it returns c with the client's address as its RemoteAddr; from anyone
// else a header is refused. Without a header, c is returned as it was,
// nothing of it consumed. RTMP's first byte (3) and TLS's (22) are neither
// header's.
func (t *Trusted) Conn(c net.Conn) (net.Conn, error) {
	br := bufio.NewReaderSize(c, 256)
	first, err := br.Peek(1)
	if err != nil {
		return nil, err
	}
	if first[0] != 'P' && first[0] != '\r' {
		return &conn{Conn: c, r: br}, nil
	}
	peer, _ := addrOf(c.RemoteAddr().String())
	if !t.Contains(peer) {
		return nil, ErrUntrustedProxy
	}
	src, err := readHeader(br)
	if err != nil {
		return nil, err
	}
	out := &conn{Conn: c, r: br}
	if src.IsValid() {
		out.remote = net.TCPAddrFromAddrPort(src)
	}
	return out, nil
}

// readHeader reads a v1 or v2 header; its source address, or none for a
// header that names none (v1 UNKNOWN, v2 LOCAL).
func readHeader(br *bufio.Reader) (netip.AddrPort, error) {
	if b, _ := br.Peek(len(v2sig)); bytes.Equal(b, v2sig) {
		return readV2(br)
	}
	return readV1(br)
}

func readV1(br *bufio.Reader) (netip.AddrPort, error) {
	// At most 107 bytes, CRLF included.
	var line []byte
	for len(line) < 107 {
		b, err := br.ReadByte()
		if err != nil {
			return netip.AddrPort{}, ErrBadProxyHeader
		}
		line = append(line, b)
		if bytes.HasSuffix(line, []byte("\r\n")) {
			return parseV1(string(line[:len(line)-2]))
		}
	}
	return netip.AddrPort{}, ErrBadProxyHeader
}

func parseV1(line string) (netip.AddrPort, error) {
	f := strings.Split(line, " ")
	if len(f) < 2 || f[0] != "PROXY" {
		return netip.AddrPort{}, ErrBadProxyHeader
	}
	if f[1] == "UNKNOWN" {
		return netip.AddrPort{}, nil
	}
	if len(f) != 6 || (f[1] != "TCP4" && f[1] != "TCP6") {
		return netip.AddrPort{}, ErrBadProxyHeader
	}
	a, err := netip.ParseAddr(f[2])
	if err != nil || (f[1] == "TCP4") != a.Is4() {
		return netip.AddrPort{}, ErrBadProxyHeader
	}
	if _, err := netip.ParseAddr(f[3]); err != nil {
		return netip.AddrPort{}, ErrBadProxyHeader
	}
	port, err := strconv.ParseUint(f[4], 10, 16)
	if err != nil || f[4] != strconv.FormatUint(port, 10) {
		return netip.AddrPort{}, ErrBadProxyHeader
	}
	if _, err := strconv.ParseUint(f[5], 10, 16); err != nil {
		return netip.AddrPort{}, ErrBadProxyHeader
	}
	return netip.AddrPortFrom(a, uint16(port)), nil
}

func readV2(br *bufio.Reader) (netip.AddrPort, error) {
	var head [16]byte
	if _, err := readFull(br, head[:]); err != nil {
		return netip.AddrPort{}, ErrBadProxyHeader
	}
	verCmd, fam := head[12], head[13]
	n := int(binary.BigEndian.Uint16(head[14:]))
	if verCmd>>4 != 2 || n > 512 {
		return netip.AddrPort{}, ErrBadProxyHeader
	}
	body := make([]byte, n)
	if _, err := readFull(br, body); err != nil {
		return netip.AddrPort{}, ErrBadProxyHeader
	}
	switch verCmd & 0xf {
	case 0: // LOCAL: the proxy's own connection (a health check)
		return netip.AddrPort{}, nil
	case 1: // PROXY
	default:
		return netip.AddrPort{}, ErrBadProxyHeader
	}
	switch fam {
	case 0x11, 0x12: // TCP or UDP over IPv4
		if n < 12 {
			return netip.AddrPort{}, ErrBadProxyHeader
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[:4])), binary.BigEndian.Uint16(body[8:])), nil
	case 0x21, 0x22: // over IPv6
		if n < 36 {
			return netip.AddrPort{}, ErrBadProxyHeader
		}
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[:16])).Unmap(), binary.BigEndian.Uint16(body[32:])), nil
	case 0x00: // UNSPEC
		return netip.AddrPort{}, nil
	}
	return netip.AddrPort{}, ErrBadProxyHeader
}

func readFull(br *bufio.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := br.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// conn is a connection whose first bytes were read ahead, with the
// client's address a PROXY header gave.
type conn struct {
	net.Conn
	r      *bufio.Reader
	remote net.Addr
}

func (c *conn) Read(b []byte) (int, error) {
	if c.r.Buffered() > 0 {
		return c.r.Read(b)
	}
	return c.Conn.Read(b)
}

func (c *conn) RemoteAddr() net.Addr {
	if c.remote != nil {
		return c.remote
	}
	return c.Conn.RemoteAddr()
}
