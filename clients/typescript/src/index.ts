/**
 * TypeScript client of auth-sidecar's gRPC `authsidecar.v1.AuthService` (Validate, Mint, Revoke), on
 * `@grpc/grpc-js`.
 *
 * ```ts
 * import { AuthClient, Reason } from "@auth-sidecar/client";
 *
 * const auth = new AuthClient("127.0.0.1:50051", { timeoutMs: 500 });
 * const decision = await auth.validate(token);
 * if (decision.valid) console.log(decision.userId, decision.claims);
 * else if (decision.reason === Reason.EXPIRED) console.log(decision.message); // "Expired token"
 * ```
 *
 * @packageDocumentation
 */
export {
  AuthClient,
  DEFAULT_RETRY_ATTEMPTS,
  DEFAULT_RETRY_BACKOFF_MS,
  DEFAULT_TIMEOUT_MS,
  MAX_RETRY_ATTEMPTS,
  MAX_RETRY_BACKOFF_MS,
  MIN_RETRY_BACKOFF_MS,
  SHAPE_CLAIM,
  isServiceError,
  retryServiceConfig,
  type AuthClientOptions,
  type Decision,
  type MintOptions,
  type Minted,
  type RevokeBeforeOptions,
  type RevokeOptions,
  type Shape,
  type ValidateOptions,
} from "./client";
export { Reason, reasonFromNumber } from "./reason";
/** grpc-js's status codes (`status.UNAUTHENTICATED`, ...), to compare with `ServiceError.code`. */
export { status } from "@grpc/grpc-js";
/** The error that refused calls and transport failures reject with; `code` is a {@link status}. */
export type { ServiceError } from "@grpc/grpc-js";
