"""The Envoy ext_authz adapter: `envoy.service.auth.v3.Authorization/Check` over the same Validator.

Check decodes the HTTP request Envoy describes, asks the Gate (so it decides exactly as forward
auth does, and as Validate does on the token), and maps the verdict to a CheckResponse: allowed
requests go upstream with the user id in a header that the client cannot set, and with
Electric's `secret` on the shape path when one is configured; refused ones get a 401 or 403 in
RFC 6750's form.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2
from envoy.type.v3 import http_status_pb2
from google.rpc import code_pb2, status_pb2

from authsidecar.v1.structs import to_struct
from sidecar.adapters import rpc
from sidecar.adapters.gate import (
    ELECTRIC_SECRET_PARAMS,
    PASSED,
    Gate,
    Refusal,
    Verdict,
    settle,
)
from sidecar.config import EnvoyConfig
from sidecar.core.cache import Decider, Responses
from sidecar.core.errors import IntrospectionNeeded, KeysUnavailable, UnsendableClaim
from sidecar.core.rules import Routes
from sidecar.core.validator import Decision
from sidecar.observe.traffic import Traffic

NAME = "envoy.service.auth.v3.Authorization"
_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


class EnvoyAuthorization:
    """Serves Envoy's Check with a `Gate` (see gate.py): the decision that forward auth makes."""

    def __init__(
        self,
        validator: Decider,
        settings: EnvoyConfig,
        memo_size: int = 0,
        shape_claim: str | None = None,
        gate: Gate | None = None,
    ) -> None:
        """`memo_size`: as for AuthService, responses to valid decisions kept for reuse.
        `shape_claim`: the claim that scopes requests to the shape path (None: off).
        `gate`: the Gate to decide with, when it has routes (default: one without)."""
        self.gate = gate or Gate(validator, settings, shape_claim)
        self._settings = settings
        self._responses = Responses(self.respond, memo_size)
        # Spoof protection: whatever the client sent in these headers never reaches upstream.
        self._owned_headers = list(self.gate.owned_headers)
        secret = settings.electric_secret
        self._secret = (
            [base_pb2.QueryParameter(key=ELECTRIC_SECRET_PARAMS[0], value=secret)] if secret else []
        )
        self._secret_params = list(ELECTRIC_SECRET_PARAMS) if secret else []
        self._preflight = _allowed(
            headers_to_remove=self._owned_headers,
            query_parameters_to_remove=self._secret_params,
            metadata={},
        )
        self._missing = _denied(self.gate.missing)

    def swap(self, validator: Decider, routes: Routes | None = None) -> None:
        """Hot reload: later calls use this validator and these routes (the Envoy settings
        come from the environment, which does not change while the process runs)."""
        self.gate.validator = validator
        if routes is not None:
            self.gate.routes = routes

    async def Check(  # noqa: N802 - gRPC method name
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> external_auth_pb2.CheckResponse:
        http = request.attributes.request.http
        try:
            try:
                verdict = self.gate.decide(
                    http.method, http.path, _headers(http), removes_secret=True, host=http.host
                )
            except IntrospectionNeeded as needed:  # rare: the closure is built only here
                verdict = await settle(needed, lambda: self._verdict(http))
        except KeysUnavailable as error:
            # No decision: an RPC error, which Envoy turns into a denial (it fails closed).
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(error))
        decision = verdict.decision
        if decision is None:
            return self._preflight if verdict in PASSED else self._missing
        if not decision.valid:
            return _denied(self.gate.refusal(decision, verdict.scopes))
        variant = verdict.source + ("\0shape" if verdict.shape_request else "")
        return self._responses.get(decision, variant)

    def _verdict(self, http: Any) -> Verdict:
        """The hot path's call, again, once an introspection answer is in."""
        return self.gate.decide(
            http.method, http.path, _headers(http), removes_secret=True, host=http.host
        )

    def respond(self, decision: Decision, variant: str) -> external_auth_pb2.CheckResponse:
        """Maps a decision on a token found in `source` (a header name, or `?param`), on the
        shape path when `variant` says so."""
        if not decision.valid:
            return _denied(self.gate.refusal(decision))
        source, _, on_shape_path = variant.partition("\0")
        try:
            upstream = self.gate.upstream_headers(decision)
        except UnsendableClaim as error:
            return _denied(self.gate.refusal(Decision.refused(error)))
        # A header of the gate's that this token does not fill is removed, never the client's.
        remove_headers = [h for h in self._owned_headers if h not in upstream]
        if self._settings.strip_token and source[:1] not in ("?", "@"):
            remove_headers.append(source)
        # A client-sent secret never reaches Electric, on any path; the real one only its API.
        # Envoy sets parameters before it removes them, and setting one replaces every copy:
        # the secret that is set must not be in the removals too.
        to_set = self._secret if on_shape_path else []
        remove_params = [source[1:]] if source.startswith("?") else []
        remove_params += self._secret_params[1:] if to_set else self._secret_params
        metadata: dict[str, Any] = {"user_id": decision.user_id, "reason": decision.reason.wire}
        claims = self.gate.selected_claims(decision)
        if claims:
            metadata["claims"] = claims
        return _allowed(
            set_headers=upstream,
            headers_to_remove=remove_headers,
            query_parameters_to_set=to_set,
            query_parameters_to_remove=remove_params,
            metadata=metadata,
        )


