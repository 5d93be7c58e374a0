// Package config is glasscast's one typed configuration: defaults in code,
// an optional strict YAML file (unknown keys are errors), GLASSCAST_*
// environment variables over it, and command-line flags over those. Every
// problem is reported at once.
package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"github.com/glasscast/glasscast/internal/clientip"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is everything `glasscast serve` can be told.
type Config struct {
	HTTP       string `yaml:"http"`
	RTMP       string `yaml:"rtmp"`
	Data       string `yaml:"data"`
	AdminToken string `yaml:"adminToken"`
	PublicURL  string `yaml:"publicUrl"`
	// IngestURL, when set, is the base of every RTMP ingest URL handed out
	// (rtmp[s]://HOST:PORT/live/): a cluster's shared ingest address.
	IngestURL string `yaml:"ingestUrl"`

	// TLS: certificate files, or certificates from an ACME CA for
	// ACMEDomains. Either turns HTTPS on (on HTTPS; HTTP then redirects)
	// and makes RTMPS possible.
	HTTPS       string   `yaml:"https"`
	TLSCert     string   `yaml:"tlsCert"`
	TLSKey      string   `yaml:"tlsKey"`
	ACMEDomains []string `yaml:"acmeDomains"`
	ACMEEmail   string   `yaml:"acmeEmail"`
	ACMECA      string   `yaml:"acmeCa"`
	ACMECARoot  string   `yaml:"acmeCaRoot"`
	RTMPS       string   `yaml:"rtmps"`

	ReconnectWindow time.Duration `yaml:"reconnectWindow"`
	// DrainTimeout bounds a cluster node's drain at SIGTERM: how long it
	// waits for the other nodes to take its publishers.
	DrainTimeout  time.Duration `yaml:"drainTimeout"`
	PartTarget    time.Duration `yaml:"partTarget"`
	SegmentMin    time.Duration `yaml:"segmentMin"`
	SegmentWindow int           `yaml:"segmentWindow"`
	MaxStreams    int           `yaml:"maxStreams"`
	MaxRTMPConns  int           `yaml:"maxRtmpConns"`

	WebRTCUDP      string `yaml:"webrtcUdp"`
	WebRTCTCP      string `yaml:"webrtcTcp"`
	WebRTCPublicIP string `yaml:"webrtcPublicIp"`
	// WebRTCMaxViewers caps WebRTC sessions, server-wide.
	WebRTCMaxViewers int      `yaml:"webrtcMaxViewers"`
	STUN             []string `yaml:"stun"`
	FFmpeg           string   `yaml:"ffmpeg"`

	ABR bool `yaml:"abr"`
	// MaxTranscodes bounds the ffmpeg encoders (transcoded outputs, ABR
	// ladders) running at once; 0 takes twice the CPUs.
	MaxTranscodes int    `yaml:"maxTranscodes"`
	RestreamCA    string `yaml:"restreamCa"`
	// RestreamAllow lists the internal networks (CIDRs) apps' outputs may
	// reach; every other loopback, private or link-local address is refused.
	RestreamAllow []string `yaml:"restreamAllow"`

	// AuthFailures is how many failed authentications a client address may
	// make a minute before it is refused (429) for a while.
	AuthFailures int `yaml:"authFailures"`

	// PublicPlayback turns playback tokens off: every stream plays by id.
	PublicPlayback bool `yaml:"publicPlayback"`
	// PlaybackTTL is how long the tokens in handed-out URLs last.
	PlaybackTTL time.Duration `yaml:"playbackTtl"`

	RecordManaged  bool          `yaml:"recordManaged"`
	RecordMaxAge   time.Duration `yaml:"recordMaxAge"`
	RecordMaxBytes Size          `yaml:"recordMaxBytes"`

	JWTSecret string      `yaml:"jwtSecret"`
	Apps      []AppConfig `yaml:"apps"`

	KeepAliveInterval   time.Duration `yaml:"keepAliveInterval"`
	AckTimeout          time.Duration `yaml:"ackTimeout"`
	MaxMissedAcks       int           `yaml:"maxMissedAcks"`
	ManagedStartTimeout time.Duration `yaml:"managedStartTimeout"`
	AppGrace            time.Duration `yaml:"appGrace"`
	UserGrace           time.Duration `yaml:"userGrace"`

	// NATSListen, with NATSRoutes, runs an embedded nats-server whose
	// cluster routes listen there; NATS joins an existing NATS cluster
	// instead. Either makes this node part of a cluster named by Node.
	NATSListen string   `yaml:"natsListen"`
	NATSRoutes []string `yaml:"natsRoutes"`
	NATS       []string `yaml:"nats"`
	Node       string   `yaml:"node"`
	// NATSTLSCert, NATSTLSKey and NATSTLSCA are this node's certificate
	// and key and the cluster's CA (glasscast cluster certs makes them):
	// the embedded server's routes are mutual TLS against the CA; with
	// NATS, the client connection uses them.
	NATSTLSCert string `yaml:"natsTlsCert"`
	NATSTLSKey  string `yaml:"natsTlsKey"`
	NATSTLSCA   string `yaml:"natsTlsCa"`
	// NATSCreds (a NATS user credentials file) or NATSNkey (a file holding
	// an nkey seed) authenticate this node to an existing NATS cluster.
	NATSCreds string `yaml:"natsCreds"`
	NATSNkey  string `yaml:"natsNkey"`
	// NATSInsecure lets a cluster run without TLS between its nodes.
	NATSInsecure bool `yaml:"natsInsecure"`

	// TrustedProxies are the addresses (CIDRs) of balancers whose word on
	// the client's address is taken: X-Forwarded-For or Forwarded on HTTP,
	// the PROXY protocol on RTMP and RTMPS.
	TrustedProxies []string `yaml:"trustedProxies"`

	Demo      bool   `yaml:"demo"`
	Pprof     bool   `yaml:"pprof"`
	LogLevel  string `yaml:"logLevel"`
	LogFormat string `yaml:"logFormat"`

	// Check asks serve to validate and exit (flag only).
	Check bool `yaml:"-"`
	// File is the YAML file the configuration came from, if any.
	File string `yaml:"-"`
}

