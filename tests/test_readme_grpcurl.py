"""README's grpcurl blocks, pasted as a reader would, against `clusterops serve --demo`."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import grpc
import pytest
from clusterops.v1 import work_requests_pb2 as wr_pb

from tests.conftest import Stubs
from tests.helpers import watch_to_end
from tests.test_grpcurl import grpcurl_binary
from tests.test_server_process import running_server

README = Path(__file__).resolve().parent.parent / "README.md"

# Real processes in real time: started first, so that no worker ends the run with them.
pytestmark = pytest.mark.slow
# Each block, and what its last steps show when they worked (a cancel landed mid-way...).
SECTIONS = {
    "## Try it with grpcurl": "WORK_REQUEST_STATUS_CANCELED",
    "## Upgrade a cluster (upgrade workflows)": "UPGRADE_WORKFLOW_PHASE_CANCEL",
    "## Upgrade a fleet (orchestrations)": "ORCHESTRATION_STATE_CANCEL",
    "## Rollouts under control (stages, failure budgets, pause)": (
        '"wait_reason": "OPERATION_WAIT_REASON_PAUSE"'
    ),
    "## Add-ons": "WORK_REQUEST_OPERATION_TYPE_DISABLE_ADDON",
    # The reference documents' examples: what each shows at its end.
    "### OKE: an add-on that needs attention": '"current_installed_version": "4.2.3"',
    "### KEB: an orchestration's operations with their plan ids": (
        '"plan_id": "ca6e5357-707f-4565-bbbd-b3ab732597c6"'
    ),
    "### CCE: an upgrade without a snapshot": '"phase": "UPGRADE_WORKFLOW_PHASE_PENDING"',
    "## Events out: many work requests, failure reasons, webhooks": "WATCH_EVENT_TYPE_SYNCED",
}
# What a block needs of the simulator besides the demo's pace, so that what it shows does
# not depend on how fast this machine runs grpcurl. The upgrade block cancels its workflow
# after five more commands, which must land before the Cluster task (the point of no
# return): with one-second steps that left two seconds, which a loaded machine can spend
# starting processes. A pre-check that takes an hour holds the workflow before that point
# for as long as the block can take.
SIMULATOR_ARGS = {
    "## Upgrade a cluster (upgrade workflows)": ["--sim-action-seconds", "upgrade:PreCheck=3600"],
}


def shell_block(heading: str) -> str:
    """The first ```sh block under `heading`."""
    text = README.read_text()
    section = text[text.index(f"\n{heading}\n") :]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, heading
    return match.group(1)


@pytest.mark.parametrize(("heading", "shown"), SECTIONS.items())
async def test_a_readme_grpcurl_block_runs_as_pasted(
    tmp_path: Path, heading: str, shown: str
) -> None:
    # Steps slow enough that the blocks' cancels land mid-way, as at the demo's pace.
    async with running_server(
        tmp_path / "readme.db",
        "--demo",
        "--sim-step-seconds",
        "1",
        *SIMULATOR_ARGS.get(heading, []),
    ) as server:
        # A reader gets to the examples after the demo's own node pool is ready.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stubs = Stubs(channel)
            listed = await stubs.work_requests.ListWorkRequests(wr_pb.ListWorkRequestsRequest())
            for wr in listed.work_requests:
                await watch_to_end(stubs, wr.id)
        script = shell_block(heading).replace("localhost:50051", f"localhost:{server.port}")
        bin_dir = str(Path(grpcurl_binary()).parent)
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            script,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        )
        out, err = await asyncio.wait_for(process.communicate(), 90)
    stderr = err.decode()
    # The blocks end with deliberate mistakes (bad requests); nothing else may fail.
    codes = re.findall(r"Code: (\w+)", stderr)
    assert set(codes) <= {"InvalidArgument"}, stderr
    assert "Traceback" not in stderr, stderr
    assert "command not found" not in stderr, stderr
    assert shown in out.decode()
