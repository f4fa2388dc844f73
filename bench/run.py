"""Every benchmark scenario in one run: the sidecar beside its ceilings and its peers.

    .venv/bin/python bench/run.py                    # all scenarios, 3 s per point
    .venv/bin/python bench/run.py --smoke            # a few seconds: what CI runs; judges nothing
    .venv/bin/python bench/run.py --only grpc        # grpc | check | envoy | http | memory ...
    .venv/bin/python bench/run.py --rounds 3         # every scenario 3 times; medians judged

Load generators are real ones, sharing the machine with the servers as a user's would:
- h2load (Debian's nghttp2-client): Validate with one token, over gRPC framing by hand;
- ghz (Go module, see bench/tools): Validate cycling through 3000 distinct tokens, and Check;
- wrk through Envoy: no auth, native jwt_authn, ext_authz to a no-op server, to the sidecar, and
  to OPA-Envoy running a Rego policy that verifies the same RS256 token;
- wrk on the HTTP front: nginx (auth_request), Caddy (forward_auth) and Envoy (http_service) with
  and without the sidecar, forward auth and Connect Validate called directly; one token (hits)
  or 3000 (misses, cycled by templates/tokens.lua).

Writes bench/results/results.json, results.md and results.png (with the optional `bench` extra:
matplotlib). Figures are printed and written, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from envoy.service.auth.v3 import external_auth_pb2
from google.protobuf import descriptor_pb2
from harness import (
    Server,
    cpu_seconds,
    descendants,
    rss_kib,
    start_listening,
    start_process,
    start_sidecar,
)
from routes import ROUTES

from authsidecar.v1 import auth_pb2

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
TOOLS = ROOT / ".tools" / "bin"
HS_SECRET = "b" * 64
DISTINCT_TOKENS = 3000
# How ghz's timed runs end: it cancels the calls still in flight and closes its connections.
ENDING_ERRORS = ("transport is closing", "use of closed network connection", "context canceled")
# The gRPC load generators open up to this many connections: SO_REUSEPORT hashes each connection
# to one worker, and with 4 connections one of 2 workers often got 3 or all 4 (the ratios then
# measured the hashing, not the servers); 16 spread evenly enough.
CONNECTIONS = 16


# -- results -------------------------------------------------------------------------------------


@dataclass
class Point:
    """One load run: a scenario at one concurrency."""

    scenario: str
    tool: str
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    count: int = 0
    # CPU time that every server process (not the load generator) spent per completed call: a
    # figure that contention on a shared machine disturbs far less than req/s.
    server_cpu_us: float = 0.0
    # The same for the load generator: with the servers', it tells whether the machine was full.
    generator_cpu_us: float = 0.0
    note: str = ""
    round: int = 0

    @property
    def cores(self) -> float:
        """CPU cores the servers and the load generator used together during the run."""
        return (self.server_cpu_us + self.generator_cpu_us) * self.rps / 1e6


@dataclass
class Results:
    machine: dict[str, str]
    points: list[Point] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    round: int = 0
    """The round that points added now belong to (`--rounds`)."""

    def add(self, point: Point) -> None:
        point.round = self.round
        self.points.append(point)
        print(
            f"  {point.scenario:34s} c={point.concurrency:<4d} {point.rps:9.0f} req/s "
            f"p50 {point.p50_ms:7.2f} ms  p99 {point.p99_ms:7.2f} ms  errors {point.errors}  "
            f"server CPU {point.server_cpu_us:6.0f} us/call  cores {point.cores:4.2f}"
            + (f"  ({point.note})" if point.note else ""),
            flush=True,
        )

    def peak(self, scenario: str) -> Point | None:
        """The scenario's highest req/s in each round; of those, the median round's point.

        One run on a shared VM swings by 20% and more: the median of rounds is what is judged.
        """
        best: dict[int, Point] = {}
        for p in self.points:
            if p.scenario == scenario and (p.round not in best or p.rps > best[p.round].rps):
                best[p.round] = p
        return _median(list(best.values()))

    def curve(self, scenario: str) -> list[Point]:
        """Per concurrency, the median round's point: what the plot draws."""
        levels = sorted({p.concurrency for p in self.points if p.scenario == scenario})
        found = [
            _median([p for p in self.points if p.scenario == scenario and p.concurrency == c])
            for c in levels
        ]
        return [p for p in found if p is not None]


def _median(points: list[Point], key: Callable[[Point], float] = lambda p: p.rps) -> Point | None:
    """The median point by `key` (the lower middle of an even count), or None."""
    ordered = sorted(points, key=key)
    return ordered[(len(ordered) - 1) // 2] if ordered else None


# -- keys and tokens -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    private_pem: str
    public_pem: str
    jwks: str

    @staticmethod
    def make() -> Keys:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = private.public_key()
        numbers = public.public_numbers()
        jwk = {
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": "bench",
            "n": _b64uint(numbers.n),
            "e": _b64uint(numbers.e),
        }
        return Keys(
            private_pem=private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode(),
            public_pem=public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ).decode(),
            jwks=json.dumps({"keys": [jwk]}),
        )


