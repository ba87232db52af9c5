"""The README's SDK examples are examples/quickstart.py and examples/upgrade_and_addons.py,
and they run against a real server."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

from clusterops_server.app import App

from tests.sdk_support import target

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "quickstart.py"
UPGRADE_EXAMPLE = ROOT / "examples" / "upgrade_and_addons.py"


def readme_python_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)


def test_the_readme_shows_the_example_scripts_verbatim() -> None:
    assert readme_python_blocks() == [EXAMPLE.read_text(), UPGRADE_EXAMPLE.read_text()]


async def run_example(app: App, script: Path) -> list[str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "CLUSTEROPS_SERVER": target(app)},
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode().splitlines()


async def test_the_example_runs_against_an_in_process_server(app: App) -> None:
    lines = await run_example(app, EXAMPLE)
    assert lines[0] == "  0%  Creating node pool workers with 3 nodes"
    assert "100%  Node pool workers is ACTIVE with 3 nodes" in lines
    assert any(re.fullmatch(r"edge-[0-9a-f]{6}: node pool workers has 3 nodes", li) for li in lines)
    assert any(li.startswith("not deleted: cluster cls-") for li in lines)
    assert sum(li.startswith("wr-") and li.endswith(" 100%") for li in lines) == 2


async def test_the_upgrade_and_addon_example_runs_against_an_in_process_server(app: App) -> None:
    lines = await run_example(app, UPGRADE_EXAMPLE)
    assert re.fullmatch(r"upgrade-old-[0-9a-f]{6}-v1\.31\.2: v1\.29\.8 -> v1\.31\.2", lines[0])
    assert lines[1].startswith("CertManager versions: ")
    assert lines[2] == "CertManager v1.14.5 is ACTIVE with {'numOfReplicas': '3'}"
    assert len(lines) == 3
