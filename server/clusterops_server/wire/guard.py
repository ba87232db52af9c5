"""The interceptor every call passes before its handler: authenticate, then decode safely.

- With a token store configured, a call without a valid bearer token answers
  UNAUTHENTICATED, whatever its bytes; so does a call with more than one
  `authorization` header (proxies and servers disagree on which one counts);
  otherwise the handler runs as the token's principal. Health and reflection stay
  open: they describe the API, not anyone's resources. Tokens are never logged.
- A request larger than MAX_REQUEST_BYTES, or whose bytes are not a valid message,
  answers INVALID_ARGUMENT (grpc would answer RESOURCE_EXHAUSTED, or UNKNOWN with the
  parser's exception text).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from clusterops_server.auth.caller import SYSTEM, Caller, acting_as, become
from clusterops_server.auth.tokens import TokenStore
from clusterops_server.domain.errors import FieldViolation, InvalidArgument, Unauthenticated
from clusterops_server.metrics import Metrics
from clusterops_server.wire.errors import abort, to_rpc_status

OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
MAX_REQUEST_BYTES = 4 * 1024 * 1024

_UNAUTHENTICATED = to_rpc_status(
    Unauthenticated(
        "a valid bearer token is required: send metadata `authorization: Bearer <token>`",
        reason="INVALID_TOKEN",
    )
)
_AMBIGUOUS = to_rpc_status(
    Unauthenticated(
        "more than one authorization header; send exactly one `authorization: Bearer <token>`",
        reason="AMBIGUOUS_CREDENTIALS",
    )
)
_MALFORMED = to_rpc_status(
    InvalidArgument(
        [FieldViolation("", "the request bytes are not a valid message of this method's type")],
        "the request could not be decoded",
        reason="MALFORMED_REQUEST",
    )
)


_OVERSIZED = to_rpc_status(
    InvalidArgument(
        [FieldViolation("", f"the request is larger than {MAX_REQUEST_BYTES} bytes")],
        "the request is too large",
        reason="REQUEST_TOO_LARGE",
    )
)


class _Malformed:
    """Stands in for a request that did not decode."""


class _Oversized:
    """Stands in for a request above the size limit (never decoded)."""


class AmbiguousCredentials(Exception):
    """More than one authorization header."""


def bearer_token(metadata: Any) -> str | None:
    """The bearer token of the call's one authorization header; AmbiguousCredentials if
    it has several, whatever they hold."""
    found = [value for key, value in metadata or () if key.lower() == "authorization"]
    if len(found) > 1:
        raise AmbiguousCredentials
    if found and isinstance(found[0], str):
        scheme, _, token = found[0].partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


class GuardInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, tokens: TokenStore | None, metrics: Metrics) -> None:
        self.tokens = tokens
        self.metrics = metrics
        # The wrapped handler of each method, made on its first call: a method's
        # handler never changes, and wrapping it anew cost every call a lookup through
        # every service and a handful of closures. Only methods the server has are
        # kept, so callers naming made-up methods cannot grow it.
        self._wrapped: dict[str, Any] = {}

    # Handlers are typed Any: grpc's stubs type them per request/response pair.
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        open_method = method.startswith(OPEN_SERVICES)
        wrapped = self._wrap(
            handler, method, authenticate=self.tokens is not None and not open_method
        )
        self._wrapped[method] = wrapped
        return wrapped

    def _caller(self, context: grpc.aio.ServicerContext[Any, Any]) -> Caller | None:
        assert self.tokens is not None
        token = bearer_token(context.invocation_metadata())
        return self.tokens.authenticate(token) if token else None

    async def _admit(self, request: Any, context: Any, authenticate: bool) -> Caller:
        caller: Caller | None = SYSTEM
        if authenticate:
            try:
                caller = self._caller(context)
            except AmbiguousCredentials:
                await abort(context, _AMBIGUOUS)
            if caller is None:
                await abort(context, _UNAUTHENTICATED)
        if isinstance(request, _Oversized):
            await abort(context, _OVERSIZED)
        if isinstance(request, _Malformed):
            await abort(context, _MALFORMED)
        assert caller is not None
        return caller

    def _wrap(self, handler: Any, method: str, *, authenticate: bool) -> Any:
        decode = _tolerant(handler.request_deserializer)
        if handler.unary_unary is not None:
            inner: Callable[..., Awaitable[Any]] = handler.unary_unary

            async def unary(request: Any, context: Any) -> Any:
                with self._measured(method, context):
                    caller = await self._admit(request, context, authenticate)
                    with acting_as(caller):
                        return await inner(request, context)

            return grpc.unary_unary_rpc_method_handler(
                unary, request_deserializer=decode, response_serializer=handler.response_serializer
            )
        if handler.unary_stream is not None:
            inner_stream: Callable[..., AsyncIterator[Any]] = handler.unary_stream

            async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
                with self._measured(method, context):
                    become(await self._admit(request, context, authenticate))
                    async for item in inner_stream(request, context):
                        yield item
                        del item  # not held while the stream waits for its next message

            return grpc.unary_stream_rpc_method_handler(
                stream, request_deserializer=decode, response_serializer=handler.response_serializer
            )
        # Client- and bidi-streaming methods: this API has none of its own (reflection's
        # bidi stream is open and decodes its own messages).
        return handler

    @contextmanager
    def _measured(self, method: str, context: Any) -> Iterator[None]:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            yield
        except grpc.aio.AbortError:
            code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        except (asyncio.CancelledError, GeneratorExit):
            code = grpc.StatusCode.CANCELLED
            raise
        finally:
            self.metrics.observe(method, code.name, time.perf_counter() - started)


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def decode(data: bytes) -> Any:
        if len(data) > MAX_REQUEST_BYTES:
            return _Oversized()
        try:
            return deserializer(data)
        except DecodeError:
            return _Malformed()

    return decode
