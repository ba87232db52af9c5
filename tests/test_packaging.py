"""The two distributions: the SDK's wheel installs and works without the server's.

Both wheels are built from this checkout (hatchling, no network). A fresh virtual
environment gets the SDK's wheel through pip, and the distributions its metadata requires
(recursively, as pip would resolve them) as links to the ones already installed here:
quick and offline, and still honest, because nothing the wheel does not declare is there.
`pip check` then holds the declared ranges against the versions present.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path

import pytest
from clusterops_server.app import App
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import seed_cluster
from tests.sdk_support import target

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(sysconfig.get_paths()["purelib"]).resolve()

# A few seconds: scheduled first under pytest-xdist so it never runs alone at the end.
pytestmark = pytest.mark.slow


def run(*argv: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    # No GRPC_/CLUSTEROPS_ settings of the caller's leak into the fresh environment.
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("GRPC_", "CLUSTEROPS_"))
    }
    return subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
    )


def build_wheel(project: str, into: Path) -> Path:
    built = run(
        sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", into, cwd=ROOT / project
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (p for p in into.glob("*.whl") if p.name.startswith(wheel_prefix(project)))
    return wheel


def wheel_prefix(project: str) -> str:
    return {"clients": "clusterops-", "server": "clusterops_server-"}[project]


def wheel_metadata(wheel: Path) -> dict[str, list[str]]:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = (n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        message = Parser().parsestr(archive.read(name).decode())
    return {key: message.get_all(key) or [] for key in ("Name", "Version", "Requires-Dist")}


def required(requirements: list[str], extras: frozenset[str] = frozenset()) -> dict[str, set[str]]:
    """The distributions these requirements need (name -> extras), with their own needs."""
    found: dict[str, set[str]] = {}
    pending = [(Requirement(r), extras) for r in requirements]
    while pending:
        requirement, wanted = pending.pop()
        if requirement.marker and not any(
            requirement.marker.evaluate({"extra": extra}) for extra in (wanted or {""})
        ):
            continue
        name = canonicalize_name(requirement.name)
        if name in found and requirement.extras <= found[name]:
            continue
        found.setdefault(name, set()).update(requirement.extras)
        if name.startswith("clusterops"):  # from the wheels, not from here
            continue
        own = metadata.requires(name) or []
        pending += [(Requirement(r), frozenset(requirement.extras)) for r in own]
    return found


def link_distributions(names: set[str], site: Path) -> None:
    """Put these installed distributions (files and metadata) into another site-packages."""
    for name in names:
        distribution = metadata.distribution(name)
        for file in distribution.files or []:
            source = Path(str(distribution.locate_file(file))).resolve()
            if not source.is_relative_to(HERE) or source.suffix == ".pyc":
                continue  # console scripts, bytecode
            destination = site / source.relative_to(HERE)
            if not destination.exists():
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.symlink_to(source)


class Venv:
    def __init__(self, path: Path) -> None:
        created = run(sys.executable, "-m", "venv", "--without-pip", path)
        assert created.returncode == 0, created.stderr
        self.path = path
        self.python = path / "bin" / "python"
        found = run(self.python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
        self.site = Path(found.stdout.strip())

    def pip(self, *argv: str | Path) -> subprocess.CompletedProcess[str]:
        """This project's pip working on the fresh environment (which has none of its own)."""
        return run(sys.executable, "-m", "pip", "--python", self.python, *argv)

    def install(self, wheel: Path) -> None:
        names = set(required(wheel_metadata(wheel)["Requires-Dist"])) - {"clusterops"}
        link_distributions(names, self.site)
        installed = self.pip("install", "--quiet", "--no-index", "--no-deps", wheel)
        assert installed.returncode == 0, installed.stdout + installed.stderr
        checked = self.pip("check")
        assert checked.returncode == 0, checked.stdout + checked.stderr

    def has(self, module: str) -> bool:
        found = run(
            self.python, "-c", f"import importlib.util as u; print(u.find_spec({module!r}))"
        )
        assert found.returncode == 0, found.stderr
        return found.stdout.strip() != "None"


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    into = tmp_path_factory.mktemp("wheels")
    return {project: build_wheel(project, into) for project in ("clients", "server")}


def test_the_sdk_declares_a_handful_of_ranges_and_no_server_dependency(
    wheels: dict[str, Path],
) -> None:
    sdk = wheel_metadata(wheels["clients"])
    assert sdk["Name"] == ["clusterops"]
    requirements = [Requirement(r) for r in sdk["Requires-Dist"]]
    assert sorted(canonicalize_name(r.name) for r in requirements) == [
        "googleapis-common-protos",
        "grpcio",
        "protobuf",
    ]
    for requirement in requirements:  # ranges: a user's own lock picks the versions
        assert not any(s.operator in ("==", "===") for s in requirement.specifier), requirement
        assert any(s.operator == "<" for s in requirement.specifier), requirement
    with zipfile.ZipFile(wheels["clients"]) as archive:
        names = archive.namelist()
    assert "clusterops_cli.py" in names
    assert "clusterops/py.typed" in names
    assert "clusterops/v1/work_requests_pb2.pyi" in names
    assert not [n for n in names if n.startswith("clusterops_server") or n.endswith(".pyc")]


def test_the_server_depends_on_the_sdk_of_its_own_release_and_ships_its_data(
    wheels: dict[str, Path],
) -> None:
    sdk, server = wheel_metadata(wheels["clients"]), wheel_metadata(wheels["server"])
    assert server["Name"] == ["clusterops-server"]
    assert server["Version"] == sdk["Version"]
    requirements = {str(canonicalize_name(Requirement(r).name)): r for r in server["Requires-Dist"]}
    assert requirements["clusterops"] == f"clusterops=={sdk['Version'][0]}"
    assert "sqlalchemy" in requirements
    for name, requirement in requirements.items():
        if name != "clusterops":
            assert "==" not in requirement, "exact versions belong in constraints.txt"
    with zipfile.ZipFile(wheels["server"]) as archive:
        names = set(archive.namelist())
    shipped = {
        p.relative_to(ROOT / "server").as_posix()
        for p in (ROOT / "server" / "clusterops_server").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert shipped <= names  # migrations, catalogues, py.typed: everything the server reads
    assert not [n for n in names if n.startswith("clusterops/")]


async def test_the_sdk_wheel_alone_gives_a_working_cli_without_the_server(
    wheels: dict[str, Path], app: App, tmp_path: Path
) -> None:
    cluster = await seed_cluster(app, name="packaged")
    venv = await asyncio.to_thread(Venv, tmp_path / "venv")
    await asyncio.to_thread(venv.install, wheels["clients"])
    assert venv.has("clusterops.v1.clusters_pb2")
    assert not venv.has("sqlalchemy")
    assert not venv.has("clusterops_server")

    clusterops = venv.path / "bin" / "clusterops"
    got = await asyncio.to_thread(
        run, clusterops, "clusters", "get", cluster.id, "--server", target(app), "-o", "json"
    )
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["name"] == "packaged"

    serve = await asyncio.to_thread(run, clusterops, "serve", "--demo", "--port", "0")
    assert serve.returncode == 2
    assert serve.stdout == ""
    assert serve.stderr.splitlines() == [
        "clusterops: serve needs the server, which is not installed: install clusterops-server "
        "(pip install ./server in a clusterops checkout)"
    ]

    # The server's wheel, added to the same environment, brings `serve`.
    await asyncio.to_thread(venv.install, wheels["server"])
    helped = await asyncio.to_thread(run, clusterops, "serve", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "--database-url" in helped.stdout
