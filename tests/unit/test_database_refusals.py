"""A database that refuses a connection is UNAVAILABLE (retryable), never INTERNAL."""

from __future__ import annotations

from typing import Any

import asyncpg
import grpc
import pytest
import sqlalchemy.exc
from clusterops_server.wire.errors import database_refused, translate_errors
from google.rpc import status_pb2


class Aborted(Exception):
    pass


class Context:
    """Records what the wrapped handler aborted with."""

    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.status = status_pb2.Status()

    async def abort(self, code: grpc.StatusCode, details: str, trailers: Any) -> None:
        self.code = code
        for key, value in trailers:
            if key == "grpc-status-details-bin":
                self.status.ParseFromString(value)
        raise Aborted


def _wrapped(error: BaseException) -> BaseException:
    """As SQLAlchemy raises a driver's error: a DBAPIError with it as `orig` and cause."""
    adapted = RuntimeError("adapted")
    adapted.__cause__ = error
    return sqlalchemy.exc.OperationalError("SELECT 1", {}, adapted)


REFUSALS = [
    asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
    asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    ConnectionRefusedError(111, "Connect call failed"),
    sqlalchemy.exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached"),
]


@pytest.mark.parametrize("error", REFUSALS + [_wrapped(e) for e in REFUSALS], ids=repr)
async def test_a_refused_connection_is_unavailable_with_its_reason(error: BaseException) -> None:
    assert database_refused(error)

    @translate_errors
    async def handler(_self: object, _request: object, _context: object) -> None:
        raise error

    context = Context()
    with pytest.raises(Aborted):
        await handler(None, None, context)
    assert context.code == grpc.StatusCode.UNAVAILABLE
    assert "retry" in context.status.message
    assert b"DATABASE_UNAVAILABLE" in context.status.details[0].value


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.UniqueViolationError("duplicate key"),
        _wrapped(asyncpg.exceptions.UndefinedTableError("no such table")),
        ValueError("a bug"),
    ],
    ids=repr,
)
async def test_other_failures_stay_internal(error: BaseException) -> None:
    assert not database_refused(error)

    @translate_errors
    async def handler(_self: object, _request: object, _context: object) -> None:
        raise error

    context = Context()
    with pytest.raises(Aborted):
        await handler(None, None, context)
    assert context.code == grpc.StatusCode.INTERNAL
