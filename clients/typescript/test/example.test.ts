/** examples/sync-server.ts as a real process, against a live sidecar, over real HTTP. */
import { spawn } from "node:child_process";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";

import { AuthClient, Reason } from "../src";
import {
  PACKAGE_ROOT,
  Process,
  type Sidecar,
  cleanEnv,
  shortTmpDir,
  startSidecar,
  unsignedToken,
} from "../testing/sidecar";

const EXAMPLE = path.join(PACKAGE_ROOT, "dist", "examples", "sync-server.js");
const LISTENING = /listening on (http:\/\/\S+)/;

/** Starts the example server pointed at `target`; resolves with it and its base URL. */
async function startExample(target: string): Promise<{ server: Process; url: string }> {
  const child = spawn(process.execPath, [EXAMPLE], {
    env: cleanEnv({ SIDECAR_TARGET: target, PORT: "0" }),
    stdio: ["ignore", "pipe", "inherit"],
  });
  const server = new Process(child);
  const url = await server.waitFor(child.stdout!, LISTENING);
  return { server, url };
}

async function get(url: string, authorization?: string): Promise<{ status: number; body: unknown; challenge: string | null }> {
  const response = await fetch(url, { headers: authorization ? { authorization } : {} });
  return { status: response.status, body: await response.json(), challenge: response.headers.get("www-authenticate") };
}

describe("examples/sync-server", () => {
  let sidecar!: Sidecar;
  let example!: { server: Process; url: string };
  before(async () => {
    sidecar = await startSidecar({ AUTH_MODE: "insecure" });
    example = await startExample(sidecar.address);
  });
  after(async () => {
    if (example !== undefined) assert.deepEqual(await example.server.stop(), { code: 0, signal: null }, "the example stops on SIGTERM");
    if (sidecar !== undefined) assert.deepEqual(await sidecar.stop(), { code: 0, signal: null });
  });

  it("answers 200 with the user id for a token the sidecar accepts", async () => {
    const client = new AuthClient(sidecar.address);
    const { token } = await client.mint("alice", { ttlSeconds: 300 });
    client.close();
    assert.deepEqual(await get(`${example.url}/v1/shape?table=items`, `Bearer ${token}`), {
      status: 200,
      body: { user_id: "alice", path: "/v1/shape?table=items" },
      challenge: null,
    });
  });

  it("answers 401 with the sidecar's reason and message for a refused token", async () => {
    const expired = unsignedToken({ sub: "alice", exp: Math.floor(Date.now() / 1000) - 60 });
    assert.deepEqual(await get(example.url, `Bearer ${expired}`), {
      status: 401,
      body: { error: "invalid_token", message: "Expired token", reason: Reason.EXPIRED },
      challenge: 'Bearer realm="auth-sidecar", error="invalid_token"',
    });
    const noUser = await get(example.url, `Bearer ${unsignedToken({ role: "x" })}`);
    assert.deepEqual(noUser.body, { error: "invalid_token", message: "Missing or invalid 'user_id'", reason: Reason.INVALID_USER_ID });
  });

  it("answers a missing bearer token as the sidecar's Envoy Check does", async () => {
    for (const authorization of [undefined, "Basic YWxpY2U6c2VjcmV0", "Bearer "]) {
      assert.deepEqual(await get(example.url, authorization), {
        status: 401,
        body: { error: "missing_token", message: "Missing bearer token" },
        challenge: 'Bearer realm="auth-sidecar"',
      });
    }
  });

  it("answers 503 when the sidecar cannot be reached", async () => {
    const dir = shortTmpDir();
    const orphan = await startExample(`unix:${dir}/nobody.sock`);
    try {
      assert.deepEqual(await get(orphan.url, `Bearer ${unsignedToken({ sub: "alice" })}`), {
        status: 503,
        body: { error: "auth_unavailable", message: "Auth sidecar unavailable" },
        challenge: null,
      });
    } finally {
      assert.deepEqual(await orphan.server.stop(), { code: 0, signal: null });
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
