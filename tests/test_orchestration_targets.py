"""Orchestration targets: which clusters an orchestration selects, and the requests refused."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, time

import grpc
import pytest
from clusterops.v1 import orchestrations_pb2 as orc_pb
from clusterops_server.app import App
from clusterops_server.domain.inventory import Cluster, ClusterState, MaintenanceWindow
from clusterops_server.domain.targets import RuntimeTarget, TargetSpec, resolve_targets

from tests.conftest import Stubs, seed_cluster
from tests.helpers import details_of
from tests.orchestration_helpers import by_runtime, create
from tests.test_fuzz import row_counts


def cluster(
    cluster_id: str,
    *,
    region: str = "eu-frankfurt-1",
    plan: str = "aws",
    global_account_id: str = "ga-acme",
    sub_account_id: str = "sa-dev",
    shoot_name: str = "",
) -> Cluster:
    now = datetime(2026, 1, 5, tzinfo=UTC)
    return Cluster(
        id=cluster_id,
        compartment_id="dev",
        name=cluster_id,
        kubernetes_version="v1.29.8",
        region=region,
        plan=plan,
        global_account_id=global_account_id,
        sub_account_id=sub_account_id,
        shoot_name=shoot_name or f"shoot-{cluster_id}",
        lifecycle_state=ClusterState.ACTIVE,
        create_time=now,
        update_time=now,
        maintenance_window=MaintenanceWindow(time(22), time(2)),
    )


FLEET = [
    cluster("a", region="eu-frankfurt-1", plan="aws", global_account_id="ga-acme"),
    cluster("b", region="eu-amsterdam-1", plan="gcp", sub_account_id="sa-prod"),
    cluster("c", region="us-ashburn-1", plan="gcp", global_account_id="ga-other"),
    cluster("d", region="xeu-frankfurt-1", plan="azure", shoot_name="special"),
]


def ids(
    include: Sequence[Mapping[str, str]], exclude: Sequence[Mapping[str, str]] = ()
) -> list[str]:
    spec = TargetSpec(
        tuple(RuntimeTarget(**t) for t in include), tuple(RuntimeTarget(**t) for t in exclude)
    )
    return [c.id for c in resolve_targets(spec, FLEET)]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ({"target": "all"}, ["a", "b", "c", "d"]),
        ({"global_account": "ga-acme"}, ["a", "b", "d"]),
        ({"global_account": "ga-(acme|other)"}, ["a", "b", "c", "d"]),
        ({"sub_account": "sa-prod"}, ["b"]),
        ({"region": "^eu-"}, ["a", "b"]),
        # Matching anywhere in the value, as KEB's regexp.MatchString does; ^...$ anchors.
        ({"region": "frankfurt"}, ["a", "d"]),
        ({"region": "^frankfurt$"}, []),
        ({"global_account": "acme"}, ["a", "b", "d"]),
        ({"runtime_id": "c"}, ["c"]),
        ({"plan_name": "gcp"}, ["b", "c"]),
        ({"plan_name": "gc"}, []),
        ({"shoot_name": "special"}, ["d"]),
        # Every field that is set must match.
        ({"region": "eu-.*", "plan_name": "gcp"}, ["b"]),
        ({"target": "all", "plan_name": "azure"}, ["d"]),
    ],
)
def test_each_selector_kind_matches_its_field_as_keb_does(
    selector: dict[str, str], expected: list[str]
) -> None:
    assert ids([selector]) == expected


def test_include_targets_add_up_and_exclude_wins() -> None:
    assert ids([{"plan_name": "gcp"}, {"shoot_name": "special"}]) == ["b", "c", "d"]
    assert ids([{"target": "all"}], [{"region": "us-.*"}, {"runtime_id": "a"}]) == ["b", "d"]
    assert ids([{"runtime_id": "a"}], [{"target": "all"}]) == []


@pytest.mark.parametrize(
    ("selector", "problem"),
    [
        ({"region": "eu-(frankfurt"}, "region"),
        ({"global_account": "a{2,1}"}, "global_account"),
        # RE2, like KEB's Go regexp: no lookaround, so no catastrophic patterns either.
        ({"sub_account": "(?=sa)"}, "sub_account"),
        ({"target": "some"}, "target"),
        ({}, ""),
    ],
)
def test_malformed_targets_name_what_is_wrong(selector: dict[str, str], problem: str) -> None:
    assert [name for name, _ in RuntimeTarget(**selector).problems()] == [problem]


# --- over the wire, with dry runs --------------------------------------------------------


async def test_only_the_orchestrations_compartment_and_no_deleted_cluster_is_targeted(
    app: App, stubs: Stubs
) -> None:
    mine = await seed_cluster(app, compartment="dev")
    await seed_cluster(app, compartment="dev", state=ClusterState.DELETED)
    await seed_cluster(app, compartment="prod")
    created = await create(stubs, dry_run=True)
    assert created.orchestration.operation_counts.total == 1
    assert list(await by_runtime(stubs, created.orchestration.id)) == [mine.id]
    assert created.orchestration.description == "Scheduled 1 operation"


async def test_include_and_exclude_select_clusters_by_every_kind_of_field(
    app: App, stubs: Stubs
) -> None:
    frankfurt = await seed_cluster(app, region="eu-frankfurt-1", plan="aws")
    amsterdam = await seed_cluster(app, region="eu-amsterdam-1", plan="gcp", sub_account="sa-x")
    ashburn = await seed_cluster(app, region="us-ashburn-1", plan="gcp", global_account="ga-2")
    await seed_cluster(app, region="eu-paris-1", shoot_name="special")
    created = await create(
        stubs,
        include=[{"region": "eu-.*"}, {"global_account": "ga-2"}],
        exclude=[{"sub_account": "sa-x"}, {"shoot_name": "special"}],
        dry_run=True,
    )
    selected = await by_runtime(stubs, created.orchestration.id)
    assert set(selected) == {frankfurt.id, ashburn.id}
    op = selected[ashburn.id]
    assert (op.region, op.plan_name, op.global_account_id) == ("us-ashburn-1", "gcp", "ga-2")

    by_id = await create(
        stubs,
        include=[{"runtime_id": amsterdam.id}, {"plan_name": "gcp"}],
        exclude=[{"runtime_id": ashburn.id}],
        dry_run=True,
    )
    assert set(await by_runtime(stubs, by_id.orchestration.id)) == {amsterdam.id}


async def test_targets_that_select_nothing_are_refused_with_a_reason_and_write_nothing(
    app: App, stubs: Stubs
) -> None:
    await seed_cluster(app, region="eu-frankfurt-1")
    before = await row_counts(app)
    for options in (
        {"include": [{"region": "us-.*"}]},
        {"include": [{"target": "all"}], "exclude": [{"region": "eu-.*"}]},
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await create(stubs, **options)  # type: ignore[arg-type]
        details = details_of(refused.value)
        assert details.code == grpc.StatusCode.FAILED_PRECONDITION
        assert details.error_info is not None
        assert details.error_info.reason == "NO_TARGETS"
        assert "select no cluster" in details.message
    assert "exclude targets remove all" in details.message
    with pytest.raises(grpc.aio.AioRpcError) as elsewhere:
        await create(stubs, compartment="empty")
    assert elsewhere.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert await row_counts(app) == before


async def test_a_bad_regular_expression_is_invalid_naming_the_field(app: App, stubs: Stubs) -> None:
    await seed_cluster(app)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await create(
            stubs,
            include=[{"target": "all"}, {"region": "eu-(frankfurt"}],
            exclude=[{"global_account": "*acme"}],
        )
    details = details_of(refused.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.fields == [
        "parameters.targets.include[1].region",
        "parameters.targets.exclude[0].global_account",
    ]
    assert details.bad_request is not None
    assert "missing )" in details.bad_request.field_violations[0].description


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"include": []}, "parameters.targets.include"),
        ({"include": [{}]}, "parameters.targets.include[0]"),
        ({"include": [{"target": "everything"}]}, "parameters.targets.include[0].target"),
        ({"include": [{"runtime_id": "cluster-1"}]}, "parameters.targets.include[0].runtime_id"),
        ({"workers": 1001}, "parameters.strategy.parallel.workers"),
        ({"workers": -1}, "parameters.strategy.parallel.workers"),
        ({"version": ""}, "parameters.kubernetes_version"),
        ({"version": "v1.99.0"}, "parameters.kubernetes_version"),
        ({"schedule": orc_pb.SCHEDULE_TYPE_TIME}, "parameters.strategy.schedule_time"),
        (
            {"schedule_time": datetime(2026, 2, 1, tzinfo=UTC)},
            "parameters.strategy.schedule_time",
        ),
        (
            {
                "schedule": orc_pb.SCHEDULE_TYPE_TIME,
                "schedule_time": datetime(2030, 1, 1, tzinfo=UTC),
            },
            "parameters.strategy.schedule_time",
        ),
        ({"schedule": 9}, "parameters.strategy.schedule"),
    ],
)
async def test_malformed_parameters_are_invalid_naming_the_field(
    app: App, stubs: Stubs, options: dict[str, object], field: str
) -> None:
    await seed_cluster(app)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await create(stubs, **options)  # type: ignore[arg-type]
    details = details_of(refused.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.fields == [field]
