// Package selfsigned makes a throwaway CA and a server certificate it
// signs, for loopback: what `glasscast bench -tls` and the tests serve
// HTTPS and RTMPS with.
package selfsigned

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Files are a certificate and its key as PEM files, and a pool trusting
// the CA that signed the certificate.
type Files struct {
	Cert, Key string
	CA        string // the CA's certificate, PEM
	Pool      *x509.CertPool
}

// Write makes a CA and a certificate for hosts (names and IP addresses),
// valid for a day, and writes them to dir.
func Write(dir string, hosts ...string) (Files, error) {
	var f Files
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, err
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "glasscast throwaway CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return f, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return f, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: hosts[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return f, err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return f, err
	}
	f = Files{Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem"), CA: filepath.Join(dir, "ca.pem"), Pool: x509.NewCertPool()}
	for _, w := range []struct {
		name, typ string
		der       []byte
		mode      os.FileMode
	}{{f.Cert, "CERTIFICATE", der, 0o644}, {f.Key, "EC PRIVATE KEY", kb, 0o600}, {f.CA, "CERTIFICATE", caDER, 0o644}} {
		if err := os.WriteFile(w.name, pem.EncodeToMemory(&pem.Block{Type: w.typ, Bytes: w.der}), w.mode); err != nil {
			return f, err
		}
	}
	f.Pool.AddCert(ca)
	return f, nil
}
