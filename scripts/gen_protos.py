"""Regenerate the code generated from protos/ (Python and TypeScript), or check it is current.

protoc writes absolute imports rooted at the proto path (`from clusterops.v1 import ...`),
so the Python stubs go to clients/clusterops/v1/: the SDK package *is* that root, and the
imports resolve without rewriting.

The TypeScript client's messages and service descriptors go to
clients/typescript/src/gen/, written by `buf generate` with protoc-gen-es (the template is
clients/typescript/buf.gen.yaml). The google.rpc error details the client decodes are
generated there too, from the .proto files of googleapis-common-protos: the same pinned
package the Python SDK decodes them with, and nothing to fetch.

    python scripts/gen_protos.py          # regenerate
    python scripts/gen_protos.py --check  # exit 1 when the committed code is stale
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PYTHON_DIR = Path("clients") / "clusterops" / "v1"
TYPESCRIPT_DIR = Path("clients") / "typescript" / "src" / "gen"
# Every directory this script writes, relative to the repository root: all of it generated.
GENERATED_DIRS = (PYTHON_DIR, TYPESCRIPT_DIR)
INIT_TEXT = '"""Generated from protos/clusterops/v1 by scripts/gen_protos.py. Do not edit."""\n'
BUF = ROOT / "node_modules" / ".bin" / "buf"
TS_TEMPLATE = Path("clients") / "typescript" / "buf.gen.yaml"
PROTOC_GEN_ES = ROOT / "clients" / "typescript" / "node_modules" / ".bin" / "protoc-gen-es"
GOOGLE_RPC_PROTOS = ("status.proto", "error_details.proto")


def _plugin(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise SystemExit(f"{name} is missing: install the dev extras (pip install -e '.[dev]')")
    return str(path)


def _require(tool: Path, install: str) -> None:
    if not tool.exists():
        raise SystemExit(f"{tool.relative_to(ROOT)} is missing: {install} (make install does)")


def generate_python(root: Path) -> None:
    """Run protoc over every .proto file into root/clients/clusterops/v1."""
    protos = sorted(p.relative_to(PROTO_ROOT).as_posix() for p in PROTO_ROOT.rglob("*.proto"))
    well_known = resources.files("grpc_tools") / "_proto"
    out_root = root / "clients"
    (root / PYTHON_DIR).mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={well_known}",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        *protos,
    ]
    subprocess.run(cmd, check=True, cwd=ROOT)
    (root / PYTHON_DIR / "__init__.py").write_text(INIT_TEXT)


def generate_typescript(root: Path) -> None:
    """Run `buf generate` with protoc-gen-es over protos/ and google.rpc into root."""
    _require(BUF, "run `npm ci` at the repository root")
    _require(PROTOC_GEN_ES, "run `npm ci` in clients/typescript")
    with tempfile.TemporaryDirectory() as scratch:
        # google/rpc/*.proto laid out under their import path, as their own buf input.
        google_rpc = Path(scratch) / "google" / "rpc"
        google_rpc.mkdir(parents=True)
        installed = resources.files("google.rpc")
        for name in GOOGLE_RPC_PROTOS:
            (google_rpc / name).write_bytes((installed / name).read_bytes())
        for source in ("protos", scratch):
            cmd = [str(BUF), "generate", source, "--template", str(TS_TEMPLATE)]
            subprocess.run([*cmd, "--output", str(root)], check=True, cwd=ROOT)


def generated_files(root: Path) -> set[Path]:
    """Every file under the generated directories of root, relative to root."""
    return {
        path.relative_to(root)
        for directory in GENERATED_DIRS
        if (root / directory).is_dir()
        for path in (root / directory).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def generate(root: Path) -> list[Path]:
    """Write all generated code under root (laid out like the repository); list it."""
    generate_python(root)
    generate_typescript(root)
    return sorted(generated_files(root))


def stale_files(committed_root: Path = ROOT) -> list[str]:
    """Generate into a scratch directory and name every committed file that differs,
    is missing, or is there without being generated."""
    with tempfile.TemporaryDirectory() as scratch:
        fresh_root = Path(scratch)
        fresh = set(generate(fresh_root))
        committed = generated_files(committed_root)
        problems = [f"missing: {p}" for p in sorted(fresh - committed)]
        problems += [f"not generated: {p}" for p in sorted(committed - fresh)]
        problems += [
            f"stale: {p}"
            for p in sorted(fresh & committed)
            if not filecmp.cmp(fresh_root / p, committed_root / p, shallow=False)
        ]
        return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the code is stale")
    parser.add_argument(
        "--against",
        type=Path,
        default=ROOT,
        help="a directory laid out like the repository, holding the code to check",
    )
    args = parser.parse_args()
    if args.check:
        problems = stale_files(args.against)
        for line in problems:
            print(line)
        if problems:
            print("generated code is stale: run `make gen`", file=sys.stderr)
            return 1
        print("generated code is current")
        return 0
    for directory in GENERATED_DIRS:
        if (ROOT / directory).exists():
            shutil.rmtree(ROOT / directory)
    for path in generate(ROOT):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
