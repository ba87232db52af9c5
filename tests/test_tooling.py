"""The contract stays clean: buf lint and format pass, generated code matches protos/."""

from __future__ import annotations

import os
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


def copy_generated(tmp_path: Path) -> Path:
    """A copy of the committed generated code, laid out like the repository."""
    for directory in ("clients/clusterops/v1", "clients/typescript/src/gen"):
        shutil.copytree(
            ROOT / directory, tmp_path / directory, ignore=shutil.ignore_patterns("__pycache__")
        )
    return tmp_path


def check_against(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "scripts/gen_protos.py", "--check", "--against", str(root)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_stale_check_notices_hand_edited_python_and_typescript(tmp_path: Path) -> None:
    """The staleness check itself works: a changed copy of the generated code is reported."""
    root = copy_generated(tmp_path)
    stub = root / "clients/clusterops/v1/work_requests_pb2.pyi"
    stub.write_text(stub.read_text() + "\n# edited by hand\n")
    module = root / "clients/typescript/src/gen/clusterops/v1/clusters_pb.ts"
    module.write_text(module.read_text() + "\n// edited by hand\n")
    result = check_against(root)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "stale: clients/clusterops/v1/work_requests_pb2.pyi",
        "stale: clients/typescript/src/gen/clusterops/v1/clusters_pb.ts",
    ]


def test_stale_check_notices_added_and_removed_files_of_both_languages(tmp_path: Path) -> None:
    """Files are compared both ways: the committed tree is listed, not only the fresh one."""
    root = copy_generated(tmp_path)
    (root / "clients/clusterops/v1/addons_pb2.pyi").unlink()
    (root / "clients/clusterops/v1/leftover_pb2.py").write_text("# a proto since removed\n")
    (root / "clients/typescript/src/gen/google/rpc/status_pb.ts").unlink()
    (root / "clients/typescript/src/gen/clusterops/v1/leftover_pb.ts").write_text("export {};\n")
    result = check_against(root)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "missing: clients/clusterops/v1/addons_pb2.pyi",
        "missing: clients/typescript/src/gen/google/rpc/status_pb.ts",
        "not generated: clients/clusterops/v1/leftover_pb2.py",
        "not generated: clients/typescript/src/gen/clusterops/v1/leftover_pb.ts",
    ]


def git(repo: Path, *argv: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *argv],
        cwd=repo,
        check=True,
        capture_output=True,
        timeout=60,
    )


def check_breaking(repo: Path) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "BREAKING_AGAINST"}
    return subprocess.run(
        ["scripts/check-breaking"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
    )


PROTO = """syntax = "proto3";

package demo.v1;

message Thing {
  string id = 1;
%s}
"""


def test_breaking_check_compares_a_branch_with_where_it_left_main(tmp_path: Path) -> None:
    """On a branch the base is the merge base; on main, the commit before (never main
    against itself, which would check nothing)."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / "protos" / "demo" / "v1").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "check-breaking", repo / "scripts")
    shutil.copy(ROOT / "buf.yaml", repo)
    (repo / "node_modules").symlink_to(ROOT / "node_modules")
    (repo / ".gitignore").write_text("node_modules\n")
    proto = repo / "protos" / "demo" / "v1" / "thing.proto"
    proto.write_text(PROTO % "  string name = 2;\n")
    git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "a thing with a name")

    git(repo, "checkout", "--quiet", "-b", "feature")
    proto.write_text(PROTO % "")
    git(repo, "commit", "--quiet", "-am", "the name goes")
    git(repo, "commit", "--quiet", "--allow-empty", "-m", "something else")
    broken = check_breaking(repo)
    assert broken.returncode != 0, broken.stdout + broken.stderr
    assert 'Previously present field "2" with name "name"' in broken.stdout, broken.stdout

    git(repo, "checkout", "--quiet", "main")
    git(repo, "merge", "--quiet", "--no-ff", "-m", "merge feature", "feature")
    merged = check_breaking(repo)
    assert merged.returncode != 0, merged.stdout + merged.stderr
    assert "against HEAD^" in merged.stdout
