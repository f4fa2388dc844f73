"""The `auth-sidecar` command: serve, mint, validate, revoke and health. A thin adapter."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sidecar import __version__, config
from sidecar.core.errors import BindError, CallError, ConfigError, KeysUnavailable
from sidecar.observe import logs

EXIT_INVALID = 1
EXIT_CONFIG = 2
_DURATION = re.compile(r"(\d+)([smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
SHAPE_CLAIM = "shape"  # the claim `mint --shape-*` writes when SIDECAR_SHAPE_CLAIM is unset


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.run(args))
    except ConfigError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG


def _serve(args: argparse.Namespace) -> int:
    from sidecar.runtime import (
        server,  # grpc is only needed here
        supervisor,
    )

    cfg = _config(args)
    logs.configure(cfg.log_level, cfg.log_format)
    try:
        reload = lambda: _config(args)  # noqa: E731 - the same flags, the files read anew
        if cfg.workers == 1 or args.worker:
            return server.run(cfg, reload, worker=args.worker)
        if cfg.listen.startswith("unix:"):
            # Workers cannot share one Unix socket file: the last to bind would replace it.
            logging.getLogger("auth-sidecar").info(
                "SIDECAR_WORKERS=%d: a Unix socket is served by one process", cfg.workers
            )
            return server.run(cfg, reload)
        return supervisor.run(cfg, args.argv)
    except BindError as error:
        print(error, file=sys.stderr)
        return EXIT_CONFIG


def _mint(args: argparse.Namespace) -> int:
    """Signs with the local configuration: whoever holds the key needs no mint secret."""
    cfg = _config(args)
    minter = config.build_minter(cfg)
    claims = dict(args.claim)
    others = (args.shape_namespace, args.shape_where, args.shape_columns, args.shape_param or None)
    if args.shape_table is None and any(value is not None for value in others):
        print("mint: the --shape-* flags need --shape-table", file=sys.stderr)
        return EXIT_CONFIG
    if args.shape_table is not None:
        claims[cfg.shape_claim or SHAPE_CLAIM] = _shape(args)
    try:
        minted = minter.mint(args.user_id, claims, args.ttl)
    except CallError as error:
        print(f"mint: {error}", file=sys.stderr)
        return EXIT_CONFIG
    print(minted.token)
    return 0


def _validate(args: argparse.Namespace) -> int:
    token = sys.stdin.read().strip() if args.token == "-" else args.token  # noqa: S105
    cfg = _config(args)
    for refresher in config.refreshers_for(cfg):
        # One fetch, now: the CLI has no background loop to wait for.
        if not asyncio.run(refresher.refresh()):
            print("validate: the keys could not be fetched (the reason is above)", file=sys.stderr)
            return EXIT_CONFIG
    try:
        decision = config.decider(cfg).decide(token)
    except KeysUnavailable as error:
        print(f"validate: {error}", file=sys.stderr)
        return EXIT_CONFIG
    print(json.dumps(decision.to_json(), indent=2, sort_keys=True))
    return 0 if decision.valid else EXIT_INVALID


def _revoke(args: argparse.Namespace) -> int:
    """Writes to the configured store directly: whoever holds the configuration needs no admin
    secret. Running sidecars pick the revocation up as they would from Revoke."""
    from sidecar.stores.base import StoreUnavailable
    from sidecar.stores.open import open_store

    cfg = _config(args)
    if cfg.revocation is None:
        print(
            "revoke: no revocation store: set SIDECAR_STATE_DIR (embedded) or "
            "SIDECAR_REVOCATION_STORE",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    if args.jti is not None and args.expires_at is None:
        print("revoke: --jti needs --expires-at (the token's exp)", file=sys.stderr)
        return EXIT_CONFIG
    revoker = config.build_revoker(cfg)
    try:
        if args.jti is not None:
            revocation = revoker.token(args.iss, args.jti, args.expires_at)
        elif args.user is not None:
            revocation = revoker.user(args.iss, args.user, args.not_before)
        else:
            revocation = revoker.issuer(args.iss, args.not_before)
    except CallError as error:
        print(f"revoke: {error}", file=sys.stderr)
        return EXIT_CONFIG
    store = open_store(cfg.revocation)

    async def write() -> None:
        try:
            await store.revoke(revocation)
        finally:
            await store.close()

    try:
        asyncio.run(write())
    except StoreUnavailable as error:
        print(f"revoke: {error}", file=sys.stderr)
        return EXIT_CONFIG
    print(
        json.dumps({"revoked": revocation.kind.value, "iss": revocation.iss, "at": revocation.at})
    )
    return 0


def _health(args: argparse.Namespace) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    target = args.target or os.environ.get("SIDECAR_LISTEN") or "127.0.0.1:50051"
    if (args.cert_file is None) != (args.key_file is None):
        print("health: --cert-file and --key-file go together", file=sys.stderr)
        return EXIT_CONFIG
    options = [("grpc.ssl_target_name_override", args.server_name)] if args.server_name else []
    if args.ca_file or args.cert_file:
        try:
            pem = [
                Path(p).read_bytes() if p else None
                for p in (args.ca_file, args.key_file, args.cert_file)
            ]
        except OSError as error:
            print(f"health: cannot read {error.filename}: {error.strerror}", file=sys.stderr)
            return EXIT_CONFIG
        channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(*pem), options)
    else:
        channel = grpc.insecure_channel(target, options)
    with channel:
        try:
            # types-grpcio-health-checking declares HealthStub without its methods.
            response = health_pb2_grpc.HealthStub(channel).Check(  # type: ignore[attr-defined]
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.RpcError as error:
            print(f"{target}: {error.code().name}: {error.details()}", file=sys.stderr)
            return EXIT_INVALID
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    print(f"{target}: {status}")
    return 0 if response.status == health_pb2.HealthCheckResponse.SERVING else EXIT_INVALID


def _config(args: argparse.Namespace) -> config.Config:
    # A subcommand has flags only for the settings it uses; the others come from the environment.
    flags = {s.env: getattr(args, _dest(s), None) for s in config.SETTINGS}
    return config.load(os.environ, flags)


def _dest(setting: config.Setting) -> str:
    return setting.flag.removeprefix("--").replace("-", "_")


def _shape(args: argparse.Namespace) -> dict[str, Any]:
    """Electric's gatekeeper claim from the `--shape-*` flags; only the flags given are set."""
    shape: dict[str, Any] = {"table": args.shape_table}
    for key in ("namespace", "where", "columns"):
        if getattr(args, f"shape_{key}") is not None:
            shape[key] = getattr(args, f"shape_{key}")
    if args.shape_param:
        shape["params"] = args.shape_param
    return shape


