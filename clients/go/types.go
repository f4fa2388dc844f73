package authsidecar

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/auth-sidecar/auth-sidecar/clients/go/authsidecarv1"
)

// Reason says why a token was refused. Its values are those of the proto enum
// authsidecar.v1.Reason, and they and their messages are stable API.
type Reason int32

// The reasons. Each comment gives the message that Validate returns with it, which is
// ElectricSQL's wording.
const (
	// ReasonUnspecified: the token is valid. Message: empty.
	ReasonUnspecified = Reason(authsidecarv1.Reason_REASON_UNSPECIFIED)
	// ReasonMalformed: not a JWS in compact form with base64url JSON-object header and payload,
	// or longer than the sidecar's limit. Message: `Invalid token`.
	ReasonMalformed = Reason(authsidecarv1.Reason_REASON_MALFORMED)
	// ReasonAlgorithmMismatch: secure mode, the header's `alg` is not the configured one
	// (including `none`). Message: `Signing algorithm mismatch`.
	ReasonAlgorithmMismatch = Reason(authsidecarv1.Reason_REASON_ALGORITHM_MISMATCH)
	// ReasonBadSignature: secure mode, the signature does not verify.
	// Message: `Invalid token signature`.
	ReasonBadSignature = Reason(authsidecarv1.Reason_REASON_BAD_SIGNATURE)
	// ReasonExpired: `exp` plus the allowed clock skew is past. Message: `Expired token`.
	ReasonExpired = Reason(authsidecarv1.Reason_REASON_EXPIRED)
	// ReasonNotYetValid: `nbf` minus the allowed clock skew is in the future.
	// Message: `Token is not yet valid`.
	ReasonNotYetValid = Reason(authsidecarv1.Reason_REASON_NOT_YET_VALID)
	// ReasonMissingClaim: secure mode, a required claim is absent.
	// Message: `Missing required "iat" claim`, naming the claim.
	ReasonMissingClaim = Reason(authsidecarv1.Reason_REASON_MISSING_CLAIM)
	// ReasonInvalidClaim: a claim has the wrong type or value.
	// Message: `Invalid "iss" claim value: "evil"`, with the value as JSON.
	ReasonInvalidClaim = Reason(authsidecarv1.Reason_REASON_INVALID_CLAIM)
	// ReasonInvalidUserID: neither `sub` nor `user_id` is a non-blank string.
	// Message: `Missing or invalid 'user_id'`.
	ReasonInvalidUserID = Reason(authsidecarv1.Reason_REASON_INVALID_USER_ID)
	// ReasonShapeMismatch: a shape was requested and the token's shape claim does not allow it.
	// Message: says which field differs, or why the claim or request cannot be read.
	ReasonShapeMismatch = Reason(authsidecarv1.Reason_REASON_SHAPE_MISMATCH)
	// ReasonForbidden: the token is valid, but the route of the request does not allow it.
	// Message: names the route and the unmet requirement, never a claim value.
	ReasonForbidden = Reason(authsidecarv1.Reason_REASON_FORBIDDEN)
	// ReasonInactive: an opaque token that the issuer's introspection endpoint calls inactive.
	// Message: `Token is not active`.
	ReasonInactive = Reason(authsidecarv1.Reason_REASON_INACTIVE)
	// ReasonRevoked: the token is otherwise valid, but it, its user's or its issuer's tokens
	// were revoked (Revoke). Message: `Token has been revoked`.
	ReasonRevoked = Reason(authsidecarv1.Reason_REASON_REVOKED)
)

const unknownReasonPrefix = "REASON_UNKNOWN_"

// String returns the proto enum name, such as "REASON_EXPIRED", the name that every client and
// the conformance vectors use. A value this client's generated code does not know (a reason
// added to the proto later) is kept, and reads "REASON_UNKNOWN_<number>".
func (r Reason) String() string {
	values := authsidecarv1.Reason(0).Descriptor().Values()
	if v := values.ByNumber(protoreflect.EnumNumber(r)); v != nil {
		return string(v.Name())
	}
	return unknownReasonPrefix + strconv.FormatInt(int64(r), 10)
}

// MarshalText encodes the reason as its String, so that JSON shows "REASON_EXPIRED".
func (r Reason) MarshalText() ([]byte, error) {
	return []byte(r.String()), nil
}

// UnmarshalText reads what MarshalText writes: a proto enum name or "REASON_UNKNOWN_<number>".
func (r *Reason) UnmarshalText(text []byte) error {
	name := string(text)
	values := authsidecarv1.Reason(0).Descriptor().Values()
	if v := values.ByName(protoreflect.Name(name)); v != nil {
		*r = Reason(v.Number())
		return nil
	}
	if digits, ok := strings.CutPrefix(name, unknownReasonPrefix); ok {
		if n, err := strconv.ParseInt(digits, 10, 32); err == nil {
			*r = Reason(n)
			return nil
		}
	}
	return fmt.Errorf("authsidecar: unknown reason %q", name)
}

// Decision is the sidecar's decision on one token.
type Decision struct {
	// Valid is true when the token is acceptable.
	Valid bool `json:"valid"`
	// UserID is the user the token belongs to: `sub`, or else `user_id`, read under the
	// namespace when the sidecar has one. Empty when the token is refused.
	UserID string `json:"user_id,omitempty"`
	// Claims holds all the token's claims as JSON values: nil, bool, string, float64, int64,
	// []any and map[string]any. As in the Python client, a number that is whole and within
	// ±2^53 (where a double is exact) is an int64, so `iat` and `exp` read back as written;
	// other numbers stay float64. Nil when the token is refused: nothing from a refused token
	// is returned.
	Claims map[string]any `json:"claims,omitempty"`
	// Reason says why the token was refused; ReasonUnspecified when it is valid.
	Reason Reason `json:"reason"`
	// Message is Electric's error message for Reason, word for word; empty when valid.
	Message string `json:"message,omitempty"`
	// ExpiresAt is the token's `exp`, in UTC, or the zero time when it has none or is refused.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// Minted is a token from Mint.
type Minted struct {
	// Token is the JWT in compact form.
	Token string `json:"token"`
	// ExpiresAt is when the token expires, in UTC, or the zero time when it has no `exp`
	// (insecure mode without WithTTL).
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}
