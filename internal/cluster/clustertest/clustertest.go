// Package clustertest gives tests a cluster's certificates and an
// external NATS cluster (Debian's nats-server) secured as an operator
// would secure it.
package clustertest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/glasscast/glasscast/internal/cluster"
	"github.com/glasscast/glasscast/internal/testport"
)

// Certs makes a cluster CA and certificates for nodes, as glasscast
// cluster certs does, and gives a node's TLS files by its name.
func Certs(t testing.TB, nodes ...string) func(node string) cluster.TLSFiles {
	t.Helper()
	dir := t.TempDir()
	if err := cluster.MakeCerts(dir, nodes, nil); err != nil {
		t.Fatal(err)
	}
	return func(node string) cluster.TLSFiles {
		cert, key := cluster.NodeCertFiles(dir, node)
		return cluster.TLSFiles{Cert: cert, Key: key, CA: filepath.Join(dir, cluster.CACertFile)}
	}
}

// External is Debian's nats-server run three times on loopback as one NATS
// cluster with JetStream, as an operator would secure it: TLS on the client
// port (client certificates from its CA required) and on the routes, and
// operator JWTs with an account of glasscast's own, its users'
// credentials files given out.
type External struct {
	URLs []string // tls://127.0.0.1:PORT
	// Certs are the client certificates of the names ExternalNATS was
	// given, from the servers' CA.
	Certs func(node string) cluster.TLSFiles
	// Creds writes the credentials file of a new user of glasscast's
	// account and returns its path.
	Creds func(t testing.TB) string
}

// ExternalNATS runs it, with client certificates for clients.
func ExternalNATS(t testing.TB, clients ...string) External {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		t.Fatal("nats-server is required: run scripts/test, which installs it")
	}
	dir := t.TempDir()
	certs := Certs(t, append([]string{"ext1", "ext2", "ext3"}, clients...)...)

	// An operator, its system account and glasscast's account, with
	// JetStream.
	op, _ := nkeys.CreateOperator()
	opPub, _ := op.PublicKey()
	sys, _ := nkeys.CreateAccount()
	sysPub, _ := sys.PublicKey()
	acc, _ := nkeys.CreateAccount()
	accPub, _ := acc.PublicKey()
	sc := jwt.NewAccountClaims(sysPub)
	sc.Name = "SYS"
	sysJWT, err := sc.Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	ac := jwt.NewAccountClaims(accPub)
	ac.Name = "glasscast"
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1,
		MaxAckPending: -1, MemoryMaxStreamBytes: -1, DiskMaxStreamBytes: -1}
	accJWT, err := ac.Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	oc := jwt.NewOperatorClaims(opPub)
	oc.Name = "ext"
	oc.SystemAccount = sysPub
	opJWT, err := oc.Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	opFile := filepath.Join(dir, "op.jwt")
	if err := os.WriteFile(opFile, []byte(opJWT), 0o600); err != nil {
		t.Fatal(err)
	}

	client := []int{testport.Free(t), testport.Free(t), testport.Free(t)}
	routes := []int{testport.Free(t), testport.Free(t), testport.Free(t)}
	var urls []string
	for i := range client {
		name := fmt.Sprintf("ext%d", i+1)
		var peers []string
		for j, p := range routes {
			if j != i {
				peers = append(peers, fmt.Sprintf("nats://127.0.0.1:%d", p))
			}
		}
		tf := certs(name)
		tlsBlock := fmt.Sprintf("{ cert_file: %q, key_file: %q, ca_file: %q, verify: true, timeout: 3 }", tf.Cert, tf.Key, tf.CA)
		conf := fmt.Sprintf(`server_name: %s
listen: "127.0.0.1:%d"
jetstream { store_dir: %q }
tls %s
cluster {
  name: ext
  listen: "127.0.0.1:%d"
  routes: [%s]
  tls %s
}
operator: %q
system_account: %s
resolver: MEMORY
resolver_preload: {
  %s: %q
  %s: %q
}
`, name, client[i], filepath.Join(dir, name), tlsBlock, routes[i], strings.Join(peers, ", "), tlsBlock,
			opFile, sysPub, sysPub, sysJWT, accPub, accJWT)
		confFile := filepath.Join(dir, name+".conf")
		if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-c", confFile)
		var log bytes.Buffer
		cmd.Stdout, cmd.Stderr = &log, &log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
			if t.Failed() {
				t.Logf("%s:\n%s", name, log.String())
			}
		})
		urls = append(urls, fmt.Sprintf("tls://127.0.0.1:%d", client[i]))
	}
	return External{URLs: urls, Certs: certs, Creds: func(t testing.TB) string {
		user, _ := nkeys.CreateUser()
		userPub, _ := user.PublicKey()
		uJWT, err := jwt.NewUserClaims(userPub).Encode(acc)
		if err != nil {
			t.Fatal(err)
		}
		seed, _ := user.Seed()
		creds, err := jwt.FormatUserConfig(uJWT, seed)
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(t.TempDir(), "node.creds")
		if err := os.WriteFile(f, creds, 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}}
}
