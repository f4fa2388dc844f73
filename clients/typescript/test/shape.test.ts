/** `mint(userId, { shape })`: Electric's gatekeeper claim, checked by a live sidecar. */
import * as assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import * as grpc from "@grpc/grpc-js";

import { AuthClient, Reason, SHAPE_CLAIM } from "../src";
import { AuthServiceClient, type ValidateRequest, type ValidateResponse } from "../src/gen/authsidecar/v1/auth";
import { type Sidecar, startSidecar } from "../testing/sidecar";

describe("mint with a shape", () => {
  let sidecar: Sidecar;
  let client: AuthClient;
  let raw: AuthServiceClient;
  before(async () => {
    sidecar = await startSidecar({ AUTH_MODE: "insecure", SIDECAR_SHAPE_CLAIM: "shape" });
    client = new AuthClient(sidecar.address);
    raw = new AuthServiceClient(sidecar.address, grpc.credentials.createInsecure());
  });
  after(async () => {
    client.close();
    raw.close();
    assert.deepEqual(await sidecar.stop(), { code: 0, signal: null }, sidecar.log.join("\n"));
  });

  function validate(request: ValidateRequest): Promise<ValidateResponse> {
    return new Promise((resolve, reject) => {
      raw.validate(request, (error, response) => (error ? reject(error) : resolve(response)));
    });
  }

  it("writes the shape claim next to other claims, and the sidecar enforces it", async () => {
    const shape = { table: "items", where: "owner = $1", columns: ["id", "title"], params: ["alice"] };
    const minted = await client.mint("alice", { shape, claims: { role: "reader" } });
    const decision = await client.validate(minted.token);
    assert.deepEqual(decision.claims[SHAPE_CLAIM], shape);
    assert.equal(decision.claims.role, "reader");
    const request = { table: "items", where: "owner = $1", columns: ["title", "id"] };
    const ok = await validate({ token: minted.token, shape: { ...request, params: ["alice"] } });
    assert.equal(ok.valid, true);
    const other = await validate({ token: minted.token, shape: { ...request, params: ["bob"] } });
    assert.equal(other.valid, false);
    assert.equal(other.reason, 9);
    assert.equal(Reason.SHAPE_MISMATCH, "REASON_SHAPE_MISMATCH");
  });
});
