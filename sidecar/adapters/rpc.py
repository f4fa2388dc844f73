"""gRPC registration shared by the sidecar's services.

It does what the generated `add_*Servicer_to_server` functions do, except that a request that
does not decode (a corrupt message, a string that is not UTF-8) is INVALID_ARGUMENT, rather than
UNKNOWN with a traceback in the log for every such call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from time import perf_counter
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message

from sidecar.observe.traffic import Traffic

Method = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Message]]
"""An async unary method: (request, context) -> response."""


def register(
    server: grpc.aio.Server,
    service: str,
    methods: Mapping[str, tuple[Method, type[Message], type[Message]]],
    traffic: Traffic,
) -> None:
    """Registers `methods` (name -> (method, request type, response type)) under `service`;
    `traffic` counts their calls."""
    handlers = {
        name: _unary(method, request_type, response_type, traffic, *traffic.meter(name))
        for name, (method, request_type, response_type) in methods.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    server.add_registered_method_handlers(service, handlers)


def _unary(
    method: Method,
    request_type: type[Message],
    response_type: type[Message],
    traffic: Traffic,
    entered: Callable[[], None],
    done: Callable[[float], None],
) -> grpc.RpcMethodHandler[Any, Any]:
    def decode(data: bytes) -> Message | None:
        try:
            return request_type.FromString(data)
        except DecodeError:
            return None

    async def handle(
        request: Message | None, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Message:
        traffic.started += 1
        traffic.active += 1
        entered()
        start = perf_counter()
        try:
            if request is None:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"the request is not a valid {request_type.DESCRIPTOR.full_name}",
                )
            return await method(request, context)
        finally:
            traffic.active -= 1
            done(perf_counter() - start)

    return grpc.unary_unary_rpc_method_handler(
        handle, request_deserializer=decode, response_serializer=response_type.SerializeToString
    )
