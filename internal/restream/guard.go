package restream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// ErrDestinationNotAllowed refuses a connection an app asked for to an
// address inside the operator's networks (loopback, private, link-local and
// the like) that the allow-list does not name.
var ErrDestinationNotAllowed = errors.New("the destination's address is not allowed")

// genericError is all an app is told of a failed connection: raw dial errors
// would tell a closed port from an open one and make outputs a port scanner.
const genericError = "could not connect to the destination"

// internalNets are the ranges an app's output may not reach: they belong to
// the machine glasscast runs on or the network around it, not the internet.
var internalNets = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8",         // "this network"
		"100.64.0.0/10",     // carrier-grade NAT
		"192.0.0.0/24",      // IETF protocol assignments
		"192.0.2.0/24",      // documentation
		"198.18.0.0/15",     // benchmarking
		"198.51.100.0/24",   // documentation
		"203.0.113.0/24",    // documentation
		"240.0.0.0/4",       // reserved, and the broadcast address
		"64:ff9b:1::/48",    // local-use NAT64
		"100::/64",          // discard
		"2001::/32",         // Teredo
		"2001:db8::/32",     // documentation
		"fec0::/10",         // site-local (deprecated)
		"::ffff:0:0:0/96",   // IPv4-translated
		"2001:10::/28",      // ORCHID
		"2001:20::/28",      // ORCHIDv2
		"3fff::/20",         // documentation
		"5f00::/16",         // segment routing SIDs
		"fc00::/7",          // unique local
		"ff00::/8",          // multicast
		"fe80::/10",         // link-local
		"::/128", "::1/128", // unspecified, loopback
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// Internal reports whether an address belongs to the operator's side:
// loopback, private, unique-local, link-local, multicast, unspecified, or a
// reserved range. IPv4 inside IPv6 (mapped, NAT64, 6to4) is judged by the
// IPv4 address it carries.
func Internal(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() {
		return true
	}
	if ip.Is6() {
		b := ip.As16()
		switch {
		case netip.MustParsePrefix("64:ff9b::/96").Contains(ip): // NAT64
			return Internal(netip.AddrFrom4([4]byte(b[12:16])))
		case netip.MustParsePrefix("2002::/16").Contains(ip): // 6to4
			return Internal(netip.AddrFrom4([4]byte(b[2:6])))
		}
	}
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() {
		return true
	}
	for _, p := range internalNets {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// ParseAllow reads an operator's allow-list: CIDRs or single addresses.
func ParseAllow(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var bad []string
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		bad = append(bad, s)
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("not a CIDR or an address: %s", strings.Join(bad, ", "))
	}
	return out, nil
}

// allowed says whether an output of an app may connect to ip.
func (m *Manager) allowed(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range m.cfg.Allow {
		if p.Contains(ip) {
			return true
		}
	}
	return !Internal(ip)
}

// dialer connects an output. An app's output is checked against where
// the name resolved, for every address tried, at each connection (a name
// that changes its answer between attempts is checked again); the admin's
// outputs go anywhere.
func (m *Manager) dialer(guarded bool) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	if guarded {
		d.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return ErrDestinationNotAllowed
			}
			if !m.allowed(ap.Addr()) {
				return ErrDestinationNotAllowed
			}
			return nil
		}
	}
	return d.DialContext
}
