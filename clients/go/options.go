package authsidecar

import (
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

const (
	// DefaultTimeout is the deadline a call gets when its context has none; see WithTimeout.
	// It matches the Python client's default.
	DefaultTimeout = 2 * time.Second

	// DefaultRetryAttempts is how many times a call is tried, in all, while it fails with
	// codes.Unavailable; see WithRetry.
	DefaultRetryAttempts = 3

	// DefaultRetryBackoff is the pause before the first retry; see WithRetry.
	DefaultRetryBackoff = 50 * time.Millisecond

	// MaxRetryBackoff caps the doubling pause between retries, unless the backoff given to
	// WithRetry is itself longer.
	MaxRetryBackoff = time.Second
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

// WithTimeout sets the deadline that Validate and Mint apply when their context has none
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

// WithRetry sets how calls that fail with codes.Unavailable are retried: attempts is the total
// number of tries (1 turns retries off; default DefaultRetryAttempts), and backoff the pause
// before the first retry (default DefaultRetryBackoff). Each later pause doubles, up to
// MaxRetryBackoff (or backoff, when that is longer), plus up to 20% random jitter.
//
// Before each retry the client asks gRPC to reconnect at once, rather than wait out gRPC's own
// reconnect backoff, and it retries as soon as a connection is ready, without waiting for the
// rest of the pause. Retries stop early when the next pause would outlast the call's deadline;
// the call then fails with the last codes.Unavailable error. Other codes are never retried.
//
// Both RPCs are retried: Validate is idempotent, and a repeated Mint only issues another token.
func WithRetry(attempts int, backoff time.Duration) Option {
	return func(s *settings) {
		if attempts < 1 {
			s.fail(fmt.Errorf("authsidecar: WithRetry: attempts must be at least 1, not %d", attempts))
			return
		}
		if backoff < 0 {
			s.fail(fmt.Errorf("authsidecar: WithRetry: negative backoff %v", backoff))
			return
		}
		s.attempts, s.backoff = attempts, backoff
	}
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
