/**
 * A minimal HTTP "sync server" that authenticates every request through auth-sidecar.
 *
 *   GET /anything  with  Authorization: Bearer <jwt>
 *     -> 200 {"user_id": "alice", "path": "/anything"}                 token accepted
 *     -> 401 {"error": "unauthorized", "reason": "REASON_EXPIRED",
 *             "message": "Expired token"}                               token refused
 *     -> 503 {"error": "auth unavailable", "code": "UNAVAILABLE"}       sidecar unreachable
 *
 * A request without a bearer token is decided as the empty token, which the sidecar refuses as
 * REASON_MALFORMED ("Invalid token"), so every 401 carries the sidecar's own reason and message.
 *
 * Run (after `npm run build`):
 *   SIDECAR_TARGET=127.0.0.1:50051 PORT=8080 node dist/examples/sync-server.js
 * Environment: SIDECAR_TARGET (default 127.0.0.1:50051, or unix:/path), HOST (default 127.0.0.1),
 * PORT (default 8080; 0 picks a free port). It prints `sync server listening on http://HOST:PORT`.
 */
import * as http from "node:http";
import type { AddressInfo } from "node:net";

// Outside this repository: import { AuthClient, isServiceError, status } from "@auth-sidecar/client";
import { AuthClient, isServiceError, status } from "../src";

const BEARER = /^Bearer\s+(\S+)\s*$/i;

/** An HTTP server that lets a request through only when the sidecar accepts its bearer token. */
export function createSyncServer(auth: AuthClient): http.Server {
  return http.createServer((request, response) => {
    const token = BEARER.exec(request.headers.authorization ?? "")?.[1] ?? "";
    auth.validate(token).then(
      (decision) => {
        if (!decision.valid) {
          response.setHeader("WWW-Authenticate", 'Bearer error="invalid_token"');
          send(response, 401, { error: "unauthorized", reason: decision.reason, message: decision.message });
          return;
        }
        // A real sync server would now serve this user's data.
        send(response, 200, { user_id: decision.userId, path: request.url });
      },
      (error: unknown) => {
        // No decision: the sidecar is down or too slow. Fail closed.
        const code = isServiceError(error) ? status[error.code] : "UNKNOWN";
        send(response, 503, { error: "auth unavailable", code });
      },
    );
  });
}

function send(response: http.ServerResponse, statusCode: number, body: unknown): void {
  const json = JSON.stringify(body);
  response.writeHead(statusCode, {
    "Content-Type": "application/json",
    "Content-Length": Buffer.byteLength(json),
  });
  response.end(json);
}

function main(): void {
  const target = process.env.SIDECAR_TARGET || "127.0.0.1:50051";
  const host = process.env.HOST || "127.0.0.1";
  const port = Number(process.env.PORT ?? 8080);
  const auth = new AuthClient(target, { timeoutMs: 1000 });
  const server = createSyncServer(auth);
  server.listen(port, host, () => {
    const { address, port: bound } = server.address() as AddressInfo;
    const shown = address.includes(":") ? `[${address}]` : address;
    console.log(`sync server listening on http://${shown}:${bound} (sidecar: ${target})`);
  });
  const stop = () => {
    server.close(() => auth.close());
    server.closeIdleConnections();
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}

if (require.main === module) main();
