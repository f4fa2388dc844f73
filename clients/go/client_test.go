package authsidecar_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	authsidecar "github.com/auth-sidecar/auth-sidecar/clients/go"
	"github.com/auth-sidecar/auth-sidecar/clients/go/internal/sidecartest"
)

const (
	hsKey      = "an-hs256-key-of-at-least-32-bytes-for-tests"
	mintSecret = "mint-secret-for-the-go-client-tests-0123456789"
	past       = 1_000_000_000 // 2001
	future     = 4_102_444_800 // 2100
)

var insecureEnv = map[string]string{"AUTH_MODE": "insecure"}

func dial(t testing.TB, target string, opts ...authsidecar.Option) *authsidecar.Client {
	t.Helper()
	c, err := authsidecar.Dial(target, opts...)
	if err != nil {
		t.Fatalf("Dial(%q): %v", target, err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("got code %v (%v), want %v", got, err, want)
	}
}

func TestInsecureValidateAndMint(t *testing.T) {
	t.Parallel()
	s := sidecartest.Run(t, insecureEnv)
	c := dial(t, s.Addr)

	t.Run("valid token, claims converted", func(t *testing.T) {
		token := sidecartest.Unsigned(map[string]any{
			"sub": "alice", "iat": 1_700_000_000, "exp": future, "ratio": 0.5, "huge": 1e300,
			"edge": 1 << 53, "neg": -7,
			"nested": map[string]any{"n": 3, "list": []any{1, "x", true, nil}},
		})
		d, err := c.Validate(t.Context(), token)
		if err != nil {
			t.Fatal(err)
		}
		want := authsidecar.Decision{
			Valid:  true,
			UserID: "alice",
			Claims: map[string]any{
				"sub": "alice", "iat": int64(1_700_000_000), "exp": int64(future),
				"ratio": 0.5, "huge": 1e300, "edge": int64(1 << 53), "neg": int64(-7),
				"nested": map[string]any{"n": int64(3), "list": []any{int64(1), "x", true, nil}},
			},
			Reason:    authsidecar.ReasonUnspecified,
			ExpiresAt: time.Unix(future, 0).UTC(),
		}
		if !reflect.DeepEqual(d, want) {
			t.Fatalf("got  %#v\nwant %#v", d, want)
		}
	})

	t.Run("refused token is a decision, not an error", func(t *testing.T) {
		d, err := c.Validate(t.Context(), sidecartest.Unsigned(map[string]any{"sub": "bob", "exp": past}))
		if err != nil {
			t.Fatal(err)
		}
		want := authsidecar.Decision{Reason: authsidecar.ReasonExpired, Message: "Expired token"}
		if !reflect.DeepEqual(d, want) {
			t.Fatalf("got %#v, want %#v", d, want)
		}
		if d.Reason.String() != "REASON_EXPIRED" {
			t.Errorf("Reason.String() = %q", d.Reason.String())
		}
	})

	t.Run("malformed tokens", func(t *testing.T) {
		for _, token := range []string{"", "not-a-jwt", "a.b.c", strings.Repeat("x", 9000)} {
			d, err := c.Validate(t.Context(), token)
			if err != nil {
				t.Fatal(err)
			}
			if d.Valid || d.Reason != authsidecar.ReasonMalformed || d.Message != "Invalid token" {
				t.Errorf("token %.20q: got %+v", token, d)
			}
		}
	})

	t.Run("mint then validate", func(t *testing.T) {
		before := time.Now()
		m, err := c.Mint(t.Context(), "alice", authsidecar.WithTTL(time.Hour),
			authsidecar.WithClaims(map[string]any{"role": "admin", "teams": []string{"a", "b"}}),
			authsidecar.WithClaims(map[string]any{"n": 3}))
		if err != nil {
			t.Fatal(err)
		}
		lo, hi := before.Add(time.Hour-2*time.Second), time.Now().Add(time.Hour+2*time.Second)
		if m.ExpiresAt.Before(lo) || m.ExpiresAt.After(hi) {
			t.Errorf("ExpiresAt %v, want about an hour from now", m.ExpiresAt)
		}
		d, err := c.Validate(t.Context(), m.Token)
		if err != nil {
			t.Fatal(err)
		}
		if !d.Valid || d.UserID != "alice" || !d.ExpiresAt.Equal(m.ExpiresAt) {
			t.Fatalf("decision on the minted token: %+v (minted %+v)", d, m)
		}
		want := map[string]any{
			"user_id": "alice", "role": "admin", "teams": []any{"a", "b"}, "n": int64(3),
			"exp": m.ExpiresAt.Unix(),
		}
		if !reflect.DeepEqual(d.Claims, want) {
			t.Errorf("claims %#v, want %#v", d.Claims, want)
		}
	})

	t.Run("a claim named __proto__ round-trips at every depth", func(t *testing.T) {
		// The TypeScript client once dropped it; the three clients keep it alike.
		tricky := map[string]any{
			"__proto__": map[string]any{"role": "admin", "__proto__": []any{int64(1), map[string]any{"__proto__": "deepest"}}},
			"list":      []any{map[string]any{"__proto__": nil}},
		}
		d, err := c.Validate(t.Context(), sidecartest.Unsigned(map[string]any{"sub": "alice", "__proto__": tricky["__proto__"], "list": tricky["list"]}))
		if err != nil || !d.Valid {
			t.Fatalf("%+v, %v", d, err)
		}
		delete(d.Claims, "sub")
		if !reflect.DeepEqual(d.Claims, tricky) {
			t.Errorf("Validate's claims %#v, want %#v", d.Claims, tricky)
		}
		m, err := c.Mint(t.Context(), "bob", authsidecar.WithClaims(tricky))
		if err != nil {
			t.Fatal(err)
		}
		d, err = c.Validate(t.Context(), m.Token)
		if err != nil || !d.Valid {
			t.Fatalf("%+v, %v", d, err)
		}
		delete(d.Claims, "user_id")
		if !reflect.DeepEqual(d.Claims, tricky) {
			t.Errorf("minted claims %#v, want %#v", d.Claims, tricky)
		}
	})

	t.Run("mint without ttl has no expiry", func(t *testing.T) {
		m, err := c.Mint(t.Context(), "bob")
		if err != nil {
			t.Fatal(err)
		}
		if !m.ExpiresAt.IsZero() {
			t.Errorf("ExpiresAt = %v, want zero", m.ExpiresAt)
		}
		d, err := c.Validate(t.Context(), m.Token)
		if err != nil || !d.Valid || d.UserID != "bob" || !d.ExpiresAt.IsZero() {
			t.Fatalf("got %+v, %v", d, err)
		}
	})

	t.Run("mint refusals are InvalidArgument", func(t *testing.T) {
		cases := map[string][]authsidecar.MintOption{
			"ttl zero":        {authsidecar.WithTTL(0)},
			"ttl beyond max":  {authsidecar.WithTTL(25 * time.Hour)},
			"claims set sub":  {authsidecar.WithClaims(map[string]any{"sub": "mallory"})},
			"claims with NaN": {authsidecar.WithClaims(map[string]any{"x": math.NaN()})},
		}
		for name, opts := range cases {
			_, err := c.Mint(t.Context(), "alice", opts...)
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("%s: got %v, want InvalidArgument", name, err)
			}
		}
		_, err := c.Mint(t.Context(), "  ")
		wantCode(t, err, codes.InvalidArgument)
	})

	t.Run("close", func(t *testing.T) {
		c2, err := authsidecar.Dial(s.Addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c2.Validate(t.Context(), "x"); err != nil {
			t.Fatal(err)
		}
		if err := c2.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		_, err = c2.Validate(t.Context(), "x")
		wantCode(t, err, codes.Canceled)
		if err := c2.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

func TestUnixSocket(t *testing.T) {
	t.Parallel()
	path := sidecartest.ShortTempDir(t) + "/sidecar.sock"
	s := sidecartest.Run(t, map[string]string{"AUTH_MODE": "insecure", "SIDECAR_LISTEN": "unix:" + path})
	if s.Addr != "unix:"+path {
		t.Fatalf("sidecar says it listens on %q", s.Addr)
	}
	token := sidecartest.Unsigned(map[string]any{"sub": "carol"})
	for name, c := range map[string]*authsidecar.Client{
		"target unix:/path": dial(t, s.Addr),
		"WithUnixSocket":    dial(t, "", authsidecar.WithUnixSocket(path)),
	} {
		d, err := c.Validate(t.Context(), token)
		if err != nil || !d.Valid || d.UserID != "carol" {
			t.Errorf("%s: got %+v, %v", name, d, err)
		}
	}
	if _, err := authsidecar.Dial("127.0.0.1:50051", authsidecar.WithUnixSocket(path)); err == nil {
		t.Error("Dial with a TCP target and WithUnixSocket: no error")
	}
}

func TestSecureMint(t *testing.T) {
	t.Parallel()
	s := sidecartest.Run(t, map[string]string{
		"AUTH_MODE": "secure", "AUTH_JWT_ALG": "HS256", "AUTH_JWT_KEY": hsKey,
		"SIDECAR_MINT_SECRET": mintSecret,
	})
	c := dial(t, s.Addr)

	t.Run("with the secret", func(t *testing.T) {
		before := time.Now()
		m, err := c.Mint(t.Context(), "alice", authsidecar.WithMintSecret(mintSecret),
			authsidecar.WithClaims(map[string]any{"role": "admin"}))
		if err != nil {
			t.Fatal(err)
		}
		// The default secure ttl is 15 minutes.
		lo, hi := before.Add(15*time.Minute-2*time.Second), time.Now().Add(15*time.Minute+2*time.Second)
		if m.ExpiresAt.Before(lo) || m.ExpiresAt.After(hi) {
			t.Errorf("ExpiresAt %v, want about 15 minutes from now", m.ExpiresAt)
		}
		checkHS256(t, m.Token, hsKey)
		d, err := c.Validate(t.Context(), m.Token)
		if err != nil || !d.Valid || d.UserID != "alice" || d.Claims["role"] != "admin" {
			t.Fatalf("decision on the minted token: %+v, %v", d, err)
		}
		for _, claim := range []string{"iat", "nbf", "exp"} {
			if _, ok := d.Claims[claim].(int64); !ok {
				t.Errorf("claim %s = %#v, want an int64", claim, d.Claims[claim])
			}
		}
	})

	t.Run("without the secret", func(t *testing.T) {
		_, err := c.Mint(t.Context(), "alice")
		wantCode(t, err, codes.Unauthenticated)
	})

	t.Run("with a wrong secret", func(t *testing.T) {
		_, err := c.Mint(t.Context(), "alice", authsidecar.WithMintSecret(mintSecret+"x"))
		wantCode(t, err, codes.PermissionDenied)
	})

	t.Run("reserved claims", func(t *testing.T) {
		_, err := c.Mint(t.Context(), "alice", authsidecar.WithMintSecret(mintSecret),
			authsidecar.WithClaims(map[string]any{"exp": future}))
		wantCode(t, err, codes.InvalidArgument)
	})

	t.Run("an unsigned token is refused", func(t *testing.T) {
		d, err := c.Validate(t.Context(), sidecartest.Unsigned(map[string]any{"sub": "eve"}))
		if err != nil {
			t.Fatal(err)
		}
		if d.Valid || d.Reason != authsidecar.ReasonAlgorithmMismatch || d.Message != "Signing algorithm mismatch" {
			t.Fatalf("got %+v", d)
		}
	})
}

// checkHS256 verifies a token's HS256 signature independently of the sidecar.
func checkHS256(t *testing.T, token, key string) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %q", token)
	}
	var header struct {
		Alg string `json:"alg"`
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil || json.Unmarshal(raw, &header) != nil || header.Alg != "HS256" {
		t.Fatalf("header %q: want alg HS256", raw)
	}
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if base64.RawURLEncoding.EncodeToString(mac.Sum(nil)) != parts[2] {
		t.Fatalf("the HS256 signature does not verify with the configured key: %q", token)
	}
}

// blackhole listens on 127.0.0.1, accepts connections and never answers on them, so a call to
// it can only end by its deadline.
func blackhole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		done  = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, conn := range conns {
			_ = conn.Close()
		}
	})
	return ln.Addr().String()
}

