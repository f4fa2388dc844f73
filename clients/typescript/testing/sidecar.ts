/**
 * Test harness: real `python -m sidecar serve` processes, and other real sockets.
 *
 * It lives outside test/ because `node --test dist/test/` runs every file there as a test file.
 */
import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import * as readline from "node:readline";

/** clients/typescript (this file runs as clients/typescript/dist/testing/sidecar.js). */
export const PACKAGE_ROOT = path.resolve(__dirname, "..", "..");
/** The repository root, two levels above clients/typescript. */
export const REPO_ROOT = path.resolve(PACKAGE_ROOT, "..", "..");
/** The Python that runs the sidecar: $SIDECAR_PYTHON, else the repository's .venv. */
export const SIDECAR_PYTHON = process.env.SIDECAR_PYTHON || path.join(REPO_ROOT, ".venv", "bin", "python");
/** The HS test key checked into tests/keys. */
export const HS_KEY_FILE = path.join(REPO_ROOT, "tests", "keys", "hs.key");
/** A mint secret: SIDECAR_MINT_SECRET needs 32+ bytes. */
export const MINT_SECRET = "mint-secret-" + "m".repeat(32);

/** How long a sidecar may take to write its ready file. */
export const START_TIMEOUT_MS = 30_000;
const running = new Set<ChildProcess>();

// A test file that dies must not leave sidecars behind.
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** How a process ended. */
export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** `*_FILE` paths in the vectors are relative to the repository root: make them absolute. */
export function absoluteEnv(env: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(env).map(([key, value]) => [key, key.endsWith("_FILE") ? path.resolve(REPO_ROOT, value) : value]),
  );
}

/** This process's environment without any AUTH_ or SIDECAR_ variable, plus `extra`. */
export function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !key.startsWith("AUTH_") && !key.startsWith("SIDECAR_")) env[key] = value;
  }
  return { ...env, ...extra };
}

/** A child process whose stderr (or stdout) lines are collected, and whose end can be awaited. */
export class Process {
  /** Every line it wrote to the watched stream so far. */
  readonly log: string[] = [];
  /** Settles once it has exited and its output is fully read. */
  readonly closed: Promise<Exit>;

  constructor(readonly child: ChildProcess) {
    running.add(child);
    child.once("error", (error) => {
      this.spawnError = error;
    });
    this.closed = new Promise((resolve) => {
      child.on("close", (code, signal) => {
        running.delete(child);
        resolve({ code, signal });
      });
    });
  }

  /** Reads `stream` line by line into `log` to its end, so the process never blocks on a full pipe. */
  drain(stream: NodeJS.ReadableStream): void {
    readline.createInterface({ input: stream, crlfDelay: Infinity }).on("line", (line) => this.log.push(line));
  }

  /** True once the process has exited (or could not be spawned). */
  get exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null || this.spawnError !== undefined;
  }

  /** Why the process could not be spawned, if it could not. */
  spawnError?: Error;

  /**
   * Resolves with the first capture of `pattern` in a line of `stream`; rejects if the stream ends
   * (the process exited) or the process cannot be spawned first. The stream is read line by line
   * to the end, so a chatty process never blocks on a full pipe.
   */
  waitFor(stream: NodeJS.ReadableStream, pattern: RegExp): Promise<string> {
    return new Promise((resolve, reject) => {
      let found = false;
      this.child.once("error", reject);
      const lines = readline.createInterface({ input: stream, crlfDelay: Infinity });
      lines.on("line", (line) => {
        this.log.push(line);
        const match = found ? null : pattern.exec(line);
        if (match) {
          found = true;
          resolve(match[1]);
        }
      });
      lines.on("close", () => {
        if (!found) reject(new Error(`process ended before ${pattern}:\n${this.log.join("\n")}`));
      });
    });
  }

  /** Sends SIGTERM (unless it has already exited) and resolves once it has exited. */
  stop(): Promise<Exit> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGTERM");
    return this.closed;
  }
}

/** A running sidecar and the address it reported binding. */
export class Sidecar extends Process {
  address = "";
}

/**
 * Starts `$SIDECAR_PYTHON -m sidecar serve --ready-file <file>` with `env` (AUTH_* and SIDECAR_*
 * settings) and SIDECAR_LISTEN=`listen`, in a clean environment. Resolves once the sidecar has
 * written its bound address to the ready file (so port 0 works without races), with that address.
 * Its stderr is read to the end all along, into `log`.
 */
export async function startSidecar(env: Record<string, string>, listen = "127.0.0.1:0"): Promise<Sidecar> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sc-ready-"));
  const ready = path.join(dir, "address");
  const child = spawn(SIDECAR_PYTHON, ["-m", "sidecar", "serve", "--ready-file", ready], {
    cwd: REPO_ROOT,
    env: cleanEnv({ SIDECAR_LISTEN: listen, ...env }),
    stdio: ["ignore", "ignore", "pipe"],
  });
  const sidecar = new Sidecar(child);
  sidecar.drain(child.stderr!);
  try {
    sidecar.address = await waitForFile(ready, sidecar, START_TIMEOUT_MS);
  } catch (error) {
    if (!sidecar.exited) child.kill("SIGKILL");
    await sidecar.closed;
    const why = error instanceof Error ? error.message : String(error);
    throw new Error(
      `cannot start the sidecar with ${SIDECAR_PYTHON} (set SIDECAR_PYTHON to choose another): ${why}\n${sidecar.log.join("\n")}`,
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return sidecar;
}

/**
 * The trimmed text of `file` once it exists (the sidecar renames it into place whole). A bounded
 * poll on that condition, which also gives up as soon as `proc` has exited.
 */
export async function waitForFile(file: string, proc: Process, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return fs.readFileSync(file, "utf8").trim();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
    if (proc.spawnError) throw proc.spawnError;
    if (proc.exited) throw new Error(`it exited before writing ${file}`);
    if (Date.now() >= deadline) throw new Error(`no ${file} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A fresh directory under /tmp, short enough for a Unix socket path (108 bytes at most). */
export function shortTmpDir(): string {
  return fs.mkdtempSync("/tmp/asc-");
}

/** A TCP listener that accepts connections and never says a word: every call to it must time out. */
export async function silentServer(): Promise<{ address: string; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => undefined);
    socket.on("close", () => sockets.delete(socket));
    socket.resume(); // read and drop whatever the client sends
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** An unsigned (`alg: none`) token with these claims, as development clients make them. */
export function unsignedToken(claims: Record<string, unknown>): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${part({ alg: "none", typ: "JWT" })}.${part(claims)}.`;
}

/** The claims of a compact JWT, decoded without any check. */
export function payloadOf(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString("utf8"));
}
