package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// A cluster's members are the nodes holding a certificate from its own CA:
// the embedded servers' routes are mutual TLS against it (and a client
// connection to an external NATS cluster can use the same files).

// Names of the files MakeCerts writes into its directory.
const (
	CACertFile = "ca.crt"
	caKeyFile  = "ca.key"
)

// NodeCertFiles are the certificate and key files of node in a directory
// MakeCerts wrote.
func NodeCertFiles(dir, node string) (cert, key string) {
	return filepath.Join(dir, node+".crt"), filepath.Join(dir, node+".key")
}

// certValidity is how long the certificates MakeCerts writes last.
const certValidity = 5 * 365 * 24 * time.Hour

// MakeCerts writes a cluster CA (ca.crt, ca.key) into dir, or uses the one
// already there, and a certificate and key for each node (NODE.crt,
// NODE.key), usable both to accept and to dial routes. Each certificate
// names its node (its common name and a DNS name), localhost, 127.0.0.1,
// ::1 and hosts (names or addresses the routes dial). Every file is 0600;
// an existing node's files are not overwritten.
func MakeCerts(dir string, nodes, hosts []string) error {
	if len(nodes) == 0 {
		return errors.New("no node named")
	}
	seen := map[string]bool{}
	for _, n := range nodes {
		if err := CheckNode(n); err != nil {
			return err
		}
		if seen[n] {
			return fmt.Errorf("node %q named twice", n)
		}
		seen[n] = true
		for _, f := range []string{n + ".crt", n + ".key"} {
			if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
				return fmt.Errorf("%s exists: a node's certificate is made once (remove it to make another)", filepath.Join(dir, f))
			}
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	caCert, caKey, err := loadOrMakeCA(dir)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl := &x509.Certificate{
			SerialNumber: serial(),
			Subject:      pkix.Name{CommonName: n, Organization: []string{"glasscast cluster"}},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(certValidity),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			DNSNames:     []string{n, "localhost"},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		}
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else if h != "" {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		certFile, keyFile := NodeCertFiles(dir, n)
		if err := writePEM(keyFile, "EC PRIVATE KEY", mustMarshalEC(key)); err != nil {
			return err
		}
		if err := writePEM(certFile, "CERTIFICATE", der); err != nil {
			return err
		}
	}
	return nil
}

func loadOrMakeCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, caKeyFile)
	if pair, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		cert, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", certPath, err)
		}
		key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
		if !ok || !cert.IsCA {
			return nil, nil, fmt.Errorf("%s is not a cluster CA made by glasscast cluster certs", certPath)
		}
		return cert, key, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("the cluster CA in %s: %w", dir, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "glasscast cluster CA", Organization: []string{"glasscast cluster"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(certValidity + 24*time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	if err := writePEM(keyPath, "EC PRIVATE KEY", mustMarshalEC(key)); err != nil {
		return nil, nil, err
	}
	if err := writePEM(certPath, "CERTIFICATE", der); err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

func mustMarshalEC(key *ecdsa.PrivateKey) []byte {
	b, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		panic(err) // a P-256 key always marshals
	}
	return b
}

// writePEM creates path (0600), failing if it exists.
func writePEM(path, kind string, der []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := pem.Encode(f, &pem.Block{Type: kind, Bytes: der}); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

// TLSFiles are a node's TLS material for the cluster: its certificate and
// key, and the cluster CA.
type TLSFiles struct {
	Cert, Key, CA string
}

// On says files were given.
func (f TLSFiles) On() bool { return f.Cert != "" || f.Key != "" || f.CA != "" }

// routeTLS is the routes' TLS: this node's certificate, and a peer's
// (dialled or dialling) verified against the cluster CA; nothing else is
// a member.
func (f TLSFiles) routeTLS() (*tls.Config, error) {
	if f.Cert == "" || f.Key == "" || f.CA == "" {
		return nil, errors.New("the routes' TLS needs a certificate, its key and the cluster CA")
	}
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("nats-tls-cert/key: %w", err)
	}
	pool, err := loadPool(f.CA)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		RootCAs:      pool,
	}, nil
}

func loadPool(caFile string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("nats-tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("nats-tls-ca: %s holds no PEM certificate", caFile)
	}
	return pool, nil
}