func TestDefaultDeadline(t *testing.T) {
	t.Parallel()
	addr := blackhole(t)
	const timeout = 300 * time.Millisecond

	t.Run("applied when ctx has none", func(t *testing.T) {
		c := dial(t, addr, authsidecar.WithTimeout(timeout))
		start := time.Now()
		_, err := c.Validate(context.Background(), "x")
		elapsed := time.Since(start)
		wantCode(t, err, codes.DeadlineExceeded)
		if elapsed < timeout || elapsed > timeout+time.Second {
			t.Errorf("failed after %v, want about %v", elapsed, timeout)
		}
		start = time.Now()
		_, err = c.Mint(context.Background(), "alice")
		wantCode(t, err, codes.DeadlineExceeded)
		if elapsed := time.Since(start); elapsed < timeout || elapsed > timeout+time.Second {
			t.Errorf("Mint failed after %v, want about %v", elapsed, timeout)
		}
	})

	t.Run("ctx deadline wins", func(t *testing.T) {
		c := dial(t, addr, authsidecar.WithTimeout(time.Minute))
		ctx, cancel := context.WithTimeout(t.Context(), timeout)
		defer cancel()
		start := time.Now()
		_, err := c.Validate(ctx, "x")
		wantCode(t, err, codes.DeadlineExceeded)
		if elapsed := time.Since(start); elapsed > timeout+time.Second {
			t.Errorf("failed after %v, want about %v", elapsed, timeout)
		}
	})
}

