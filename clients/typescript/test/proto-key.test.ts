/**
 * A claim named `__proto__` round-trips, at the top level and nested, through Validate's claims
 * and Mint's claims, against live sidecars (insecure, and secure with a mint secret).
 */
import * as assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { AuthClient } from "../src";
import { HS_KEY_FILE, MINT_SECRET, type Sidecar, payloadOf, startSidecar, unsignedToken } from "../testing/sidecar";

/** `__proto__` as an own key at every depth, as JSON.parse makes it (a literal would set the prototype). */
const TRICKY = JSON.parse(
  '{"__proto__": {"role": "admin", "__proto__": [1, {"__proto__": "deepest"}]}, "list": [{"__proto__": null}]}',
) as Record<string, unknown>;

/** Asserts that `claims` holds TRICKY's keys as own properties, with plain prototypes throughout. */
function assertTricky(claims: Record<string, unknown>): void {
  const top = Object.getOwnPropertyDescriptor(claims, "__proto__")?.value as Record<string, unknown>;
  assert.ok(top, "top-level __proto__ is an own property");
  assert.equal(Object.getPrototypeOf(claims), Object.prototype, "the prototype is untouched");
  assert.equal(top.role, "admin");
  const nested = Object.getOwnPropertyDescriptor(top, "__proto__")?.value as unknown[];
  assert.ok(Array.isArray(nested), "nested __proto__ is an own property");
  assert.equal(nested[0], 1);
  assert.equal(Object.getOwnPropertyDescriptor(nested[1], "__proto__")?.value, "deepest");
  const inList = (claims.list as Record<string, unknown>[])[0];
  assert.ok(Object.hasOwn(inList, "__proto__"));
  assert.equal(Object.getOwnPropertyDescriptor(inList, "__proto__")?.value, null);
  assert.deepStrictEqual(claims, TRICKY);
}

/** `claims` without the sidecar's own claims (`user_id` and the times). */
function extra(claims: Record<string, unknown>): Record<string, unknown> {
  const out = { ...claims }; // spreading keeps an own `__proto__` as an own property
  for (const key of ["user_id", "iat", "nbf", "exp"]) delete out[key];
  return out;
}

describe("a claim named __proto__", () => {
  let insecure!: Sidecar;
  let secure!: Sidecar;
  before(async () => {
    [insecure, secure] = await Promise.all([
      startSidecar({ AUTH_MODE: "insecure" }),
      startSidecar({
        AUTH_MODE: "secure",
        AUTH_JWT_ALG: "HS256",
        AUTH_JWT_KEY_FILE: HS_KEY_FILE,
        SIDECAR_MINT_SECRET: MINT_SECRET,
      }),
    ]);
  });
  after(async () => {
    for (const sidecar of [insecure, secure]) {
      if (sidecar !== undefined) assert.deepEqual(await sidecar.stop(), { code: 0, signal: null }, sidecar.log.join("\n"));
    }
  });

  it("comes back in Validate's claims, top level and nested", async () => {
    const client = new AuthClient(insecure.address);
    try {
      const decision = await client.validate(unsignedToken({ sub: "alice", ...TRICKY }));
      assert.equal(decision.valid, true, decision.message);
      const { sub, ...rest } = decision.claims;
      assert.equal(sub, "alice");
      assertTricky(rest);
    } finally {
      client.close();
    }
  });

  it("reaches the token through Mint's claims, and validates back", async () => {
    const client = new AuthClient(secure.address);
    try {
      const minted = await client.mint("bob", { claims: TRICKY, mintSecret: MINT_SECRET, ttlSeconds: 60 });
      const payload = payloadOf(minted.token);
      assert.deepEqual(
        [payload.user_id, typeof payload.iat, typeof payload.nbf, typeof payload.exp],
        ["bob", "number", "number", "number"],
      );
      assertTricky(extra(payload));
      const decision = await client.validate(minted.token);
      assert.equal(decision.valid, true, decision.message);
      assert.equal(decision.userId, "bob");
      assertTricky(extra(decision.claims));
    } finally {
      client.close();
    }
  });

  it("refuses claims that are not JSON values before sending, with a TypeError", async () => {
    const client = new AuthClient(insecure.address);
    try {
      await assert.rejects(client.mint("bob", { claims: { bad: undefined } }), TypeError);
      await assert.rejects(client.mint("bob", { claims: { bad: () => 1 } }), TypeError);
      await assert.rejects(client.mint("bob", { claims: { nested: { bad: 10n } } }), TypeError);
    } finally {
      client.close();
    }
  });
});
