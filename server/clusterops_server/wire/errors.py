"""The one place domain errors become gRPC statuses with google.rpc rich details.

Servicer methods are wrapped by `translate_errors` (applied to a whole servicer class
by `@servicer`), so no handler has its own try/except ladder. An unexpected exception
is logged with its traceback and answered INTERNAL with a generic message: its text
never goes over the wire.

Every status is bounded here, so it reaches every client intact: grpc sends the message
and the details as trailers, and grpc Python refuses trailers above 16 KiB (8 KiB is
its soft limit) with RESOURCE_EXHAUSTED instead of the error. So: at most
MAX_FIELD_VIOLATIONS violations and one saying how many more, descriptions and
messages capped, and the whole status under MAX_STATUS_BYTES.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import grpc
import sqlalchemy.exc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from clusterops_server.domain.errors import (
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    Unavailable,
)

log = logging.getLogger(__name__)

ERROR_DOMAIN = "clusterops.dev"
C = TypeVar("C", bound=type)


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


MAX_FIELD_VIOLATIONS = 5
MAX_MESSAGE_BYTES = 512
MAX_FIELD_BYTES = 128
MAX_DESCRIPTION_BYTES = 256
MAX_METADATA_ENTRIES = 8
MAX_STATUS_BYTES = 4096  # serialized message + details; base64 in the trailer adds a third


def cap(text: str, limit: int) -> str:
    """`text` in at most `limit` UTF-8 bytes, cut on a character boundary, marked if cut."""
    encoded = text.encode("utf-8", "replace")
    if len(encoded) <= limit:
        return text
    return encoded[: limit - 3].decode("utf-8", "ignore") + "..."


def _violations(error: InvalidArgument) -> list[FieldViolation]:
    kept = [
        FieldViolation(cap(v.field, MAX_FIELD_BYTES), cap(v.description, MAX_DESCRIPTION_BYTES))
        for v in error.violations[:MAX_FIELD_VIOLATIONS]
    ]
    more = len(error.violations) - len(kept)
    if more > 0:
        fields = sorted({v.field.split("[", 1)[0] for v in error.violations[len(kept) :]})
        kept.append(
            FieldViolation(
                cap(", ".join(fields), MAX_FIELD_BYTES),
                f"and {more} more violation{'s' if more > 1 else ''} not listed here; "
                "fix the ones above and send the request again",
            )
        )
    return kept


def _message(error: DomainError) -> str:
    if isinstance(error, InvalidArgument) and len(error.violations) > MAX_FIELD_VIOLATIONS:
        shown = InvalidArgument(error.violations[:MAX_FIELD_VIOLATIONS]).message
        more = len(error.violations) - MAX_FIELD_VIOLATIONS
        return cap(shown, MAX_MESSAGE_BYTES - 40) + f" (and {more} more)"
    return cap(error.message, MAX_MESSAGE_BYTES)


def to_rpc_status(error: DomainError) -> status_pb2.Status:
    metadata = {
        cap(k, MAX_FIELD_BYTES): cap(v, MAX_DESCRIPTION_BYTES)
        for k, v in list(error.metadata.items())[:MAX_METADATA_ENTRIES]
    }
    details = [
        _pack(
            error_details_pb2.ErrorInfo(
                reason=cap(error.reason, MAX_FIELD_BYTES), domain=ERROR_DOMAIN, metadata=metadata
            )
        )
    ]
    if isinstance(error, InvalidArgument):
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description
                        )
                        for v in _violations(error)
                    ]
                )
            )
        )
    if isinstance(error, FailedPrecondition):
        details.append(
            _pack(
                error_details_pb2.PreconditionFailure(
                    violations=[
                        error_details_pb2.PreconditionFailure.Violation(
                            type=cap(v.type, MAX_FIELD_BYTES),
                            subject=cap(v.subject, MAX_FIELD_BYTES),
                            description=cap(v.description, MAX_DESCRIPTION_BYTES),
                        )
                        for v in error.violations[:MAX_FIELD_VIOLATIONS]
                    ]
                )
            )
        )
    if error.resource is not None:
        details.append(
            _pack(
                error_details_pb2.ResourceInfo(
                    resource_type=cap(error.resource.resource_type, MAX_FIELD_BYTES),
                    resource_name=cap(error.resource.resource_name, MAX_DESCRIPTION_BYTES),
                )
            )
        )
    return status_pb2.Status(code=error.code.value[0], message=_message(error), details=details)


def fit(status: status_pb2.Status) -> status_pb2.Status:
    """The status within MAX_STATUS_BYTES: the last resort after the caps above, dropping
    details from the end (ErrorInfo, first, stays)."""
    fitted = status_pb2.Status()
    fitted.CopyFrom(status)
    fitted.message = cap(fitted.message, MAX_MESSAGE_BYTES)
    while fitted.ByteSize() > MAX_STATUS_BYTES and len(fitted.details) > 1:
        del fitted.details[-1]
    if fitted.ByteSize() > MAX_STATUS_BYTES:
        del fitted.details[:]
    return fitted


def _internal_status() -> status_pb2.Status:
    return status_pb2.Status(
        code=code_pb2.INTERNAL,
        message="the server failed to handle this request; it has been logged",
        details=[_pack(error_details_pb2.ErrorInfo(reason="INTERNAL", domain=ERROR_DOMAIN))],
    )


async def abort(context: grpc.aio.ServicerContext[Any, Any], status: status_pb2.Status) -> None:
    converted = rpc_status.to_status(fit(status))
    await context.abort(converted.code, converted.details, converted.trailing_metadata)


async def _abort_for(
    context: grpc.aio.ServicerContext[Any, Any], error: Exception, method: str
) -> None:
    if isinstance(error, DomainError):
        await abort(context, to_rpc_status(error))
    if database_refused(error):
        # Nothing ran: the connection was refused before any statement, so the caller
        # may retry (the SDK does, with the same request_id), unlike after INTERNAL.
        log.warning("%s: the database refused a connection: %s", method, error)
        await abort(
            context,
            to_rpc_status(
                Unavailable(
                    "the database is not accepting connections right now; retry with backoff",
                    reason="DATABASE_UNAVAILABLE",
                )
            ),
        )
    log.error("unhandled error in %s", method, exc_info=error)
    await abort(context, _internal_status())


# Errors that mean a connection was refused or never handed out, so no statement ran:
# PostgreSQL's connection limit (53300) or start-up (57P03), a refused socket, an
# exhausted pool.
_REFUSED: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.CannotConnectNowError,
    ConnectionRefusedError,
    sqlalchemy.exc.TimeoutError,
)


def database_refused(error: BaseException) -> bool:
    """Whether `error`, or what it wraps, is the database refusing a connection."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, _REFUSED):
            return True
        seen.add(id(current))
        wrapped = getattr(current, "orig", None)
        current = wrapped if isinstance(wrapped, BaseException) else current.__cause__
    return False


def translate_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a unary or server-streaming servicer method."""
    name = method.__qualname__
    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream(self: Any, request: Any, context: Any) -> AsyncIterator[Any]:
            try:
                async for item in method(self, request, context):
                    yield item
                    del item  # not held while the stream waits for its next message
            except (grpc.aio.AbortError, GeneratorExit):
                raise
            except Exception as error:
                await _abort_for(context, error, name)

        return stream

    @functools.wraps(method)
    async def unary(self: Any, request: Any, context: Any) -> Any:
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await _abort_for(context, error, name)

    return unary


def servicer(cls: C) -> C:
    """Apply `translate_errors` to every RPC method a generated servicer base declares."""
    bases = [b for b in cls.__mro__[1:] if b.__name__.endswith("Servicer")]
    rpc_names = {n for b in bases for n, v in vars(b).items() if callable(v) and n[:1].isupper()}
    for rpc_name in rpc_names:
        implementation = cls.__dict__.get(rpc_name)
        if implementation is not None:
            setattr(cls, rpc_name, translate_errors(implementation))
    return cls


Handler = Callable[..., Awaitable[Any]]
