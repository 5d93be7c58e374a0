package rtmp

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// MaxURLLength bounds the RTMP URLs glasscast accepts from users.
const MaxURLLength = 2048

// ParseURL checks an rtmp:// or rtmps:// URL: a scheme, a host, a path, and a
// length limit.
func ParseURL(raw string) (*url.URL, error) {
	if len(raw) > MaxURLLength {
		return nil, fmt.Errorf("Invalid URL: longer than %d characters", MaxURLLength)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("Invalid URL: cannot be parsed")
	}
	if u.Scheme != "rtmp" && u.Scheme != "rtmps" {
		return nil, errors.New("Invalid URL: the scheme must be rtmp:// or rtmps://")
	}
	if u.Hostname() == "" {
		return nil, errors.New("Invalid URL: no host")
	}
	if strings.Trim(u.Path, "/") == "" {
		return nil, errors.New("Invalid URL: no application or stream key in the path")
	}
	return u, nil
}

// ClientURL rewrites rtmp://host/app/key into the form gortmplib's client
// takes (rtmp://host/app#key): the last path element is the stream key. A
// URL that already has a fragment is left as it is.
func ClientURL(raw string) (*url.URL, error) {
	u, err := ParseURL(raw)
	if err != nil {
		return nil, err
	}
	if u.Fragment != "" {
		return u, nil
	}
	p := strings.TrimRight(u.Path, "/")
	i := strings.LastIndex(p, "/")
	if i <= 0 || strings.Trim(p[:i], "/") == "" {
		return nil, errors.New("Invalid URL: the path must be /application/streamkey")
	}
	out := *u
	out.Path, out.Fragment = p[:i], p[i+1:]
	out.RawPath = ""
	if out.RawQuery != "" {
		// A query belongs to the stream key (rtmp://host/app/key?token=x).
		out.Fragment += "?" + out.RawQuery
		out.RawQuery = ""
	}
	return &out, nil
}
