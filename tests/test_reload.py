"""Hot reload: SIGHUP and changed files, under load, with no failed or wrong decision."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from support import StartSidecar, public_jwk, until

from authsidecar.v1 import auth_pb2, auth_pb2_grpc
from sidecar import config
from sidecar.config import Config
from sidecar.core.errors import ConfigError
from sidecar.runtime.reload import KeyFetchers, Reloader, signature

MINT_SECRET = "m" * 40


def token(key: ec.EllipticCurvePrivateKey, kid: str) -> str:
    now = int(time.time())
    claims = {"sub": "alice", "iat": now, "exp": now + 600}
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})


def publish(directory: Path, name: str, content: str) -> None:
    """Writes `content` as a new version and swaps the `jwks.json` symlink to it, as
    Kubernetes does with a Secret: the path never shows a partial file."""
    version = directory / name
    version.write_text(content)
    link = directory / "next-link"
    link.symlink_to(version)
    os.replace(link, directory / "jwks.json")


def test_signature_sees_a_swapped_symlink(tmp_path: Path) -> None:
    publish(tmp_path, "v1", "one")
    files = (str(tmp_path / "jwks.json"), str(tmp_path / "missing"))
    first = signature(files)
    assert first[1] is None
    publish(tmp_path, "v2", "two")
    assert signature(files) != first


async def test_a_failed_reload_keeps_the_running_config(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = tmp_path / "key"
    key.write_text("k" * 32)
    env = {"AUTH_MODE": "secure", "AUTH_JWT_ALG": "HS256", "AUTH_JWT_KEY_FILE": str(key)}
    running = config.load(env)
    applied: list[Config] = []
    reloader = Reloader(lambda: config.load(env), running, applied.append, KeyFetchers())
    key.write_text("short")
    with caplog.at_level(logging.ERROR, "auth-sidecar.reload"):
        assert not await reloader.reload("SIGHUP")
    assert applied == []
    assert [r.getMessage() for r in caplog.records] == [
        "reload (SIGHUP) failed, keeping the running configuration: "
        "AUTH_JWT_KEY: The 'key' needs to be at least 32 bytes long for HS256"
    ]
    key.write_text("n" * 32)
    assert await reloader.reload("SIGHUP")
    assert [c.files for c in applied] == [(str(key),)]
    assert (reloader.reloads, reloader.failures) == (1, 1)


async def test_polling_reloads_when_a_file_changes(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("k" * 32)
    env = {"AUTH_MODE": "secure", "AUTH_JWT_ALG": "HS256", "AUTH_JWT_KEY_FILE": str(key)}
    applied: list[Config] = []
    ticks: list[float] = []
    changed = False

    async def sleep(seconds: float) -> None:
        """The injected sleep: changes the file on the second tick, ends the loop on the third."""
        nonlocal changed
        ticks.append(seconds)
        if len(ticks) == 2:
            key.write_text("n" * 40)
            changed = True
        if len(ticks) == 3:
            raise ConfigError(["stop"])

    reloader = Reloader(
        lambda: config.load(env), config.load(env), applied.append, KeyFetchers(), sleep
    )
    with pytest.raises(ConfigError):
        await reloader.poll(10)
    assert changed
    assert ticks == [10, 10, 10]
    assert len(applied) == 1  # the first tick saw no change, the second one did


def test_reload_under_load(sidecar_factory: StartSidecar, tmp_path: Path) -> None:
    """Keys rotate through SIGHUP and a symlink swap (mtime polling), and a broken file and a
    mint secret change come and go, while clients validate without pause."""
    keep, new, stranger = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    publish(tmp_path, "v1", json.dumps({"keys": [public_jwk(keep, kid="keep")]}))
    mint_secret = tmp_path / "mint"
    mint_secret.write_text(MINT_SECRET)
    signing_key = tmp_path / "signing.pem"
    signing_key.write_bytes(
        keep.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    sidecar = sidecar_factory(
        {
            "AUTH_MODE": "secure",
            "AUTH_JWT_ALG": "ES256",
            "AUTH_JWT_JWKS_FILE": str(tmp_path / "jwks.json"),
            "SIDECAR_MINT_SECRET_FILE": str(mint_secret),
            "AUTH_JWT_SIGNING_KEY_FILE": str(signing_key),
            "SIDECAR_RELOAD_SECONDS": "1",
        }
    )
    good, bad, newer = token(keep, "keep"), token(stranger, "keep"), token(new, "new")
    stop = threading.Event()
    calls = [0] * 4
    failures: list[str] = []

    def load(slot: int) -> None:
        with grpc.insecure_channel(sidecar.address) as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            while not stop.is_set():
                try:
                    ok = stub.Validate(auth_pb2.ValidateRequest(token=good), timeout=10)
                    no = stub.Validate(auth_pb2.ValidateRequest(token=bad), timeout=10)
                except grpc.RpcError as error:
                    failures.append(f"{error.code()}: {error.details()}")
                    continue
                calls[slot] += 2
                if not ok.valid or no.valid:
                    failures.append(f"wrong decision: {ok.reason} {no.reason}")

    threads = [threading.Thread(target=load, args=(slot,)) for slot in range(len(calls))]
    for thread in threads:
        thread.start()
    with grpc.insecure_channel(sidecar.address) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)

        def valid(text: str) -> bool:
            return stub.Validate(auth_pb2.ValidateRequest(token=text), timeout=10).valid

        def mint_works(secret: str) -> bool:
            try:
                stub.Mint(
                    auth_pb2.MintRequest(user_id="u"),
                    metadata=(("authorization", f"Bearer {secret}"),),
                    timeout=10,
                )
            except grpc.RpcError:
                return False
            return True

        try:
            assert not valid(newer)
            # 1. A new key, published by a symlink swap: mtime polling reloads it.
            publish(
                tmp_path,
                "v2",
                json.dumps({"keys": [public_jwk(keep, kid="keep"), public_jwk(new, kid="new")]}),
            )
            until(lambda: valid(newer))
            # 2. A broken file and SIGHUP: the reload fails, the running keys stay.
            publish(tmp_path, "v3", "{ not json")
            sidecar.send(signal.SIGHUP)
            until(lambda: any("reload (SIGHUP) failed" in line for line in sidecar.log))
            assert valid(newer)
            # 3. The new key retired, by SIGHUP.
            publish(tmp_path, "v4", json.dumps({"keys": [public_jwk(keep, kid="keep")]}))
            sidecar.send(signal.SIGHUP)
            until(lambda: not valid(newer))
            # 4. The mint secret file changes.
            assert mint_works(MINT_SECRET)
            mint_secret.write_text("n" * 40)
            sidecar.send(signal.SIGHUP)
            until(lambda: mint_works("n" * 40))
            assert not mint_works(MINT_SECRET)
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
    sidecar.terminate()
    total = sum(calls)
    print(f"reload under load: {total} calls, {len(failures)} failed or wrong")
    assert failures == []
    assert total > 100
    reloads = [line for line in sidecar.log if "reloaded (" in line]
    assert len(reloads) >= 3
    assert not any(MINT_SECRET in line or "n" * 40 in line for line in sidecar.log)
