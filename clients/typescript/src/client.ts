import * as grpc from "@grpc/grpc-js";

import { MINT_REQUEST_CLAIMS, VALIDATE_RESPONSE_CLAIMS, claimsField, claimsFromBinary, concat, takeField } from "./claims";
import {
  AuthServiceService,
  MintRequest,
  type MintResponse,
  type RevokeRequest,
  type RevokeResponse,
  ValidateResponse,
} from "./gen/authsidecar/v1/auth";
import { type Reason, reasonFromNumber } from "./reason";

/** Milliseconds a call may take, by default, before it fails with DEADLINE_EXCEEDED. */
export const DEFAULT_TIMEOUT_MS = 2000;

/** How many times, in all, a call is tried while it fails with UNAVAILABLE (1 turns retries off). */
export const DEFAULT_RETRY_ATTEMPTS = 3;

/** The longest pause before the first retry, in milliseconds; each later one may be twice as long. */
export const DEFAULT_RETRY_BACKOFF_MS = 100;

/** The cap on the doubling pause, in milliseconds, unless the backoff itself is longer. */
export const MAX_RETRY_BACKOFF_MS = 1000;

/** gRPC's limit on attempts per call: a retry policy asking for more gets 5. */
export const MAX_RETRY_ATTEMPTS = 5;

/** The shortest backoff, in milliseconds (grpc-core, under the Python client, can stall a retry with 1 ms). */
export const MIN_RETRY_BACKOFF_MS = 10;

const SERVICE = "authsidecar.v1.AuthService";

/** How an {@link AuthClient} connects. Every field is optional. */
export interface AuthClientOptions {
  /**
   * The deadline of every call, in milliseconds from its start, unless the call gives its own.
   * A positive finite number. Default: {@link DEFAULT_TIMEOUT_MS} (2000).
   */
  timeoutMs?: number;
  /**
   * Channel credentials, such as `grpc.credentials.createSsl(...)` for TLS.
   * Default: `grpc.credentials.createInsecure()`, the plaintext the sidecar serves.
   */
  credentials?: grpc.ChannelCredentials;
  /**
   * How many times, in all, a call is tried while it fails with UNAVAILABLE: an integer from 1
   * (no retries) to {@link MAX_RETRY_ATTEMPTS} (5). Default: {@link DEFAULT_RETRY_ATTEMPTS} (3).
   * See {@link retryServiceConfig}.
   */
  retryAttempts?: number;
  /**
   * The longest pause before the first retry, in milliseconds (at least 10); each later pause may be
   * twice as long as the one before, up to {@link MAX_RETRY_BACKOFF_MS} (1000) or this backoff if
   * longer. Default: {@link DEFAULT_RETRY_BACKOFF_MS} (100).
   */
  retryBackoffMs?: number;
  /**
   * grpc-js channel options, such as `"grpc.keepalive_time_ms"`. A `"grpc.service_config"` here
   * replaces the client's retry policy. Default: none.
   */
  channelOptions?: grpc.ChannelOptions;
}

/** Options of one {@link AuthClient.validate} call. */
export interface ValidateOptions {
  /** This call's deadline in milliseconds; default: the client's `timeoutMs`. */
  timeoutMs?: number;
}

/** The claim that {@link MintOptions.shape} writes; SIDECAR_SHAPE_CLAIM=shape reads it. */
export const SHAPE_CLAIM = "shape";

/**
 * Electric's gatekeeper claim: the one shape (`GET /v1/shape`) a token may sync. The sidecar
 * compares it with the shape requested: `table` (as `namespace.table` when `namespace` is set) and
 * `where` byte for byte, `columns` (names as in the table, unquoted, as `ShapeStream` takes them,
 * or Electric's comma-separated string) as a set, and `params` (the where clause's $1, $2, ...).
 */
export interface Shape {
  table: string;
  namespace?: string;
  where?: string;
  columns?: string[] | string;
  params?: string[] | Record<`${number}`, string>;
}

