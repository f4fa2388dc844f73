package authsidecar

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/auth-sidecar/auth-sidecar/clients/go/authsidecarv1"
)

const (
	// DefaultTimeout is the deadline a call gets when its context has none; see WithTimeout.
	// It matches the Python client's default.
	DefaultTimeout = 2 * time.Second

	// DefaultRetryAttempts is how many times a call is tried, in all, while it fails with
	// codes.Unavailable; see WithRetry.
	DefaultRetryAttempts = 3

	// DefaultRetryBackoff is the longest pause before the first retry; see WithRetry.
	DefaultRetryBackoff = 100 * time.Millisecond

	// MaxRetryBackoff caps the doubling pause between retries, unless the backoff given to
	// WithRetry is itself longer.
	MaxRetryBackoff = time.Second

	// MaxRetryAttempts is gRPC's limit on the attempts of one call.
	MaxRetryAttempts = 5

	// MinRetryBackoff is the shortest backoff WithRetry takes (grpc-core, under the Python
	// client, can stall a retry with a 1 ms backoff; all three clients share the limit).
	MinRetryBackoff = 10 * time.Millisecond
)

// Option configures a Client; pass options to Dial.
type Option func(*settings)

type settings struct {
	creds    credentials.TransportCredentials
	unixPath string
	timeout  time.Duration
	attempts int
	backoff  time.Duration
	dialOpts []grpc.DialOption
	err      error
}

func (s *settings) fail(err error) {
	if s.err == nil {
		s.err = err
	}
}

// WithTLS connects with TLS configured by config. A nil config means a default one: the
// system's roots, and the target's host as the server name. Without WithTLS or
// WithTransportCredentials the client connects in plaintext, as the sidecar serves, usually on
// loopback or a Unix socket.
func WithTLS(config *tls.Config) Option {
	if config == nil {
		config = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return WithTransportCredentials(credentials.NewTLS(config))
}

// WithTransportCredentials connects with the given transport credentials, for example from
// credentials.NewTLS or an ALTS or mTLS provider. It replaces the default plaintext transport.
func WithTransportCredentials(creds credentials.TransportCredentials) Option {
	return func(s *settings) {
		if creds == nil {
			s.fail(errors.New("authsidecar: WithTransportCredentials: nil credentials"))
			return
		}
		s.creds = creds
	}
}

// WithUnixSocket connects to the sidecar's Unix socket at path (SIDECAR_LISTEN=unix:<path>).
// Dial's target may then be empty; if it is not, it must be "unix:" + path. It is the same as
// Dial("unix:" + path).
func WithUnixSocket(path string) Option {
	return func(s *settings) {
		if path == "" {
			s.fail(errors.New("authsidecar: WithUnixSocket: empty path"))
			return
		}
		s.unixPath = path
	}
}

// WithTimeout sets the deadline that every call applies when its context has none
// (default DefaultTimeout). The deadline covers the whole call, retries included. Zero turns
// the default deadline off: calls then last as long as their context allows.
func WithTimeout(timeout time.Duration) Option {
	return func(s *settings) {
		if timeout < 0 {
			s.fail(fmt.Errorf("authsidecar: WithTimeout: negative timeout %v", timeout))
			return
		}
		s.timeout = timeout
	}
}

// WithRetry sets how calls that fail with codes.Unavailable are retried, by gRPC's own retry
// policy (the client's default service config): attempts is the total number of tries, from 1
// (no retries) to MaxRetryAttempts (default DefaultRetryAttempts), and backoff, at least MinRetryBackoff
// unless attempts is 1, bounds the first pause (default DefaultRetryBackoff). gRPC waits a random time
// below min(backoff·2^(n-1), max(backoff, MaxRetryBackoff)) before retry n. The call's deadline
// covers every attempt; other codes are never retried. The TypeScript and Python clients send
// the very same policy.
//
// Every RPC is retried: Validate and Revoke are idempotent, and a Mint that failed with
// codes.Unavailable never reached the sidecar, so its retry mints at most the one token the call
// asked for.
// A service config of your own (grpc.WithDefaultServiceConfig in WithDialOptions) replaces this.
func WithRetry(attempts int, backoff time.Duration) Option {
	return func(s *settings) {
		if attempts < 1 || attempts > MaxRetryAttempts {
			s.fail(fmt.Errorf("authsidecar: WithRetry: attempts must be from 1 to %d, not %d", MaxRetryAttempts, attempts))
			return
		}
		if attempts > 1 && backoff < MinRetryBackoff {
			s.fail(fmt.Errorf("authsidecar: WithRetry: backoff must be at least %v, not %v", MinRetryBackoff, backoff))
			return
		}
		s.attempts, s.backoff = attempts, backoff
	}
}

// retryServiceConfig is the gRPC service config JSON of WithRetry's policy.
func retryServiceConfig(attempts int, backoff time.Duration) string {
	if attempts <= 1 {
		return "{}"
	}
	policy := map[string]any{
		"maxAttempts":          attempts,
		"initialBackoff":       seconds(backoff),
		"maxBackoff":           seconds(max(backoff, MaxRetryBackoff)),
		"backoffMultiplier":    2,
		"retryableStatusCodes": []string{"UNAVAILABLE"},
	}
	config := map[string]any{"methodConfig": []any{map[string]any{
		"name":        []any{map[string]string{"service": authsidecarv1.AuthService_ServiceDesc.ServiceName}},
		"retryPolicy": policy,
	}}}
	data, err := json.Marshal(config)
	if err != nil {
		panic(err) // only maps, strings and numbers: cannot fail
	}
	return string(data)
}

// seconds is d as a service config duration with millisecond precision, such as "0.100s".
func seconds(d time.Duration) string {
	ms := d.Milliseconds()
	return fmt.Sprintf("%d.%03ds", ms/1000, ms%1000)
}

// WithDialOptions passes extra options to grpc.NewClient, after the client's own: interceptors,
// keepalive, a user agent, stats handlers and so on. An option given here wins over the
// client's own, such as its transport credentials.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(s *settings) {
		s.dialOpts = append(s.dialOpts, opts...)
	}
}

