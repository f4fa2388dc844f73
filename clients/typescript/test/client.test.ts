/** AuthClient against live sidecars: TCP and Unix socket, Mint in both modes, errors, deadlines. */
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import { after, before, describe, it } from "node:test";

import { AuthClient, DEFAULT_TIMEOUT_MS, Reason, isServiceError, status, type ServiceError } from "../src";
import {
  HS_KEY_FILE,
  MINT_SECRET,
  type Sidecar,
  payloadOf,
  shortTmpDir,
  silentServer,
  startSidecar,
  unsignedToken,
} from "../testing/sidecar";

const INSECURE = { AUTH_MODE: "insecure" };
const SECURE_HS256 = {
  AUTH_MODE: "secure",
  AUTH_JWT_ALG: "HS256",
  AUTH_JWT_KEY_FILE: HS_KEY_FILE,
  SIDECAR_MINT_SECRET: MINT_SECRET,
};

/** Asserts that `promise` rejects with a grpc-js ServiceError of `code`; returns the error. */
async function rejectsWith(promise: Promise<unknown>, code: status): Promise<ServiceError> {
  let caught: unknown;
  await promise.then(
    () => assert.fail(`expected ${status[code]}, but the call succeeded`),
    (error: unknown) => {
      caught = error;
    },
  );
  assert.ok(isServiceError(caught), `a ServiceError, not ${String(caught)}`);
  assert.equal(status[caught.code], status[code], caught.details);
  return caught;
}

/** Starts sidecars in `before` and stops them (asserting a clean exit) in `after`. */
function sidecarsFor(...starts: (() => Promise<Sidecar>)[]): Sidecar[] {
  const sidecars: Sidecar[] = [];
  before(async () => {
    sidecars.push(...(await Promise.all(starts.map((start) => start()))));
  });
  after(async () => {
    for (const sidecar of sidecars) {
      assert.deepEqual(await sidecar.stop(), { code: 0, signal: null }, sidecar.log.join("\n"));
    }
  });
  return sidecars;
}

