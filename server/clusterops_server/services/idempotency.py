"""request_id handling shared by every mutating call, and the write path they all take."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Protocol, TypeVar

from clusterops_server.auth.caller import request_scope
from clusterops_server.store.uow import Store, UnitOfWork

R = TypeVar("R")
Remembered = dict[str, Any]

# request_ids are honoured for at least this long.
RETENTION = timedelta(hours=48)


def request_fingerprint(command: object) -> str:
    """A stable hash of a command's fields other than request_id."""
    assert dataclasses.is_dataclass(command)
    assert not isinstance(command, type)
    fields = {k: v for k, v in dataclasses.asdict(command).items() if k != "request_id"}
    blob = json.dumps(fields, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(f"{type(command).__name__}:{blob}".encode()).hexdigest()


async def previous_result(
    uow: UnitOfWork, scope: str, request_id: str, command: object
) -> dict[str, Any] | None:
    """What an earlier call with this request_id produced, or None to go ahead.

    Claims the id inside the caller's transaction, so two concurrent calls with one
    id cannot both run; the loser sees the winner's result once it commits.
    """
    if not request_id:
        return None
    claim = await uow.idempotency.claim(
        request_scope(scope), request_id, request_fingerprint(command), uow.clock.now()
    )
    return None if claim.fresh else claim.result


async def remember(uow: UnitOfWork, scope: str, request_id: str, result: dict[str, Any]) -> None:
    if request_id:
        await uow.idempotency.record(request_scope(scope), request_id, result)


class Command(Protocol):
    @property
    def request_id(self) -> str: ...


async def run_once(
    store: Store,
    scope: str,
    command: Command,
    act: Callable[[UnitOfWork], Awaitable[tuple[R, Remembered]]],
    replay: Callable[[UnitOfWork, Remembered], Awaitable[R]],
) -> R:
    """The write path of a mutating call, in one transaction: claim the request_id, `act`
    (which returns its answer and what a retry needs to rebuild it), remember that, and
    commit (a commit that starts an operation wakes the engine). A retry with the same
    request_id gets `replay` of what the first call remembered; a domain error rolls
    everything back, the claim included."""
    async with store.write() as uow:
        prior = await previous_result(uow, scope, command.request_id, command)
        if prior is not None:
            return await replay(uow, prior)
        answer, remembered = await act(uow)
        await remember(uow, scope, command.request_id, remembered)
        await uow.commit()
    return answer
