package embedded_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/touchstream/touchstream/services/internal/config"
	"github.com/touchstream/touchstream/services/internal/embedded"
	"github.com/touchstream/touchstream/services/internal/natsconn"
	"github.com/touchstream/touchstream/testkit"
)

// pki is a throw-away certificate authority with a server certificate for 127.0.0.1
// and a client certificate, written as PEM files.
type pki struct {
	ca, serverCert, serverKey, clientCert, clientKey string
	otherCA                                          string // a CA that signed none of them
}

func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	serial := int64(0)
	template := func(cn string) *x509.Certificate {
		serial++
		return &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	}
	newCA := func(cn string) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
		k := key()
		tpl := template(cn)
		tpl.IsCA, tpl.BasicConstraintsValid, tpl.KeyUsage = true, true, x509.KeyUsageCertSign
		der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &k.PublicKey, k)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c, k, der
	}
	caCert, caKey, caDER := newCA("touchstream test CA")
	_, _, otherDER := newCA("someone else's CA")
	leaf := func(cn string, usage x509.ExtKeyUsage, ip bool) ([]byte, []byte) {
		k := key()
		tpl := template(cn)
		tpl.ExtKeyUsage, tpl.KeyUsage = []x509.ExtKeyUsage{usage}, x509.KeyUsageDigitalSignature
		if ip {
			tpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		}
		der, err := x509.CreateCertificate(rand.Reader, tpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return der, kder
	}
	sc, sk := leaf("nats", x509.ExtKeyUsageServerAuth, true)
	cc, ck := leaf("gateway", x509.ExtKeyUsageClientAuth, false)
	return pki{
		ca: write("ca.pem", "CERTIFICATE", caDER), otherCA: write("other-ca.pem", "CERTIFICATE", otherDER),
		serverCert: write("server.pem", "CERTIFICATE", sc), serverKey: write("server-key.pem", "EC PRIVATE KEY", sk),
		clientCert: write("client.pem", "CERTIFICATE", cc), clientKey: write("client-key.pem", "EC PRIVATE KEY", ck),
	}
}

func start(t *testing.T, tls config.NATSServerTLS) *embedded.Server {
	t.Helper()
	s, err := embedded.Start(embedded.Config{Port: -1, StoreDir: t.TempDir(), TLS: tls}, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// TestTLS connects over loopback to an embedded server that requires TLS, with
// certificates made here: only a client that trusts the server's CA connects, plain
// connections are refused, and with mutual TLS only a client with a certificate.
func TestTLS(t *testing.T) {
	p := newPKI(t)
	tests := []struct {
		name    string
		server  config.NATSServerTLS
		client  config.NATSTLS
		wantErr string // "" connects; alternatives separated by "|"
	}{
		{name: "with the CA", server: config.NATSServerTLS{Cert: p.serverCert, Key: p.serverKey}, client: config.NATSTLS{CA: p.ca}},
		{name: "without the CA", server: config.NATSServerTLS{Cert: p.serverCert, Key: p.serverKey},
			wantErr: "certificate signed by unknown authority"},
		{name: "with another CA", server: config.NATSServerTLS{Cert: p.serverCert, Key: p.serverKey}, client: config.NATSTLS{CA: p.otherCA},
			wantErr: "certificate signed by unknown authority"},
		{name: "mutual, with a client certificate", server: config.NATSServerTLS{Cert: p.serverCert, Key: p.serverKey, ClientCA: p.ca, Verify: true},
			client: config.NATSTLS{CA: p.ca, Cert: p.clientCert, Key: p.clientKey}},
		{name: "mutual, without a client certificate", server: config.NATSServerTLS{Cert: p.serverCert, Key: p.serverKey, ClientCA: p.ca, Verify: true},
			// Under TLS 1.3 the client finishes its handshake before the server checks
			// the client's certificate, so the refusal reaches the client either as the
			// server's alert or as the connection closed under it.
			client: config.NATSTLS{CA: p.ca}, wantErr: "certificate|closed by remote after TLS handshake|broken pipe|connection reset"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.server.Validate(); err != nil {
				t.Fatal(err)
			}
			s := start(t, tt.server)
			nc, err := natsconn.Dial(natsconn.Config{URL: s.URL(), TLS: tt.client, Name: "tls-test"}, testkit.Logger(t))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
				defer nc.Close()
				if _, err := nc.TLSConnectionState(); err != nil {
					t.Fatalf("connected without TLS: %v", err)
				}
				if err := nc.Publish("x", nil); err != nil {
					t.Fatal(err)
				}
				if err := nc.Flush(); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				nc.Close()
				t.Fatalf("connected, want an error with %q", tt.wantErr)
			}
			matched := false
			for _, want := range strings.Split(tt.wantErr, "|") {
				matched = matched || strings.Contains(err.Error(), want)
			}
			if !matched {
				t.Fatalf("error %v, want it to contain one of %q", err, tt.wantErr)
			}
		})
	}
}

// TestPlainRefused speaks the NATS protocol in clear to a server that requires TLS
// (a NATS client library would upgrade on its own): the server announces that TLS is
// required and never answers the plain CONNECT.
func TestPlainRefused(t *testing.T) {
	p := newPKI(t)
	s := start(t, config.NATSServerTLS{Cert: p.serverCert, Key: p.serverKey})
	c, err := net.Dial("tcp", strings.TrimPrefix(s.URL(), "tls://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	info, err := r.ReadString('\n')
	if err != nil || !strings.Contains(info, `"tls_required":true`) {
		t.Fatalf("INFO %q (%v): want tls_required", info, err)
	}
	if _, err := io.WriteString(c, "CONNECT {\"verbose\":false}\r\nPING\r\n"); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(r)
	if strings.Contains(string(rest), "PONG") {
		t.Fatalf("a plain client was answered: %q", rest)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept the plain connection open: %q", rest)
	}
}

func TestServerTLSValidate(t *testing.T) {
	tests := []struct {
		name string
		tls  config.NATSServerTLS
		want string
	}{
		{name: "key without a certificate", tls: config.NATSServerTLS{Key: "k"}, want: "give both or neither"},
		{name: "verify without a client CA", tls: config.NATSServerTLS{Cert: "c", Key: "k", Verify: true}, want: "needs --nats-server-tls-client-ca"},
		{name: "missing file", tls: config.NATSServerTLS{Cert: "/nonexistent/c.pem", Key: "/nonexistent/k.pem"}, want: `--nats-server-tls-cert "/nonexistent/c.pem": no such file`},
	}
	for _, tt := range tests {
		if err := tt.tls.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}