/** Options of one {@link AuthClient.mint} call. */
export interface MintOptions {
  /**
   * Extra claims for the token, as JSON values. They may not set `sub` or `user_id` where the
   * sidecar reads the user, nor `iat`, `nbf` or `exp` (use `ttlSeconds`), nor in secure mode
   * `iss` or `aud`: the sidecar refuses such a call with INVALID_ARGUMENT. Numbers travel as
   * doubles. Default: none.
   */
  claims?: Record<string, unknown>;
  /** The shape the token may sync, written as the claim {@link SHAPE_CLAIM}. Default: none. */
  shape?: Shape;
  /**
   * How long the token is valid, in seconds: at least 1 and at most the sidecar's
   * SIDECAR_MINT_MAX_TTL_SECONDS (default 24 hours), else INVALID_ARGUMENT. The sidecar drops any
   * fraction of a second. Default: the sidecar's, which is 15 minutes in secure mode and no `exp`
   * at all in insecure mode.
   */
  ttlSeconds?: number;
  /**
   * The sidecar's SIDECAR_MINT_SECRET, sent as the metadata `authorization: Bearer <secret>`.
   * Secure mode needs it; insecure mode ignores it. Default: none sent.
   */
  mintSecret?: string;
  /** This call's deadline in milliseconds; default: the client's `timeoutMs`. */
  timeoutMs?: number;
}

/** Options of one {@link AuthClient.revokeToken} call. */
export interface RevokeOptions {
  /**
   * The sidecar's SIDECAR_ADMIN_SECRET, sent as the metadata `authorization: Bearer <secret>`.
   * Secure mode needs it; insecure mode ignores it. Default: none sent.
   */
  adminSecret?: string;
  /** This call's deadline in milliseconds; default: the client's `timeoutMs`. */
  timeoutMs?: number;
}

/** Options of one {@link AuthClient.revokeUser} or {@link AuthClient.revokeIssuer} call. */
export interface RevokeBeforeOptions extends RevokeOptions {
  /**
   * Tokens whose `iat` is before this time are refused (tokens without `iat` too); later ones
   * are accepted. At most a year ahead, else INVALID_ARGUMENT. Default: now (the sidecar's
   * clock), which refuses every token issued within the current second, too.
   */
  notBefore?: Date;
}

/** The sidecar's decision on one token. */
export interface Decision {
  /** True when the token is acceptable. */
  valid: boolean;
  /** The user the token belongs to (`sub`, else `user_id`, under the namespace if configured); `""` when not valid. */
  userId: string;
  /** All claims of a valid token, as JSON values (numbers are doubles); `{}` when not valid. */
  claims: Record<string, unknown>;
  /** Why the token was refused; `"REASON_UNSPECIFIED"` when it is valid. */
  reason: Reason;
  /** Electric's error message for `reason`, word for word; `""` when valid. */
  message: string;
  /** The token's `exp`, when it is valid and has one (clamped to the end of year 9999). */
  expiresAt?: Date;
}

/** A token from {@link AuthClient.mint}. */
export interface Minted {
  /** The JWT in compact form. */
  token: string;
  /** When the token expires; absent when it has no `exp` (insecure mode without a ttl). */
  expiresAt?: Date;
}

/**
 * A client of the sidecar's `authsidecar.v1.AuthService`, over one grpc-js channel.
 *
 * A refused token is a {@link Decision} with `valid: false`: `validate` resolves, it never rejects
 * for a token. Refused `mint` and `revoke*` calls and transport failures (sidecar down, deadline passed) reject
 * with grpc-js's `ServiceError`, whose `code` is the gRPC status (see {@link isServiceError}).
 * Every call carries a deadline, which covers its retries: a call that fails with UNAVAILABLE is
 * tried again by grpc-js's own retry policy (see {@link retryServiceConfig}). Create one client per
 * process and share it; `close()` it at the end.
 *
 * ```ts
 * const auth = new AuthClient("127.0.0.1:50051");
 * const decision = await auth.validate(token);
 * if (!decision.valid) console.log(decision.reason, decision.message);
 * auth.close();
 * ```
 */
export class AuthClient {
  private readonly channel: grpc.Client;
  private readonly timeoutMs: number;

