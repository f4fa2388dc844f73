// A real OpenID provider for the tests: oidc-provider on 127.0.0.1, on a free port.
//
// Prints one JSON line, {"issuer": ...}, once it listens. Then reads commands on stdin, one per
// line, and answers each with "ok": "rotate" publishes a new signing key next to the old one
// (new tokens are signed with it), "retire" drops every key but the newest. The listener stays;
// only the provider behind it is rebuilt, as a provider's own key rotation looks from outside.
// SIGNING_ALG (RS256 by default; PS256, EdDSA or Ed25519) picks the keys and what signs tokens.
import { generateKeyPairSync, randomUUID } from "node:crypto";
import { createServer } from "node:http";
import { createInterface } from "node:readline";

import Provider from "oidc-provider";

// stdout carries only this script's protocol; the provider's notices go to stderr.
for (const level of ["log", "info", "warn"]) console[level] = console.error;

export const CLIENT = { id: "sidecar-test", secret: "sidecar-test-secret-0123456789abcdef" };
export const RESOURCE = "urn:auth-sidecar:test";
// Its access tokens are opaque: the sidecar asks the introspection endpoint, as INTROSPECTOR.
export const OPAQUE_RESOURCE = "urn:auth-sidecar:opaque";
export const INTROSPECTOR = { id: "sidecar", secret: "sidecar-introspection-secret-0123456789" };

const ALG = process.env.SIGNING_ALG || "RS256";

function newKey() {
  const { privateKey } = ALG.startsWith("Ed")
    ? generateKeyPairSync("ed25519")
    : generateKeyPairSync("rsa", { modulusLength: 2048 });
  return { ...privateKey.export({ format: "jwk" }), kid: randomUUID(), alg: ALG, use: "sig" };
}

function build(issuer, keys) {
  const provider = new Provider(issuer, {
    jwks: { keys },
    ttl: { ClientCredentials: 300 },
    clients: [
      {
        client_id: CLIENT.id,
        client_secret: CLIENT.secret,
        grant_types: ["client_credentials"],
        redirect_uris: [],
        response_types: [],
        id_token_signed_response_alg: ALG,
      },
      {
        client_id: INTROSPECTOR.id,
        client_secret: INTROSPECTOR.secret,
        grant_types: [],
        redirect_uris: [],
        response_types: [],
        id_token_signed_response_alg: ALG,
      },
    ],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resource) => {
          if (resource === OPAQUE_RESOURCE) {
            return {
              scope: "api",
              audience: OPAQUE_RESOURCE,
              accessTokenTTL: 300,
              accessTokenFormat: "opaque",
            };
          }
          if (resource !== RESOURCE) throw new Error(`unknown resource ${resource}`);
          return {
            scope: "api",
            audience: RESOURCE,
            accessTokenTTL: 300,
            accessTokenFormat: "jwt",
            jwt: { sign: { alg: ALG } },
          };
        },
      },
    },
  });
  return provider.callback();
}

let keys = [newKey()];
let handler = null;
const server = createServer((req, res) => handler(req, res));
server.listen(0, "127.0.0.1", () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  handler = build(issuer, keys);
  process.stdout.write(JSON.stringify({
      issuer,
      client: CLIENT,
      resource: RESOURCE,
      opaque_resource: OPAQUE_RESOURCE,
      introspector: INTROSPECTOR,
    }) + "\n");
  const commands = createInterface({ input: process.stdin });
  commands.on("line", (line) => {
    if (line === "rotate") keys = [newKey(), ...keys];
    else if (line === "retire") keys = keys.slice(0, 1);
    else {
      process.stdout.write(`unknown command ${line}\n`);
      return;
    }
    handler = build(issuer, keys);
    process.stdout.write("ok\n");
  });
  commands.on("close", () => server.close(() => process.exit(0)));
});
