"""`clusterops upgrade-workflows ...` and `clusterops addons ...` against an in-process server:
tables, JSON, --watch exit codes and the error lines for bad arguments."""

from __future__ import annotations

import asyncio

import pytest
from clusterops.v1 import upgrade_workflows_pb2 as uw_pb
from clusterops_server.app import App
from clusterops_server.clock import FakeClock
from clusterops_server.providers.simulated import SimulationSettings

from tests.addon_helpers import until
from tests.conftest import AppFactory, seed_cluster, simulator
from tests.sdk_support import sdk_client
from tests.test_cli import Run
from tests.upgrade_helpers import TASK_NAMES, drive

TASK_SECONDS = 60


@pytest.fixture
def run(app: App, capsys: pytest.CaptureFixture[str]) -> Run:
    return Run(app, capsys)


def rows(table: str) -> dict[str, list[str]]:
    """A table's rows by their first cell, after checking it has a header."""
    header, *lines = table.splitlines()
    assert header.split()[0] in {"ID", "NAME", "VERSION"}
    return {line.split()[0]: line.split() for line in lines}


# --- upgrade workflows ---------------------------------------------------------------


async def test_upgrade_create_watch_get_and_list_in_tables_and_json(app: App, run: Run) -> None:
    cluster = await seed_cluster(app, name="alpha", version="v1.29.8")
    created = await run(
        "upgrade-workflows", "create", "--cluster", cluster.id, "--target-version", "v1.30.4",
        "--label", "team=edge", "--annotation", "ticket=CHG-1234", "--watch",
    )  # fmt: skip
    assert created == 0
    assert "name: upgrade-alpha-v1.30.4" in run.out
    assert "phase: INIT" in run.out
    lines = run.out.splitlines()
    assert any("] Cluster task task-" in line and line.endswith(" started") for line in lines)
    assert "SUCCEEDED" in lines[-1]

    assert await run("upgrade-workflows", "list", "--cluster", cluster.id) == 0
    ((workflow_id, row),) = rows(run.out).items()
    assert run.out.splitlines()[0].split()[:6] == ["ID", "NAME", "CLUSTER", "FROM", "TO", "PHASE"]
    assert row[1:6] == ["upgrade-alpha-v1.30.4", cluster.id, "v1.29.8", "v1.30.4", "SUCCESS"]

    assert await run("upgrades", "get", workflow_id, "-o", "json") == 0
    workflow = run.json()
    assert isinstance(workflow, dict)
    assert workflow["status"]["phase"] == "UPGRADE_WORKFLOW_PHASE_SUCCESS"
    assert workflow["metadata"]["annotations"] == {"ticket": "CHG-1234"}
    assert workflow["metadata"]["labels"] == {"team": "edge"}
    assert [p["status"] for p in workflow["status"]["point_statuses"]] == [
        "UPGRADE_TASK_STATUS_SUCCESS"
    ] * 4 + ["UPGRADE_TASK_STATUS_INIT"]

    assert await run("upgrade-workflows", "get", workflow_id) == 0
    assert "phase: SUCCESS" in run.out
    assert "  - task_type: CLUSTER" in run.out
    assert "critical: yes" in run.out

    assert await run("upgrade-workflows", "list", "--phase", "pending", "-o", "json") == 0
    assert run.json() == []


async def test_upgrade_create_watch_exits_4_when_a_task_fails(app: App, run: Run) -> None:
    cluster = await seed_cluster(app, version="v1.29.8")
    await simulator(app).inject_fault(
        "upgrade:PostCheck", cluster.id, times=1, message="ingress unreachable"
    )
    created = await run(
        "upgrade-workflows", "create", "--cluster", cluster.id, "--target-version", "v1.30.4",
        "--watch",
    )  # fmt: skip
    assert created == 4
    assert "error PostCheckFailed: PostCheck task task-" in run.out
    assert "ingress unreachable" in run.out
    assert "FAILED" in run.out.splitlines()[-1]

    assert await run("upgrade-workflows", "list", "--phase", "PENDING") == 0
    (row,) = rows(run.out).values()
    assert row[-2:-1] == ["PENDING"]