  /**
   * Creates the client; it connects lazily, on the first call.
   *
   * @param target `host:port` (`127.0.0.1:50051`, `[::1]:50051`, `sidecar:50051`) or a Unix
   *   socket as `unix:/path/to/socket` (or `unix:///path`).
   * @throws RangeError when `options.timeoutMs` is not a positive finite number, or the retry
   *   options are out of range.
   */
  constructor(target: string, options: AuthClientOptions = {}) {
    this.timeoutMs = checkTimeout(options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    const serviceConfig = retryServiceConfig(
      options.retryAttempts ?? DEFAULT_RETRY_ATTEMPTS,
      options.retryBackoffMs ?? DEFAULT_RETRY_BACKOFF_MS,
    );
    this.channel = new grpc.Client(target, options.credentials ?? grpc.credentials.createInsecure(), {
      "grpc.enable_retries": 1,
      "grpc.service_config": JSON.stringify(serviceConfig),
      ...options.channelOptions,
    });
  }

  /**
   * Asks the sidecar for its decision on `token` (compact JWT, without any `Bearer ` prefix).
   *
   * Resolves with the decision, valid or not; an empty token is refused as `REASON_MALFORMED`.
   * Rejects only when there is no decision: with a `ServiceError` (e.g. UNAVAILABLE,
   * DEADLINE_EXCEEDED), or a RangeError for a bad `timeoutMs`.
   */
  validate(token: string, options: ValidateOptions = {}): Promise<Decision> {
    return new Promise((resolve, reject) => {
      const deadline = this.deadline(options.timeoutMs);
      const method = AuthServiceService.validate;
      this.channel.makeUnaryRequest(
        method.path,
        method.requestSerialize,
        decodeValidateResponse,
        { token },
        new grpc.Metadata(),
        { deadline },
        (error, response) => {
          if (error) reject(error);
          else resolve(response!);
        },
      );
    });
  }

  /**
   * Asks the sidecar for a token for `userId`, signed with its configured algorithm (secure mode)
   * or unsigned (`alg: none`, insecure mode).
   *
   * Rejects with a `ServiceError` whose `code` says why: INVALID_ARGUMENT (blank user id, a
   * reserved claim, a ttl out of range), FAILED_PRECONDITION (Mint is off: no SIDECAR_MINT_SECRET,
   * or no signing key), UNAUTHENTICATED (no `mintSecret` given), PERMISSION_DENIED (wrong
   * `mintSecret`), or a transport code. Rejects before sending anything with a RangeError for a
   * non-finite `ttlSeconds` or a bad `timeoutMs`, and with a TypeError for claims that are not
   * JSON values.
   *
   * A call that fails with UNAVAILABLE is retried like Validate: the sidecar never processed it,
   * so a retry mints at most the one token the call asked for.
   */
  mint(userId: string, options: MintOptions = {}): Promise<Minted> {
    return new Promise((resolve, reject) => {
      const deadline = this.deadline(options.timeoutMs);
      const request: MintRequest = { userId };
      if (options.ttlSeconds !== undefined) {
        request.ttl = toDuration(options.ttlSeconds);
      }
      // Encoded here, not by the generated code, which would drop a claim named `__proto__`.
      const given = options.shape
        ? { ...options.claims, [SHAPE_CLAIM]: options.shape }
        : options.claims;
      const claims =
        given && Object.keys(given).length > 0
          ? claimsField(MINT_REQUEST_CLAIMS, given)
          : new Uint8Array();
      const metadata = new grpc.Metadata();
      if (options.mintSecret) {
        metadata.set("authorization", `Bearer ${options.mintSecret}`);
      }
      const method = AuthServiceService.mint;
      this.channel.makeUnaryRequest(
        method.path,
        (value: MintRequest) => Buffer.from(concat([MintRequest.encode(value).finish(), claims])),
        method.responseDeserialize,
        request,
        metadata,
        { deadline },
        (error, response) => {
          if (error) reject(error);
          else resolve(toMinted(response!));
        },
      );
    });
  }

  /**
   * Revokes one token, by its `iss` and `jti` claims: from then on the sidecar refuses it as
   * `REASON_REVOKED` (message `Token has been revoked`), cached decisions included, and so does
   * every replica that shares its revocation store. `iss` is the token's `iss` (`""` for a token
   * without one), `expiresAt` its `exp`: the revocation is kept until then plus the allowed clock
   * skew, after which the token is refused as expired anyway. Resolves with that time, the
   * revocation's "kept until".
   *
   * Revoke needs the sidecar's revocation store (SIDECAR_STATE_DIR or SIDECAR_REVOCATION_STORE)
   * and, in secure mode, its SIDECAR_ADMIN_SECRET (`adminSecret`); in insecure mode anyone may
   * revoke. Rejects with a `ServiceError` whose `code` says why: INVALID_ARGUMENT (a blank `jti`,
   * an `expiresAt` that is past or more than a year ahead), FAILED_PRECONDITION (no revocation
   * store, or secure mode without SIDECAR_ADMIN_SECRET), UNAUTHENTICATED (no `adminSecret`
   * given), PERMISSION_DENIED (a wrong one), UNAVAILABLE (the store is down: nothing was revoked),
   * or a transport code. Rejects before sending anything with a RangeError for an `expiresAt`
   * that is not a valid Date, or a bad `timeoutMs`.
   */
  revokeToken(iss: string, jti: string, expiresAt: Date, options: RevokeOptions = {}): Promise<Date | undefined> {
    return this.revoke(
      () => ({ token: { iss, jti, expiresAt: checkDate("expiresAt", expiresAt) } }),
      options,
    ).then((response) => response.keptUntil);
  }

  /**
   * Revokes every token of `userId` (the user as `validate` reports it: `sub`, else `user_id`
   * under the namespace) and issuer `iss` (`""` for tokens without `iss`) whose `iat` is before
   * `options.notBefore` (default: now): "log out everywhere", or what a password reset does.
   * Tokens without `iat` are refused too. It is kept until the user is revoked again with a later
   * time.
   *
   * Rejects as {@link revokeToken} does; INVALID_ARGUMENT means a blank `userId`, or a
   * `notBefore` more than a year ahead.
   */
  revokeUser(iss: string, userId: string, options: RevokeBeforeOptions = {}): Promise<void> {
    return this.revoke(() => ({ user: { iss, userId, notBefore: notBeforeOf(options) } }), options).then(() => {});
  }

  /**
   * Revokes every token of issuer `iss` (`""` for tokens without `iss`) whose `iat` is before
   * `options.notBefore` (default: now), as after its signing key was compromised. Tokens without
   * `iat` are refused too. Rejects as {@link revokeUser} does.
   */
  revokeIssuer(iss: string, options: RevokeBeforeOptions = {}): Promise<void> {
    return this.revoke(() => ({ issuer: { iss, notBefore: notBeforeOf(options) } }), options).then(() => {});
  }

  /**
   * Closes the channel at once, as the Python client does. Calls that have not reached the sidecar
   * yet reject with UNAVAILABLE; calls made after `close()` reject with grpc-js's plain
   * `Error("Channel has been shut down")`. Closing twice is harmless.
   */
  close(): void {
    this.channel.close();
  }

  /** One Revoke call; `request` runs inside the promise, so that its RangeErrors reject it. */
  private revoke(request: () => RevokeRequest, options: RevokeOptions): Promise<RevokeResponse> {
    return new Promise((resolve, reject) => {
      const deadline = this.deadline(options.timeoutMs);
      const metadata = new grpc.Metadata();
      if (options.adminSecret) {
        metadata.set("authorization", `Bearer ${options.adminSecret}`);
      }
      const method = AuthServiceService.revoke;
      this.channel.makeUnaryRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        request(),
        metadata,
        { deadline },
        (error, response) => {
          if (error) reject(error);
          else resolve(response!);
        },
      );
    });
  }

