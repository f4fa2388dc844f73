package authsidecar_test

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	authsidecar "github.com/auth-sidecar/auth-sidecar/clients/go"
	"github.com/auth-sidecar/auth-sidecar/clients/go/internal/sidecartest"
)

const adminSecret = "admin-secret-for-the-go-client-tests-0123456789"

// wantRevoked asserts that the sidecar refuses token as revoked.
func wantRevoked(t *testing.T, c *authsidecar.Client, token string) {
	t.Helper()
	d, err := c.Validate(t.Context(), token)
	if err != nil {
		t.Fatal(err)
	}
	if d.Valid || d.Reason != authsidecar.ReasonRevoked || d.Message != "Token has been revoked" {
		t.Fatalf("got %+v, want REASON_REVOKED", d)
	}
	if d.Reason.String() != "REASON_REVOKED" {
		t.Errorf("Reason.String() = %q", d.Reason.String())
	}
}

// wantValid asserts that the sidecar accepts token.
func wantValid(t *testing.T, c *authsidecar.Client, token string) {
	t.Helper()
	d, err := c.Validate(t.Context(), token)
	if err != nil || !d.Valid {
		t.Fatalf("got %+v, %v; want valid", d, err)
	}
}

func TestInsecureRevoke(t *testing.T) {
	t.Parallel()
	s := sidecartest.Run(t, map[string]string{"AUTH_MODE": "insecure", "SIDECAR_STATE_DIR": t.TempDir()})
	c := dial(t, s.Addr)
	now := time.Now()
	exp := now.Add(time.Hour).Truncate(time.Second)

	t.Run("a token, by iss and jti", func(t *testing.T) {
		revoked := sidecartest.Unsigned(map[string]any{"jti": "tok-1", "sub": "alice", "iss": "https://issuer.test", "exp": exp.Unix()})
		other := sidecartest.Unsigned(map[string]any{"jti": "tok-2", "sub": "alice", "iss": "https://issuer.test", "exp": exp.Unix()})
		otherIssuer := sidecartest.Unsigned(map[string]any{"jti": "tok-1", "sub": "alice", "exp": exp.Unix()})
		wantValid(t, c, revoked)
		kept, err := c.RevokeToken(t.Context(), "https://issuer.test", "tok-1", exp)
		if err != nil {
			t.Fatal(err)
		}
		// Kept until exp plus the allowed clock skew, in whole seconds.
		if kept.Before(exp) || kept.After(exp.Add(10*time.Minute)) || kept.Location() != time.UTC {
			t.Errorf("kept until %v, want exp (%v) plus the skew, in UTC", kept, exp)
		}
		wantRevoked(t, c, revoked)
		wantValid(t, c, other)
		wantValid(t, c, otherIssuer)
		// Revoking again is harmless.
		if _, err := c.RevokeToken(t.Context(), "https://issuer.test", "tok-1", exp); err != nil {
			t.Fatal(err)
		}
		wantRevoked(t, c, revoked)
	})

	t.Run("a user, issued before now", func(t *testing.T) {
		before := sidecartest.Unsigned(map[string]any{"sub": "bob", "iat": now.Add(-time.Minute).Unix()})
		noIAT := sidecartest.Unsigned(map[string]any{"sub": "bob"})
		later := sidecartest.Unsigned(map[string]any{"sub": "bob", "iat": now.Add(time.Hour).Unix()})
		otherUser := sidecartest.Unsigned(map[string]any{"sub": "carol", "iat": now.Add(-time.Minute).Unix()})
		wantValid(t, c, before)
		if err := c.RevokeUser(t.Context(), "", "bob", time.Time{}); err != nil {
			t.Fatal(err)
		}
		wantRevoked(t, c, before)
		wantRevoked(t, c, noIAT)
		d, err := c.Validate(t.Context(), later)
		if err != nil || d.Reason == authsidecar.ReasonRevoked {
			t.Errorf("a token issued after the revocation: %+v, %v", d, err)
		}
		wantValid(t, c, otherUser)
	})

	t.Run("a user, with an explicit not-before", func(t *testing.T) {
		old := sidecartest.Unsigned(map[string]any{"sub": "dave", "iat": now.Add(-2 * time.Hour).Unix()})
		recent := sidecartest.Unsigned(map[string]any{"sub": "dave", "iat": now.Add(-time.Minute).Unix()})
		if err := c.RevokeUser(t.Context(), "", "dave", now.Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
		wantRevoked(t, c, old)
		wantValid(t, c, recent)
	})

	t.Run("an issuer", func(t *testing.T) {
		iss := "https://compromised.test"
		old := sidecartest.Unsigned(map[string]any{"sub": "erin", "iss": iss, "iat": now.Add(-time.Minute).Unix()})
		elsewhere := sidecartest.Unsigned(map[string]any{"sub": "erin", "iss": "https://fine.test", "iat": now.Add(-time.Minute).Unix()})
		if err := c.RevokeIssuer(t.Context(), iss, time.Time{}); err != nil {
			t.Fatal(err)
		}
		wantRevoked(t, c, old)
		wantValid(t, c, elsewhere)
	})

	t.Run("bad requests are InvalidArgument", func(t *testing.T) {
		_, err := c.RevokeToken(t.Context(), "", "  ", exp)
		wantCode(t, err, codes.InvalidArgument)
		_, err = c.RevokeToken(t.Context(), "", "tok-3", time.Time{})
		wantCode(t, err, codes.InvalidArgument)
		_, err = c.RevokeToken(t.Context(), "", "tok-3", now.Add(-time.Hour))
		wantCode(t, err, codes.InvalidArgument)
		wantCode(t, c.RevokeUser(t.Context(), "", " ", time.Time{}), codes.InvalidArgument)
		wantCode(t, c.RevokeIssuer(t.Context(), "", now.Add(2*366*24*time.Hour)), codes.InvalidArgument)
	})
}

func TestRevokeWithoutStore(t *testing.T) {
	t.Parallel()
	s := sidecartest.Run(t, insecureEnv)
	c := dial(t, s.Addr)
	_, err := c.RevokeToken(t.Context(), "", "tok-1", time.Now().Add(time.Hour))
	wantCode(t, err, codes.FailedPrecondition)
}

func TestSecureRevoke(t *testing.T) {
	t.Parallel()
	s := sidecartest.Run(t, map[string]string{
		"AUTH_MODE": "secure", "AUTH_JWT_ALG": "HS256", "AUTH_JWT_KEY": hsKey,
		"SIDECAR_MINT_SECRET": mintSecret, "SIDECAR_ADMIN_SECRET": adminSecret,
		"SIDECAR_STATE_DIR": t.TempDir(),
	})
	c := dial(t, s.Addr)
	exp := time.Now().Add(time.Hour)

	t.Run("without the secret", func(t *testing.T) {
		_, err := c.RevokeToken(t.Context(), "", "tok-1", exp)
		wantCode(t, err, codes.Unauthenticated)
	})

	t.Run("with a wrong secret", func(t *testing.T) {
		err := c.RevokeUser(t.Context(), "", "alice", time.Time{}, authsidecar.WithAdminSecret(adminSecret+"x"))
		wantCode(t, err, codes.PermissionDenied)
	})

	t.Run("the mint secret is not the admin secret", func(t *testing.T) {
		err := c.RevokeIssuer(t.Context(), "", time.Time{}, authsidecar.WithAdminSecret(mintSecret))
		wantCode(t, err, codes.PermissionDenied)
	})

	t.Run("with the secret", func(t *testing.T) {
		m, err := c.Mint(t.Context(), "alice", authsidecar.WithMintSecret(mintSecret),
			authsidecar.WithClaims(map[string]any{"jti": "minted-1"}))
		if err != nil {
			t.Fatal(err)
		}
		wantValid(t, c, m.Token)
		if _, err := c.RevokeToken(t.Context(), "", "minted-1", m.ExpiresAt, authsidecar.WithAdminSecret(adminSecret)); err != nil {
			t.Fatal(err)
		}
		wantRevoked(t, c, m.Token)
	})
}