def _b64uint(value: int) -> str:
    return jwt.utils.base64url_encode(value.to_bytes((value.bit_length() + 7) // 8, "big")).decode()


def tokens(alg: str, keys: Keys, count: int, **claims: Any) -> list[str]:
    """`count` tokens of distinct users, with `claims` besides the registered ones."""
    now = int(time.time())
    key: Any = HS_SECRET
    if not alg.startswith("HS"):  # parsed once: PyJWT would parse a PEM on every call
        key = serialization.load_pem_private_key(keys.private_pem.encode(), password=None)
    return [
        jwt.encode(
            {"sub": f"user-{i}", "iat": now, "exp": now + 3600, "iss": "bench", **claims},
            key,
            algorithm=alg,
            headers={"kid": "bench"},
        )
        for i in range(count)
    ]


def sidecar_env(alg: str, keys: Keys, **extra: str) -> dict[str, str]:
    key = HS_SECRET if alg.startswith("HS") else keys.public_pem
    return {"AUTH_MODE": "secure", "AUTH_JWT_ALG": alg, "AUTH_JWT_KEY": key, **extra}


# -- load generators -----------------------------------------------------------------------------


def available(name: str) -> bool:
    return bool(shutil.which(name)) or (TOOLS / name).exists()


def tool(name: str) -> str:
    found = shutil.which(name) or (str(TOOLS / name) if (TOOLS / name).exists() else None)
    if found is None:
        raise SystemExit(f"bench: {name} not found; run bench/tools first")
    return found


def _ms(text: str) -> float:
    """wrk's and h2load's durations: 850us, 1.20ms, 2.1s."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    assert match, text
    return float(match[1]) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[match[2]]


def grpc_frame(message: Any) -> bytes:
    body: bytes = message.SerializeToString()
    return b"\x00" + len(body).to_bytes(4, "big") + body


def h2load(address: str, path: str, frame: bytes, concurrency: int, seconds: float) -> Point:
    clients = min(concurrency, CONNECTIONS)
    with tempfile.NamedTemporaryFile(suffix=".bin") as data:
        Path(data.name).write_bytes(frame)
        out = subprocess.run(
            [
                tool("h2load"),
                *(
                    "-D",
                    f"{max(int(seconds), 1)}",
                    "-c",
                    str(clients),
                    "-m",
                    str(concurrency // clients),
                ),
                *("-d", data.name, "-H", "content-type: application/grpc", "-H", "te: trailers"),
                f"http://{address}{path}",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    rps = float(re.search(r"finished in .*?, ([\d.]+) req/s", out)[1])  # type: ignore[index]
    failed = re.search(r"requests: .* (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    assert failed is not None, out
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", out)
    assert mean is not None, out
    # h2load reports min/max/mean/sd, not percentiles: p99 is left out (0) for it.
    errors = int(failed[2]) + int(failed[3])
    return Point("", "h2load", concurrency, rps, _ms(mean[1]), 0.0, errors, int(failed[1]))


def ghz(
    address: str,
    call: str,
    protoset: Path,
    concurrency: int,
    seconds: float,
    data: list[dict[str, Any]],
    rps: int = 0,
) -> Point:
    with tempfile.NamedTemporaryFile("w", suffix=".json") as file:
        json.dump(data, file)
        file.flush()
        out = subprocess.run(
            [
                tool("ghz"),
                *("--insecure", "--protoset", str(protoset), "--call", call),
                *("-D", file.name, "-c", str(concurrency), "-z", f"{seconds}s"),
                *("--connections", str(min(concurrency, CONNECTIONS)), "--format", "json"),
                *(("--rps", str(rps)) if rps else ()),
                address,
            ],
            check=False,
            capture_output=True,
            text=True,
        ).stdout
    report = json.loads(out)
    latencies = {d["percentage"]: d["latency"] / 1e6 for d in report["latencyDistribution"] or []}
    # A timed run ends by closing its connections: calls in flight then fail as "transport is
    # closing", which is ghz's doing, not the server's.
    errors = sum(
        count
        for message, count in (report.get("errorDistribution") or {}).items()
        if not any(ending in message for ending in ENDING_ERRORS)
    )
    return Point(
        "",
        "ghz",
        concurrency,
        report["rps"],
        latencies.get(50, 0.0),
        latencies.get(99, 0.0),
        errors,
        report["count"] - errors,
    )


def wrk(
    port: int,
    token: str | None,
    concurrency: int,
    seconds: float,
    path: str = "/v1/shape",
    script: dict[str, str] | None = None,
) -> Point:
    """`token` in every request; or `script`, the environment of templates/tokens.lua."""
    headers = ("-H", f"Authorization: Bearer {token}") if token else ()
    lua = ("-s", str(BENCH / "templates" / "tokens.lua")) if script else ()
    out = subprocess.run(
        [
            tool("wrk"),
            *(
                "-t",
                "2",
                "-c",
                str(max(concurrency, 2)),
                "-d",
                f"{max(int(seconds), 1)}s",
                "--latency",
            ),
            *headers,
            *lua,
            f"http://127.0.0.1:{port}{path}",
        ],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **(script or {})},
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    p50 = re.search(r"\s50%\s+(\S+)", out)
    p99 = re.search(r"\s99%\s+(\S+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    bad = int(non2xx[1]) if non2xx else 0
    bad += sum(int(n) for n in errors.groups()) if errors else 0
    done = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    p50_ms, p99_ms = (_ms(p50[1]) if p50 else 0.0), (_ms(p99[1]) if p99 else 0.0)
    return Point("", "wrk", concurrency, rps, p50_ms, p99_ms, bad, done - bad)


def protoset(path: Path) -> Path:
    """A FileDescriptorSet of both services and everything they import, for ghz."""
    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}

    def add(file: Any) -> None:
        if file.name in files:
            return
        for dependency in file.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        files[file.name] = proto

    add(auth_pb2.DESCRIPTOR)
    add(external_auth_pb2.DESCRIPTOR)
    path.write_bytes(
        descriptor_pb2.FileDescriptorSet(file=list(files.values())).SerializeToString()
    )
    return path


def check_request(token: str) -> dict[str, Any]:
    """A CheckRequest as Envoy sends one for `GET /v1/shape`, in ghz's JSON."""
    return {
        "attributes": {
            "request": {
                "http": {
                    "method": "GET",
                    "path": "/v1/shape?table=items&offset=-1",
                    "host": "localhost",
                    "headers": {
                        ":authority": "localhost",
                        ":method": "GET",
                        ":path": "/v1/shape?table=items&offset=-1",
                        "authorization": f"Bearer {token}",
                        "user-agent": "bench",
                        "x-request-id": "0f4c2a9e-1b7d-4c1e-9a57-3f2b8c6d5e41",
                    },
                }
            }
        }
    }


# -- servers -------------------------------------------------------------------------------------


@contextmanager
def baseline(directory: str, workers: int, least_miss: bool = False) -> Iterator[Server]:
    """The bare server; `least_miss`: its Validate checks HS256 tokens with the least Python."""
    ready = Path(directory) / "baseline.ready"
    ready.unlink(missing_ok=True)
    argv = [sys.executable, str(BENCH / "baseline.py"), "--workers", str(workers)]
    argv += ["--least-miss"] if least_miss else []
    env = {"BENCH_HS_SECRET": HS_SECRET}
    with start_process([*argv, "--ready-file", str(ready)], ready, env) as server:
        yield server


@contextmanager
def sidecar(
    directory: str, workers: int, env: dict[str, str], valid: str | None = None
) -> Iterator[Server]:
    """A sidecar with `workers`; `valid`, a token it must accept (load tools only see HTTP 200)."""
    with start_sidecar({**env, "SIDECAR_WORKERS": str(workers)}, directory) as server:
        if valid is not None:
            _accepts(server, valid)
        yield server


def _accepts(server: Server, token: str) -> None:
    """Asserts that `server` finds `token` valid: ghz would count a refusal as a success."""
    import grpc

    from authsidecar.v1 import auth_pb2_grpc

    with grpc.insecure_channel(server.address) as channel:
        response = auth_pb2_grpc.AuthServiceStub(channel).Validate(
            auth_pb2.ValidateRequest(token=token), timeout=10
        )
    assert response.valid, f"the bench token must be valid: {response}"


def _allows(server: Server, request: dict[str, Any]) -> None:
    """Asserts that `server`'s Check allows `request` (ghz's JSON): ghz counts a denial, an OK
    gRPC status, as a success."""
    import grpc
    from envoy.service.auth.v3 import external_auth_pb2_grpc
    from google.protobuf import json_format

    message = json_format.ParseDict(request, external_auth_pb2.CheckRequest())
    with grpc.insecure_channel(server.address) as channel:
        response = external_auth_pb2_grpc.AuthorizationStub(channel).Check(message, timeout=10)
    assert response.status.code == 0, f"the bench request must be allowed: {response}"


ENVOY_CONFIG = (BENCH / "templates" / "envoy.yaml").read_text()
EXT_AUTHZ = (BENCH / "templates" / "ext_authz.yaml").read_text()
JWT_AUTHN = (BENCH / "templates" / "jwt_authn.yaml").read_text()


@contextmanager
def envoy(
    directory: str, filters: str, authz_port: int, workers: int, authz_http_port: int = 1
) -> Iterator[int]:
    """Envoy with `filters`, answering every request itself (direct_response): what is measured
    is the filter, never an upstream. Yields the listener's port."""
    base_id = os.getpid() * 8 + len(list(Path(directory).glob("envoy-*.yaml")))
    config = Path(directory) / f"envoy-{base_id}.yaml"
    config.write_text(
        ENVOY_CONFIG.format(filters=filters, authz_port=authz_port, authz_http_port=authz_http_port)
    )
    admin = Path(directory) / f"envoy-{base_id}.admin"
    binary = shutil.which("envoy", path=str(Path(sys.executable).parent)) or tool("envoy")
    argv = [binary, "-c", str(config), "--base-id", str(base_id), "--admin-address-path"]
    argv += [str(admin), "--concurrency", str(workers), "--log-level", "error"]
    with start_process(argv, admin) as server:
        deadline = time.monotonic() + 30
        while True:
            listeners = _http_get(server.address, "/listeners?format=json")
            if listeners:
                status = json.loads(listeners)["listener_statuses"][0]
                port = int(status["local_address"]["socket_address"]["port_value"])
                if port:
                    break
            assert time.monotonic() < deadline, "envoy did not start"
            time.sleep(0.05)
        try:
            yield port
        finally:
            # Envoy leaves its hot-restart shared memory behind.
            shm = Path("/dev/shm")  # noqa: S108 - where Envoy puts it
            (shm / f"envoy_shared_memory_{base_id * 10}").unlink(missing_ok=True)


def _http_get(address: str, path: str) -> str | None:
    import http.client

    host, _, port = address.rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=2)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.read().decode() if response.status == 200 else None
    except OSError:
        return None
    finally:
        connection.close()


OPA_POLICY = (BENCH / "templates" / "policy.rego").read_text()


@contextmanager
def opa_envoy(directory: str, keys: Keys) -> Iterator[int]:
    """OPA-Envoy's gRPC Check server with a policy that verifies the RS256 token and its times."""
    policy = Path(directory) / "policy.rego"
    policy.write_text(OPA_POLICY.format(cert=json.dumps(keys.public_pem)))
    port = _free_port()
    config = Path(directory) / "opa.yaml"
    config.write_text(
        "plugins:\n  envoy_ext_authz_grpc:\n"
        f"    addr: 127.0.0.1:{port}\n    path: envoy/authz/allow\n"
        "decision_logs:\n  console: false\n"
    )
    http_port = _free_port()
    ready = Path(directory) / "opa.ready"
    argv = [tool("opa-envoy-plugin"), "run", "--server", "--log-level", "error"]
    argv += ["--addr", f"127.0.0.1:{http_port}", "--config-file", str(config), str(policy)]
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while _http_get(f"127.0.0.1:{http_port}", "/health?plugins") is None:
            assert process.poll() is None and time.monotonic() < deadline, "OPA did not start"
            time.sleep(0.05)
        ready.write_text("ok")
        yield port
    finally:
        process.terminate()
        process.wait(10)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


HTTP_SERVICE = (BENCH / "templates" / "http_service.yaml").read_text()
NGINX_CONFIG = (BENCH / "templates" / "nginx.conf").read_text()
CADDY_CONFIG = (BENCH / "templates" / "Caddyfile").read_text()
CADDY_FORWARD_AUTH = (BENCH / "templates" / "caddy_forward_auth.txt").read_text().strip()


def _fill(template: str, **values: object) -> str:
    """The template with each `@NAME@` replaced (nginx's and Caddy's own braces stay)."""
    for name, value in values.items():
        template = template.replace(f"@{name.upper()}@", str(value))
    left = re.findall(r"@[A-Z_]+@", template)
    assert not left, left
    return template


@contextmanager
def http_sidecar(directory: str, workers: int, env: dict[str, str], valid: str) -> Iterator[int]:
    """A sidecar whose HTTP API answers on the yielded port (and accepts `valid`)."""
    port = _free_port()
    env = {**env, "SIDECAR_HTTP_API_LISTEN": f"127.0.0.1:{port}"}
    with sidecar(directory, workers, env, valid):
        yield port


@contextmanager
def nginx(directory: str, workers: int, auth_port: int | None) -> Iterator[int]:
    """nginx serving a 2-byte file, behind auth_request to `auth_port` when given."""
    # nginx's workers run as `nobody` when started as root: they must be able to read the file.
    os.chmod(directory, 0o755)  # noqa: S103 - a benchmark's temporary directory
    prefix = Path(directory) / f"nginx-{auth_port}"
    (prefix / "root" / "v1").mkdir(parents=True, exist_ok=True)
    (prefix / "root" / "v1" / "shape").write_text("ok")
    port = _free_port()
    auth = "auth_request /_auth;" if auth_port else ""
    config = _fill(
        NGINX_CONFIG,
        workers=workers,
        auth_port=auth_port or 1,
        port=port,
        root=prefix / "root",
        auth=auth,
    )
    (prefix / "nginx.conf").write_text(config)
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    argv = [binary, "-p", str(prefix), "-c", "nginx.conf"]
    with start_listening(argv, port, prefix / "nginx.log"):
        yield port


@contextmanager
def caddy(directory: str, workers: int, auth_port: int | None) -> Iterator[int]:
    """Caddy answering `ok` itself, behind forward_auth to `auth_port` when given."""
    home = Path(directory) / f"caddy-{auth_port}"
    home.mkdir(exist_ok=True)
    port = _free_port()
    auth = _fill(CADDY_FORWARD_AUTH, auth_port=auth_port) if auth_port else ""
    (home / "Caddyfile").write_text(_fill(CADDY_CONFIG, port=port, auth=auth))
    argv = [tool("caddy"), "run", "--config", str(home / "Caddyfile"), "--adapter", "caddyfile"]
    env = {"HOME": str(home), "XDG_DATA_HOME": str(home), "XDG_CONFIG_HOME": str(home)}
    with start_listening(argv, port, home / "caddy.log", {**env, "GOMAXPROCS": str(workers)}):
        yield port


# -- scenarios -----------------------------------------------------------------------------------


@dataclass
class Run:
    directory: str
    workers: int
    seconds: float
    levels: list[int]
    keys: Keys
    results: Results
    protoset: Path
    distinct: int = DISTINCT_TOKENS

    def sweep(
        self, scenario: str, measure: Callable[[int], Point], note: str = "", needs: str = ""
    ) -> None:
        if needs and not available(needs):
            print(f"  {scenario}: skipped, {needs} is not installed (bench/tools)", flush=True)
            return
        for level in self.levels:
            self.results.add(measured(scenario, partial(measure, level), note))


def measured(scenario: str, measure: Callable[[], Point], note: str = "") -> Point:
    """Runs `measure` and adds the servers' CPU time per call to its point."""
    servers = descendants(os.getpid())  # before the load generator starts: servers only
    before = cpu_seconds(servers)
    # The generator is a child that measure() waits for: its CPU lands in RUSAGE_CHILDREN.
    generator_before = _children_cpu()
    point = measure()
    used = cpu_seconds(servers) - before
    generator = _children_cpu() - generator_before
    point.scenario, point.note = scenario, note
    if point.count:
        point.server_cpu_us = used * 1e6 / point.count
        point.generator_cpu_us = generator * 1e6 / point.count
    return point


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


VALIDATE = "/authsidecar.v1.AuthService/Validate"
CHECK = "/envoy.service.auth.v3.Authorization/Check"


def grpc_scenarios(run: Run) -> None:
    """Validate: the bare server, one token (hits), 3000 distinct tokens (misses)."""
    print("Validate", flush=True)
    one = {alg: tokens(alg, run.keys, 1)[0] for alg in ("HS256", "RS256")}
    many = {alg: tokens(alg, run.keys, run.distinct) for alg in ("HS256", "RS256")}
    s = run.seconds
    with baseline(run.directory, run.workers) as bare:
        frame = grpc_frame(auth_pb2.ValidateRequest(token=one["HS256"]))
        run.sweep("bare Validate (h2load)", lambda c: h2load(bare.address, VALIDATE, frame, c, s))
        data = [{"token": t} for t in many["HS256"]]
        run.sweep(
            "bare Validate (ghz)",
            lambda c: ghz(bare.address, VALIDATE[1:], run.protoset, c, s, data),
            needs="ghz",
        )
    with baseline(run.directory, run.workers, least_miss=True) as least:
        _accepts(least, many["HS256"][0])
        run.sweep(
            "least Python miss HS256 (ghz)",
            lambda c: ghz(least.address, VALIDATE[1:], run.protoset, c, s, data),
            f"{run.distinct} tokens: split, HMAC, json.loads, claims Struct",
            needs="ghz",
        )
    for alg in ("HS256", "RS256"):
        with sidecar(run.directory, run.workers, sidecar_env(alg, run.keys), one[alg]) as server:
            frame = grpc_frame(auth_pb2.ValidateRequest(token=one[alg]))
            run.sweep(
                f"sidecar Validate {alg} hits (h2load)",
                partial(h2load, server.address, VALIDATE, frame, seconds=s),
                "one token, cache on",
            )
        if not available("ghz"):
            continue
        env = sidecar_env(alg, run.keys, SIDECAR_CACHE_SIZE="0")
        with sidecar(run.directory, run.workers, env, many[alg][0]) as server:
            data = [{"token": t} for t in many[alg]]
            run.sweep(
                f"sidecar Validate {alg} misses (ghz)",
                partial(ghz, server.address, VALIDATE[1:], run.protoset, seconds=s, data=data),
                f"{run.distinct} tokens, cache off",
                needs="ghz",
            )


def check_scenarios(run: Run) -> None:
    print("Check, called directly", flush=True)
    if not available("ghz"):
        print("  skipped: ghz is not installed (bench/tools)", flush=True)
        return
    # The scope is for the routed sidecar's CEL route (bench/routes.py); both get the same token.
    token = tokens("RS256", run.keys, 1, scp=["sync"])[0]
    data = [check_request(token)]
    s = run.seconds
    with baseline(run.directory, run.workers) as bare:
        run.sweep(
            "no-op Check (ghz)",
            lambda c: ghz(bare.address, CHECK[1:], run.protoset, c, s, data),
            needs="ghz",
        )
    with sidecar(run.directory, run.workers, sidecar_env("RS256", run.keys), token) as server:
        _allows(server, data[0])
        run.sweep(
            "sidecar Check RS256 (ghz)",
            lambda c: ghz(server.address, CHECK[1:], run.protoset, c, s, data),
            "one token, cache on",
            needs="ghz",
        )
    routes_file = Path(run.directory) / "routes.toml"
    routes_file.write_text(ROUTES)
    routed = sidecar_env("RS256", run.keys, SIDECAR_CONFIG_FILE=str(routes_file))
    with sidecar(run.directory, run.workers, routed, token) as server:
        _allows(server, data[0])
        run.sweep(
            "sidecar Check RS256, 5 routes (ghz)",
            lambda c: ghz(server.address, CHECK[1:], run.protoset, c, s, data),
            "bench/routes.py's, the request on the CEL one; one token, cache on",
            needs="ghz",
        )


def envoy_scenarios(run: Run, opa: bool) -> None:
    print("Through Envoy (wrk)", flush=True)
    token = tokens("RS256", run.keys, 1)[0]
    s = run.seconds
    d, w = run.directory, run.workers
    with envoy(d, "", 1, w) as port:
        run.sweep("Envoy, no auth", lambda c: wrk(port, token, c, s))
    jwt_filter = JWT_AUTHN.format(jwks=json.dumps(run.keys.jwks))
    with envoy(d, jwt_filter, 1, w) as port:
        run.sweep("Envoy jwt_authn RS256", lambda c: wrk(port, token, c, s))
    with baseline(d, w) as bare, envoy(d, EXT_AUTHZ, _port(bare), w) as port:
        run.sweep("Envoy ext_authz to no-op Check", lambda c: wrk(port, token, c, s))
    with (
        sidecar(d, w, sidecar_env("RS256", run.keys), token) as server,
        envoy(d, EXT_AUTHZ, _port(server), w) as port,
    ):
        run.sweep("Envoy ext_authz to sidecar RS256", lambda c: wrk(port, token, c, s))
    if not opa:
        return
    with opa_envoy(d, run.keys) as opa_port, envoy(d, EXT_AUTHZ, opa_port, w) as port:
        run.sweep("Envoy ext_authz to OPA-Envoy RS256", lambda c: wrk(port, token, c, s))


def http_scenarios(run: Run) -> None:
    """The HTTP front: forward auth through nginx, Caddy and Envoy's http_service beside each
    proxy with no auth (and Envoy's jwt_authn), and Connect Validate; hits and misses."""
    print("HTTP front (wrk)", flush=True)
    many = tokens("RS256", run.keys, run.distinct)
    one = many[0]
    files = {}
    for name, listed in (("one", [one]), ("many", many)):
        files[name] = Path(run.directory) / f"tokens-{name}.txt"
        files[name].write_text("\n".join(listed) + "\n")
    lua = {
        "hits": {"BENCH_TOKENS": str(files["one"])},
        "misses": {"BENCH_TOKENS": str(files["many"])},
    }
    s, d, w = run.seconds, run.directory, run.workers
    cached = sidecar_env("RS256", run.keys)
    uncached = sidecar_env("RS256", run.keys, SIDECAR_CACHE_SIZE="0")
    jwt_filter = JWT_AUTHN.format(jwks=json.dumps(run.keys.jwks))
    with envoy(d, jwt_filter, 1, w) as port:
        run.sweep("Envoy jwt_authn RS256", lambda c: wrk(port, one, c, s))
        run.sweep(
            "Envoy jwt_authn RS256 misses",
            lambda c: wrk(port, None, c, s, script=lua["misses"]),
            f"{run.distinct} tokens",
        )
    with nginx(d, w, None) as noop:
        run.sweep("nginx, no auth", lambda c: wrk(noop, one, c, s))
        # Ceilings: each proxy asking a forward-auth server that decides nothing (nginx's return).
        with envoy(d, HTTP_SERVICE, 1, w, authz_http_port=noop) as port:
            run.sweep("Envoy http_service to a no-op", lambda c: wrk(port, one, c, s))
        if available("caddy"):
            with caddy(d, w, None) as port:
                run.sweep("Caddy, no auth", lambda c: wrk(port, one, c, s))
            with caddy(d, w, noop) as port:
                run.sweep("Caddy forward_auth to a no-op", lambda c: wrk(port, one, c, s))
    for label, env in (("hits", cached), ("misses", uncached)):
        note = "one token, cache on" if label == "hits" else f"{run.distinct} tokens, cache off"
        script = lua[label]
        with http_sidecar(d, w, env, one) as api:
            run.sweep(
                f"forward auth RS256 {label}, direct",
                partial(wrk, api, None, seconds=s, path="/auth", script=script),
                note,
            )
            connect = {**script, "BENCH_CONNECT": VALIDATE}
            run.sweep(
                f"Connect Validate RS256 {label}",
                partial(wrk, api, None, seconds=s, path=VALIDATE, script=connect),
                note + ", JSON, HTTP/1.1 keep-alive",
            )
            with nginx(d, w, api) as port:
                run.sweep(
                    f"nginx auth_request RS256 {label}",
                    partial(wrk, port, None, seconds=s, script=script),
                    note,
                )
                if label == "hits":
                    _half_load(run, "nginx auth_request RS256 hits", port, script)
            if available("caddy"):
                with caddy(d, w, api) as port:
                    run.sweep(
                        f"Caddy forward_auth RS256 {label}",
                        partial(wrk, port, None, seconds=s, script=script),
                        note,
                    )
            with envoy(d, HTTP_SERVICE, 1, w, authz_http_port=api) as port:
                run.sweep(
                    f"Envoy http_service to sidecar RS256 {label}",
                    partial(wrk, port, None, seconds=s, script=script),
                    note,
                )
    _crowd(run, one)
    # The example's proxy_cache, with the sidecar's allows cacheable for 5 s.
    env = {**cached, "SIDECAR_FORWARD_AUTH_MAX_AGE_SECONDS": "5"}
    with http_sidecar(d, w, env, one) as api, nginx(d, w, api) as port:
        run.sweep(
            "nginx auth_request RS256 hits, proxy_cache",
            partial(wrk, port, None, seconds=s, script=lua["hits"]),
            "one token, SIDECAR_FORWARD_AUTH_MAX_AGE_SECONDS=5",
        )


def _crowd(run: Run, token: str) -> None:
    """RSS under 2000 idle keep-alive connections and 500 slow clients, and whether a new
    client is still served."""
    import asyncio

    from flood import http_crowd

    with http_sidecar(run.directory, run.workers, sidecar_env("RS256", run.keys), token) as api:
        pids = [p for p in descendants(os.getpid()) if "sidecar" in _cmdline(p)]
        before = max(rss_kib([pid]) for pid in pids)
        crowd = asyncio.run(http_crowd(api, token, 2000, 500))
        peak = max(rss_kib([pid], "VmHWM") for pid in pids)
        total = rss_kib(pids, "VmHWM")
    run.results.extra["http_crowd"] = {
        "processes": len(pids),
        "largest_rss_before_mb": round(before / 1024, 1),
        "largest_peak_rss_mb": round(peak / 1024, 1),
        "peak_rss_all_processes_mb": round(total / 1024, 1),
        **crowd,
    }
    print("  " + json.dumps(run.results.extra["http_crowd"]), flush=True)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _half_load(run: Run, scenario: str, port: int, script: dict[str, str]) -> None:
    """`scenario` again at about half its peak rate: connections that each pause PAUSE_MS
    between requests (wrk's delay(), which counts whole milliseconds), as many as that rate
    needs."""
    peak = run.results.peak(scenario)
    if peak is None:
        return
    pause_ms = 4
    # Each request's own time at that rate, about 1 ms here, adds to the pause.
    connections = max(2, round(peak.rps / 2 * (pause_ms + 1) / 1000))
    paced = {**script, "BENCH_DELAY_MS": str(pause_ms)}
    run.results.add(
        measured(
            f"{scenario} at half load",
            partial(wrk, port, None, connections, run.seconds, script=paced),
            f"{connections} connections, {pause_ms} ms apart, of a {peak.rps:.0f} peak",
        )
    )


def workers_scenarios(run: Run) -> None:
    """Validate hits at 1 and 2 workers, at the highest concurrency."""
    print("Workers", flush=True)
    token = tokens("HS256", run.keys, 1)[0]
    frame = grpc_frame(auth_pb2.ValidateRequest(token=token))
    level = max(run.levels)
    for workers in (1, 2):
        with sidecar(run.directory, workers, sidecar_env("HS256", run.keys), token) as server:
            run.results.add(
                measured(
                    f"sidecar Validate HS256 hits, {workers} worker(s)",
                    partial(h2load, server.address, VALIDATE, frame, level, run.seconds),
                )
            )


def latency_scenarios(run: Run) -> None:
    """p99 at half the saturating rate, for Validate hits and misses (RS256)."""
    print("p99 at half the saturating rate (ghz --rps)", flush=True)
    many = tokens("RS256", run.keys, run.distinct)
    rates = []
    for label, extra, data in (
        ("hits", {}, [{"token": many[0]}]),
        ("misses", {"SIDECAR_CACHE_SIZE": "0"}, [{"token": t} for t in many]),
    ):
        env = sidecar_env("RS256", run.keys, **extra)
        with sidecar(run.directory, run.workers, env, many[0]) as server:
            peak = ghz(server.address, VALIDATE[1:], run.protoset, 16, run.seconds, data)
            rate = int(peak.rps / 2)
            rates.append(rate)
            run.results.add(
                measured(
                    f"sidecar Validate RS256 {label} at half load",
                    partial(
                        ghz, server.address, VALIDATE[1:], run.protoset, 16, run.seconds, data, rate
                    ),
                    f"--rps {rate} of a {peak.rps:.0f} peak",
                )
            )
    # The floor: a server that decides nothing, at the same rate, on the same machine.
    data = [{"token": many[0]}]
    with baseline(run.directory, run.workers) as bare:
        for label, rate in zip(("hits", "misses"), rates, strict=True):
            run.results.add(
                measured(
                    f"bare Validate at the {label}' half-load rate",
                    partial(
                        ghz, bare.address, VALIDATE[1:], run.protoset, 16, run.seconds, data, rate
                    ),
                    f"--rps {rate}",
                )
            )


def memory_scenarios(run: Run) -> None:
    """RSS per worker with a full cache (10000 decisions), and under a 500 x 1 MB flood."""
    print("Memory", flush=True)
    import asyncio

    from flood import flood

    count = 10000
    many = tokens("HS256", run.keys, count)
    env = sidecar_env("HS256", run.keys, SIDECAR_CACHE_SIZE=str(count))
    with sidecar(run.directory, run.workers, env, many[0]) as server:
        idle = rss_kib(server.pids()[1:] or server.pids())
        data = [{"token": t} for t in many]
        # Two rounds over every token, so that every worker has seen (and cached) them all.
        subprocess.run(
            [
                *(tool("ghz"), "--insecure", "--protoset", str(run.protoset)),
                *("--call", VALIDATE[1:], "-c", "16", "-n", str(count * 2 * run.workers)),
                *("-D", _dump(run, data), "--connections", "8", "-O", "json", server.address),
            ],
            check=True,
            capture_output=True,
        )
        workers = server.pids()[1:] or server.pids()
        full = rss_kib(workers)
        outcomes = asyncio.run(flood(server.address, 500, 1_000_000, 10))
        peak = rss_kib(server.pids(), "VmHWM")
    run.results.extra["memory"] = {
        "workers": len(workers),
        "rss_per_worker_idle_mb": round(idle / len(workers) / 1024, 1),
        "rss_per_worker_full_cache_mb": round(full / len(workers) / 1024, 1),
        "flood_500x1MB_peak_rss_all_processes_mb": round(peak / 1024, 1),
        "flood_outcomes": outcomes,
    }
    print("  " + json.dumps(run.results.extra["memory"]), flush=True)


def _dump(run: Run, data: list[dict[str, Any]]) -> str:
    path = Path(run.directory) / "data.json"
    path.write_text(json.dumps(data))
    return str(path)


def _port(server: Server) -> int:
    return int(server.address.rpartition(":")[2])


# -- report --------------------------------------------------------------------------------------


def machine(workers: int) -> dict[str, str]:
    def version(argv: list[str]) -> str:
        if not available(argv[0]) and not Path(argv[0]).exists():
            return "absent"
        argv = [tool(argv[0]) if available(argv[0]) else argv[0], *argv[1:]]
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except OSError:
            return "absent"
        return (
            (out.stdout or out.stderr).strip().splitlines()[0] if out.stdout or out.stderr else ""
        )

    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        "?",
    )
    import grpc

    return {
        "cpu": cpu,
        "cpus": str(os.cpu_count()),
        "workers": str(workers),
        "python": sys.version.split()[0],
        "grpcio": grpc.__version__,
        "envoy": version([str(Path(sys.executable).parent / "envoy"), "--version"])[-60:],
        "h2load": version(["h2load", "--version"]),
        "wrk": version(["wrk", "-v"]),
        "ghz": version(["ghz", "--version"]),
        "opa-envoy-plugin": version([str(TOOLS / "opa-envoy-plugin"), "version"]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def ratios(results: Results) -> dict[str, str]:
    """Each target as two ratios: of peak req/s, and of server CPU per call (b's over a's: the
    throughput ratio when the servers' CPU is the limit, far steadier on a shared machine)."""

    def rps(scenario: str) -> float | None:
        point = results.peak(scenario)
        return point.rps if point else None

    def cpu(scenario: str) -> float | None:
        costs = sorted(p.server_cpu_us for p in results.points if p.scenario == scenario)
        return costs[len(costs) // 2] if costs and costs[0] else None

    def ratio(a: str, b: str) -> str:
        x, y = rps(a), rps(b)
        if not (x and y):
            return "not measured"
        ca, cb = cpu(a), cpu(b)
        by_cpu = f"{cb / ca:.2f}" if ca and cb and "worker" not in a else "-"
        return f"{x / y:.2f} | {by_cpu}"

    def cores(*scenarios: str) -> str:
        found = [results.peak(name) for name in scenarios]
        used = " / ".join(f"{p.cores:.2f}" for p in found if p)
        return f"{used} of {os.cpu_count()} | -" if used else "not measured"

    def p99(scenario: str) -> str:
        point = _median([p for p in results.points if p.scenario == scenario], lambda p: p.p99_ms)
        return f"{point.p99_ms:.2f} ms | -" if point else "not measured"

    def p99s() -> str:
        def ms(*names: str) -> str:
            found = [
                _median([p for p in results.points if p.scenario == name], lambda p: p.p99_ms)
                for name in names
            ]
            shown = " / ".join(f"{p.p99_ms:.1f}" for p in found if p)
            return f"{shown} ms" if shown else "not measured"

        half = ("hits", "misses")
        sidecar = ms(*(f"sidecar Validate RS256 {label} at half load" for label in half))
        bare = ms(*(f"bare Validate at the {label}' half-load rate" for label in half))
        return f"{sidecar} | {bare}"

    return {
        "Validate misses HS256 / bare (ghz), target >= 0.7": ratio(
            "sidecar Validate HS256 misses (ghz)", "bare Validate (ghz)"
        ),
        # What no Python miss path can pass: the least work a miss can be (bench/baseline.py).
        "ceiling: least Python miss HS256 / bare (ghz)": ratio(
            "least Python miss HS256 (ghz)", "bare Validate (ghz)"
        ),
        "Validate misses HS256 / least Python miss": ratio(
            "sidecar Validate HS256 misses (ghz)", "least Python miss HS256 (ghz)"
        ),
        "Validate misses RS256 / bare (ghz), target >= 0.7": ratio(
            "sidecar Validate RS256 misses (ghz)", "bare Validate (ghz)"
        ),
        "Validate hits HS256 / bare (h2load), target >= 0.9": ratio(
            "sidecar Validate HS256 hits (h2load)", "bare Validate (h2load)"
        ),
        "Validate hits RS256 / bare (h2load), target >= 0.9": ratio(
            "sidecar Validate RS256 hits (h2load)", "bare Validate (h2load)"
        ),
        "Check / no-op Check (ghz), target >= 0.8": ratio(
            "sidecar Check RS256 (ghz)", "no-op Check (ghz)"
        ),
        "Check, 5 routes (one CEL) / no routes (ghz), target >= 0.9": ratio(
            "sidecar Check RS256, 5 routes (ghz)", "sidecar Check RS256 (ghz)"
        ),
        "2 workers / 1 worker, target >= 1.6": ratio(
            "sidecar Validate HS256 hits, 2 worker(s)", "sidecar Validate HS256 hits, 1 worker(s)"
        ),
        "Envoy: ext_authz sidecar / ext_authz no-op, target >= 0.8": ratio(
            "Envoy ext_authz to sidecar RS256", "Envoy ext_authz to no-op Check"
        ),
        "Envoy: ext_authz sidecar / OPA-Envoy, target >= 1": ratio(
            "Envoy ext_authz to sidecar RS256", "Envoy ext_authz to OPA-Envoy RS256"
        ),
        "Envoy: ext_authz sidecar / jwt_authn, target >= 0.25": ratio(
            "Envoy ext_authz to sidecar RS256", "Envoy jwt_authn RS256"
        ),
        # What no ext_authz server in Python can pass: a server that decides nothing.
        "ceiling: Envoy ext_authz no-op / jwt_authn": ratio(
            "Envoy ext_authz to no-op Check", "Envoy jwt_authn RS256"
        ),
        "ceiling: Envoy ext_authz no-op / OPA-Envoy": ratio(
            "Envoy ext_authz to no-op Check", "Envoy ext_authz to OPA-Envoy RS256"
        ),
        "Envoy: http_service sidecar / jwt_authn, hits, target >= 0.6": ratio(
            "Envoy http_service to sidecar RS256 hits", "Envoy jwt_authn RS256"
        ),
        "Envoy: http_service sidecar / jwt_authn, misses, target >= 0.3": ratio(
            "Envoy http_service to sidecar RS256 misses", "Envoy jwt_authn RS256 misses"
        ),
        "nginx: auth_request / no auth, hits (no proxy cache)": ratio(
            "nginx auth_request RS256 hits", "nginx, no auth"
        ),
        "nginx: auth_request with proxy_cache / no auth, hits, target >= 0.4": ratio(
            "nginx auth_request RS256 hits, proxy_cache", "nginx, no auth"
        ),
        "nginx: auth_request / no auth, misses": ratio(
            "nginx auth_request RS256 misses", "nginx, no auth"
        ),
        "Caddy: forward_auth / no auth, hits, target >= 0.4": ratio(
            "Caddy forward_auth RS256 hits", "Caddy, no auth"
        ),
        "ceiling: Caddy forward_auth to a no-op / no auth": ratio(
            "Caddy forward_auth to a no-op", "Caddy, no auth"
        ),
        "ceiling: Envoy http_service to a no-op / jwt_authn": ratio(
            "Envoy http_service to a no-op", "Envoy jwt_authn RS256"
        ),
        "Caddy: forward_auth / no auth, misses": ratio(
            "Caddy forward_auth RS256 misses", "Caddy, no auth"
        ),
        "Connect Validate hits / gRPC Validate hits (h2load), target >= 3": ratio(
            "Connect Validate RS256 hits", "sidecar Validate RS256 hits (h2load)"
        ),
        "forward auth hit, server CPU per request, target <= 30 us": (
            f"- | {cost:.0f} us"
            if (cost := cpu("forward auth RS256 hits, direct"))
            else "not measured"
        ),
        "p99 at half load through nginx, target < 5 ms": p99(
            "nginx auth_request RS256 hits at half load"
        ),
        "cores used (servers + load generator), 1 worker / 2 workers, of the machine's": cores(
            "sidecar Validate HS256 hits, 1 worker(s)", "sidecar Validate HS256 hits, 2 worker(s)"
        ),
        "p99 at half load, target < 5 ms: sidecar hits / misses | bare at those rates": p99s(),
    }


def write(results: Results, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    found = ratios(results)
    (out / "results.json").write_text(
        json.dumps(
            {
                "machine": results.machine,
                "points": [asdict(p) for p in results.points],
                "ratios": found,
                **results.extra,
            },
            indent=2,
        )
        + "\n"
    )
    lines = [
        "| round | scenario | tool | concurrency | req/s | p50 ms | p99 ms | errors | "
        "server CPU us/call | generator CPU us/call | cores | note |"
    ]
    lines.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for p in results.points:
        p99 = f"{p.p99_ms:.2f}" if p.p99_ms else "-"
        lines.append(
            f"| {p.round + 1} | {p.scenario} | {p.tool} | {p.concurrency} | {p.rps:.0f} | "
            f"{p.p50_ms:.2f} | {p99} | {p.errors} | {p.server_cpu_us:.0f} | "
            f"{p.generator_cpu_us:.0f} | {p.cores:.2f} | {p.note} |"
        )
    lines += [
        "",
        "| target | by peak req/s | by server CPU per call |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {name} | {value} |" for name, value in found.items()]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines[-len(found) - 2 :]))
    _plot(results, out / "results.png")


def _plot(results: Results, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench: no matplotlib (pip install '.[bench]'): no plot", file=sys.stderr)
        return
    names = dict.fromkeys(p.scenario for p in results.points)
    swept = {name: results.curve(name) for name in names}
    swept = {k: v for k, v in swept.items() if len(v) > 1}
    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 6))
    colors = plt.get_cmap("tab20")
    for index, (scenario, points) in enumerate(swept.items()):
        points.sort(key=lambda p: p.concurrency)
        xs = [p.concurrency for p in points]
        color = colors(index % 20)
        left.plot(xs, [p.rps for p in points], marker="o", color=color, label=scenario)
        if any(p.p99_ms for p in points):  # h2load gives no percentiles
            right.plot(xs, [p.p99_ms for p in points], marker="o", color=color)
    for axis, label in ((left, "req/s"), (right, "p99 (ms)")):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("concurrency (calls in flight)")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=7)
    figure.suptitle(f"auth-sidecar, {results.machine['workers']} workers, {results.machine['cpu']}")
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--seconds", type=float, default=3.0, help="per load run")
    parser.add_argument("--levels", default="4,16,64", help="concurrency levels to sweep")
    parser.add_argument(
        "--only", action="append", help="grpc, check, envoy, http, workers, latency, memory"
    )
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    parser.add_argument("--smoke", action="store_true", help="1 s runs at one level; no files")
    parser.add_argument(
        "--rounds", type=int, default=1, help="run the scenarios this many times; judge medians"
    )
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.levels, args.only = 1.0, "8", args.only or ["grpc", "check", "http"]
    everything = ["grpc", "check", "envoy", "http", "workers", "latency", "memory"]
    chosen = args.only or everything
    results = Results(machine={**machine(args.workers), "rounds": str(args.rounds)})
    print(json.dumps(results.machine, indent=2), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-") as directory, ExitStack():
        run = Run(
            directory=directory,
            workers=args.workers,
            seconds=args.seconds,
            levels=[int(level) for level in args.levels.split(",")],
            keys=Keys.make(),
            results=results,
            protoset=protoset(Path(directory) / "services.protoset"),
            distinct=100 if args.smoke else DISTINCT_TOKENS,
        )
        for round_ in range(args.rounds):
            results.round = round_
            if args.rounds > 1:
                print(f"== round {round_ + 1} of {args.rounds}", flush=True)
            for name in chosen:
                if name == "memory" and round_:
                    continue  # a measure of size, not of speed: once is enough
                if name == "envoy":
                    envoy_scenarios(run, opa=available("opa-envoy-plugin"))
                else:
                    globals()[f"{name}_scenarios"](run)
        # h2load and wrk count HTTP statuses; also make sure the sidecar decided correctly.
        if args.smoke:
            bad = [p for p in results.points if p.errors]
            print(f"bench smoke: {len(results.points)} runs, {len(bad)} with errors")
            return 1 if bad or not results.points else 0
    write(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
