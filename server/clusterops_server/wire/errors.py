"""The one place domain errors become gRPC statuses with google.rpc rich details.

Servicer methods are wrapped by `translate_errors` (applied to a whole servicer class
by `@servicer`), so no handler has its own try/except ladder. An unexpected exception
is logged with its traceback and answered INTERNAL with a generic message: its text
never goes over the wire.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from clusterops_server.domain.errors import DomainError, FailedPrecondition, InvalidArgument

log = logging.getLogger(__name__)

ERROR_DOMAIN = "clusterops.dev"
C = TypeVar("C", bound=type)


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def to_rpc_status(error: DomainError) -> status_pb2.Status:
    details = [
        _pack(
            error_details_pb2.ErrorInfo(
                reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata
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
                        for v in error.violations
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
                            type=v.type, subject=v.subject, description=v.description
                        )
                        for v in error.violations
                    ]
                )
            )
        )
    if error.resource is not None:
        details.append(
            _pack(
                error_details_pb2.ResourceInfo(
                    resource_type=error.resource.resource_type,
                    resource_name=error.resource.resource_name,
                )
            )
        )
    return status_pb2.Status(code=error.code.value[0], message=error.message, details=details)


def _internal_status() -> status_pb2.Status:
    return status_pb2.Status(
        code=code_pb2.INTERNAL,
        message="the server failed to handle this request; it has been logged",
        details=[_pack(error_details_pb2.ErrorInfo(reason="INTERNAL", domain=ERROR_DOMAIN))],
    )


async def abort(context: grpc.aio.ServicerContext[Any, Any], status: status_pb2.Status) -> None:
    converted = rpc_status.to_status(status)
    await context.abort(converted.code, converted.details, converted.trailing_metadata)


async def _abort_for(
    context: grpc.aio.ServicerContext[Any, Any], error: Exception, method: str
) -> None:
    if isinstance(error, DomainError):
        await abort(context, to_rpc_status(error))
    log.error("unhandled error in %s", method, exc_info=error)
    await abort(context, _internal_status())


def translate_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a unary or server-streaming servicer method."""
    name = method.__qualname__
    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream(self: Any, request: Any, context: Any) -> AsyncIterator[Any]:
            try:
                async for item in method(self, request, context):
                    yield item
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
