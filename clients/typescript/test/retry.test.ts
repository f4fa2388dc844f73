/**
 * Retries on UNAVAILABLE through grpc-js's service-config retry policy, counted by a real
 * in-process gRPC server that fails a set number of times before it answers.
 */
import * as assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  AuthClient,
  DEFAULT_RETRY_ATTEMPTS,
  MAX_RETRY_ATTEMPTS,
  MIN_RETRY_BACKOFF_MS,
  isServiceError,
  retryServiceConfig,
  status,
} from "../src";
import { FLAKY_KEPT_UNTIL, type FlakyServer, flakyServer } from "../testing/flaky";

/** Runs `body` with a flaky server and a client of it, and closes both. */
async function withFlaky(
  failures: number,
  options: ConstructorParameters<typeof AuthClient>[1],
  body: (client: AuthClient, server: FlakyServer) => Promise<void>,
  code?: status,
): Promise<void> {
  const server = await flakyServer(failures, code);
  const client = new AuthClient(server.address, { retryBackoffMs: MIN_RETRY_BACKOFF_MS, timeoutMs: 10_000, ...options });
  try {
    await body(client, server);
  } finally {
    client.close();
    await server.close();
  }
}

async function rejectsWithCode(promise: Promise<unknown>, code: status): Promise<void> {
  await assert.rejects(promise, (error: unknown) => isServiceError(error) && error.code === code);
}

describe("retries on UNAVAILABLE", () => {
  it(`tries ${DEFAULT_RETRY_ATTEMPTS} times by default: Validate and Mint succeed after 2 failures`, async () => {
    await withFlaky(DEFAULT_RETRY_ATTEMPTS - 1, {}, async (client, server) => {
      assert.equal((await client.validate("t")).userId, "alice");
      assert.equal((await client.mint("alice")).token, "minted");
      assert.deepEqual(server.attempts, { validate: DEFAULT_RETRY_ATTEMPTS, mint: DEFAULT_RETRY_ATTEMPTS, revoke: 0 });
    });
  });

  it("retries Revoke too: it is idempotent", async () => {
    await withFlaky(DEFAULT_RETRY_ATTEMPTS - 1, {}, async (client, server) => {
      assert.deepEqual(await client.revokeToken("", "jti-1", FLAKY_KEPT_UNTIL), FLAKY_KEPT_UNTIL);
      assert.equal(server.attempts.revoke, DEFAULT_RETRY_ATTEMPTS);
    });
  });

  it("gives up with UNAVAILABLE after the last attempt", async () => {
    await withFlaky(DEFAULT_RETRY_ATTEMPTS, {}, async (client, server) => {
      await rejectsWithCode(client.validate("t"), status.UNAVAILABLE);
      assert.equal(server.attempts.validate, DEFAULT_RETRY_ATTEMPTS);
    });
  });

  it("follows retryAttempts, up to gRPC's limit of 5", async () => {
    await withFlaky(MAX_RETRY_ATTEMPTS - 1, { retryAttempts: MAX_RETRY_ATTEMPTS }, async (client, server) => {
      assert.equal((await client.validate("t")).valid, true);
      assert.equal(server.attempts.validate, MAX_RETRY_ATTEMPTS);
    });
  });

  it("tries once with retryAttempts: 1", async () => {
    await withFlaky(1, { retryAttempts: 1 }, async (client, server) => {
      await rejectsWithCode(client.mint("alice"), status.UNAVAILABLE);
      assert.equal(server.attempts.mint, 1);
    });
  });

  it("never retries another code", async () => {
    await withFlaky(
      1,
      {},
      async (client, server) => {
        await rejectsWithCode(client.mint("alice"), status.PERMISSION_DENIED);
        assert.equal(server.attempts.mint, 1);
      },
      status.PERMISSION_DENIED,
    );
  });

  it("refuses out-of-range retry options", () => {
    for (const retryAttempts of [0, 6, 2.5, Number.NaN]) {
      assert.throws(() => new AuthClient("127.0.0.1:1", { retryAttempts }), RangeError);
    }
    for (const retryBackoffMs of [0, -1, 5, Number.POSITIVE_INFINITY]) {
      assert.throws(() => new AuthClient("127.0.0.1:1", { retryBackoffMs }), RangeError);
    }
    new AuthClient("127.0.0.1:1", { retryAttempts: 1, retryBackoffMs: 0 }).close();
  });

  it("sends the policy the Go and Python clients send", () => {
    assert.deepEqual(retryServiceConfig(3, 100), {
      methodConfig: [
        {
          name: [{ service: "authsidecar.v1.AuthService" }],
          retryPolicy: {
            maxAttempts: 3,
            initialBackoff: "0.100s",
            maxBackoff: "1.000s",
            backoffMultiplier: 2,
            retryableStatusCodes: ["UNAVAILABLE"],
          },
        },
      ],
    });
    assert.deepEqual(retryServiceConfig(1, 100), {});
  });
});