// MintOption configures one Mint call.
type MintOption func(*mintSettings)

type mintSettings struct {
	claims map[string]any
	ttl    *time.Duration
	secret string
}

// WithClaims adds extra claims to the minted token. Values are anything encoding/json can
// encode; numbers travel as doubles, as google.protobuf.Struct requires. Repeated WithClaims
// options are merged, later keys winning. The sidecar refuses (codes.InvalidArgument) claims
// that set the user (`sub`, `user_id`), `iat`, `nbf` or `exp` (use WithTTL), or, in secure
// mode, `iss` or `aud`.
func WithClaims(claims map[string]any) MintOption {
	return func(m *mintSettings) {
		if m.claims == nil {
			m.claims = make(map[string]any, len(claims))
		}
		maps.Copy(m.claims, claims)
	}
}

// WithTTL sets how long the minted token is valid: from one second up to the sidecar's
// SIDECAR_MINT_MAX_TTL_SECONDS (default 24 hours), else codes.InvalidArgument. The token's
// `exp` is in whole seconds: the sidecar drops any fraction of a second.
// Without it, secure mode mints 15-minute tokens and insecure mode tokens with no `exp`.
func WithTTL(ttl time.Duration) MintOption {
	return func(m *mintSettings) {
		m.ttl = &ttl
	}
}

// WithMintSecret sends the metadata `authorization: Bearer <secret>`, which a secure-mode
// sidecar requires of Mint callers (its SIDECAR_MINT_SECRET). Insecure mode ignores it. An
// empty secret sends nothing.
func WithMintSecret(secret string) MintOption {
	return func(m *mintSettings) {
		m.secret = secret
	}
}

// RevokeOption configures one RevokeToken, RevokeUser or RevokeIssuer call.
type RevokeOption func(*revokeSettings)

type revokeSettings struct {
	secret string
}

// WithAdminSecret sends the metadata `authorization: Bearer <secret>`, which a secure-mode
// sidecar requires of Revoke callers (its SIDECAR_ADMIN_SECRET). Insecure mode ignores it. An
// empty secret sends nothing.
func WithAdminSecret(secret string) RevokeOption {
	return func(r *revokeSettings) {
		r.secret = secret
	}
}

// ShapeClaim is the claim WithShape writes. A sidecar with SIDECAR_SHAPE_CLAIM=shape reads it.
const ShapeClaim = "shape"

// Shape is Electric's gatekeeper claim: the one shape (GET /v1/shape) a token may sync. The
// sidecar compares it with the shape requested: Table (qualified as Namespace.Table when
// Namespace is set) and Where byte for byte, Columns (names as in the table, unquoted) as a set,
// and Params as the where clause's $1, $2, ... in order.
type Shape struct {
	Table     string   `json:"table"`
	Namespace string   `json:"namespace,omitempty"`
	Where     string   `json:"where,omitempty"`
	Columns   []string `json:"columns,omitempty"`
	Params    []string `json:"params,omitempty"`
}

// WithShape adds the claim ShapeClaim holding shape, as Electric's gatekeeper pattern mints it.
func WithShape(shape Shape) MintOption {
	return WithClaims(map[string]any{ShapeClaim: shape})
}
