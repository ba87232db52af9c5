"""README's two commands are the ones that work: CI runs the test command as written,
and each is a make target that installs what it needs first."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def _blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```sh\n(.*?)```", text, re.S)]


def _make_target(name: str) -> str:
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(rf"^{name}:(.*)$", makefile, re.M)
    assert match is not None, f"the Makefile has no {name} target"
    return match.group(1)


def test_readme_gives_exactly_one_command_to_serve_and_one_to_test() -> None:
    assert _blocks(_section("Two commands")) == ["make serve", "make test"]


def test_ci_runs_the_test_command_readme_gives() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = [line for line in ci if line.strip() and not line.startswith("#")]
    assert commands[-1] == "make test"
    assert (ROOT / ".ci" / "run").stat().st_mode & 0o111, ".ci/run must be executable"


def test_both_commands_install_before_they_run() -> None:
    assert "install" in _make_target("serve").split()
    # make test reaches install through its lint and typecheck prerequisites.
    prerequisites = _make_target("test").split()
    assert {"lint", "typecheck", "postgres"} <= set(prerequisites)
    assert "install" in _make_target("lint").split()
