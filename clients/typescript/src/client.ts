import * as grpc from "@grpc/grpc-js";

import {
  AuthServiceClient,
  type MintRequest,
  type MintResponse,
  type ValidateResponse,
} from "./gen/authsidecar/v1/auth";
import { type Reason, reasonFromNumber } from "./reason";

/** Milliseconds a call may take, by default, before it fails with DEADLINE_EXCEEDED. */
export const DEFAULT_TIMEOUT_MS = 2000;

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
  /** grpc-js channel options, such as `"grpc.keepalive_time_ms"`. Default: none. */
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
 * for a token. Refused `mint` calls and transport failures (sidecar down, deadline passed) reject
 * with grpc-js's `ServiceError`, whose `code` is the gRPC status (see {@link isServiceError}).
 * Every call carries a deadline. Create one client per process and share it; `close()` it at the end.
 *
 * ```ts
 * const auth = new AuthClient("127.0.0.1:50051");
 * const decision = await auth.validate(token);
 * if (!decision.valid) console.log(decision.reason, decision.message);
 * auth.close();
 * ```
 */
export class AuthClient {
  private readonly stub: AuthServiceClient;
  private readonly timeoutMs: number;

  /**
   * Creates the client; it connects lazily, on the first call.
   *
   * @param target `host:port` (`127.0.0.1:50051`, `[::1]:50051`, `sidecar:50051`) or a Unix
   *   socket as `unix:/path/to/socket` (or `unix:///path`).
   * @throws RangeError when `options.timeoutMs` is not a positive finite number.
   */
  constructor(target: string, options: AuthClientOptions = {}) {
    this.timeoutMs = checkTimeout(options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    this.stub = new AuthServiceClient(
      target,
      options.credentials ?? grpc.credentials.createInsecure(),
      options.channelOptions ?? {},
    );
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
      this.stub.validate({ token }, new grpc.Metadata(), { deadline }, (error, response) => {
        if (error) reject(error);
        else resolve(toDecision(response));
      });
    });
  }

  /**
   * Asks the sidecar for a token for `userId`, signed with its configured algorithm (secure mode)
   * or unsigned (`alg: none`, insecure mode).
   *
   * Rejects with a `ServiceError` whose `code` says why: INVALID_ARGUMENT (blank user id, a
   * reserved claim, a ttl out of range), FAILED_PRECONDITION (Mint is off: no SIDECAR_MINT_SECRET,
   * or no signing key), UNAUTHENTICATED (no `mintSecret` given), PERMISSION_DENIED (wrong
   * `mintSecret`), or a transport code. Rejects with a RangeError, before sending anything, for a
   * non-finite `ttlSeconds` or a bad `timeoutMs`.
   */
  mint(userId: string, options: MintOptions = {}): Promise<Minted> {
    return new Promise((resolve, reject) => {
      const deadline = this.deadline(options.timeoutMs);
      const request: MintRequest = { userId };
      const claims = options.shape ? { ...options.claims, [SHAPE_CLAIM]: options.shape } : options.claims;
      if (claims && Object.keys(claims).length > 0) {
        request.claims = claims;
      }
      if (options.ttlSeconds !== undefined) {
        request.ttl = toDuration(options.ttlSeconds);
      }
      const metadata = new grpc.Metadata();
      if (options.mintSecret) {
        metadata.set("authorization", `Bearer ${options.mintSecret}`);
      }
      this.stub.mint(request, metadata, { deadline }, (error, response) => {
        if (error) reject(error);
        else resolve(toMinted(response));
      });
    });
  }

  /**
   * Closes the channel at once, as the Python client does. Calls that have not reached the sidecar
   * yet reject with UNAVAILABLE; calls made after `close()` reject with grpc-js's plain
   * `Error("Channel has been shut down")`. Closing twice is harmless.
   */
  close(): void {
    this.stub.close();
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

function checkTimeout(timeoutMs: number): number {
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new RangeError(`timeoutMs must be a positive finite number of milliseconds, not ${timeoutMs}`);
  }
  return timeoutMs;
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

function toDecision(response: ValidateResponse): Decision {
  const decision: Decision = {
    valid: response.valid,
    userId: response.userId,
    claims: response.claims ?? {},
    reason: reasonFromNumber(response.reason),
    message: response.message,
  };
  if (response.expiresAt !== undefined) decision.expiresAt = response.expiresAt;
  return decision;
}

function toMinted(response: MintResponse): Minted {
  const minted: Minted = { token: response.token };
  if (response.expiresAt !== undefined) minted.expiresAt = response.expiresAt;
  return minted;
}
