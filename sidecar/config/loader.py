"""The config loader: reads the environment and command-line flags (flags win), parses keys once,
and either returns a `Config` or raises `ConfigError` with one line per problem, each naming its
variable. It is a loop over the settings table, plus the rules that join several settings (the
key source, the keys and the algorithm, the mint secret, TLS, the mode).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from sidecar.config import file, issuers, parsers, routes
from sidecar.config.model import Config, EnvoyConfig
from sidecar.config.setting import Setting
from sidecar.config.settings import KEY_SOURCES, SETTINGS
from sidecar.core.crypto import Signer, Verifier
from sidecar.core.errors import ConfigError
from sidecar.core.policy import Mode
from sidecar.core.revocation import Posture
from sidecar.core.rules import DefaultRoute
from sidecar.keys import algorithms, jwks, tls
from sidecar.keys.fetch import FetchSettings, Remote, url_problem
from sidecar.keys.introspect import IntrospectionSettings
from sidecar.keys.tls import TlsFiles
from sidecar.stores.base import EMBEDDED, StoreSettings


def load(env: Mapping[str, str], flags: Mapping[str, str | None] | None = None) -> Config:
    """Builds a `Config` from variables and flags (keyed by variable name); or ConfigError."""
    flags = flags or {}
    path = flags.get(issuers.CONFIG_FILE) or env.get(issuers.CONFIG_FILE)
    if not path:
        return _Loader(env, flags).load()
    problems: list[str] = []
    document = file.read(path, problems)
    insecure = (flags.get("AUTH_MODE") or env.get("AUTH_MODE")) == Mode.INSECURE
    config: Config | None = None
    try:
        if "issuers" in document and not insecure:
            config = issuers.load(path, document["issuers"], env, flags, _load_one)
        else:
            config = _Loader(env, flags).load()
    except ConfigError as error:
        problems += error.problems
    if "issuers" in document and insecure:
        # Electric's safety net, as for every secure-mode setting.
        problems.append(
            f"{issuers.CONFIG_FILE}: is set, but AUTH_MODE=insecure does not use its [[issuers]]"
            " tables. Did you forget to set AUTH_MODE=secure?"
        )
    default, dry_run = (
        (config.default_route, config.dry_run) if config else (DefaultRoute.AUTHENTICATED, False)
    )
    table = routes.build(document.get("routes"), default, dry_run, problems)
    if problems or config is None:
        raise ConfigError(list(dict.fromkeys(problems)))
    files = dict.fromkeys([path, *config.files])
    return replace(config, routes=table, files=tuple(files))


def _load_one(env: Mapping[str, str], flags: Mapping[str, str | None]) -> Config:
    """One issuer's Config, as if the environment alone described it."""
    return _Loader(env, flags).load()


