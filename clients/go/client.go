package authsidecar

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/auth-sidecar/auth-sidecar/clients/go/authsidecarv1"
)

// Client calls one sidecar. It is safe for concurrent use; make one and share it, since it
// holds one HTTP/2 connection that all calls share.
type Client struct {
	conn    *grpc.ClientConn
	api     authsidecarv1.AuthServiceClient
	timeout time.Duration

	closeOnce sync.Once
	closeErr  error
}

// Dial makes a client for the sidecar at target: "host:port" (such as "127.0.0.1:50051"), or
// "unix:/path" for a Unix socket (see also WithUnixSocket). Any gRPC target with a scheme
// works too, such as "dns:///sidecar:50051".
//
// Dial does not wait for a connection: it starts connecting in the background and returns at
// once, so a sidecar that is down or not yet up shows only in the calls, as codes.Unavailable.
// It fails only on a bad target or option. Close the client when done.
func Dial(target string, opts ...Option) (*Client, error) {
	s := settings{
		timeout:  DefaultTimeout,
		attempts: DefaultRetryAttempts,
		backoff:  DefaultRetryBackoff,
	}
	for _, opt := range opts {
		if opt != nil {
			opt(&s)
		}
	}
	if s.err != nil {
		return nil, s.err
	}
	if s.unixPath != "" {
		unix := "unix:" + s.unixPath
		if target != "" && target != unix {
			return nil, fmt.Errorf("authsidecar: target %q conflicts with WithUnixSocket(%q)", target, s.unixPath)
		}
		target = unix
	}
	if target == "" {
		return nil, errors.New("authsidecar: empty target: want host:port or unix:/path")
	}
	creds := s.creds
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	dialOpts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultServiceConfig(retryServiceConfig(s.attempts, s.backoff)),
	}, s.dialOpts...)
	conn, err := grpc.NewClient(target, dialOpts...)
	if err != nil {
		return nil, fmt.Errorf("authsidecar: %s: %w", target, err)
	}
	conn.Connect()
	return &Client{
		conn:    conn,
		api:     authsidecarv1.NewAuthServiceClient(conn),
		timeout: s.timeout,
	}, nil
}

// Validate asks the sidecar whether token (a compact JWT, without any "Bearer " prefix) is
// acceptable and whose it is.
//
// A refused token is not an error: it is a Decision with Valid false, a Reason and a Message,
// and a nil error. An error means that the sidecar gave no decision; it carries the gRPC
// status, so status.Code(err) tells codes.Unavailable (after retries), codes.DeadlineExceeded,
// codes.InvalidArgument, codes.ResourceExhausted and so on. Callers should fail closed on it.
func (c *Client) Validate(ctx context.Context, token string) (Decision, error) {
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	resp, err := c.api.Validate(ctx, &authsidecarv1.ValidateRequest{Token: token})
	if err != nil {
		return Decision{}, err
	}
	return Decision{
		Valid:     resp.GetValid(),
		UserID:    resp.GetUserId(),
		Claims:    fromStruct(resp.GetClaims()),
		Reason:    Reason(resp.GetReason()),
		Message:   resp.GetMessage(),
		ExpiresAt: timeOf(resp.GetExpiresAt()),
	}, nil
}

// Mint asks the sidecar for a token for userID, with the options' claims, lifetime and mint
// secret.
//
// In insecure mode the sidecar mints an unsigned development token for anyone. In secure mode
// it signs with its configured algorithm, and only for callers that send its
// SIDECAR_MINT_SECRET (WithMintSecret). A refused Mint is an error with the gRPC status:
// codes.Unauthenticated (no secret sent), codes.PermissionDenied (a wrong one),
// codes.FailedPrecondition (minting is off), codes.InvalidArgument (a blank user, reserved
// claims, a ttl out of range; also claims that encoding/json cannot encode, which are refused
// before any call).
func (c *Client) Mint(ctx context.Context, userID string, opts ...MintOption) (Minted, error) {
	var m mintSettings
	for _, opt := range opts {
		if opt != nil {
			opt(&m)
		}
	}
	req := &authsidecarv1.MintRequest{UserId: userID}
	if len(m.claims) > 0 {
		claims, err := toStruct(m.claims)
		if err != nil {
			return Minted{}, status.Error(codes.InvalidArgument, "authsidecar: "+err.Error())
		}
		req.Claims = claims
	}
	if m.ttl != nil {
		req.Ttl = durationpb.New(*m.ttl)
	}
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	if m.secret != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+m.secret)
	}
	resp, err := c.api.Mint(ctx, req)
	if err != nil {
		return Minted{}, err
	}
	return Minted{Token: resp.GetToken(), ExpiresAt: timeOf(resp.GetExpiresAt())}, nil
}