def add_to_server(service: EnvoyAuthorization, server: grpc.aio.Server, traffic: Traffic) -> None:
    rpc.register(
        server,
        NAME,
        {
            "Check": (
                service.Check,
                external_auth_pb2.CheckRequest,
                external_auth_pb2.CheckResponse,
            )
        },
        traffic,
    )


def _headers(http: Any) -> Mapping[str, str]:
    """Envoy sends `headers`, or `header_map` when the filter sets encode_raw_headers."""
    if http.headers or not http.HasField("header_map"):
        return http.headers  # type: ignore[no-any-return]
    return {
        h.key.lower(): h.value or h.raw_value.decode("utf-8", "replace")
        for h in http.header_map.headers
    }


def _allowed(
    *,
    set_headers: Mapping[str, str] | None = None,
    headers_to_remove: list[str] | None = None,
    query_parameters_to_set: list[base_pb2.QueryParameter] | None = None,
    query_parameters_to_remove: list[str] | None = None,
    metadata: Mapping[str, Any],
) -> external_auth_pb2.CheckResponse:
    ok = external_auth_pb2.OkHttpResponse(
        headers=_overwrite((set_headers or {}).items()),
        headers_to_remove=headers_to_remove or [],
        query_parameters_to_set=query_parameters_to_set or [],
        query_parameters_to_remove=query_parameters_to_remove or [],
    )
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=code_pb2.OK),
        ok_response=ok,
        dynamic_metadata=to_struct(metadata),
    )


def _denied(refusal: Refusal) -> external_auth_pb2.CheckResponse:
    forbidden = refusal.status == HTTPStatus.FORBIDDEN
    denied = external_auth_pb2.DeniedHttpResponse(
        status=http_status_pb2.HttpStatus(code=refusal.status),
        headers=_overwrite(
            (("www-authenticate", refusal.www_authenticate), ("content-type", "application/json"))
        ),
        body=refusal.body,
    )
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(
            code=code_pb2.PERMISSION_DENIED if forbidden else code_pb2.UNAUTHENTICATED,
            message=refusal.message,
        ),
        denied_response=denied,
        dynamic_metadata=to_struct({"reason": refusal.reason}),
    )


def _overwrite(headers: Iterable[tuple[str, str]]) -> list[base_pb2.HeaderValueOption]:
    """Header options that replace whatever the client sent under the same name."""
    return [
        base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=key, value=value), append_action=_OVERWRITE
        )
        for key, value in headers
    ]