// TestRetry counts, on a real gRPC server that fails a set number of times, the attempts that
// gRPC's retry policy (set by WithRetry) makes.
func TestRetry(t *testing.T) {
	t.Parallel()
	const fast = authsidecar.MinRetryBackoff // to keep the test quick

	t.Run("default attempts: Validate and Mint succeed after 2 failures", func(t *testing.T) {
		t.Parallel()
		f := sidecartest.RunFlaky(t, authsidecar.DefaultRetryAttempts-1, codes.Unavailable)
		c := dial(t, f.Addr, authsidecar.WithRetry(authsidecar.DefaultRetryAttempts, fast))
		if d, err := c.Validate(t.Context(), "x"); err != nil || d.UserID != "alice" {
			t.Fatalf("Validate: %+v, %v", d, err)
		}
		if m, err := c.Mint(t.Context(), "alice"); err != nil || m.Token != "minted" {
			t.Fatalf("Mint: %+v, %v", m, err)
		}
		if v, m := f.Attempts(); v != authsidecar.DefaultRetryAttempts || m != authsidecar.DefaultRetryAttempts {
			t.Errorf("attempts: Validate %d, Mint %d; want %d each", v, m, authsidecar.DefaultRetryAttempts)
		}
	})

	t.Run("Revoke is retried too: it is idempotent", func(t *testing.T) {
		t.Parallel()
		f := sidecartest.RunFlaky(t, authsidecar.DefaultRetryAttempts-1, codes.Unavailable)
		c := dial(t, f.Addr, authsidecar.WithRetry(authsidecar.DefaultRetryAttempts, fast))
		kept, err := c.RevokeToken(t.Context(), "", "jti-1", sidecartest.FlakyKeptUntil)
		if err != nil || !kept.Equal(sidecartest.FlakyKeptUntil) {
			t.Fatalf("RevokeToken: %v, %v", kept, err)
		}
		if n := f.Revokes(); n != authsidecar.DefaultRetryAttempts {
			t.Errorf("%d attempts, want %d", n, authsidecar.DefaultRetryAttempts)
		}
	})

	t.Run("default policy gives up with Unavailable after the last attempt", func(t *testing.T) {
		t.Parallel()
		f := sidecartest.RunFlaky(t, authsidecar.DefaultRetryAttempts, codes.Unavailable)
		c := dial(t, f.Addr)
		_, err := c.Validate(t.Context(), "x")
		wantCode(t, err, codes.Unavailable)
		if v, _ := f.Attempts(); v != authsidecar.DefaultRetryAttempts {
			t.Errorf("%d attempts, want %d", v, authsidecar.DefaultRetryAttempts)
		}
	})

	t.Run("up to gRPC's limit", func(t *testing.T) {
		t.Parallel()
		f := sidecartest.RunFlaky(t, authsidecar.MaxRetryAttempts-1, codes.Unavailable)
		c := dial(t, f.Addr, authsidecar.WithRetry(authsidecar.MaxRetryAttempts, fast))
		if _, err := c.Validate(t.Context(), "x"); err != nil {
			t.Fatal(err)
		}
		if v, _ := f.Attempts(); v != authsidecar.MaxRetryAttempts {
			t.Errorf("%d attempts, want %d", v, authsidecar.MaxRetryAttempts)
		}
	})

	t.Run("retries off", func(t *testing.T) {
		t.Parallel()
		f := sidecartest.RunFlaky(t, 1, codes.Unavailable)
		c := dial(t, f.Addr, authsidecar.WithRetry(1, 0))
		_, err := c.Mint(t.Context(), "alice")
		wantCode(t, err, codes.Unavailable)
		if _, m := f.Attempts(); m != 1 {
			t.Errorf("%d attempts, want 1", m)
		}
	})

	t.Run("other codes are not retried", func(t *testing.T) {
		t.Parallel()
		f := sidecartest.RunFlaky(t, 1, codes.PermissionDenied)
		c := dial(t, f.Addr, authsidecar.WithRetry(3, fast))
		_, err := c.Mint(t.Context(), "alice")
		wantCode(t, err, codes.PermissionDenied)
		if _, m := f.Attempts(); m != 1 {
			t.Errorf("%d attempts, want 1", m)
		}
	})

	t.Run("nothing listening: Unavailable", func(t *testing.T) {
		t.Parallel()
		c := dial(t, sidecartest.ClosedAddr(t), authsidecar.WithRetry(3, fast))
		_, err := c.Validate(t.Context(), "x")
		wantCode(t, err, codes.Unavailable)
	})
}
