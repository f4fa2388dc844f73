/** A real in-process gRPC AuthService that answers UNAVAILABLE a given number of times, then OK. */
import * as grpc from "@grpc/grpc-js";

import { AuthServiceService, type AuthServiceServer } from "../src/gen/authsidecar/v1/auth";

/** What the flaky server's Revoke answers as `keptUntil`. */
export const FLAKY_KEPT_UNTIL = new Date("2100-01-01T00:00:00Z");

/** A running flaky server: its address, the calls each method received, and how to stop it. */
export interface FlakyServer {
  address: string;
  attempts: { validate: number; mint: number; revoke: number };
  close(): Promise<void>;
}

/**
 * Serves AuthService on 127.0.0.1:0. The first `failures` calls of each method fail with `code`
 * (UNAVAILABLE by default); later ones succeed: Validate with a valid decision for "alice", Mint
 * with the token "minted", Revoke with a `keptUntil` of 2100-01-01. Every call is counted, so a test sees exactly how often a client tried.
 */
export async function flakyServer(failures: number, code: grpc.status = grpc.status.UNAVAILABLE): Promise<FlakyServer> {
  const attempts = { validate: 0, mint: 0, revoke: 0 };
  const fail = { code, details: "flaky: try again" };
  const implementation: AuthServiceServer = {
    validate: (_call, callback) => {
      attempts.validate += 1;
      if (attempts.validate <= failures) callback(fail);
      else callback(null, { valid: true, userId: "alice", claims: undefined, reason: 0, message: "", expiresAt: undefined });
    },
    mint: (_call, callback) => {
      attempts.mint += 1;
      if (attempts.mint <= failures) callback(fail);
      else callback(null, { token: "minted", expiresAt: undefined });
    },
    revoke: (_call, callback) => {
      attempts.revoke += 1;
      if (attempts.revoke <= failures) callback(fail);
      else callback(null, { keptUntil: FLAKY_KEPT_UNTIL });
    },
  };
  const server = new grpc.Server();
  server.addService(AuthServiceService, implementation);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, bound) =>
      error ? reject(error) : resolve(bound),
    ),
  );
  return {
    address: `127.0.0.1:${port}`,
    attempts,
    close: () => new Promise((resolve) => server.tryShutdown(() => resolve())),
  };
}
