package api

import (
	"context"
	"strings"
)

// A Principal is who a request was verified as by the node it reached:
// in a cluster, a request passed on to another node carries it instead of
// the bearer token or API key it came with, and that node trusts it (it
// came over the cluster's own, member-only routes).
type Principal string

// Principals.
const (
	PrincipalAdmin Principal = "admin"
	appPrincipal             = "app:"
)

// AppPrincipal is an app, by package name.
func AppPrincipal(pkg string) Principal { return Principal(appPrincipal + pkg) }

// App is the package of an app principal ("" for another).
func (p Principal) App() string {
	pkg, _ := strings.CutPrefix(string(p), appPrincipal)
	if pkg == string(p) {
		return ""
	}
	return pkg
}

// Valid says p is one of the principals.
func (p Principal) Valid() bool { return p == PrincipalAdmin || p.App() != "" }

type principalKey struct{}

// WithPrincipal is ctx carrying the principal a request was verified as.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalOf is the principal ctx carries ("" for none).
func PrincipalOf(ctx context.Context) Principal {
	p, _ := ctx.Value(principalKey{}).(Principal)
	return p
}
