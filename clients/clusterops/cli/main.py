"""The `clusterops` command: `serve` runs the server; the other commands talk to one."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clusterops",
        description="Track and drive the long-running operations of a Kubernetes fleet.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the clusterops server")
    try:
        from clusterops_server.serve import add_arguments
    except ImportError:  # the SDK installed without the server
        serve.set_defaults(unavailable=True)
    else:
        add_arguments(serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        if getattr(args, "unavailable", False):
            print("clusterops: the server is not installed in this environment", file=sys.stderr)
            return 2
        from clusterops_server.serve import main as serve_main

        return serve_main(args)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
