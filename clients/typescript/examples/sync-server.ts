/**
 * A minimal HTTP "sync server" that authenticates every request through auth-sidecar.
 *
 *   GET /anything  with  Authorization: Bearer <jwt>
 *     -> 200 {"user_id": "alice", "path": "/anything"}                  token accepted
 *     -> 401 {"error": "invalid_token", "message": "Expired token",
 *             "reason": "REASON_EXPIRED"}                               token refused, with
 *        WWW-Authenticate: Bearer realm="auth-sidecar", error="invalid_token"
 *     -> 401 {"error": "missing_token", "message": "Missing bearer token"}  no bearer token, with
 *        WWW-Authenticate: Bearer realm="auth-sidecar"
 *     -> 503 {"error": "auth_unavailable", "message": "Auth sidecar unavailable"}  no decision
 *
 * The same answers as the Go and Python examples', and as the sidecar's Envoy Check.
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
/** Names this server in WWW-Authenticate (the sidecar's default SIDECAR_ENVOY_REALM). */
const REALM = "auth-sidecar";

/** An HTTP server that lets a request through only when the sidecar accepts its bearer token. */
export function createSyncServer(auth: AuthClient): http.Server {
  return http.createServer((request, response) => {
    const token = BEARER.exec(request.headers.authorization ?? "")?.[1];
    if (token === undefined) {
      response.setHeader("WWW-Authenticate", `Bearer realm="${REALM}"`);
      send(response, 401, { error: "missing_token", message: "Missing bearer token" });
      return;
    }
    auth.validate(token).then(
      (decision) => {
        if (!decision.valid) {
          response.setHeader("WWW-Authenticate", `Bearer realm="${REALM}", error="invalid_token"`);
          send(response, 401, { error: "invalid_token", message: decision.message, reason: decision.reason });
          return;
        }
        // A real sync server would now serve this user's data.
        send(response, 200, { user_id: decision.userId, path: request.url });
      },
      (error: unknown) => {
        // No decision: the sidecar is down or too slow. Fail closed.
        console.error(`auth sidecar: ${isServiceError(error) ? status[error.code] : String(error)}`);
        send(response, 503, { error: "auth_unavailable", message: "Auth sidecar unavailable" });
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