describe("insecure sidecar, over TCP and a Unix socket", () => {
  const dir = shortTmpDir();
  const sidecars = sidecarsFor(
    () => startSidecar(INSECURE),
    () => startSidecar(INSECURE, `unix:${dir}/auth.sock`),
  );
  let tcp: AuthClient;
  let unix: AuthClient;
  before(() => {
    assert.match(sidecars[0].address, /^127\.0\.0\.1:\d+$/);
    assert.equal(sidecars[1].address, `unix:${dir}/auth.sock`);
    tcp = new AuthClient(sidecars[0].address);
    unix = new AuthClient(sidecars[1].address);
  });
  after(() => {
    tcp.close();
    unix.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const transport of ["TCP", "Unix socket"]) {
    it(`validates a token over ${transport}`, async () => {
      const client = transport === "TCP" ? tcp : unix;
      const exp = Math.floor(Date.now() / 1000) + 3600;
      const decision = await client.validate(unsignedToken({ sub: "alice", exp, role: "admin", n: 3, nested: { a: [1, "x", null] } }));
      assert.deepEqual(decision, {
        valid: true,
        userId: "alice",
        claims: { sub: "alice", exp, role: "admin", n: 3, nested: { a: [1, "x", null] } },
        reason: Reason.UNSPECIFIED,
        message: "",
        expiresAt: new Date(exp * 1000),
      });
    });
  }

  it("resolves a refused token as a decision, never a rejection", async () => {
    const past = Math.floor(Date.now() / 1000) - 3600;
    assert.deepEqual(await tcp.validate(unsignedToken({ sub: "alice", exp: past })), {
      valid: false,
      userId: "",
      claims: {},
      reason: "REASON_EXPIRED",
      message: "Expired token",
    });
    const empty = await tcp.validate("");
    assert.equal(empty.valid, false);
    assert.equal(empty.reason, Reason.MALFORMED);
    assert.equal(empty.message, "Invalid token");
  });

  it("mints an unsigned token that validates, with claims and ttl", async () => {
    const before = Date.now();
    const minted = await tcp.mint("bob", { claims: { role: "reader", tenant: { id: 7 } }, ttlSeconds: 60 });
    assert.ok(minted.expiresAt instanceof Date);
    const ttl = minted.expiresAt.getTime() - before;
    assert.ok(ttl > 55_000 && ttl <= 61_000, `expires in about 60 s, not ${ttl} ms`);
    assert.equal(minted.token.split(".")[2], "", "insecure tokens are unsigned");
    const decision = await unix.validate(minted.token);
    assert.equal(decision.valid, true);
    assert.equal(decision.userId, "bob");
    assert.deepEqual(decision.claims.tenant, { id: 7 });
    assert.equal(decision.claims.role, "reader");
    assert.deepEqual(decision.expiresAt, minted.expiresAt);
  });

  it("mints without ttl: insecure tokens then have no exp", async () => {
    const minted = await tcp.mint("carol");
    assert.equal(minted.expiresAt, undefined);
    assert.equal(payloadOf(minted.token).exp, undefined);
    assert.equal((await tcp.validate(minted.token)).userId, "carol");
  });

  it("rejects a refused Mint with its status code: blank user, reserved claim", async () => {
    await rejectsWith(tcp.mint("  "), status.INVALID_ARGUMENT);
    await rejectsWith(tcp.mint("dave", { claims: { sub: "eve" } }), status.INVALID_ARGUMENT);
  });

  it("rejects a non-finite ttl or timeout before sending anything", async () => {
    await assert.rejects(tcp.mint("dave", { ttlSeconds: Number.NaN }), RangeError);
    await assert.rejects(tcp.mint("dave", { ttlSeconds: 1e300 }), RangeError);
    await assert.rejects(tcp.validate("x", { timeoutMs: 0 }), RangeError);
    assert.throws(() => new AuthClient("127.0.0.1:1", { timeoutMs: Number.POSITIVE_INFINITY }), RangeError);
  });

  it("handles concurrent calls on one channel", async () => {
    const users = Array.from({ length: 50 }, (_, i) => `user-${i}`);
    const decisions = await Promise.all(users.map((sub) => tcp.validate(unsignedToken({ sub }))));
    assert.deepEqual(
      decisions.map((d) => d.userId),
      users,
    );
  });
});

describe("secure HS256 sidecar with SIDECAR_MINT_SECRET", () => {
  const sidecars = sidecarsFor(
    () => startSidecar(SECURE_HS256),
    () => startSidecar({ AUTH_MODE: "secure", AUTH_JWT_ALG: "HS256", AUTH_JWT_KEY_FILE: HS_KEY_FILE }),
  );
  let client: AuthClient;
  let noMint: AuthClient;
  before(() => {
    client = new AuthClient(sidecars[0].address);
    noMint = new AuthClient(sidecars[1].address);
  });
  after(() => {
    client.close();
    noMint.close();
  });

  it("mints a signed token with the secret, and it validates", async () => {
    const before = Date.now();
    const minted = await client.mint("alice", { mintSecret: MINT_SECRET, claims: { scope: "sync" } });
    const header = JSON.parse(Buffer.from(minted.token.split(".")[0], "base64url").toString());
    assert.equal(header.alg, "HS256");
    assert.ok(minted.expiresAt);
    const ttl = minted.expiresAt.getTime() - before;
    assert.ok(ttl > 895_000 && ttl <= 901_000, `the default ttl is 15 minutes, not ${ttl} ms`);
    const decision = await client.validate(minted.token);
    assert.equal(decision.valid, true, decision.message);
    assert.equal(decision.userId, "alice");
    assert.equal(decision.reason, Reason.UNSPECIFIED);
    assert.equal(decision.claims.scope, "sync");
    assert.equal(typeof decision.claims.iat, "number");
    assert.deepEqual(decision.expiresAt, minted.expiresAt);
  });

  it("refuses an unsigned token in secure mode", async () => {
    const decision = await client.validate(unsignedToken({ sub: "alice" }));
    assert.equal(decision.valid, false);
    assert.equal(decision.reason, Reason.ALGORITHM_MISMATCH);
    assert.equal(decision.message, "Signing algorithm mismatch");
  });

  it("rejects Mint without the secret: UNAUTHENTICATED", async () => {
    await rejectsWith(client.mint("alice"), status.UNAUTHENTICATED);
  });

  it("rejects Mint with a wrong secret: PERMISSION_DENIED", async () => {
    await rejectsWith(client.mint("alice", { mintSecret: MINT_SECRET + "x" }), status.PERMISSION_DENIED);
  });

  it("rejects Mint when the sidecar has no mint secret: FAILED_PRECONDITION", async () => {
    await rejectsWith(noMint.mint("alice", { mintSecret: MINT_SECRET }), status.FAILED_PRECONDITION);
  });

  it("rejects a ttl beyond the sidecar's maximum: INVALID_ARGUMENT", async () => {
    await rejectsWith(client.mint("alice", { mintSecret: MINT_SECRET, ttlSeconds: 86_401 }), status.INVALID_ARGUMENT);
  });
});

describe("deadlines and transport failures", () => {
  let silent: Awaited<ReturnType<typeof silentServer>>;
  before(async () => {
    silent = await silentServer();
  });
  after(async () => {
    await silent.close();
  });

  it(`applies the default deadline (${DEFAULT_TIMEOUT_MS} ms) against a server that never answers`, async () => {
    const client = new AuthClient(silent.address);
    try {
      const started = performance.now();
      await rejectsWith(client.validate("token"), status.DEADLINE_EXCEEDED);
      const elapsed = performance.now() - started;
      assert.ok(elapsed >= DEFAULT_TIMEOUT_MS - 50 && elapsed < DEFAULT_TIMEOUT_MS + 1000, `took ${elapsed} ms`);
    } finally {
      client.close();
    }
  });

  it("applies a per-client and a per-call deadline to Validate and Mint", async () => {
    const client = new AuthClient(silent.address, { timeoutMs: 300 });
    try {
      let started = performance.now();
      await rejectsWith(client.mint("alice"), status.DEADLINE_EXCEEDED);
      let elapsed = performance.now() - started;
      assert.ok(elapsed >= 250 && elapsed < 1300, `client timeout: took ${elapsed} ms`);
      started = performance.now();
      await rejectsWith(client.validate("token", { timeoutMs: 100 }), status.DEADLINE_EXCEEDED);
      elapsed = performance.now() - started;
      assert.ok(elapsed >= 50 && elapsed < 1100, `call timeout: took ${elapsed} ms`);
    } finally {
      client.close();
    }
  });

  it("rejects with UNAVAILABLE when nothing listens", async () => {
    const dir = shortTmpDir();
    const client = new AuthClient(`unix:${dir}/nobody.sock`);
    try {
      await rejectsWith(client.validate("token"), status.UNAVAILABLE);
    } finally {
      client.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("close()", () => {
  const sidecars = sidecarsFor(() => startSidecar(INSECURE));

  it("closes the channel: later calls reject, and closing twice is harmless", async () => {
    const client = new AuthClient(sidecars[0].address);
    assert.equal((await client.validate(unsignedToken({ sub: "a" }))).userId, "a");
    client.close();
    await assert.rejects(client.validate(unsignedToken({ sub: "a" })), /Channel has been shut down/);
    await assert.rejects(client.mint("a"), /Channel has been shut down/);
    client.close();
  });

  it("fails a call that has not started yet with UNAVAILABLE", async () => {
    const client = new AuthClient(sidecars[0].address);
    const pending = client.validate(unsignedToken({ sub: "b" })); // still connecting
    client.close();
    await rejectsWith(pending, status.UNAVAILABLE);
  });
});
