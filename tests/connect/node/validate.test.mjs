// AuthService over the Connect protocol, called by Connect's own Node client
// (@connectrpc/connect-node) with the schema loaded at run time from a FileDescriptorSet: no
// generated code of this project's is involved, only the proto as the sidecar serves it.
//
// tests/test_connect_clients.py starts an insecure sidecar with SIDECAR_HTTP_API_LISTEN and runs
// this file with `node --test`, passing:
//   SIDECAR_URL         the HTTP API, e.g. http://127.0.0.1:8081
//   SIDECAR_DESCRIPTORS a FileDescriptorSet of authsidecar/v1/auth.proto and its imports
//   GOOD_TOKEN          an unsigned token for user alice with the claim role=admin
import * as assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";

import { createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";

const { SIDECAR_URL, SIDECAR_DESCRIPTORS, GOOD_TOKEN } = process.env;
if (!SIDECAR_URL || !SIDECAR_DESCRIPTORS || !GOOD_TOKEN) {
  throw new Error("set SIDECAR_URL, SIDECAR_DESCRIPTORS and GOOD_TOKEN; tests/test_connect_clients.py does");
}
const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(SIDECAR_DESCRIPTORS)));
const service = registry.getService("authsidecar.v1.AuthService");
assert.ok(service, "the descriptor set has no authsidecar.v1.AuthService");

for (const useBinaryFormat of [false, true]) {
  const client = createClient(
    service,
    createConnectTransport({ baseUrl: SIDECAR_URL, httpVersion: "1.1", useBinaryFormat }),
  );
  describe(`AuthService over Connect, ${useBinaryFormat ? "application/proto" : "application/json"}`, () => {
    it("validates a good token", async () => {
      const decision = await client.validate({ token: GOOD_TOKEN });
      assert.equal(decision.valid, true);
      assert.equal(decision.userId, "alice");
      assert.equal(decision.claims.role, "admin");
      assert.equal(decision.reason, 0);
    });

    it("refuses a bad token as a decision, with Electric's wording", async () => {
      const decision = await client.validate({ token: "not-a-token" });
      assert.equal(decision.valid, false);
      assert.equal(decision.userId, "");
      assert.equal(service.method.validate.output.field.reason.enum.value[decision.reason].name, "REASON_MALFORMED");
      assert.equal(decision.message, "Invalid token");
    });

    it("mints an insecure development token that then validates", async () => {
      const minted = await client.mint({ userId: "bob", claims: { team: "blue" }, ttl: { seconds: 60n } });
      assert.match(minted.token, /^[\w-]+\.[\w-]+\.$/);
      const decision = await client.validate({ token: minted.token });
      assert.equal(decision.userId, "bob");
      assert.equal(decision.claims.team, "blue");
    });

    it("gets INVALID_ARGUMENT as a ConnectError for a blank user id", async () => {
      await assert.rejects(client.mint({ userId: " " }), (error) => {
        assert.ok(error instanceof ConnectError, String(error));
        assert.equal(error.code, Code.InvalidArgument);
        return true;
      });
    });
  });
}

describe("AuthService with plain fetch(), as an edge function would call it", () => {
  it("validates with a JSON POST and reads a Connect error", async () => {
    const post = (method, body) =>
      fetch(`${SIDECAR_URL}/authsidecar.v1.AuthService/${method}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    const ok = await post("Validate", { token: GOOD_TOKEN });
    assert.equal(ok.status, 200);
    const decision = await ok.json();
    assert.equal(decision.valid, true);
    assert.equal(decision.userId, "alice");
    const refused = await post("Mint", { userId: " " });
    assert.equal(refused.status, 400);
    assert.equal((await refused.json()).code, "invalid_argument");
  });
});
