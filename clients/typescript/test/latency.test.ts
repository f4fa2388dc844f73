/** Round-trip latency of validate over TCP against a live sidecar: printed, not asserted. */
import * as assert from "node:assert/strict";
import { test } from "node:test";

import { AuthClient } from "../src";
import { startSidecar, unsignedToken } from "../testing/sidecar";

const WARMUP = 200;
const CALLS = 2000;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

test(`validate round-trip latency over TCP (${CALLS} sequential calls)`, async (t) => {
  const live = await startSidecar({ AUTH_MODE: "insecure" });
  const client = new AuthClient(live.address);
  try {
    const token = unsignedToken({ sub: "alice", exp: Math.floor(Date.now() / 1000) + 3600 });
    for (let i = 0; i < WARMUP; i++) await client.validate(token);
    const samples: number[] = [];
    for (let i = 0; i < CALLS; i++) {
      const started = process.hrtime.bigint();
      const decision = await client.validate(token);
      samples.push(Number(process.hrtime.bigint() - started) / 1e6);
      assert.equal(decision.valid, true);
    }
    samples.sort((a, b) => a - b);
    const mean = samples.reduce((sum, x) => sum + x, 0) / samples.length;
    const line =
      `validate latency over TCP, ${CALLS} sequential calls: ` +
      `median ${percentile(samples, 50).toFixed(3)} ms, p99 ${percentile(samples, 99).toFixed(3)} ms, ` +
      `mean ${mean.toFixed(3)} ms, min ${samples[0].toFixed(3)} ms, max ${samples[samples.length - 1].toFixed(3)} ms`;
    t.diagnostic(line);
    console.log(line);
  } finally {
    client.close();
    await live.stop();
  }
});