// ClusterOn says the node is part of a cluster.
func (c *Config) ClusterOn() bool { return c.NATSListen != "" || len(c.NATS) > 0 }

// NodeName is the node's name: --node, or the host name and HTTP port.
func (c *Config) NodeName() string {
	if c.Node != "" {
		return c.Node
	}
	host, _ := os.Hostname()
	host = nodeUnsafe.ReplaceAllString(host, "-")
	_, port, _ := net.SplitHostPort(c.HTTP)
	name := strings.Trim(host, "-") + "-" + port
	if len(name) > 64 {
		name = name[len(name)-64:]
	}
	return name
}

var (
	nodeName   = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	nodeUnsafe = regexp.MustCompile(`[^A-Za-z0-9_-]+`)
)

// AppConfig is an app declared in the configuration file.
type AppConfig struct {
	PackageName string   `yaml:"packageName"`
	Name        string   `yaml:"name"`
	APIKey      string   `yaml:"apiKey"`
	PublicURL   string   `yaml:"publicUrl"`
	Permissions []string `yaml:"permissions"`
}

// Default returns the built-in configuration.
func Default() Config {
	return Config{
		HTTP:             ":8080",
		HTTPS:            ":8443",
		RTMP:             ":1935",
		Data:             "./glasscast-data",
		ReconnectWindow:  60 * time.Second,
		DrainTimeout:     30 * time.Second,
		PartTarget:       200 * time.Millisecond,
		SegmentMin:       time.Second,
		SegmentWindow:    5,
		MaxStreams:       1000,
		MaxRTMPConns:     1024,
		WebRTCUDP:        ":8189",
		WebRTCTCP:        ":8189",
		WebRTCMaxViewers: 2000,
		RecordManaged:    true,
		PlaybackTTL:      24 * time.Hour,
		AuthFailures:     10,
		RecordMaxAge:     30 * 24 * time.Hour,
		RecordMaxBytes:   20 << 30,

		KeepAliveInterval:   15 * time.Second,
		AckTimeout:          10 * time.Second,
		MaxMissedAcks:       3,
		ManagedStartTimeout: 30 * time.Second,
		AppGrace:            5 * time.Second,
		UserGrace:           60 * time.Second,
		LogLevel:            "info",
		LogFormat:           "text",
	}
}