def _time(text: str) -> float:
    """Unix seconds (`1767225600`), or ISO 8601 with an offset (`2026-12-07T10:00:00Z`)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected Unix seconds or an ISO 8601 time such as 2026-12-07T10:00:00Z, not {text!r}"
        ) from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs an offset, such as Z or +01:00")
    return moment.timestamp()


def _claim(text: str) -> tuple[str, Any]:
    """`k=v`; v is read as JSON when it parses (`n=3`, `admin=true`), else as a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, not {text!r}")
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


def _ttl(text: str) -> int:
    """`90`, `90s`, `15m`, `1h` or `2d`."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 90s, 15m, 1h or 2d, not {text!r}"
        )
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="auth-sidecar",
        description="Validates and mints JWTs for sync servers, with ElectricSQL's auth rules.",
        epilog="Every flag has a variable of the same name (see the README); a flag wins.",
    )
    parser.add_argument("--version", action="version", version=f"auth-sidecar {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gRPC server")
    _add_settings(serve, config.SERVE)
    # Internal: set by the supervisor on the workers it starts, which share its port.
    serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(run=_serve)

    mint = commands.add_parser("mint", help="print a token from the local config")
    _add_settings(mint, config.MINT)
    mint.add_argument("user_id", metavar="USER_ID")
    mint.add_argument(
        "--claim",
        type=_claim,
        action="append",
        default=[],
        metavar="K=V",
        help="an extra claim; V is JSON if it parses, else a string (repeatable)",
    )
    mint.add_argument(
        "--ttl",
        type=_ttl,
        help="lifetime such as 90s, 15m, 1h, 2d (secure default 15m; insecure default: no exp)",
    )
    shape = mint.add_argument_group(
        "shape", "Electric's gatekeeper claim (written as SIDECAR_SHAPE_CLAIM, or `shape`)"
    )
    shape.add_argument("--shape-table", metavar="TABLE", help="the table; enables the claim")
    shape.add_argument("--shape-namespace", metavar="SCHEMA", help="the table's namespace")
    shape.add_argument("--shape-where", metavar="SQL", help="the where clause, byte for byte")
    shape.add_argument(
        "--shape-columns", metavar="COLS", help='columns, as Electric takes them: id,"Title"'
    )
    shape.add_argument(
        "--shape-param",
        action="append",
        default=[],
        metavar="VALUE",
        help="the where clause's next positional parameter, $1 first (repeatable)",
    )
    mint.set_defaults(run=_mint)

    validate = commands.add_parser(
        "validate", help="print the decision on a token as JSON; exit 1 if invalid"
    )
    _add_settings(validate, config.VALIDATE)
    validate.add_argument("token", metavar="TOKEN", help="the token, or - to read it from stdin")
    validate.set_defaults(run=_validate)

    revoke = commands.add_parser(
        "revoke", help="revoke a token (--jti), a user's tokens (--user) or an issuer's (--issuer)"
    )
    _add_settings(revoke, config.REVOKE)
    what = revoke.add_mutually_exclusive_group(required=True)
    what.add_argument("--jti", help="one token, by its jti (with --expires-at)")
    what.add_argument("--user", metavar="USER_ID", help="every token of this user before a time")
    what.add_argument(
        "--issuer", action="store_true", help="every token of --iss issued before a time"
    )
    revoke.add_argument("--iss", default="", help="the tokens' iss (default: none)")
    revoke.add_argument(
        "--expires-at", type=_time, metavar="TIME", help="the token's exp: kept until then"
    )
    revoke.add_argument(
        "--not-before",
        type=_time,
        metavar="TIME",
        help="tokens issued before this are refused (default: now)",
    )
    revoke.set_defaults(run=_revoke)

    probe = commands.add_parser("health", help="gRPC health probe; exit 0 when SERVING")
    probe.add_argument(
        "--target", help="address to probe (default: SIDECAR_LISTEN or 127.0.0.1:50051)"
    )
    probe.add_argument("--service", default="", help="service name; empty for the whole server")
    probe.add_argument("--timeout", type=float, default=2.0, help="seconds (default: 2)")
    tls = probe.add_argument_group("TLS (any of these turns it on)")
    tls.add_argument("--ca-file", help="PEM CA certificates to verify the server with")
    tls.add_argument("--cert-file", help="PEM client certificate chain, for mTLS")
    tls.add_argument("--key-file", help="PEM private key of --cert-file")
    tls.add_argument("--server-name", help="name to verify the server certificate against")
    probe.set_defaults(run=_health)
    return parser


def _add_settings(parser: argparse.ArgumentParser, command: str) -> None:
    """Flags for the settings that `command` uses, each named after its variable."""
    group = parser.add_argument_group("configuration")
    for setting in config.SETTINGS:
        if command not in setting.commands:
            continue
        default = f" (default: {setting.default})" if setting.default else ""
        group.add_argument(
            setting.flag,
            dest=_dest(setting),
            metavar="VALUE",
            help=f"{setting.env}: {setting.help}{default}",
        )


if __name__ == "__main__":
    sys.exit(main())