async def test_upgrade_cancel_watch_exits_5_and_past_the_point_of_no_return_is_refused(
    make_app: AppFactory, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    seconds = {f"upgrade:{name}": float(TASK_SECONDS) for name in TASK_NAMES.values()}
    app = await make_app(simulation=SimulationSettings(seconds=seconds))
    run = Run(app, capsys)
    early = await seed_cluster(app, version="v1.29.8")
    late = await seed_cluster(app, version="v1.29.8")
    async with sdk_client(app) as client:
        canceling = await client.upgrade_workflows.create(early.id, target_version="v1.30.4")
        workflow_id = canceling.resource.metadata.uid
        await clock.wait_for_sleepers(1)  # PreCheck is running

        async def phase_is_cancel() -> bool:
            workflow = await client.upgrade_workflows.get(workflow_id)
            return workflow.status.phase == uw_pb.UPGRADE_WORKFLOW_PHASE_CANCEL

        watching = asyncio.create_task(run("upgrade-workflows", "cancel", workflow_id, "--watch"))
        await until(app, phase_is_cancel)
        clock.advance(TASK_SECONDS)  # PreCheck ends; nothing starts after it
        assert await watching == 5
        assert "phase: CANCEL" in run.out
        assert f"{canceling.id} CANCELED" in run.out.splitlines()[-1]

        running = await client.upgrade_workflows.create(late.id, target_version="v1.30.4")
        await drive(clock, TASK_SECONDS, tasks=2)  # PreCheck, Snapshot
        await clock.wait_for_sleepers(1)  # Cluster is running
        refused = await run("upgrade-workflows", "cancel", running.resource.metadata.uid)
        assert refused == 1
        assert run.err.startswith("clusterops: FAILED_PRECONDITION: ")
        assert "point of no return" in run.err
        assert len(run.err.splitlines()) == 1  # the violation says nothing the line did not
        await drive(clock, TASK_SECONDS, tasks=2)
        await running.result(timeout=20)


async def test_upgrade_versions_lists_each_version_and_its_targets(run: Run) -> None:
    assert await run("upgrade-workflows", "versions") == 0
    assert run.out.splitlines()[0].split() == ["VERSION", "UPGRADE", "TARGETS"]
    by_version = {line.split()[0]: line for line in run.out.splitlines()[1:]}
    assert by_version["v1.29.8"].split(None, 1)[1] == (
        "v1.29.10, v1.30.4, v1.30.6, v1.31.1, v1.31.2"
    )
    assert by_version["v1.31.2"].split() == ["v1.31.2", "-"]


async def test_a_bad_upgrade_argument_prints_the_error_and_its_field(app: App, run: Run) -> None:
    cluster = await seed_cluster(app, version="v1.29.8")
    refused = await run(
        "upgrade-workflows", "create", "--cluster", cluster.id, "--target-version", "v1.28.13"
    )
    assert refused == 1
    first, second = run.err.splitlines()
    assert first == "clusterops: INVALID_ARGUMENT: the request has invalid fields:"
    assert second.startswith("  target_version: ")
    assert "downgrade" in second
    assert await run("upgrade-workflows", "list", "--phase", "DONE") == 2
    assert run.err.startswith("clusterops: error: phases: 'DONE' is not one of INIT, RUNNING")


# --- add-ons -------------------------------------------------------------------------


async def test_addon_options_table_shows_each_versions_status_and_kubernetes_versions(
    run: Run,
) -> None:
    assert await run("addons", "options", "--kubernetes-version", "v1.27.16") == 0
    header, *lines = run.out.splitlines()
    assert header.split() == ["NAME", "VERSION", "STATUS", "KUBERNETES", "ESSENTIAL"]
    certs = {line.split()[1]: line.split(None, 3)[2:] for line in lines if "CertManager" in line}
    assert certs["v1.12.3"] == ["RECALLED", "v1.27, v1.28                       no"]
    assert certs["v1.13.3"][0] == "DEPRECATED"
    assert certs["v1.14.5"][0] == "ACTIVE"
    assert "v1.15.1" not in certs  # it does not run on v1.27
    assert run.err == (
        "clusterops: descriptions and configuration keys: clusterops addons options --name NAME\n"
    )

    assert await run("addons", "options", "--limit", "2", "-o", "json") == 0
    options = run.json()
    assert isinstance(options, list)
    assert [o["name"] for o in options] == ["CertManager", "ClusterAutoscaler"]
    assert options[0]["versions"][0]["status"] == "ADDON_VERSION_STATUS_RECALLED"
    assert run.err == ""


async def test_addon_options_for_one_addon_show_versions_and_configuration_keys(
    run: Run,
) -> None:
    assert await run("addons", "options", "--name", "ClusterAutoscaler") == 0
    lines = run.out.splitlines()
    assert lines[:4] == [
        "name: ClusterAutoscaler",
        "description: Resizes node pools to fit pending pods.",
        "essential: no",
        "versions:",
    ]
    assert lines[4].split() == ["VERSION", "STATUS", "KUBERNETES", "DESCRIPTION"]
    assert lines[5].split()[:3] == ["v1.27.3", "ACTIVE", "v1.27"]
    keys_at = lines.index("configuration keys (every version):")
    assert lines[keys_at + 1].split() == ["KEY", "DEFAULT", "REQUIRED", "VALUES", "DESCRIPTION"]
    keys = {line.split()[0]: line.split()[1:3] for line in lines[keys_at + 2 :]}
    assert keys == {
        "nodes": ["-", "yes"],
        "authType": ["instance", "no"],
        "numOfReplicas": ["1", "no"],
    }
    assert "one of instance, workload" in run.out

    assert await run("addons", "options", "--name", "CertManager") == 0
    assert "  v1.12.3  RECALLED    v1.27, v1.28  " in run.out
    assert "Its webhook stops renewing its own serving certificate" in run.out

    assert await run("addons", "options", "--name", "NoSuchAddon") == 0
    assert run.out == "(none)\n"


async def test_addon_install_list_get_update_and_disable(app: App, run: Run) -> None:
    cluster = await seed_cluster(app, version="v1.29.8")
    installed = await run(
        "addons", "install", cluster.id, "CertManager", "--version", "v1.13.3",
        "--config", "numOfReplicas=2", "--watch",
    )  # fmt: skip
    assert installed == 0
    assert "lifecycle_state: CREATING" in run.out
    assert "CertManager v1.13.3 is ACTIVE" in run.out
    assert "SUCCEEDED" in run.out.splitlines()[-1]
    installed = await run("addons", "install", cluster.id, "KubernetesDashboard", "-o", "json")
    assert installed == 0
    started = run.json()
    assert isinstance(started, dict)
    assert started["addon"]["lifecycle_state"] == "ADDON_LIFECYCLE_STATE_CREATING"
    enable = started["work_request"]
    assert enable["operation_type"] == "WORK_REQUEST_OPERATION_TYPE_ENABLE_ADDON"
    assert await run("work-requests", "watch", enable["id"]) == 0

    assert await run("addons", "list", cluster.id) == 0
    assert run.out.splitlines()[0].split() == [
        "NAME", "VERSION", "INSTALLED", "STATE", "ERROR", "CLUSTER",
    ]  # fmt: skip
    assert rows(run.out)["CertManager"][1:5] == ["v1.13.3", "v1.13.3", "ACTIVE", "-"]
    assert rows(run.out)["KubernetesDashboard"][1:4] == ["-", "v2.7.0", "ACTIVE"]

    assert await run("addons", "disable", cluster.id, "KubernetesDashboard", "--watch") == 0
    assert "lifecycle_state: DELETING" in run.out
    assert "SUCCEEDED" in run.out.splitlines()[-1]
    assert await run("addons", "list", cluster.id, "--state", "deleted", "-o", "json") == 0
    deleted = run.json()
    assert isinstance(deleted, list)
    assert [a["name"] for a in deleted] == ["KubernetesDashboard"]

    assert await run("addons", "get", cluster.id, "CertManager", "-o", "json") == 0
    current = run.json()
    assert isinstance(current, dict)
    assert current["configurations"] == [{"key": "numOfReplicas", "value": "2"}]
    stale = await run(
        "addons", "update", cluster.id, "CertManager", "--etag", "0000000000000000",
        "--version", "v1.14.5",
    )  # fmt: skip
    assert stale == 1
    refusal, hint = run.err.splitlines()
    assert refusal.startswith("clusterops: ABORTED: the etag does not match addon ")
    assert hint == f"  its current etag is {current['etag']}"

    updated = await run(
        "addons", "update", cluster.id, "CertManager", "--etag", current["etag"],
        "--version", "v1.14.5", "--config", "numOfReplicas=3", "--watch",
    )  # fmt: skip
    assert updated == 0
    assert "lifecycle_state: UPDATING" in run.out
    assert "SUCCEEDED" in run.out.splitlines()[-1]
    assert await run("addons", "get", cluster.id, "CertManager") == 0
    assert "current_installed_version: v1.14.5" in run.out
    assert "value: 3" in run.out


async def test_addon_install_watch_exits_4_when_it_fails_and_the_table_shows_the_error(
    app: App, run: Run
) -> None:
    cluster = await seed_cluster(app)
    await simulator(app).inject_fault("apply_addon", cluster.id, message="image pull failed")
    assert await run("addons", "install", cluster.id, "CertManager", "--watch") == 4
    assert "image pull failed" in run.out
    assert await run("addons", "list", cluster.id, "--state", "FAILED") == 0
    row = rows(run.out)["CertManager"]
    assert row[3] == "FAILED"
    assert row[4] != "-"  # the addon_error's status


async def test_a_bad_addon_argument_prints_the_error_and_its_fields(app: App, run: Run) -> None:
    cluster = await seed_cluster(app)
    refused = await run("addons", "install", cluster.id, "CertManagr")
    assert refused == 1
    first, second = run.err.splitlines()
    assert first == "clusterops: INVALID_ARGUMENT: the request has invalid fields:"
    assert second.startswith("  name: 'CertManagr' is not an add-on this service offers")

    refused = await run("addons", "install", cluster.id, "CertManager", "--config", "replicas=2")
    assert refused == 1
    assert run.err.splitlines()[1].startswith("  configurations[0].key: ")

    assert await run("addons", "list", cluster.id, "--state", "BROKEN") == 2
    assert run.err.startswith("clusterops: error: lifecycle_states: 'BROKEN' is not one of")

    assert await run("addons", "get", cluster.id, "CertManager") == 1
    assert run.err.strip() == (
        f"clusterops: NOT_FOUND: addon '{cluster.id}/CertManager' was not found"
    )
    with pytest.raises(SystemExit) as usage:
        await run("addons", "install", cluster.id, "CertManager", "--config", "replicas")
    assert usage.value.code == 2