// option is one setting reachable by flag and environment variable.
type option struct {
	name   string // flag name; the variable is GLASSCAST_ + NAME with - as _
	help   string
	isBool bool
	set    func(c *Config, v string) error
	get    func(c *Config) string
}

func str(name, help string, p func(*Config) *string) option {
	return option{name: name, help: help,
		set: func(c *Config, v string) error { *p(c) = v; return nil },
		get: func(c *Config) string { return *p(c) }}
}

func dur(name, help string, p func(*Config) *time.Duration) option {
	return option{name: name, help: help,
		set: func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil {
				return fmt.Errorf("%q is not a duration (like 60s or 200ms)", v)
			}
			*p(c) = d
			return nil
		},
		get: func(c *Config) string { return p(c).String() }}
}

func integer(name, help string, p func(*Config) *int) option {
	return option{name: name, help: help,
		set: func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("%q is not a whole number", v)
			}
			*p(c) = n
			return nil
		},
		get: func(c *Config) string { return strconv.Itoa(*p(c)) }}
}

// Size is a byte count written like 20GiB, 500MB or 1048576.
type Size int64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}

// ParseSize reads a Size.
func ParseSize(v string) (Size, error) {
	t := strings.TrimSpace(v)
	mult := int64(1)
	for _, u := range sizeUnits {
		if rest, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(t, 64)
	if err != nil || n < 0 || n*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("%q is not a size (like 20GiB, 500MB or 0 for no limit)", v)
	}
	return Size(n * float64(mult)), nil
}

