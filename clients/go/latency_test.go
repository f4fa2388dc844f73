package authsidecar_test

import (
	"slices"
	"testing"
	"time"

	authsidecar "github.com/auth-sidecar/auth-sidecar/clients/go"
	"github.com/auth-sidecar/auth-sidecar/clients/go/internal/sidecartest"
)

// secureEnv is a realistic sidecar: HS256, with minting on so that the test can get a token.
var secureEnv = map[string]string{
	"AUTH_MODE": "secure", "AUTH_JWT_ALG": "HS256", "AUTH_JWT_KEY": hsKey,
	"SIDECAR_MINT_SECRET": mintSecret,
}

// latencySetup starts a secure HS256 sidecar on TCP and returns a client and a valid token.
func latencySetup(tb testing.TB) (*authsidecar.Client, string) {
	tb.Helper()
	s := sidecartest.Run(tb, secureEnv)
	c := dial(tb, s.Addr)
	m, err := c.Mint(tb.Context(), "alice", authsidecar.WithMintSecret(mintSecret),
		authsidecar.WithTTL(time.Hour), authsidecar.WithClaims(map[string]any{"role": "member"}))
	if err != nil {
		tb.Fatal(err)
	}
	return c, m.Token
}

// TestValidateLatency measures the round trip of Validate, one call at a time over TCP on
// loopback, with a valid HS256 token. It logs the figures (go test -v -run Latency) and asserts
// nothing about them.
func TestValidateLatency(t *testing.T) {
	const warmup, calls = 100, 2000
	c, token := latencySetup(t)
	validate := func() time.Duration {
		start := time.Now()
		d, err := c.Validate(t.Context(), token)
		elapsed := time.Since(start)
		if err != nil || !d.Valid {
			t.Fatalf("got %+v, %v", d, err)
		}
		return elapsed
	}
	for range warmup {
		validate()
	}
	took := make([]time.Duration, calls)
	start := time.Now()
	for i := range took {
		took[i] = validate()
	}
	total := time.Since(start)
	slices.Sort(took)
	t.Logf("Validate round trip over TCP, %d sequential calls (HS256): median %v, p99 %v, min %v, max %v, %.0f calls/s",
		calls, took[calls/2], took[(calls*99+99)/100-1], took[0], took[calls-1],
		float64(calls)/total.Seconds())
}

// BenchmarkValidate is the same round trip as a benchmark: go test -run ^$ -bench Validate.
func BenchmarkValidate(b *testing.B) {
	c, token := latencySetup(b)
	for b.Loop() {
		if d, err := c.Validate(b.Context(), token); err != nil || !d.Valid {
			b.Fatalf("got %+v, %v", d, err)
		}
	}
}
