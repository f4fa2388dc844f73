/** AuthClient's revokeToken, revokeUser and revokeIssuer against live sidecars with an embedded store. */
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import { after, before, describe, it } from "node:test";

import { AuthClient, Reason, isServiceError, status } from "../src";
import { HS_KEY_FILE, MINT_SECRET, type Sidecar, shortTmpDir, startSidecar, unsignedToken } from "../testing/sidecar";

/** SIDECAR_ADMIN_SECRET needs 32+ bytes, like the mint secret. */
const ADMIN_SECRET = "admin-secret-" + "a".repeat(32);
const HOUR_MS = 3_600_000;

/** Asserts that `promise` rejects with a grpc-js ServiceError of `code`. */
async function rejectsWith(promise: Promise<unknown>, code: status): Promise<void> {
  let caught: unknown;
  await promise.then(
    () => assert.fail(`expected ${status[code]}, but the call succeeded`),
    (error: unknown) => {
      caught = error;
    },
  );
  assert.ok(isServiceError(caught), `a ServiceError, not ${String(caught)}`);
  assert.equal(status[caught.code], status[code], caught.details);
}

async function assertRevoked(client: AuthClient, token: string): Promise<void> {
  const decision = await client.validate(token);
  assert.equal(decision.valid, false);
  assert.equal(decision.reason, Reason.REVOKED);
  assert.equal(decision.reason, "REASON_REVOKED");
  assert.equal(decision.message, "Token has been revoked");
}

async function assertValid(client: AuthClient, token: string): Promise<void> {
  const decision = await client.validate(token);
  assert.equal(decision.valid, true, `${decision.reason}: ${decision.message}`);
}

/** Starts a sidecar with `env` and a fresh SIDECAR_STATE_DIR in `before`; stops it in `after`. */
function sidecarWithStore(env: Record<string, string>): { sidecar?: Sidecar; client?: AuthClient } {
  const state = shortTmpDir();
  const running: { sidecar?: Sidecar; client?: AuthClient } = {};
  before(async () => {
    running.sidecar = await startSidecar({ ...env, SIDECAR_STATE_DIR: state });
    running.client = new AuthClient(running.sidecar.address);
  });
  after(async () => {
    running.client?.close();
    if (running.sidecar) {
      assert.deepEqual(await running.sidecar.stop(), { code: 0, signal: null }, running.sidecar.log.join("\n"));
    }
    fs.rmSync(state, { recursive: true, force: true });
  });
  return running;
}

