// Package authsidecar is the Go client of auth-sidecar's gRPC API, authsidecar.v1.AuthService.
//
// The sidecar decides whether a client's JWT is acceptable and which user it belongs to, with
// ElectricSQL's rules and wording, mints tokens, and revokes them. This package is a thin, typed
// wrapper over the generated stubs in the authsidecarv1 subpackage, with the same semantics as
// the Python client:
//
//   - A refused token is not an error: Validate returns a Decision with Valid false, a Reason and
//     Electric's message, and a nil error.
//   - Transport failures and refused Mint and Revoke calls are errors that keep their gRPC
//     status, so callers use status.Code(err): codes.Unavailable, codes.DeadlineExceeded,
//     codes.Unauthenticated, codes.PermissionDenied, codes.FailedPrecondition,
//     codes.InvalidArgument and so on.
//   - Every call gets a deadline (DefaultTimeout, or WithTimeout) when its context has none.
//   - Calls that fail with codes.Unavailable are retried by gRPC's own retry policy, with
//     exponential backoff (WithRetry); the TypeScript and Python clients retry alike.
//
// A minimal use:
//
//	client, err := authsidecar.Dial("127.0.0.1:50051")
//	if err != nil {
//		return err
//	}
//	defer client.Close()
//	decision, err := client.Validate(ctx, token)
//	if err != nil {
//		return err // the sidecar could not decide: fail closed
//	}
//	if !decision.Valid {
//		return fmt.Errorf("%s: %s", decision.Reason, decision.Message)
//	}
//	fmt.Println("user", decision.UserID)
package authsidecar
