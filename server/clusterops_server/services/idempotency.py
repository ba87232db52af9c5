"""request_id handling shared by every mutating call."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import timedelta
from typing import Any

from clusterops_server.auth.caller import request_scope
from clusterops_server.store.uow import UnitOfWork

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
