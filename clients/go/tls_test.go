package authsidecar_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	authsidecar "github.com/auth-sidecar/auth-sidecar/clients/go"
	"github.com/auth-sidecar/auth-sidecar/clients/go/internal/sidecartest"
)

// selfSigned makes a certificate for serverName that is its own root.
func selfSigned(t *testing.T, serverName string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: serverName},
		DNSNames:              []string{serverName},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}

// tlsProxy terminates TLS (offering h2, as gRPC requires) on 127.0.0.1 and forwards the bytes
// to upstream, so that a client's TLS can be tested against the real, plaintext sidecar.
func tlsProxy(t *testing.T, cert tls.Certificate, upstream string) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"h2"},
		MinVersion:   tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	wg.Go(func() {
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			track(down)
			wg.Go(func() {
				up, err := net.Dial("tcp", upstream)
				if err != nil {
					_ = down.Close()
					return
				}
				track(up)
				wg.Go(func() {
					_, _ = io.Copy(up, down)
					_ = up.Close()
				})
				_, _ = io.Copy(down, up)
				_ = down.Close()
			})
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func TestTLS(t *testing.T) {
	t.Parallel()
	s := sidecartest.Run(t, insecureEnv)
	cert, roots := selfSigned(t, "sidecar.test")
	addr := tlsProxy(t, cert, s.Addr)
	token := sidecartest.Unsigned(map[string]any{"sub": "erin"})

	c := dial(t, addr, authsidecar.WithTLS(&tls.Config{RootCAs: roots, ServerName: "sidecar.test"}))
	d, err := c.Validate(t.Context(), token)
	if err != nil || !d.Valid || d.UserID != "erin" {
		t.Fatalf("over TLS: got %+v, %v", d, err)
	}

	// A certificate that the client does not trust, and plaintext against TLS, both fail.
	for name, opt := range map[string]authsidecar.Option{
		"untrusted": authsidecar.WithTLS(&tls.Config{ServerName: "sidecar.test"}),
		"plaintext": authsidecar.WithTimeout(2 * time.Second),
	} {
		c := dial(t, addr, opt, authsidecar.WithRetry(1, 0))
		start := time.Now()
		_, err := c.Validate(t.Context(), token)
		t.Logf("%s: %v after %v", name, err, time.Since(start))
		if status.Code(err) != codes.Unavailable {
			t.Errorf("%s: got %v, want Unavailable", name, err)
		}
	}
}