// RevokeToken revokes one token, by its issuer and `jti` claims: the sidecar refuses it from then
// on as ReasonRevoked (message `Token has been revoked`), cached decisions included, and so does
// every replica that shares its revocation store. iss is the token's `iss` ("" for a token
// without one), and expiresAt its `exp`: the revocation is kept until then, plus the allowed
// clock skew, after which the token is refused as expired anyway. RevokeToken returns that time,
// the revocation's "kept until".
//
// Revoke needs the sidecar's revocation store (SIDECAR_STATE_DIR or SIDECAR_REVOCATION_STORE)
// and, in secure mode, its SIDECAR_ADMIN_SECRET (WithAdminSecret); in insecure mode anyone may
// revoke. A refused call is an error with the gRPC status: codes.InvalidArgument (a blank jti,
// an expiresAt that is zero, past or more than a year ahead), codes.Unauthenticated (no secret
// sent), codes.PermissionDenied (a wrong one), codes.FailedPrecondition (no revocation store, or
// secure mode without SIDECAR_ADMIN_SECRET), codes.Unavailable (the store is down: nothing was
// revoked).
func (c *Client) RevokeToken(ctx context.Context, iss, jti string, expiresAt time.Time, opts ...RevokeOption) (time.Time, error) {
	target := &authsidecarv1.TokenRevocation{Iss: iss, Jti: jti}
	if !expiresAt.IsZero() {
		target.ExpiresAt = timestamppb.New(expiresAt)
	}
	resp, err := c.revoke(ctx, &authsidecarv1.RevokeRequest{
		Target: &authsidecarv1.RevokeRequest_Token{Token: target},
	}, opts)
	if err != nil {
		return time.Time{}, err
	}
	return timeOf(resp.GetKeptUntil()), nil
}

// RevokeUser revokes every token of userID (the user as Validate reports it: `sub`, or else
// `user_id` under the namespace) and issuer iss ("" for tokens without `iss`) whose `iat` is
// before notBefore; tokens without `iat` are refused too. The zero notBefore means now, which
// refuses every token issued within the current second as well. Later tokens are accepted: it is
// "log out everywhere", or what a password reset does. The revocation is kept until the user is
// revoked again with a later time.
//
// Its errors are RevokeToken's, codes.InvalidArgument meaning a blank userID or a notBefore more
// than a year ahead.
func (c *Client) RevokeUser(ctx context.Context, iss, userID string, notBefore time.Time, opts ...RevokeOption) error {
	target := &authsidecarv1.UserRevocation{Iss: iss, UserId: userID}
	if !notBefore.IsZero() {
		target.NotBefore = timestamppb.New(notBefore)
	}
	_, err := c.revoke(ctx, &authsidecarv1.RevokeRequest{
		Target: &authsidecarv1.RevokeRequest_User{User: target},
	}, opts)
	return err
}

// RevokeIssuer revokes every token of issuer iss ("" for tokens without `iss`) whose `iat` is
// before notBefore (the zero time: now), as after a signing key was compromised; tokens without
// `iat` are refused too. Its errors are RevokeUser's.
func (c *Client) RevokeIssuer(ctx context.Context, iss string, notBefore time.Time, opts ...RevokeOption) error {
	target := &authsidecarv1.IssuerRevocation{Iss: iss}
	if !notBefore.IsZero() {
		target.NotBefore = timestamppb.New(notBefore)
	}
	_, err := c.revoke(ctx, &authsidecarv1.RevokeRequest{
		Target: &authsidecarv1.RevokeRequest_Issuer{Issuer: target},
	}, opts)
	return err
}

func (c *Client) revoke(ctx context.Context, req *authsidecarv1.RevokeRequest, opts []RevokeOption) (*authsidecarv1.RevokeResponse, error) {
	var r revokeSettings
	for _, opt := range opts {
		if opt != nil {
			opt(&r)
		}
	}
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	if r.secret != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+r.secret)
	}
	return c.api.Revoke(ctx, req)
}

// Close closes the client's connection. Calls made after Close fail with codes.Canceled.
// Calling Close again does nothing and returns the first call's result.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.closeErr = c.conn.Close()
	})
	return c.closeErr
}

// withDeadline applies the client's default deadline to a context that has none.
func (c *Client) withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok || c.timeout == 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.timeout)
}

func timeOf(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}
