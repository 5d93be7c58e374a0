package bench

import (
	"crypto/tls"
	"net/http"

	"github.com/glasscast/glasscast/internal/selfsigned"
)

// serverTLSArgs, when set (bench -tls), are the flags that make the servers
// the bench starts serve HTTPS with a certificate the bench trusts.
var serverTLSArgs []string

// useTLS makes a CA and a certificate for 127.0.0.1 in dir, has the
// servers use it and this process's HTTP clients (viewers, WHEP) trust it.
func useTLS(dir string) error {
	f, err := selfsigned.Write(dir, "127.0.0.1")
	if err != nil {
		return err
	}
	// HTTP/1.1: every viewer keeps a TLS connection of its own, as players
	// on their own devices do.
	for _, tr := range []*http.Transport{http.DefaultTransport.(*http.Transport), benchClient.Transport.(*http.Transport)} {
		tr.TLSClientConfig = &tls.Config{RootCAs: f.Pool, NextProtos: []string{"http/1.1"}}
	}
	serverTLSArgs = []string{"--tls-cert", f.Cert, "--tls-key", f.Key, "--https", "127.0.0.1:0"}
	return nil
}