  private deadline(timeoutMs: number | undefined): Date {
    return new Date(Date.now() + (timeoutMs === undefined ? this.timeoutMs : checkTimeout(timeoutMs)));
  }
}

/**
 * True when `error` is a grpc-js `ServiceError`: what {@link AuthClient} rejects with when the
 * sidecar refuses a call or cannot be reached. Compare its `code` with `grpc.status`.
 */
export function isServiceError(error: unknown): error is grpc.ServiceError {
  const candidate = error as Partial<grpc.ServiceError>;
  return error instanceof Error && typeof candidate.code === "number" && typeof candidate.details === "string";
}

/**
 * The gRPC service config that every client channel gets: calls to the sidecar that fail with
 * UNAVAILABLE (nothing listening, a connection lost before the call reached the sidecar, or a
 * sidecar without its keys yet) are tried `attempts` times in all. Before retry n gRPC waits a
 * random time below min(backoff × 2^(n-1), max(backoff, 1 s)). No other code is retried, and the
 * call's deadline covers every attempt. The Go and Python clients send the very same policy.
 *
 * @throws RangeError when `attempts` is not an integer from 1 to 5, or `backoffMs` is below 10
 *   (or not finite) while retries are on.
 */
export function retryServiceConfig(attempts: number, backoffMs: number): object {
  if (!Number.isInteger(attempts) || attempts < 1 || attempts > MAX_RETRY_ATTEMPTS) {
    throw new RangeError(`retryAttempts must be an integer from 1 to ${MAX_RETRY_ATTEMPTS}, not ${attempts}`);
  }
  if (attempts === 1) return {};
  if (!Number.isFinite(backoffMs) || backoffMs < MIN_RETRY_BACKOFF_MS) {
    throw new RangeError(`retryBackoffMs must be at least ${MIN_RETRY_BACKOFF_MS} ms, not ${backoffMs}`);
  }
  return {
    methodConfig: [
      {
        name: [{ service: SERVICE }],
        retryPolicy: {
          maxAttempts: attempts,
          initialBackoff: seconds(backoffMs),
          maxBackoff: seconds(Math.max(backoffMs, MAX_RETRY_BACKOFF_MS)),
          backoffMultiplier: 2,
          retryableStatusCodes: ["UNAVAILABLE"],
        },
      },
    ],
  };
}

