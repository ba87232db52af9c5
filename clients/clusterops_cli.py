"""The `clusterops` command's entry point.

It lives outside the `clusterops` package because importing that package imports grpc,
and gRPC core reads GRPC_VERBOSITY once, when it is imported. The client commands turn
gRPC's own log lines off (`I1123 ... Handshake failed`, `E1123 ... dns_resolver.cc`):
every failure already gets one clusterops line saying what went wrong. `serve` keeps
gRPC's default, and so does anyone who sets GRPC_VERBOSITY themselves.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    if sys.argv[1:2] != ["serve"]:
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    from clusterops.cli.main import main as run

    return run()


if __name__ == "__main__":
    raise SystemExit(main())