describe("revoke, insecure sidecar with SIDECAR_STATE_DIR", () => {
  const running = sidecarWithStore({ AUTH_MODE: "insecure" });
  const client = (): AuthClient => running.client!;
  const now = Math.floor(Date.now() / 1000);
  const exp = now + 3600;

  it("revokes a token by iss and jti: Validate then says REASON_REVOKED", async () => {
    const iss = "https://issuer.test";
    const revoked = unsignedToken({ jti: "tok-1", sub: "alice", iss, exp });
    const sibling = unsignedToken({ jti: "tok-2", sub: "alice", iss, exp });
    const otherIssuer = unsignedToken({ jti: "tok-1", sub: "alice", exp });
    await assertValid(client(), revoked);
    const keptUntil = await client().revokeToken(iss, "tok-1", new Date(exp * 1000));
    assert.ok(keptUntil instanceof Date);
    const extra = keptUntil.getTime() - exp * 1000;
    assert.ok(extra >= 0 && extra <= 600_000, `kept until exp plus the clock skew, not ${extra} ms more`);
    await assertRevoked(client(), revoked);
    await assertValid(client(), sibling);
    await assertValid(client(), otherIssuer);
    // Again: harmless.
    await client().revokeToken(iss, "tok-1", new Date(exp * 1000));
    await assertRevoked(client(), revoked);
  });

  it("revokes a user's tokens issued before now, and those without iat", async () => {
    const issued = unsignedToken({ sub: "bob", iat: now - 60 });
    const noIat = unsignedToken({ sub: "bob" });
    const otherUser = unsignedToken({ sub: "carol", iat: now - 60 });
    await assertValid(client(), issued);
    assert.equal(await client().revokeUser("", "bob"), undefined);
    await assertRevoked(client(), issued);
    await assertRevoked(client(), noIat);
    await assertValid(client(), otherUser);
  });

  it("revokes a user's tokens issued before an explicit notBefore only", async () => {
    const old = unsignedToken({ sub: "dave", iat: now - 7200 });
    const recent = unsignedToken({ sub: "dave", iat: now - 60 });
    await client().revokeUser("", "dave", { notBefore: new Date(Date.now() - HOUR_MS) });
    await assertRevoked(client(), old);
    await assertValid(client(), recent);
  });

  it("revokes an issuer's tokens", async () => {
    const iss = "https://compromised.test";
    const old = unsignedToken({ sub: "erin", iss, iat: now - 60 });
    const elsewhere = unsignedToken({ sub: "erin", iss: "https://fine.test", iat: now - 60 });
    await client().revokeIssuer(iss);
    await assertRevoked(client(), old);
    await assertValid(client(), elsewhere);
  });

  it("rejects a bad request with INVALID_ARGUMENT", async () => {
    await rejectsWith(client().revokeToken("", "  ", new Date(exp * 1000)), status.INVALID_ARGUMENT);
    await rejectsWith(client().revokeToken("", "tok-3", new Date(Date.now() - HOUR_MS)), status.INVALID_ARGUMENT);
    await rejectsWith(client().revokeUser("", " "), status.INVALID_ARGUMENT);
    await rejectsWith(
      client().revokeIssuer("", { notBefore: new Date(Date.now() + 2 * 366 * 24 * HOUR_MS) }),
      status.INVALID_ARGUMENT,
    );
  });

  it("rejects an invalid Date or timeout before sending anything", async () => {
    await assert.rejects(client().revokeToken("", "tok-3", new Date(Number.NaN)), RangeError);
    await assert.rejects(client().revokeUser("", "bob", { notBefore: new Date("nope") }), RangeError);
    await assert.rejects(client().revokeIssuer("", { timeoutMs: 0 }), RangeError);
  });
});

describe("revoke without a revocation store", () => {
  let sidecar: Sidecar;
  let client: AuthClient;
  before(async () => {
    sidecar = await startSidecar({ AUTH_MODE: "insecure" });
    client = new AuthClient(sidecar.address);
  });
  after(async () => {
    client.close();
    assert.deepEqual(await sidecar.stop(), { code: 0, signal: null }, sidecar.log.join("\n"));
  });

  it("rejects with FAILED_PRECONDITION", async () => {
    await rejectsWith(client.revokeToken("", "tok-1", new Date(Date.now() + HOUR_MS)), status.FAILED_PRECONDITION);
  });
});

describe("revoke, secure HS256 sidecar with SIDECAR_ADMIN_SECRET", () => {
  const running = sidecarWithStore({
    AUTH_MODE: "secure",
    AUTH_JWT_ALG: "HS256",
    AUTH_JWT_KEY_FILE: HS_KEY_FILE,
    SIDECAR_MINT_SECRET: MINT_SECRET,
    SIDECAR_ADMIN_SECRET: ADMIN_SECRET,
  });
  const client = (): AuthClient => running.client!;
  const exp = new Date(Date.now() + HOUR_MS);

  it("rejects Revoke without the secret: UNAUTHENTICATED", async () => {
    await rejectsWith(client().revokeToken("", "tok-1", exp), status.UNAUTHENTICATED);
  });

  it("rejects Revoke with a wrong secret, or the mint secret: PERMISSION_DENIED", async () => {
    await rejectsWith(client().revokeUser("", "alice", { adminSecret: ADMIN_SECRET + "x" }), status.PERMISSION_DENIED);
    await rejectsWith(client().revokeIssuer("", { adminSecret: MINT_SECRET }), status.PERMISSION_DENIED);
  });

  it("revokes a minted token with the secret", async () => {
    const minted = await client().mint("alice", { mintSecret: MINT_SECRET, claims: { jti: "minted-1" } });
    assert.ok(minted.expiresAt);
    await assertValid(client(), minted.token);
    await client().revokeToken("", "minted-1", minted.expiresAt, { adminSecret: ADMIN_SECRET });
    await assertRevoked(client(), minted.token);
  });
});