func (s Size) String() string {
	for _, u := range sizeUnits[:4] {
		if s >= Size(u.mult) && int64(s)%u.mult == 0 && (u.suffix == "TiB" || int64(s)/u.mult < 1024) {
			return strconv.FormatInt(int64(s)/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

// UnmarshalYAML reads a size from a number or a string like 20GiB.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseSize(n.Value)
	if err != nil {
		return err
	}
	*s = v
	return nil
}

func size(name, help string, p func(*Config) *Size) option {
	return option{name: name, help: help,
		set: func(c *Config, v string) error {
			n, err := ParseSize(v)
			if err != nil {
				return err
			}
			*p(c) = n
			return nil
		},
		get: func(c *Config) string { return p(c).String() }}
}

func list(name, help string, p func(*Config) *[]string) option {
	return option{name: name, help: help,
		set: func(c *Config, v string) error {
			var out []string
			for _, f := range strings.Split(v, ",") {
				if f = strings.TrimSpace(f); f != "" {
					out = append(out, f)
				}
			}
			*p(c) = out
			return nil
		},
		get: func(c *Config) string { return strings.Join(*p(c), ",") }}
}

func boolean(name, help string, p func(*Config) *bool) option {
	return option{name: name, help: help, isBool: true,
		set: func(c *Config, v string) error {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("%q is not true or false", v)
			}
			*p(c) = b
			return nil
		},
		get: func(c *Config) string { return strconv.FormatBool(*p(c)) }}
}

var options = []option{
	str("http", "HTTP listen address (API, HLS, DASH, pages)", func(c *Config) *string { return &c.HTTP }),
	str("rtmp", "RTMP ingest listen address", func(c *Config) *string { return &c.RTMP }),
	str("data", "directory for glasscast's data", func(c *Config) *string { return &c.Data }),
	str("admin-token", "bearer token of the admin API (generated and printed when unset)", func(c *Config) *string { return &c.AdminToken }),
	str("https", "HTTPS listen address, when TLS is on (--tls-cert or --acme-domains)", func(c *Config) *string { return &c.HTTPS }),
	str("tls-cert", "PEM certificate chain for HTTPS and RTMPS (read again when the file changes)", func(c *Config) *string { return &c.TLSCert }),
	str("tls-key", "PEM private key of --tls-cert", func(c *Config) *string { return &c.TLSKey }),
	list("acme-domains", "get and renew certificates for these names from an ACME CA (Let's Encrypt by default); HTTP-01 challenges are answered on --http", func(c *Config) *[]string { return &c.ACMEDomains }),
	str("acme-email", "contact address given to the ACME CA", func(c *Config) *string { return &c.ACMEEmail }),
	str("acme-ca", "ACME directory URL (default: Let's Encrypt)", func(c *Config) *string { return &c.ACMECA }),
	str("acme-ca-root", "PEM file of CA certificates to trust for the ACME directory's own HTTPS (a private or test CA)", func(c *Config) *string { return &c.ACMECARoot }),
	str("rtmps", "RTMPS ingest listen address (needs TLS); managed streams then hand the glasses rtmps:// URLs", func(c *Config) *string { return &c.RTMPS }),
	str("public-url", "base of every URL handed out (default: derived from --http)", func(c *Config) *string { return &c.PublicURL }),
	str("ingest-url", "base of every RTMP ingest URL handed out, rtmp[s]://HOST:PORT/live/ (default: this node's, from --public-url and --rtmp)", func(c *Config) *string { return &c.IngestURL }),
	dur("reconnect-window", "how long a stream waits for its publisher to come back", func(c *Config) *time.Duration { return &c.ReconnectWindow }),
	dur("drain-timeout", "in a cluster, how long a node stopping (SIGTERM) waits for the others to take its publishers", func(c *Config) *time.Duration { return &c.DrainTimeout }),
	dur("part-target", "LL-HLS part duration", func(c *Config) *time.Duration { return &c.PartTarget }),
	dur("segment-min", "shortest segment before the next keyframe starts another", func(c *Config) *time.Duration { return &c.SegmentMin }),
	integer("segment-window", "complete segments kept per stream", func(c *Config) *int { return &c.SegmentWindow }),
	integer("max-streams", "most streams that may exist at once (ended ones aside)", func(c *Config) *int { return &c.MaxStreams }),
	integer("max-rtmp-conns", "most RTMP connections at once", func(c *Config) *int { return &c.MaxRTMPConns }),
	str("webrtc-udp", "UDP address of WebRTC's ICE (one port for every viewer)", func(c *Config) *string { return &c.WebRTCUDP }),
	str("webrtc-tcp", "TCP address of WebRTC's ICE-TCP fallback", func(c *Config) *string { return &c.WebRTCTCP }),
	integer("webrtc-max-viewers", "most WebRTC viewers at once, server-wide (those still connecting included; 8 of those per client address)", func(c *Config) *int { return &c.WebRTCMaxViewers }),
	str("webrtc-public-ip", "the public IP to announce to WebRTC viewers (1:1 NAT)", func(c *Config) *string { return &c.WebRTCPublicIP }),
	list("stun", "STUN servers for WebRTC, comma-separated stun:host:port", func(c *Config) *[]string { return &c.STUN }),
	str("ffmpeg", "ffmpeg for WebRTC's Opus audio and thumbnails: a path, empty to look for it, or off", func(c *Config) *string { return &c.FFmpeg }),
	str("restream-ca", "PEM file of CA certificates rtmps:// outputs trust besides the system's", func(c *Config) *string { return &c.RestreamCA }),
	list("restream-allow", "internal networks apps' outputs may reach all the same, comma-separated CIDRs (loopback, private and link-local addresses are refused otherwise)", func(c *Config) *[]string { return &c.RestreamAllow }),
	integer("max-transcodes", "most ffmpeg encoders (transcoded outputs, ABR ladders) at once, server-wide; 0: twice the CPUs", func(c *Config) *int { return &c.MaxTranscodes }),
	boolean("abr", "adaptive bitrate: an ffmpeg ladder (480p, 360p) beside every stream's source, in LL-HLS and DASH", func(c *Config) *bool { return &c.ABR }),
	integer("auth-failures", "failed authentications (admin token, API keys, core tokens, stream keys) a client address may make a minute before it is refused for a while", func(c *Config) *int { return &c.AuthFailures }),
	boolean("public-playback", "every stream plays by its id alone, with no token (viewer URLs are capabilities otherwise)", func(c *Config) *bool { return &c.PublicPlayback }),
	dur("playback-ttl", "how long the playback tokens in handed-out viewer URLs last", func(c *Config) *time.Duration { return &c.PlaybackTTL }),
	boolean("record-managed", "record managed streams (the Streams API records when asked)", func(c *Config) *bool { return &c.RecordManaged }),
	dur("record-max-age", "remove recordings older than this (0 keeps them)", func(c *Config) *time.Duration { return &c.RecordMaxAge }),
	size("record-max-bytes", "remove the oldest recordings while they take more than this (0: no limit)", func(c *Config) *Size { return &c.RecordMaxBytes }),
	str("jwt-secret", "secret signing the glasses' core tokens (generated once and kept under --data when unset)", func(c *Config) *string { return &c.JWTSecret }),
	dur("keep-alive-interval", "how often a stream's keep-alive goes to the glasses", func(c *Config) *time.Duration { return &c.KeepAliveInterval }),
	dur("ack-timeout", "how long the glasses have to acknowledge a keep-alive", func(c *Config) *time.Duration { return &c.AckTimeout }),
	integer("max-missed-acks", "missed keep-alives in a row that end a stream", func(c *Config) *int { return &c.MaxMissedAcks }),
	dur("managed-start-timeout", "how long a managed stream may take to become playable", func(c *Config) *time.Duration { return &c.ManagedStartTimeout }),
	dur("app-grace", "how long an app's socket may be away before the app is stopped", func(c *Config) *time.Duration { return &c.AppGrace }),
	dur("user-grace", "how long the phone may be away before the user session ends", func(c *Config) *time.Duration { return &c.UserGrace }),
	str("nats-listen", "join a cluster: run an embedded NATS server whose cluster routes listen here (HOST:PORT)", func(c *Config) *string { return &c.NATSListen }),
	list("nats-routes", "the other nodes' NATS route URLs, comma-separated nats://HOST:PORT (with --nats-listen)", func(c *Config) *[]string { return &c.NATSRoutes }),
	list("nats", "join a cluster through an existing NATS cluster, comma-separated nats://HOST:PORT or tls://HOST:PORT (nothing embedded)", func(c *Config) *[]string { return &c.NATS }),
	str("nats-tls-cert", "this node's cluster certificate (PEM; glasscast cluster certs makes it): the routes' mutual TLS, or the client certificate with --nats", func(c *Config) *string { return &c.NATSTLSCert }),
	str("nats-tls-key", "the key of --nats-tls-cert (PEM)", func(c *Config) *string { return &c.NATSTLSKey }),
	str("nats-tls-ca", "the cluster CA (PEM): only nodes with a certificate from it are members; with --nats, the CA of the NATS servers", func(c *Config) *string { return &c.NATSTLSCA }),
	str("nats-creds", "with --nats: a NATS user credentials file (JWT and nkey seed), as NATS's own tools take it", func(c *Config) *string { return &c.NATSCreds }),
	str("nats-nkey", "with --nats: a file holding a NATS user's nkey seed", func(c *Config) *string { return &c.NATSNkey }),
	list("trusted-proxies", "balancers (comma-separated CIDRs or addresses) whose X-Forwarded-For/Forwarded (HTTP) and PROXY protocol header (RTMP, RTMPS) give the client's address; from anyone else those are ignored, and a PROXY header refused", func(c *Config) *[]string { return &c.TrustedProxies }),
	boolean("nats-insecure", "run a cluster without TLS between its nodes (anyone who reaches a route port can join); warns of every route not on loopback", func(c *Config) *bool { return &c.NATSInsecure }),
	str("node", "this node's name in the cluster, unique (default: host name and HTTP port)", func(c *Config) *string { return &c.Node }),
	boolean("demo", "create a demo stream fed by the built-in test source", func(c *Config) *bool { return &c.Demo }),
	boolean("pprof", "serve Go profiles at /debug/pprof/ (admin token)", func(c *Config) *bool { return &c.Pprof }),
	str("log-level", "debug, info, warn or error", func(c *Config) *string { return &c.LogLevel }),
	str("log-format", "text or json", func(c *Config) *string { return &c.LogFormat }),
}

func envName(flagName string) string {
	return "GLASSCAST_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Load builds the configuration from args (the flags after "serve"), the
// environment (getenv) and the YAML file --config names. It returns every
// problem found, joined. flag.ErrHelp is returned as is after usage was
// written to out.
func Load(args []string, getenv func(string) string, out io.Writer) (*Config, error) {
	def := Default()
	fs := flag.NewFlagSet("glasscast serve", flag.ContinueOnError)
	fs.SetOutput(out)
	given := map[string]string{}
	var file string
	var check bool
	fs.StringVar(&file, "config", "", "YAML configuration file (env GLASSCAST_CONFIG)")
	fs.BoolVar(&check, "check", false, "validate the configuration and exit")
	for _, o := range options {
		help := fmt.Sprintf("%s (env %s)", o.help, envName(o.name))
		name := o.name
		if o.isBool {
			fs.BoolFunc(name, help, func(v string) error { given[name] = v; return nil })
			continue
		}
		fs.Func(name, help+" (default "+strconv.Quote(o.get(&def))+")", func(v string) error { given[name] = v; return nil })
	}
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: glasscast serve [flags]\n\nPrecedence: flags, then GLASSCAST_* variables, then --config YAML, then defaults.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}

	c := def
	var errs []error
	if file == "" {
		file = getenv("GLASSCAST_CONFIG")
	}
	if file != "" {
		if err := loadYAML(&c, file); err != nil {
			errs = append(errs, err)
		}
		c.File = file
	}
	for _, o := range options {
		if v := getenv(envName(o.name)); v != "" {
			if err := o.set(&c, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", envName(o.name), err))
			}
		}
	}
	names := make([]string, 0, len(given))
	for n := range given {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		for _, o := range options {
			if o.name == n {
				if err := o.set(&c, given[n]); err != nil {
					errs = append(errs, fmt.Errorf("--%s: %w", n, err))
				}
			}
		}
	}
	c.Check = check
	errs = append(errs, c.Validate()...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &c, nil
}

// MaxFileSize bounds the configuration file.
const MaxFileSize = 1 << 20

func loadYAML(c *Config, file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	if len(data) > MaxFileSize {
		return fmt.Errorf("config file %s: larger than %d bytes", file, MaxFileSize)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config file %s: %w", file, err)
	}
	return nil
}

// TLSOn says whether HTTPS (and RTMPS, if asked for) is on.
func (c *Config) TLSOn() bool { return c.TLSCert != "" || len(c.ACMEDomains) > 0 }

// Validate lists everything wrong with c.
func (c *Config) Validate() []error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	for _, a := range []struct{ name, v string }{{"http", c.HTTP}, {"rtmp", c.RTMP}, {"webrtc-udp", c.WebRTCUDP}, {"webrtc-tcp", c.WebRTCTCP}} {
		if _, port, err := net.SplitHostPort(a.v); err != nil {
			bad("%s: %q is not an address like :8080 or 127.0.0.1:8080", a.name, a.v)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			bad("%s: port %q is out of range", a.name, port)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		bad("tls-cert and tls-key: give both or neither")
	}
	if c.NATSListen != "" && len(c.NATS) > 0 {
		bad("nats-listen and nats: embed a NATS server or join an existing cluster, not both")
	}
	if len(c.NATSRoutes) > 0 && c.NATSListen == "" {
		bad("nats-routes: needs nats-listen")
	}
	if c.NATSListen != "" {
		if _, _, err := net.SplitHostPort(c.NATSListen); err != nil {
			bad("nats-listen: %q is not an address like 127.0.0.1:7422", c.NATSListen)
		}
	}
	for _, u := range c.NATSRoutes {
		if !strings.HasPrefix(u, "nats://") && !strings.HasPrefix(u, "tls://") {
			bad("%q: NATS route URLs are nats://HOST:PORT", u)
		}
	}
	tlsURL := false
	for _, u := range c.NATS {
		switch {
		case strings.HasPrefix(u, "tls://"):
			tlsURL = true
		case !strings.HasPrefix(u, "nats://"):
			bad("%q: NATS URLs are nats://HOST:PORT or tls://HOST:PORT", u)
		}
	}
	if (c.NATSTLSCert == "") != (c.NATSTLSKey == "") {
		bad("nats-tls-cert and nats-tls-key: give both or neither")
	}
	tlsOn := c.NATSTLSCert != "" || c.NATSTLSCA != ""
	switch {
	case !c.ClusterOn():
		if tlsOn || c.NATSCreds != "" || c.NATSNkey != "" {
			bad("nats-tls-*, nats-creds and nats-nkey: need nats-listen or nats")
		}
	case c.NATSListen != "" && tlsOn && (c.NATSTLSCert == "" || c.NATSTLSCA == ""):
		bad("nats-listen with TLS: the routes are mutual TLS, give nats-tls-cert, nats-tls-key and nats-tls-ca (glasscast cluster certs makes them)")
	case c.NATSListen != "" && (c.NATSCreds != "" || c.NATSNkey != ""):
		bad("nats-creds and nats-nkey: for an existing NATS cluster (nats), not nats-listen")
	case c.NATSCreds != "" && c.NATSNkey != "":
		bad("nats-creds and nats-nkey: give one")
	case !tlsOn && !tlsURL && !c.NATSInsecure:
		bad("the cluster would run without TLS between its nodes, so anyone who reaches a route port could join it: give nats-tls-cert, nats-tls-key and nats-tls-ca (glasscast cluster certs --dir DIR --nodes n1,n2,n3 makes them), or nats-insecure to accept that")
	}
	if _, err := clientip.Parse(c.TrustedProxies); err != nil {
		bad("trusted-proxies: %v", err)
	}
	if c.Node != "" && !nodeName.MatchString(c.Node) {
		bad("node: %q: use 1 to 64 letters, digits, - and _", c.Node)
	}
	if c.TLSCert != "" && len(c.ACMEDomains) > 0 {
		bad("tls-cert and acme-domains: choose one source of certificates")
	}
	if c.TLSOn() {
		if _, _, err := net.SplitHostPort(c.HTTPS); err != nil {
			bad("https: %q is not an address like :8443", c.HTTPS)
		}
	}
	if c.RTMPS != "" {
		if !c.TLSOn() {
			bad("rtmps: needs TLS (--tls-cert/--tls-key or --acme-domains)")
		} else if _, _, err := net.SplitHostPort(c.RTMPS); err != nil {
			bad("rtmps: %q is not an address like :1936", c.RTMPS)
		}
	}
	if c.ACMECA != "" {
		if u, err := url.Parse(c.ACMECA); err != nil || u.Scheme != "https" || u.Host == "" {
			bad("acme-ca: %q is not an https:// URL", c.ACMECA)
		}
	}
	if c.Data == "" {
		bad("data: a directory is required")
	}
	if c.RecordMaxAge < 0 {
		bad("record-max-age: %v is negative", c.RecordMaxAge)
	}
	if c.AdminToken != "" && len(c.AdminToken) < 16 {
		bad("admin-token: use at least 16 characters")
	}
	if c.IngestURL != "" {
		u, err := url.Parse(c.IngestURL)
		if err != nil || (u.Scheme != "rtmp" && u.Scheme != "rtmps") || u.Host == "" || strings.TrimSuffix(u.Path, "/") != "/live" || u.RawQuery != "" {
			bad("ingest-url: %q is not rtmp://HOST:PORT/live/ or rtmps://HOST:PORT/live/", c.IngestURL)
		}
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("public-url: %q is not an http:// or https:// URL", c.PublicURL)
		} else if u.RawQuery != "" || u.Fragment != "" {
			bad("public-url: %q must not have a query or fragment", c.PublicURL)
		}
	}
	if c.DrainTimeout < 0 || c.DrainTimeout > time.Hour {
		bad("drain-timeout: %v is outside 0 to 1h", c.DrainTimeout)
	}
	if c.ReconnectWindow < time.Second || c.ReconnectWindow > 24*time.Hour {
		bad("reconnect-window: %v is outside 1s to 24h", c.ReconnectWindow)
	}
	if c.PartTarget < 50*time.Millisecond || c.PartTarget > 2*time.Second {
		bad("part-target: %v is outside 50ms to 2s", c.PartTarget)
	}
	if c.SegmentMin < c.PartTarget || c.SegmentMin > 30*time.Second {
		bad("segment-min: %v must be at least part-target and at most 30s", c.SegmentMin)
	}
	if c.SegmentWindow < 4 || c.SegmentWindow > 100 {
		bad("segment-window: %d is outside 4 to 100", c.SegmentWindow)
	}
	if c.AuthFailures < 1 {
		bad("auth-failures: must be at least 1")
	}
	if c.WebRTCMaxViewers < 1 {
		bad("webrtc-max-viewers: must be at least 1")
	}
	if c.MaxTranscodes < 0 {
		bad("max-transcodes: must be 0 (twice the CPUs) or more")
	}
	if c.MaxStreams < 1 {
		bad("max-streams: must be at least 1")
	}
	if c.MaxRTMPConns < 1 {
		bad("max-rtmp-conns: must be at least 1")
	}
	if c.WebRTCPublicIP != "" && net.ParseIP(c.WebRTCPublicIP) == nil {
		bad("webrtc-public-ip: %q is not an IP address", c.WebRTCPublicIP)
	}
	for _, s := range c.STUN {
		if !strings.HasPrefix(s, "stun:") && !strings.HasPrefix(s, "stuns:") {
			bad("stun: %q is not a stun: URL", s)
		}
	}
	for _, s := range c.RestreamAllow {
		if _, err := netip.ParsePrefix(s); err != nil {
			if _, err := netip.ParseAddr(s); err != nil {
				bad("restream-allow: %q is not a CIDR or an address", s)
			}
		}
	}
	if c.JWTSecret != "" && len(c.JWTSecret) < 32 {
		bad("jwt-secret: use at least 32 characters")
	}
	for name, d := range map[string]time.Duration{"keep-alive-interval": c.KeepAliveInterval, "ack-timeout": c.AckTimeout,
		"managed-start-timeout": c.ManagedStartTimeout, "app-grace": c.AppGrace, "user-grace": c.UserGrace} {
		if d < 10*time.Millisecond || d > 24*time.Hour {
			bad("%s: %v is outside 10ms to 24h", name, d)
		}
	}
	if c.PlaybackTTL < time.Minute || c.PlaybackTTL > 366*24*time.Hour {
		bad("playback-ttl: %v is outside 1m to 366 days", c.PlaybackTTL)
	}
	if c.MaxMissedAcks < 1 || c.MaxMissedAcks > 100 {
		bad("max-missed-acks: %d is outside 1 to 100", c.MaxMissedAcks)
	}
	seen := map[string]bool{}
	for i, a := range c.Apps {
		switch {
		case a.PackageName == "":
			bad("apps[%d]: packageName is required", i)
		case seen[a.PackageName]:
			bad("apps[%d]: %s is declared twice", i, a.PackageName)
		case len(a.APIKey) < 16:
			bad("apps[%d] (%s): apiKey must be at least 16 characters", i, a.PackageName)
		case a.PublicURL == "":
			bad("apps[%d] (%s): publicUrl is required", i, a.PackageName)
		}
		seen[a.PackageName] = true
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log-level: %q is not debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		bad("log-format: %q is not text or json", c.LogFormat)
	}
	return errs
}

// FFmpegPath resolves the ffmpeg setting: the path given, the one on the
// PATH when it is empty, "" when it is "off" or there is none.
func (c Config) FFmpegPath() string {
	switch c.FFmpeg {
	case "off":
		return ""
	case "":
		p, _ := exec.LookPath("ffmpeg")
		return p
	default:
		return c.FFmpeg
	}
}
