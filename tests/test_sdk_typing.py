"""A user's code calling the SDK passes `mypy --strict`, and mypy catches misuse of it.

mypy runs the way it would on a user's project: in a directory of its own, with no
configuration and no flag but --strict, finding the SDK where it is installed (`make
install`'s editable install is a plain path entry mypy reads, and py.typed marks the
package typed). A second run finds a copy of the SDK's sources through MYPYPATH instead,
so mypy reports on the SDK's own modules too (an installed package's are not): none may
import anything untyped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

TYPED_USER_CODE = """
from collections.abc import Sequence
from typing import assert_type

from clusterops import (
    Addon, AddonOption, AsyncClient, AsyncOperation, AsyncPager, Client, Cluster, Conflict,
    EtagMismatch, FailedPrecondition, KubernetesVersion, NodePool, Operation, OperationFailed,
    Pager, RetryPolicy, SyncIterator, TLSConfig, UpgradeWorkflow, WatchEvent, WorkRequest,
    WorkRequestLogEntry,
)


def blocking() -> None:
    retry = RetryPolicy(max_attempts=3, initial_backoff=0.2)
    with Client("localhost:50051", timeout=10, retry=retry, token="t") as client:
        work_request = client.work_requests.get("wr-1", timeout=None, metadata=[("k", "v")])
        assert_type(work_request, WorkRequest)
        assert_type(client.work_requests.list(statuses=["FAILED"]), Pager[WorkRequest])
        assert_type(client.work_requests.list_logs("wr-1"), Pager[WorkRequestLogEntry])
        assert_type(client.work_requests.watch("wr-1"), SyncIterator[WatchEvent])
        operation = client.clusters.create_node_pool("cls-1", name="w", node_count=3)
        assert_type(operation, Operation[NodePool])
        assert_type(operation.result(timeout=60, on_event=print), NodePool)
        assert_type(client.clusters.delete("cls-1", etag="e"), Operation[None])
        try:
            client.clusters.get("cls-1", retry=None)
        except Conflict as error:
            assert_type(error.blocking_work_request_id, str)

        upgrade = client.upgrade_workflows.create(
            "cls-1", target_version="v1.30.4", annotations={"ticket": "CHG-1"}
        )
        assert_type(upgrade, Operation[UpgradeWorkflow])
        try:
            assert_type(upgrade.result(timeout=600), UpgradeWorkflow)
        except OperationFailed as failed:
            assert_type([e.code for e in failed.errors], list[str])
        assert_type(client.upgrade_workflows.list(phases=["PENDING"]), Pager[UpgradeWorkflow])
        versions = client.upgrade_workflows.list_kubernetes_versions(timeout=5)
        assert_type(versions, Sequence[KubernetesVersion])
        try:
            client.upgrade_workflows.cancel(upgrade.resource.metadata.uid, etag="e")
        except FailedPrecondition as refused:
            assert_type(refused.precondition_violations[0].type, str)

        installing = client.addons.install("cls-1", "CertManager", configurations={"k": "v"})
        assert_type(installing, Operation[Addon])
        addon = installing.result(timeout=60)
        assert_type(client.addons.list("cls-1", lifecycle_states=["ACTIVE"]), Pager[Addon])
        assert_type(client.addons.list_options(kubernetes_version="v1.30"), Pager[AddonOption])
        try:
            client.addons.update("cls-1", "CertManager", etag=addon.etag, version="v1.14.5")
        except EtagMismatch as stale:
            assert_type(stale.current_etag, str)
        assert_type(client.addons.disable("cls-1", "CertManager").result(), Addon)


async def asynchronous() -> None:
    async with AsyncClient(tls=TLSConfig.from_files(ca_cert="ca.pem")) as client:
        assert_type(await client.work_requests.get("wr-1"), WorkRequest)
        operation = await client.clusters.create(
            compartment_id="dev",
            name="a",
            kubernetes_version="v1.30.4",
            region="eu-frankfurt-1",
            plan="aws",
        )
        assert_type(operation, AsyncOperation[Cluster])
        cluster = await operation.result(timeout=60)
        pools = client.clusters.list_node_pools(cluster.id)
        assert_type(pools, AsyncPager[NodePool])
        async for pool in pools:
            assert_type(pool, NodePool)
        final = await client.work_requests.wait(operation.id, on_event=lambda event: None)
        assert_type(final, WorkRequest)
        upgrade = await client.upgrade_workflows.create(cluster.id, target_version="v1.31.2")
        assert_type(upgrade, AsyncOperation[UpgradeWorkflow])
        workflow = await client.upgrade_workflows.get(upgrade.resource.metadata.uid)
        assert_type(workflow, UpgradeWorkflow)
        addons = client.addons.list(cluster.id)
        assert_type(addons, AsyncPager[Addon])
        updating = await client.addons.update(cluster.id, "CoreDNS", configurations={"k": "v"})
        assert_type(await updating.result(), Addon)
"""

MISUSE = """
from clusterops import Client

with Client() as client:
    status: str = client.work_requests.get("wr-1").status  # wrong type
    client.clusters.create_node_pool("cls-1", name="w", node_count="3")  # wrong type
    client.work_requests.get("wr-1", 5)  # timeout is keyword-only
    client.clusters.get_cluster("cls-1")  # no such method
    client.addons.install("cls-1", "CertManager", configurations=[("k", "v")])  # wrong type
    client.upgrade_workflows.create("cls-1", "v1.30.4")  # target_version is keyword-only
"""


def run_mypy(cwd: Path, *files: Path, mypypath: str = "") -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "MYPYPATH"}
    if mypypath:
        env["MYPYPATH"] = mypypath
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--cache-dir",
            str(ROOT / ".mypy_cache" / ("sdk-sources" if mypypath else "sdk-users")),
            *map(str, files),
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


@pytest.mark.parametrize("found", ["installed", "mypypath"])
def test_user_code_passes_mypy_strict_and_misuse_is_reported(tmp_path: Path, found: str) -> None:
    project = tmp_path / "project"
    project.mkdir()
    typed = project / "typed_user_code.py"
    typed.write_text(TYPED_USER_CODE)
    misuse = project / "misuse.py"
    misuse.write_text(MISUSE)
    examples = []
    for example in sorted((ROOT / "examples").glob("*.py")):
        examples.append(project / example.name)
        shutil.copy(example, examples[-1])
    assert len(examples) >= 2

    mypypath = ""
    if found == "mypypath":  # a copy: mypy is silent about modules on sys.path
        shutil.copytree(ROOT / "clients" / "clusterops", tmp_path / "sources" / "clusterops")
        mypypath = str(tmp_path / "sources")
    result = run_mypy(project, typed, *examples, misuse, mypypath=mypypath)

    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert not [e for e in errors if "misuse.py" not in e], result.stdout + result.stderr
    flagged = sorted({int(m.group(1)) for e in errors if (m := re.search(r":(\d+): error", e))})
    assert flagged == [5, 6, 7, 8, 9, 10], result.stdout + result.stderr
