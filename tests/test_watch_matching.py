"""A filtered watch matches in memory what ListWorkRequests selects in SQL.

The watch hub decides with WorkRequestQuery.matches whether a change reaches a stream;
the snapshot (and ListWorkRequests) decide with the store's SQL. Both must agree on
every query, or a watcher would see a work request appear in its snapshot and then
never hear of it again (or the reverse). Seeded random queries over a varied store.
"""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from clusterops_server.app import App
from clusterops_server.domain.filtering import parse_filter
from clusterops_server.domain.work_requests import (
    ActionType,
    EntityType,
    OperationType,
    WorkRequest,
    WorkRequestQuery,
    WorkRequestResource,
    WorkRequestStatus,
    WorkRequestVisibility,
)
from clusterops_server.ids import IdKind, new_id
from clusterops_server.wire.work_requests import FILTER_FIELDS

pytestmark = pytest.mark.both_backends

COMPARTMENTS = ("dev", "prod", "test")
RESOURCES = ("cls-a", "cls-b", "np-c")
PERCENTS = (0.0, 25.0, 50.0, 100.0)
CREATORS = ("alice", "bob", "")


async def populate(app: App, rng: random.Random) -> list[WorkRequest]:
    made: list[WorkRequest] = []
    start = app.clock.now()
    async with app.store.write() as uow:
        for i in range(40):
            resources = [
                WorkRequestResource(
                    rng.choice(list(EntityType)), ActionType.RELATED, identifier, f"/{identifier}"
                )
                for identifier in rng.sample(RESOURCES, rng.randint(0, 2))
            ]
            wr = WorkRequest(
                id=new_id(IdKind.WORK_REQUEST),
                compartment_id=rng.choice(COMPARTMENTS),
                operation_type=rng.choice(list(OperationType)),
                status=rng.choice(list(WorkRequestStatus)),
                time_accepted=start + timedelta(minutes=i),
                percent_complete=rng.choice(PERCENTS),
                resources=resources,
                created_by=rng.choice(CREATORS),
            )
            await uow.work_requests.add(wr, params={})
            made.append(wr)
        await uow.commit()
    return made


def comparison(rng: random.Random, start_text: str) -> str:
    field = rng.choice(list(FILTER_FIELDS))
    if field == "operation_type":
        return f"operation_type {rng.choice(['=', '!='])} {rng.choice(list(OperationType))}"
    if field == "status":
        return f"status {rng.choice(['=', '!=', ':'])} {rng.choice(list(WorkRequestStatus))}"
    if field == "compartment_id":
        return f'compartment_id {rng.choice(["=", "!="])} "{rng.choice(COMPARTMENTS)}"'
    if field == "created_by":
        return f'created_by {rng.choice(["=", "!="])} "{rng.choice(CREATORS)}"'
    op = rng.choice(["=", "!=", "<", "<=", ">", ">="])
    if field == "percent_complete":
        return f"percent_complete {op} {rng.choice(PERCENTS)}"
    return f'time_accepted {op} "{start_text}"'


def expression(rng: random.Random, start_text: str, depth: int = 0) -> str:
    if depth > 2 or rng.random() < 0.4:
        term = comparison(rng, start_text)
        return f"NOT {term}" if rng.random() < 0.2 else term
    left = expression(rng, start_text, depth + 1)
    right = expression(rng, start_text, depth + 1)
    return f"({left} {rng.choice(['AND', 'OR'])} {right})"


def random_query(rng: random.Random, start_text: str) -> WorkRequestQuery:
    visibility = None
    if rng.random() < 0.4:
        some_ops = frozenset(rng.sample(list(OperationType), 3))
        visibility = WorkRequestVisibility(
            frozenset(rng.sample(COMPARTMENTS, rng.randint(0, 1))),
            ((some_ops, rng.choice([None, frozenset({"prod"})])),),
        )
    return WorkRequestQuery(
        compartment_id=rng.choice(["", "", *COMPARTMENTS]),
        resource_id=rng.choice(["", "", *RESOURCES]),
        resource_type=rng.choice([None, None, *EntityType]),
        created_by=rng.choice(["", "", *CREATORS]),
        statuses=frozenset(rng.sample(list(WorkRequestStatus), rng.choice([0, 0, 1, 2]))),
        filter=parse_filter(expression(rng, start_text), FILTER_FIELDS)
        if rng.random() < 0.7
        else None,
        visibility=visibility,
    )


async def test_in_memory_matching_agrees_with_the_stores_sql(app: App) -> None:
    rng = random.Random(15)
    made = await populate(app, rng)
    start_text = (app.clock.now() + timedelta(minutes=20)).isoformat()
    nonempty = 0
    async with app.store.read() as uow:
        for _ in range(300):
            query = random_query(rng, start_text)
            selected = {
                w.id for w in await uow.work_requests.matching(query, after=None, limit=1000)
            }
            assert selected == {w.id for w in made if query.matches(w)}, query
            nonempty += bool(selected)
    assert nonempty > 30  # the queries were not all trivially empty
