/**
 * The shared conformance vectors (tests/vectors/vectors.json at the repository root), against one
 * live sidecar per configuration. Python and Go run the same file; all clients must agree.
 */
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";

import { AuthClient } from "../src";
import { REPO_ROOT, type Sidecar, absoluteEnv, startSidecar } from "../testing/sidecar";

interface Expect {
  valid: boolean;
  user_id: string;
  reason: string;
  message: string;
}

interface Vectors {
  configs: Record<string, Record<string, string>>;
  vectors: { name: string; config: string; token: string; expect: Expect }[];
}

const FILE = path.join(REPO_ROOT, "tests", "vectors", "vectors.json");
const VECTORS: Vectors = JSON.parse(fs.readFileSync(FILE, "utf8"));

describe(`conformance vectors (${VECTORS.vectors.length} in ${path.relative(REPO_ROOT, FILE)})`, () => {
  const sidecars = new Map<string, Sidecar>();
  const clients = new Map<string, AuthClient>();
  let ran = 0;

  before(async () => {
    const names = Object.keys(VECTORS.configs);
    const started = await Promise.allSettled(names.map((name) => startSidecar(absoluteEnv(VECTORS.configs[name]))));
    started.forEach((result, i) => {
      if (result.status === "fulfilled") {
        sidecars.set(names[i], result.value);
        clients.set(names[i], new AuthClient(result.value.address));
      }
    });
    const failed = started.flatMap((result, i) => (result.status === "rejected" ? [`${names[i]}: ${result.reason}`] : []));
    assert.deepEqual(failed, [], "every configuration's sidecar starts");
  });

  after(async () => {
    for (const client of clients.values()) client.close();
    const exits = await Promise.all([...sidecars.values()].map((sidecar) => sidecar.stop()));
    for (const exit of exits) assert.deepEqual(exit, { code: 0, signal: null }, "SIGTERM drains and exits 0");
  });

  for (const vector of VECTORS.vectors) {
    it(vector.name, async () => {
      const client = clients.get(vector.config);
      assert.ok(client, `configuration ${vector.config} exists`);
      const decision = await client.validate(vector.token);
      const got: Expect = {
        valid: decision.valid,
        user_id: decision.userId,
        reason: decision.reason, // already the proto enum name, e.g. REASON_EXPIRED
        message: decision.message,
      };
      assert.deepEqual(got, vector.expect);
      if (!decision.valid) {
        assert.deepEqual(decision.claims, {}, "nothing from a refused token is returned");
        assert.equal(decision.expiresAt, undefined);
      }
      ran += 1;
    });
  }

  it("ran every vector in the file", () => {
    assert.equal(ran, VECTORS.vectors.length);
    assert.ok(ran > 0);
  });
});
