"""The Envoy ext_authz adapter: `envoy.service.auth.v3.Authorization/Check` over the same Validator.

Check finds the token in the HTTP request Envoy describes, asks the Validator (so it decides
exactly as Validate does), and maps the decision to a CheckResponse: allowed requests go upstream
with the user id in a header that the client cannot set; refused ones get a 401 in RFC 6750's form.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote_plus

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2
from envoy.type.v3 import http_status_pb2
from google.rpc import code_pb2, status_pb2

from authsidecar.v1.structs import to_struct
from sidecar.adapters import rpc
from sidecar.config import EnvoyConfig
from sidecar.core import jws, shape
from sidecar.core.cache import Decider, Responses
from sidecar.core.errors import KeysUnavailable, Reason
from sidecar.core.validator import Decision
from sidecar.observe.traffic import Traffic

NAME = "envoy.service.auth.v3.Authorization"
MISSING_TOKEN = "Missing bearer token"  # noqa: S105 - a message, not a secret
_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
# RFC 6750 §3: error_description is printable ASCII without `"` and `\`.
_NOT_DESCRIPTION_TEXT = re.compile(r"[^ !#-\[\]-~]")


class EnvoyAuthorization:
    """Serves Envoy's Check with a `Validator` and the Envoy settings."""

    def __init__(
        self,
        validator: Decider,
        settings: EnvoyConfig,
        memo_size: int = 0,
        shape_claim: str | None = None,
    ) -> None:
        """`memo_size`: as for AuthService, responses to valid decisions kept for reuse.
        `shape_claim`: the claim that scopes requests to the shape path (None: off)."""
        self._validator = validator
        self._settings = settings
        self._responses = Responses(self.respond, memo_size)
        self._shape_claim = shape_claim
        self._shape_path = shape.path_matcher(settings.shape_path)
        # Spoof protection: whatever the client sent in these headers never reaches upstream.
        self._owned_headers = [h for h in (settings.user_header, settings.claims_header) if h]
        self._preflight = _allowed(headers_to_remove=self._owned_headers, metadata={})
        self._missing = _denied(
            www_authenticate=f'Bearer realm="{settings.realm}"',
            body={"error": "missing_token", "message": MISSING_TOKEN},
            message=MISSING_TOKEN,
            metadata={"reason": "MISSING_TOKEN"},
        )

    def swap(self, validator: Decider) -> None:
        """Hot reload: later calls use this validator (the Envoy settings come from the
        environment, which does not change while the process runs)."""
        self._validator = validator

    async def Check(  # noqa: N802 - gRPC method name
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> external_auth_pb2.CheckResponse:
        http = request.attributes.request.http
        headers = _headers(http)
        if self._settings.allow_preflight and _is_preflight(http.method, headers):
            return self._preflight
        token, source = self._find_token(headers, http.path)
        if token is None:
            return self._missing
        try:
            decision = self._validator.decide(token)
        except KeysUnavailable as error:
            # No decision: an RPC error, which Envoy turns into a denial (it fails closed).
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(error))
        if self._shape_claim:
            path, _, query = http.path.partition("?")
            if shape.is_shape_path(path, self._shape_path):
                decision = shape.authorize(
                    decision, self._shape_claim, lambda: shape.from_query(query)
                )
        return self._responses.get(decision, source)

    def respond(self, decision: Decision, source: str) -> external_auth_pb2.CheckResponse:
        """Maps a decision on a token found in `source` (a header name, or `?param`)."""
        reason = decision.reason.wire
        description = _NOT_DESCRIPTION_TEXT.sub("'", decision.message)
        if decision.reason is Reason.SHAPE_MISMATCH:
            # RFC 6750 §3.1: a good token that does not cover the request is 403, not 401.
            return _denied(
                status=http_status_pb2.Forbidden,
                code=code_pb2.PERMISSION_DENIED,
                www_authenticate=(
                    f'Bearer realm="{self._settings.realm}", error="insufficient_scope", '
                    f'error_description="{description}"'
                ),
                body={"error": "forbidden", "reason": reason, "message": decision.message},
                message=decision.message,
                metadata={"reason": reason},
            )
        if not decision.valid:
            return _denied(
                www_authenticate=(
                    f'Bearer realm="{self._settings.realm}", error="invalid_token", '
                    f'error_description="{description}"'
                ),
                body={"error": "invalid_token", "message": decision.message, "reason": reason},
                message=decision.message,
                metadata={"reason": reason},
            )
        settings = self._settings
        set_headers = {settings.user_header: decision.user_id}
        if settings.claims_header:
            set_headers[settings.claims_header] = _b64url_json(decision.claims)
        remove_headers = [source] if settings.strip_token and not source.startswith("?") else []
        remove_params = [source[1:]] if source.startswith("?") else []
        return _allowed(
            set_headers=set_headers,
            headers_to_remove=remove_headers,
            query_parameters_to_remove=remove_params,
            metadata={"user_id": decision.user_id, "reason": reason},
        )

    def _find_token(self, headers: Mapping[str, str], path: str) -> tuple[str | None, str]:
        """`Authorization: Bearer` (any case, RFC 6750 §2.1), then the extra header, then the
        query parameter. Returns the token and where it was found."""
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip(), "authorization"
        header = self._settings.token_header
        if header:
            value = headers.get(header, "").strip()
            if value.lower().startswith("bearer "):
                value = value[len("bearer ") :].strip()
            if value:
                return value, header
        param = self._settings.token_param
        if param and "?" in path:
            for pair in path.partition("?")[2].split("&"):
                # The raw name, as Envoy matches query_parameters_to_remove: a name that only
                # decodes to `param` (`%74oken`) would stay in the URL, token and all.
                key, _, value = pair.partition("=")
                if key == param and value:
                    return unquote_plus(value), "?" + param
        return None, ""


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