class _Loader:
    def __init__(self, env: Mapping[str, str], flags: Mapping[str, str | None]) -> None:
        self._env = env
        self._flags = flags
        self.problems: list[str] = []
        # Settings that already have a problem line: no second line about them.
        self._failed: set[str] = set()
        self._files: list[str] = []

    def load(self) -> Config:
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            if not setting.secure_only:
                values[setting.env] = self._value(setting)
        mode = values["AUTH_MODE"]
        source = self._key_source() if mode is Mode.SECURE else None
        if source not in (None, "AUTH_JWT_KEY"):
            self._failed.add("AUTH_JWT_KEY")  # not missing: another key source is set
        for setting in SETTINGS:
            if not setting.secure_only:
                continue
            if mode is Mode.SECURE:
                if setting.env == "AUTH_JWT_KEY" and source not in (None, "AUTH_JWT_KEY"):
                    values[setting.env] = None  # another key source is the one in use
                    continue
                values[setting.env] = self._value(setting)
            elif mode is Mode.INSECURE and self._get(setting.env) is not None:
                # Electric's safety net: a key set in insecure mode is almost always a mistake.
                self._problem(
                    setting.env,
                    "is set, but AUTH_MODE=insecure does not use it. "
                    "Did you forget to set AUTH_MODE=secure?",
                )
        tls_files = self._tls(values)
        fields: dict[str, Any] = {"verifier": None, "signer": None, "alg": None, "tls": tls_files}
        groups: dict[str, dict[str, Any]] = {"": fields, "envoy": {}, "fetch": {}}
        for setting in SETTINGS:
            if setting.field is not None:
                group, _, name = setting.field.rpartition(".")
                groups[group][name] = values.get(setting.env)
        if mode is Mode.SECURE and source in (None, "AUTH_JWT_KEY"):
            algs = values["AUTH_JWT_ALG"]
            if algs is not None and len(algs) > 1:
                self._problem(
                    "AUTH_JWT_ALG", parsers.ALG_PROBLEM + "; a list needs a JWKS key source"
                )
                algs = None
            values = {**values, "AUTH_JWT_ALG": algs[0] if algs else None}
            fields["alg"] = values["AUTH_JWT_ALG"]
            fields["verifier"], fields["signer"] = self._keys(values)
        elif mode is Mode.SECURE and source is not None and source != "conflict":
            fields.update(self._jwks_keys(source, values))
        if mode is Mode.SECURE:
            fields["introspection"] = self._introspection(values, source)
        fields["revocation"] = self._revocation(values)
        fetch = groups["fetch"]
        if None not in (fetch["refresh"], fetch["min_refresh"]) and (
            fetch["min_refresh"] > fetch["refresh"]
        ):
            self._problem(
                "SIDECAR_JWKS_MIN_REFRESH_SECONDS",
                f"must not exceed SIDECAR_JWKS_REFRESH_SECONDS ({fetch['refresh']})",
            )
        if self.problems:
            raise ConfigError(self.problems)
        return Config(
            envoy=EnvoyConfig(**groups["envoy"]),
            fetch=FetchSettings(**fetch),
            files=tuple(self._files),
            **fields,
        )

    def _key_source(self) -> str | None:
        """The one key source that is set; "conflict" (and a problem naming both) when two are."""
        given = [
            name
            for name in KEY_SOURCES
            if self._get(name) is not None
            or (name == "AUTH_JWT_KEY" and self._get("AUTH_JWT_KEY_FILE") is not None)
        ]
        if len(given) > 1:
            first, second = (
                "AUTH_JWT_KEY_FILE"
                if n == "AUTH_JWT_KEY" and self._get("AUTH_JWT_KEY") is None
                else n
                for n in given[:2]
            )
            self._problem(second, f"is set together with {first}; set exactly one key source")
            self._failed.add("AUTH_JWT_KEY")
            return "conflict"
        return given[0] if given else None

    def _jwks_keys(self, source: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Secure mode with a JWK Set: from a file now, or from a URL once the server runs."""
        algs: tuple[str, ...] = values["AUTH_JWT_ALG"] or ()
        remote_source = source != "AUTH_JWT_JWKS_FILE"
        if remote_source and any(a in algorithms.HS_ALGS for a in algs):
            self._problem(
                "AUTH_JWT_ALG",
                "lists an HS algorithm, but a key set from a URL never holds secrets",
            )
            algs = ()
        verifier = jwks.JwksVerifier(frozenset(algs))
        remote = None
        warnings: list[str] = []
        location = self._get(source) or ""
        if not remote_source:
            self._files.append(location)
            try:
                document = Path(location).read_bytes()
            except OSError as error:
                self._problem(source, f"cannot read {location}: {error.strerror}")
            else:
                try:
                    key_set, warnings = jwks.parse(document, verifier.algorithms, allow_oct=True)
                    verifier.update(key_set)
                except jwks.JwksProblem as problem:
                    if algs:
                        self._problem(source, f"{location} {problem}")
        else:
            refused = url_problem(location, bool(values["SIDECAR_JWKS_ALLOW_HTTP"]))
            if refused is not None:
                self._problem(source, refused)
            remote = Remote(location, discovery=source == "AUTH_JWT_OIDC_ISSUER")
        iss = values["AUTH_JWT_ISS"]
        if iss is None and source == "AUTH_JWT_OIDC_ISSUER":
            iss = location
        alg, signer = self._jwks_signer(algs, values["AUTH_JWT_SIGNING_KEY"], verifier.keys)
        return {
            "alg": alg or (algs[0] if algs else None),
            "iss": iss,
            "verifier": verifier,
            "remote": remote,
            "signer": signer,
            "warnings": tuple(warnings),
        }

    def _jwks_signer(
        self, algs: tuple[str, ...], material: str | None, key_set: jwks.KeySet | None
    ) -> tuple[str | None, Signer | None]:
        """Mint's alg and signer from AUTH_JWT_SIGNING_KEY: the first allowed alg it fits; its
        kid is the JWK's own when the key is in the JWKS file, else its thumbprint."""
        candidates = [a for a in algs if a not in algorithms.HS_ALGS]
        if material is None or not candidates:
            return None, None
        first: algorithms.KeyProblem | None = None
        for alg in candidates:
            try:
                signer = algorithms.signer(alg, material, None)
            except algorithms.KeyProblem as problem:
                first = first or problem
                continue
            thumbprint = signer.kid or ""
            if key_set is not None and thumbprint not in key_set.thumbprints:
                self._problem(
                    "AUTH_JWT_SIGNING_KEY",
                    "is not the private half of a key in AUTH_JWT_JWKS_FILE; "
                    "Mint's tokens would not verify",
                )
                return None, None
            if key_set is not None:
                signer.kid = key_set.kid_by_thumbprint.get(thumbprint, thumbprint)
            return alg, signer
        self._problem("AUTH_JWT_SIGNING_KEY", str(first))
        return None, None

    def _introspection(
        self, values: Mapping[str, Any], source: str | None
    ) -> IntrospectionSettings | None:
        """SIDECAR_INTROSPECTION_URL with its client id and secret, all three or none; with
        AUTH_JWT_OIDC_ISSUER, the client alone: discovery names the endpoint."""
        url = values["SIDECAR_INTROSPECTION_URL"]
        client_id = values["SIDECAR_INTROSPECTION_CLIENT_ID"]
        secret = values["SIDECAR_INTROSPECTION_CLIENT_SECRET"]
        discovered = url is None and source == "AUTH_JWT_OIDC_ISSUER" and client_id is not None
        if url is None and not discovered:
            for name, value in (
                ("SIDECAR_INTROSPECTION_CLIENT_ID", client_id),
                ("SIDECAR_INTROSPECTION_CLIENT_SECRET", secret),
            ):
                if value is not None:
                    self._problem(name, "is set, but SIDECAR_INTROSPECTION_URL is not")
            if values["SIDECAR_INTROSPECTION_EVERY_TOKEN"]:
                self._problem(
                    "SIDECAR_INTROSPECTION_EVERY_TOKEN",
                    "is true, but SIDECAR_INTROSPECTION_URL is not set",
                )
            return None
        refused = url and url_problem(url, bool(values["SIDECAR_JWKS_ALLOW_HTTP"]))
        if refused is not None:
            self._problem("SIDECAR_INTROSPECTION_URL", refused)
        for name, value in (
            ("SIDECAR_INTROSPECTION_CLIENT_ID", client_id),
            ("SIDECAR_INTROSPECTION_CLIENT_SECRET", secret),
        ):
            if not value and name not in self._failed:
                needed = "SIDECAR_INTROSPECTION_URL" if url else "introspection (OIDC discovery)"
                self._problem(name, f"is needed with {needed}")
        if refused or not client_id or not secret:
            return None
        return IntrospectionSettings(
            url=url,
            client_id=client_id,
            client_secret=secret,
            timeout=float(values["SIDECAR_INTROSPECTION_TIMEOUT_SECONDS"]),
            max_rate=float(values["SIDECAR_INTROSPECTION_MAX_RATE"]),
            cache_seconds=float(values["SIDECAR_INTROSPECTION_CACHE_SECONDS"]),
            negative_seconds=float(values["SIDECAR_INTROSPECTION_NEGATIVE_CACHE_SECONDS"]),
            ca_file=values["SIDECAR_JWKS_CA_FILE"],
            every_token=bool(values["SIDECAR_INTROSPECTION_EVERY_TOKEN"]),
        )

    def _revocation(self, values: Mapping[str, Any]) -> StoreSettings | None:
        """SIDECAR_REVOCATION_STORE: a Redis URL, or the embedded store in SIDECAR_STATE_DIR
        (created here, so that a directory that cannot be is a config line, not a crash)."""
        url = values["SIDECAR_REVOCATION_STORE"]
        state_dir = values["SIDECAR_STATE_DIR"]
        if url is None or "SIDECAR_STATE_DIR" in self._failed:
            return None
        if url == EMBEDDED:
            if state_dir is None:
                if self._get("SIDECAR_REVOCATION_STORE") is not None:
                    self._problem("SIDECAR_REVOCATION_STORE", "is embedded: set SIDECAR_STATE_DIR")
                return None
            try:
                Path(state_dir).mkdir(parents=True, exist_ok=True)
            except OSError as error:
                self._problem("SIDECAR_STATE_DIR", f"cannot create {state_dir}: {error.strerror}")
                return None
            if not os.access(state_dir, os.W_OK | os.X_OK):
                self._problem("SIDECAR_STATE_DIR", f"{state_dir} is not writable")
                return None
        staleness = values["SIDECAR_REVOCATION_MAX_STALENESS_SECONDS"]
        if staleness is None or values["SIDECAR_REVOCATION_FAIL"] is None:
            return None
        posture = Posture(float(staleness), values["SIDECAR_REVOCATION_FAIL"] == "open")
        return StoreSettings(url, state_dir, posture)

    def _value(self, setting: Setting) -> Any:
        """The setting's parsed value, its default's when unset, or None (with a problem)."""
        if setting.parse is None:
            return None
        raw = self._secret(setting.env) if setting.secret else self._get(setting.env)
        raw = raw if raw is not None else setting.default
        if raw is None:
            if setting.missing and setting.env not in self._failed:
                self._problem(setting.env, setting.missing)
            return None
        try:
            return setting.parse(raw)
        except parsers.Invalid as problem:
            self._problem(setting.env, str(problem))
            return None

    def _keys(self, values: Mapping[str, Any]) -> tuple[Verifier | None, Signer | None]:
        """The cross-field rules of secure mode: the key fits the algorithm, and the signing
        key (RS/ES) is the private half of it."""
        alg, material, signing = (
            values["AUTH_JWT_ALG"],
            values["AUTH_JWT_KEY"],
            values["AUTH_JWT_SIGNING_KEY"],
        )
        if alg is None:
            return None, None
        verifier = signer = None
        if material is not None:
            try:
                verifier = algorithms.verifier(alg, material)
            except algorithms.KeyProblem as problem:
                self._problem("AUTH_JWT_KEY", str(problem))
        if alg in algorithms.HS_ALGS:
            if signing is not None:
                self._problem(
                    "AUTH_JWT_SIGNING_KEY", f"is not used with {alg}: Mint signs with AUTH_JWT_KEY"
                )
            return verifier, algorithms.hs_signer(verifier) if verifier else None
        if signing is not None and verifier is not None:
            try:
                signer = algorithms.signer(alg, signing, verifier)
            except algorithms.KeyProblem as problem:
                self._problem("AUTH_JWT_SIGNING_KEY", str(problem))
        return verifier, signer

    def _tls(self, values: Mapping[str, Any]) -> TlsFiles | None:
        """The listener's TLS files: a certificate and its key together, the client CA only
        with them, and all of them loadable."""
        cert, key = values[tls.CERT_FILE], values[tls.KEY_FILE]
        client_ca = values[tls.CLIENT_CA_FILE]
        if cert is None and key is None:
            if client_ca is not None:
                self._problem(tls.CLIENT_CA_FILE, f"needs {tls.CERT_FILE} and {tls.KEY_FILE}")
            return None
        if cert is None or key is None:
            missing, given = (
                (tls.CERT_FILE, tls.KEY_FILE)
                if cert is None
                else (
                    tls.KEY_FILE,
                    tls.CERT_FILE,
                )
            )
            self._problem(missing, f"is required with {given}")
            return None
        files = TlsFiles(cert, key, client_ca)
        self.problems += tls.check(files)
        return files

    def _get(self, name: str) -> str | None:
        """A flag beats the environment. Empty counts as unset, as Compose passes unset values."""
        value = self._flags.get(name)
        if value is None:
            value = self._env.get(name)
        return value or None

    def _secret(self, name: str) -> str | None:
        """A secret comes from its variable or from `<name>_FILE`, never both.

        A file's trailing newline is dropped, since `echo` and editors add one.
        """
        value, path = self._get(name), self._get(name + "_FILE")
        if value is not None and path is not None:
            self._problem(name, f"is set together with {name}_FILE; set only one")
            return None
        if path is None:
            if value is not None and not _is_utf8(value):
                # os.environ keeps undecodable bytes as surrogates, which cannot be encoded.
                self._problem(name, "is not UTF-8 text")
                return None
            return value
        self._files.append(path)
        try:
            return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or "not UTF-8 text"
            self._problem(name + "_FILE", f"cannot read {path}: {reason}")
            self._failed.add(name)
            return None

    def _problem(self, name: str, text: str) -> None:
        self._failed.add(name)
        self.problems.append(f"{name}: {text}")


def _is_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
