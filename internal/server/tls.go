package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"github.com/glasscast/glasscast/internal/config"
)

// serverTLS is where HTTPS and RTMPS get their certificates: files the
// operator keeps up to date, or an ACME CA (Let's Encrypt by default).
type serverTLS struct {
	config *tls.Config
	// challenges wraps the plain-HTTP handler: it answers ACME HTTP-01
	// challenges (when ACME is on) before anything else.
	challenges func(http.Handler) http.Handler
	// warm obtains the ACME certificates ahead of the first visitor.
	warm func(log *slog.Logger)
}

func newServerTLS(cfg config.Config) (*serverTLS, error) {
	if cfg.TLSCert != "" {
		fc := &fileCert{cert: cfg.TLSCert, key: cfg.TLSKey}
		if _, err := fc.load(); err != nil {
			return nil, err
		}
		return &serverTLS{
			config:     &tls.Config{GetCertificate: fc.get, NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12},
			challenges: func(h http.Handler) http.Handler { return h },
			warm:       func(*slog.Logger) {},
		}, nil
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	if cfg.ACMECARoot != "" {
		pem, err := os.ReadFile(cfg.ACMECARoot)
		if err != nil {
			return nil, fmt.Errorf("acme-ca-root: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("acme-ca-root: no PEM certificate in %s", cfg.ACMECARoot)
		}
		hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, Proxy: http.ProxyFromEnvironment}
	}
	dir := cfg.ACMECA
	if dir == "" {
		dir = autocert.DefaultACMEDirectory
	}
	m := &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		Cache:      autocert.DirCache(filepath.Join(cfg.Data, "acme")),
		HostPolicy: hostPolicy(cfg.ACMEDomains),
		Email:      cfg.ACMEEmail,
		Client:     &acme.Client{DirectoryURL: dir, HTTPClient: hc},
	}
	tc := m.TLSConfig()
	tc.MinVersion = tls.VersionTLS12
	domains := cfg.ACMEDomains
	return &serverTLS{
		config:     tc,
		challenges: func(h http.Handler) http.Handler { return m.HTTPHandler(h) },
		warm: func(log *slog.Logger) {
			for _, d := range domains {
				go func() {
					started := time.Now()
					_, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: d,
						CipherSuites:     []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
						SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
						SupportedCurves:  []tls.CurveID{tls.CurveP256}})
					if err != nil {
						log.Error("tls: no certificate from the ACME CA yet (the first visitor asks again)", "domain", d, "ca", dir, "err", err)
						return
					}
					log.Info("tls: certificate ready", "domain", d, "ca", dir, "took", time.Since(started).Round(time.Millisecond))
				}()
			}
		},
	}, nil
}

// hostPolicy allows the configured names, with or without a port (a CA
// validating HTTP-01 on a port other than 80 sends one in Host).
func hostPolicy(domains []string) autocert.HostPolicy {
	allow := autocert.HostWhitelist(domains...)
	return func(ctx context.Context, host string) error {
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		return allow(ctx, host)
	}
}

// fileCert serves a certificate from files and reads them again when they
// change (a renewal by another tool), looking at most every few seconds.
type fileCert struct {
	cert, key string

	mu      sync.Mutex
	current *tls.Certificate
	mod     time.Time
	checked time.Time
}

func (f *fileCert) load() (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(f.cert, f.key)
	if err != nil {
		return nil, fmt.Errorf("tls-cert/tls-key: %w", err)
	}
	st, _ := os.Stat(f.cert)
	f.mu.Lock()
	f.current, f.checked = &c, time.Now()
	if st != nil {
		f.mod = st.ModTime()
	}
	f.mu.Unlock()
	return &c, nil
}

func (f *fileCert) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	f.mu.Lock()
	cur, stale := f.current, time.Since(f.checked) > 5*time.Second
	if stale {
		f.checked = time.Now()
	}
	mod := f.mod
	f.mu.Unlock()
	if stale {
		if st, err := os.Stat(f.cert); err == nil && !st.ModTime().Equal(mod) {
			if c, err := f.load(); err == nil {
				cur = c
			}
		}
	}
	if cur == nil {
		return nil, errors.New("no certificate")
	}
	return cur, nil
}

// redirect sends plain-HTTP requests to the same path over HTTPS; the
// health check answers on both.
func redirect(httpsAddr net.Addr, health http.HandlerFunc) http.Handler {
	_, port, _ := net.SplitHostPort(httpsAddr.String())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			health(w, r)
			return
		}
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if port != "443" {
			host = net.JoinHostPort(host, port)
		}
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
	})
}

// hsts tells browsers to use HTTPS only, for a year.
func hsts(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Strict-Transport-Security", "max-age=31536000")
		next.ServeHTTP(w, r)
	})
}