/** Milliseconds as a service config duration, such as "0.100s". */
function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(3)}s`;
}

/** ValidateResponse, with `claims` decoded apart: the generated code would drop `__proto__`. */
function decodeValidateResponse(bytes: Buffer): Decision {
  const { rest, field } = takeField(bytes, VALIDATE_RESPONSE_CLAIMS);
  const response = ValidateResponse.decode(rest);
  const decision: Decision = {
    valid: response.valid,
    userId: response.userId,
    claims: field.length > 0 ? claimsFromBinary(field) : {},
    reason: reasonFromNumber(response.reason),
    message: response.message,
  };
  if (response.expiresAt !== undefined) decision.expiresAt = response.expiresAt;
  return decision;
}

function checkTimeout(timeoutMs: number): number {
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new RangeError(`timeoutMs must be a positive finite number of milliseconds, not ${timeoutMs}`);
  }
  return timeoutMs;
}

function checkDate(name: string, date: Date): Date {
  if (!(date instanceof Date) || !Number.isFinite(date.getTime())) {
    throw new RangeError(`${name} must be a valid Date, not ${String(date)}`);
  }
  return date;
}

function notBeforeOf(options: RevokeBeforeOptions): Date | undefined {
  return options.notBefore === undefined ? undefined : checkDate("notBefore", options.notBefore);
}

function toDuration(seconds: number): { seconds: number; nanos: number } {
  if (!Number.isFinite(seconds) || Math.abs(seconds) > Number.MAX_SAFE_INTEGER) {
    throw new RangeError(`ttlSeconds must be a finite number of seconds, not ${seconds}`);
  }
  // google.protobuf.Duration: whole seconds, plus nanos of the same sign.
  let whole = Math.trunc(seconds);
  let nanos = Math.round((seconds - whole) * 1e9);
  if (Math.abs(nanos) >= 1e9) {
    whole += Math.sign(nanos);
    nanos = 0;
  }
  return { seconds: whole, nanos };
}

function toMinted(response: MintResponse): Minted {
  const minted: Minted = { token: response.token };
  if (response.expiresAt !== undefined) minted.expiresAt = response.expiresAt;
  return minted;
}
