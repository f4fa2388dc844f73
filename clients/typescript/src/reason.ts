/**
 * Why the sidecar refused a token: the proto enum `authsidecar.v1.Reason`, as its value names.
 *
 * A `Reason` is the proto's own name, such as `"REASON_EXPIRED"`, so it prints, logs and
 * serialises exactly as the proto's JSON mapping does, in every language. The `Reason` object
 * holds the same strings under short keys (`Reason.EXPIRED === "REASON_EXPIRED"`), which mirror the
 * Python client's `Reason.EXPIRED`. Both spellings type-check:
 *
 * ```ts
 * if (decision.reason === Reason.EXPIRED) { ... }
 * if (decision.reason === "REASON_EXPIRED") { ... }
 * ```
 *
 * The names and their messages are stable API. A value added to the proto after this client was
 * built arrives as `REASON_UNKNOWN_<number>` rather than as an error.
 */
export const Reason = {
  /** The token is valid. Message: empty. */
  UNSPECIFIED: "REASON_UNSPECIFIED",
  /**
   * The token is not a JWS in compact form with base64url JSON-object header and payload, or is
   * larger than the configured limit. Message: `Invalid token`.
   */
  MALFORMED: "REASON_MALFORMED",
  /**
   * Secure mode: the header's `alg` is not exactly the configured AUTH_JWT_ALG (this includes
   * `none`). Message: `Signing algorithm mismatch`.
   */
  ALGORITHM_MISMATCH: "REASON_ALGORITHM_MISMATCH",
  /** Secure mode: the signature does not verify with the configured key. Message: `Invalid token signature`. */
  BAD_SIGNATURE: "REASON_BAD_SIGNATURE",
  /** `exp` plus the allowed clock skew is before now. Message: `Expired token`. */
  EXPIRED: "REASON_EXPIRED",
  /** `nbf` minus the allowed clock skew is after now. Message: `Token is not yet valid`. */
  NOT_YET_VALID: "REASON_NOT_YET_VALID",
  /**
   * Secure mode: a required claim (`iat`, `exp`, and `iss` or `aud` when configured) is absent.
   * Message: `Missing required "iat" claim`, naming the claim.
   */
  MISSING_CLAIM: "REASON_MISSING_CLAIM",
  /**
   * A claim has the wrong type or value: a time claim that is not a number, an `iat` in the future,
   * or an `iss` or `aud` that does not match the configuration.
   * Message: `Invalid "iss" claim value: "evil"`, with the value printed as JSON.
   */
  INVALID_CLAIM: "REASON_INVALID_CLAIM",
  /**
   * Neither `sub` nor `user_id` (under the namespace, when one is configured) is a non-blank string.
   * Message: `Missing or invalid 'user_id'`.
   */
  INVALID_USER_ID: "REASON_INVALID_USER_ID",
  /**
   * A shape was requested and the token's shape claim does not allow it. Message: says which field
   * differs, or why the claim or the request cannot be read.
   */
  SHAPE_MISMATCH: "REASON_SHAPE_MISMATCH",
  /**
   * The token is valid, but the route of the request does not allow it (a scope, a claim value,
   * the audience or the route's condition). Message: names the route and the unmet requirement,
   * never a claim value.
   */
  FORBIDDEN: "REASON_FORBIDDEN",
  /**
   * An opaque token that the issuer's introspection endpoint (RFC 7662) calls inactive: revoked,
   * expired or never issued. Message: `Token is not active`.
   */
  INACTIVE: "REASON_INACTIVE",
  /**
   * The token is otherwise valid, but it was revoked (`revoke`): by its `iss` and `jti`, or with
   * its user's or its issuer's tokens issued before a time. Message: `Token has been revoked`.
   */
  REVOKED: "REASON_REVOKED",
} as const;

/** A reason name from the proto, or `REASON_UNKNOWN_<n>` for a value newer than this client. */
export type Reason = (typeof Reason)[keyof typeof Reason] | `REASON_UNKNOWN_${number}`;

// Indexed by the proto enum's wire value.
const BY_NUMBER: readonly Reason[] = [
  Reason.UNSPECIFIED,
  Reason.MALFORMED,
  Reason.ALGORITHM_MISMATCH,
  Reason.BAD_SIGNATURE,
  Reason.EXPIRED,
  Reason.NOT_YET_VALID,
  Reason.MISSING_CLAIM,
  Reason.INVALID_CLAIM,
  Reason.INVALID_USER_ID,
  Reason.SHAPE_MISMATCH,
  Reason.FORBIDDEN,
  Reason.INACTIVE,
  Reason.REVOKED,
];

/** The `Reason` for a wire value of the proto enum; unknown values are kept, not refused. */
export function reasonFromNumber(value: number): Reason {
  return BY_NUMBER[value] ?? `REASON_UNKNOWN_${value}`;
}