def _is_preflight(method: str, headers: Mapping[str, str]) -> bool:
    """A CORS preflight: browsers never send credentials with one (Fetch standard §4.8)."""
    return (
        method == "OPTIONS" and "origin" in headers and "access-control-request-method" in headers
    )


def _allowed(
    *,
    set_headers: Mapping[str, str] | None = None,
    headers_to_remove: list[str] | None = None,
    query_parameters_to_remove: list[str] | None = None,
    metadata: Mapping[str, str],
) -> external_auth_pb2.CheckResponse:
    ok = external_auth_pb2.OkHttpResponse(
        headers=_overwrite((set_headers or {}).items()),
        headers_to_remove=headers_to_remove or [],
        query_parameters_to_remove=query_parameters_to_remove or [],
    )
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=code_pb2.OK),
        ok_response=ok,
        dynamic_metadata=to_struct(metadata),
    )


def _denied(
    *,
    www_authenticate: str,
    body: Mapping[str, str],
    message: str,
    metadata: Mapping[str, str],
    status: int = http_status_pb2.Unauthorized,
    code: int = code_pb2.UNAUTHENTICATED,
) -> external_auth_pb2.CheckResponse:
    denied = external_auth_pb2.DeniedHttpResponse(
        status=http_status_pb2.HttpStatus(code=status),
        headers=_overwrite(
            (("www-authenticate", www_authenticate), ("content-type", "application/json"))
        ),
        body=json.dumps(body, ensure_ascii=False),
    )
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=code, message=message),
        denied_response=denied,
        dynamic_metadata=to_struct(metadata),
    )


def _overwrite(headers: Iterable[tuple[str, str]]) -> list[base_pb2.HeaderValueOption]:
    """Header options that replace whatever the client sent under the same name."""
    return [
        base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=key, value=value), append_action=_OVERWRITE
        )
        for key, value in headers
    ]


def _b64url_json(claims: Mapping[str, Any]) -> str:
    return jws.b64url_encode(json.dumps(claims, separators=(",", ":")).encode("ascii"))
