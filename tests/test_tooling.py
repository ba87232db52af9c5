"""The contract stays clean: buf lint and format pass, generated stubs match protos/."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def buf() -> str:
    path = ROOT / "node_modules" / ".bin" / "buf"
    assert path.exists(), "buf is missing: run `npm ci` (make install does)"
    return str(path)


def test_buf_lint_passes() -> None:
    result = subprocess.run([buf(), "lint"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_format_leaves_protos_unchanged() -> None:
    result = subprocess.run(
        [buf(), "format", "--diff", "--exit-code"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_stubs_match_the_protos() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/gen_protos.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, "stale generated code; run `make gen`\n" + result.stdout


def test_stale_check_notices_a_hand_edited_stub(tmp_path: Path) -> None:
    """The staleness check itself works: a changed copy of the stubs is reported."""
    shutil.copytree(ROOT / "clients" / "clusterops" / "v1", tmp_path / "clusterops" / "v1")
    stub = tmp_path / "clusterops" / "v1" / "work_requests_pb2.pyi"
    stub.write_text(stub.read_text() + "\n# edited by hand\n")
    result = subprocess.run(
        [sys.executable, "scripts/gen_protos.py", "--check", "--against", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "stale: clusterops/v1/work_requests_pb2.pyi" in result.stdout
