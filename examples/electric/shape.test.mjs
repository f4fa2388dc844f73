// Electric's own TypeScript client, `@electric-sql/client`'s ShapeStream, syncing through a proxy
// that asks auth-sidecar (Envoy's Check, or Caddy's forward_auth) with a shape-scoped token from
// the gatekeeper (examples/gatekeeper).
//
// tests/test_electric.py starts the whole stack (sidecar with SIDECAR_SHAPE_CLAIM=shape, the
// gatekeeper, a real Envoy running examples/envoy/envoy.yaml or a real Caddy running
// examples/forward-auth/Caddyfile, a stand-in for Electric) and runs this file with
// `node --test`, passing:
//   ELECTRIC_URL    the shape endpoint through the proxy, e.g. http://127.0.0.1:10000/v1/shape
//   GATEKEEPER_URL  the gatekeeper, e.g. http://127.0.0.1:4000
import * as assert from "node:assert/strict";
import { describe, it } from "node:test";

import { FetchError, ShapeStream } from "@electric-sql/client";

const { ELECTRIC_URL, GATEKEEPER_URL } = process.env;
if (!ELECTRIC_URL || !GATEKEEPER_URL) {
  throw new Error("set ELECTRIC_URL and GATEKEEPER_URL; tests/test_electric.py does");
}
const TIMEOUT_MS = 20_000;

/** Asks the gatekeeper for `user`'s token and shape, as an app's client would. */
async function gatekeeper(user) {
  const response = await fetch(`${GATEKEEPER_URL}/gatekeeper/items`, {
    method: "POST",
    headers: { "x-demo-user": user },
  });
  assert.equal(response.status, 200);
  return response.json();
}

/**
 * Runs a ShapeStream until `enough(rows)` holds or the stream fails; then aborts it.
 * Resolves with the rows seen (by key) and the error, if any.
 */
function sync(params, headers, enough = () => false) {
  const aborter = new AbortController();
  const rows = new Map();
  return new Promise((resolve) => {
    const finish = (error) => {
      aborter.abort();
      resolve({ rows, error });
    };
    const stream = new ShapeStream({
      url: ELECTRIC_URL,
      params,
      headers,
      signal: aborter.signal,
      onError: (error) => finish(error), // returning nothing: stop, do not retry
    });
    stream.subscribe(
      (messages) => {
        for (const message of messages) {
          if (message.headers.operation === "insert") rows.set(message.key, message.value);
        }
        if (enough(rows)) finish(undefined);
      },
      (error) => finish(error),
    );
  });
}

describe("ShapeStream through a proxy and auth-sidecar", () => {
  it("syncs the token's shape: the initial rows, then live polls", { timeout: TIMEOUT_MS }, async () => {
    const { token, params } = await gatekeeper("alice");
    const { rows, error } = await sync(params, { Authorization: `Bearer ${token}` }, (r) => r.size === 3);
    assert.equal(error, undefined, String(error));
    assert.deepEqual([...rows.values()], [
      { id: 1, title: "first" },
      { id: 2, title: "second" },
      { id: 3, title: "third" },
    ]);
  });

  const mismatches = {
    table: { table: "secrets" },
    where: { where: "owner = $1 or true" },
    columns: { columns: ["id", "title", "owner"] },
    params: { params: ["bob"] },
  };
  for (const [field, change] of Object.entries(mismatches)) {
    it(`gets 403 for another ${field}, surfaced as a FetchError`, { timeout: TIMEOUT_MS }, async () => {
      const { token, params } = await gatekeeper("alice");
      const { rows, error } = await sync({ ...params, ...change }, { Authorization: `Bearer ${token}` });
      assert.equal(rows.size, 0);
      assert.ok(error instanceof FetchError, String(error));
      assert.equal(error.status, 403);
      assert.deepEqual(error.json, {
        error: "forbidden",
        reason: "REASON_SHAPE_MISMATCH",
        message: `Shape mismatch: the request's "${field}" is not the "shape" claim's`,
      });
    });
  }

  it("gets 401 without a token", { timeout: TIMEOUT_MS }, async () => {
    const { params } = await gatekeeper("alice");
    const { error } = await sync(params, {});
    assert.ok(error instanceof FetchError, String(error));
    assert.equal(error.status, 401);
    assert.equal(error.json.error, "missing_token");
  });
});
