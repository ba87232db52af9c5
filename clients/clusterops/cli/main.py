"""The `clusterops` command: `serve` runs the server; the other commands talk to one."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from clusterops import (
    Client,
    ClusteropsError,
    Conflict,
    DeadlineExceeded,
    EtagMismatch,
    RetryPolicy,
    TLSConfig,
    Unavailable,
)
from clusterops._options import (
    DEFAULT_TARGET,
    ENV_CA_CERT,
    ENV_CLIENT_CERT,
    ENV_CLIENT_KEY,
    ENV_SERVER,
    ENV_TLS,
    ENV_TOKEN,
)
from clusterops.cli._commands import REGISTRARS, Handler, seconds
from clusterops.cli._output import Output

EXIT_ERROR = 1  # the server refused the request
EXIT_USAGE = 2  # a bad command line
EXIT_UNAVAILABLE = 3  # the server could not be reached
EXIT_TIMEOUT = 6  # a deadline passed
EXIT_INTERRUPTED = 130
# The distribution that brings `clusterops serve` (this package is the SDK and the CLI).
SERVER_PACKAGE = "clusterops-server"

EPILOG = """\
exit codes: 0 success (a watched work request SUCCEEDED), 1 the server refused the
request, 2 bad command line, 3 server unreachable, 4 work request FAILED, 5 work request
CANCELED, 6 timed out, 130 interrupted.

connection options (--server, --output, --token, --tls, --ca-cert, --client-cert,
--client-key, --timeout) may come before or after the command; environment variables
CLUSTEROPS_SERVER, CLUSTEROPS_OUTPUT, CLUSTEROPS_TOKEN, CLUSTEROPS_TLS,
CLUSTEROPS_CA_CERT, CLUSTEROPS_CLIENT_CERT and CLUSTEROPS_CLIENT_KEY set their defaults.
gRPC's own log lines are off unless GRPC_VERBOSITY is set (e.g. GRPC_VERBOSITY=DEBUG).
"""


def _connection_options(parser: argparse.ArgumentParser, *, nested: bool) -> None:
    """The same options at the top and on every command; a nested copy has no defaults of
    its own, so it never overrides a value given before the command."""
    env = os.environ.get

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if nested else value

    group = parser.add_argument_group("connection")
    group.add_argument(
        "--server",
        default=default(env(ENV_SERVER) or DEFAULT_TARGET),
        help=f"host:port of the server (env {ENV_SERVER}; default {DEFAULT_TARGET})",
    )
    group.add_argument(
        "-o",
        "--output",
        choices=("table", "json"),
        default=default(env("CLUSTEROPS_OUTPUT") or "table"),
        help="table for people, json for scripts (env CLUSTEROPS_OUTPUT)",
    )
    group.add_argument(
        "--token", default=default(env(ENV_TOKEN)), help=f"bearer token (env {ENV_TOKEN})"
    )
    group.add_argument(
        "--tls",
        action="store_true",
        default=default(env(ENV_TLS, "").lower() in {"1", "true", "yes"}),
        help=f"use TLS with the system's trusted roots (env {ENV_TLS}=1)",
    )
    group.add_argument(
        "--ca-cert",
        default=default(env(ENV_CA_CERT)),
        metavar="PEM",
        help=f"trusted root certificates; implies --tls (env {ENV_CA_CERT})",
    )
    group.add_argument(
        "--client-cert",
        default=default(env(ENV_CLIENT_CERT)),
        metavar="PEM",
        help=f"client certificate for mutual TLS (env {ENV_CLIENT_CERT})",
    )
    group.add_argument(
        "--client-key",
        default=default(env(ENV_CLIENT_KEY)),
        metavar="PEM",
        help=f"client private key for mutual TLS (env {ENV_CLIENT_KEY})",
    )
    group.add_argument(
        "--timeout",
        type=seconds,
        default=default(30.0),
        metavar="SECONDS",
        help="deadline of each call (default 30)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clusterops",
        description="Track and drive the long-running operations of a Kubernetes fleet.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _connection_options(parser, nested=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the clusterops server")
    try:
        from clusterops_server.serve import add_arguments
    except ImportError as error:  # the SDK installed without the server
        serve.set_defaults(unavailable=_without_server(error))
    else:
        add_arguments(serve)

    def leaf(verbs: Any, name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        command: argparse.ArgumentParser = verbs.add_parser(name, help=help, description=help)
        _connection_options(command, nested=True)
        command.set_defaults(handler=handler)
        return command

    for register in REGISTRARS:
        register(commands, leaf)
    return parser


def _without_server(error: ImportError) -> str:
    """One line for `clusterops serve` where the server cannot be imported."""
    if error.name == "clusterops_server":
        return (
            f"serve needs the server, which is not installed: install {SERVER_PACKAGE} "
            "(pip install ./server in a clusterops checkout)"
        )
    return f"serve needs the server, whose {SERVER_PACKAGE} package cannot load: {error}"


def check_server(target: str) -> None:
    """HOST:PORT ([IPV6]:PORT) or a gRPC target URI such as unix:///run/clusterops.sock;
    anything else is a usage error here rather than a resolver error from gRPC."""
    expected = f"expected HOST:PORT such as {DEFAULT_TARGET}"
    scheme, colon, rest = target.partition(":")
    if scheme in _URI_SCHEMES and colon:
        if not rest.strip("/"):
            raise ValueError(f"--server: {target!r} names no address")
        return
    host, _, port = target.rpartition(":")
    bare = host.removeprefix("[").removesuffix("]")
    if host.startswith("[") != host.endswith("]") or (":" in bare and bare == host):
        raise ValueError(f"--server: {expected} ([::1]:50051 for IPv6), got {target!r}")
    if not bare or any(c.isspace() or c in "/?#@" for c in bare):
        raise ValueError(f"--server: {expected}, got {target!r}")
    if not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"--server: {expected} (a port from 1 to 65535), got {target!r}")


_URI_SCHEMES = {"dns", "unix", "unix-abstract", "ipv4", "ipv6", "vsock"}


def connect(args: argparse.Namespace) -> Client:
    check_server(args.server)
    tls: TLSConfig | bool = bool(args.tls)
    if args.ca_cert or args.client_cert or args.client_key:
        tls = TLSConfig.from_files(
            ca_cert=args.ca_cert, client_cert=args.client_cert, client_key=args.client_key
        )
        for path, pem in (
            (args.ca_cert, tls.root_certificates),
            (args.client_cert, tls.client_certificate),
            (args.client_key, tls.client_key),
        ):
            if pem is not None and b"-----BEGIN " not in pem:
                raise ValueError(f"{path} is not a PEM file")
    # A person is waiting: a few quick retries, not the SDK's patient default.
    return Client(
        args.server,
        tls=tls,
        token=args.token,
        timeout=args.timeout,
        retry=RetryPolicy(max_attempts=3),
    )


def _uses_tls(args: argparse.Namespace) -> bool:
    return bool(args.tls or args.ca_cert or args.client_cert or args.client_key)


# How gRPC words a TLS handshake that failed (or that the server broke off, as a server
# requiring a client certificate does when it gets none or an untrusted one).
_HANDSHAKE_FAILURES = ("handshake", "ssl", "tls", "socket closed", "certificate")


def _report(error: ClusteropsError, args: argparse.Namespace, say: Callable[[str], None]) -> int:
    server = args.server
    if isinstance(error, Unavailable):
        message = error.message.removeprefix("failed to connect to all addresses; last error: ")
        if _uses_tls(args) and any(word in message.lower() for word in _HANDSHAKE_FAILURES):
            say(
                f"TLS with the server at {server} failed: {message} "
                "(does it serve TLS? check --ca-cert, and --client-cert and --client-key "
                "if it asks for a client certificate)"
            )
        else:
            say(
                f"cannot reach the server at {server}: {message} "
                f"(is it running? set --server or {ENV_SERVER})"
            )
        return EXIT_UNAVAILABLE
    if error.field_violations:
        say(f"{error.code.name}: the request has invalid fields:")
    else:
        say(str(error))
    for field in error.field_violations:
        say(f"  {field.field}: {field.description}")
    for violation in error.precondition_violations:
        if violation.description != error.message:  # the first line already said it
            say(f"  {violation.subject}: {violation.description}")
    if isinstance(error, Conflict) and error.blocking_work_request_id:
        say(f"  watch it with: clusterops work-requests watch {error.blocking_work_request_id}")
    if isinstance(error, EtagMismatch) and error.current_etag:
        say(f"  its current etag is {error.current_etag}")
    return EXIT_TIMEOUT if isinstance(error, DeadlineExceeded) else EXIT_ERROR


def run(args: argparse.Namespace) -> int:
    def say(text: str) -> None:
        print(f"clusterops: {text}" if not text.startswith("  ") else text, file=sys.stderr)

    handler: Handler = args.handler
    try:
        with connect(args) as client:
            # With --watch, JSON output is JSON Lines: the started resource, then each event.
            output = Output(args.output, lines=bool(getattr(args, "watch", False)))
            return handler(client, args, output)
    except ClusteropsError as error:
        return _report(error, args, say)
    except BrokenPipeError:  # e.g. piped into `head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except (ValueError, OSError) as error:  # a bad argument the SDK caught, an unreadable file
        say(f"error: {error}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        say("interrupted")
        return EXIT_INTERRUPTED
    except Exception as error:  # a bug: one line for people, the traceback on request
        if os.environ.get("CLUSTEROPS_DEBUG"):
            raise
        say(
            f"unexpected error ({type(error).__name__}: {error}); "
            "set CLUSTEROPS_DEBUG=1 to see more"
        )
        return EXIT_ERROR


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    # Without the server its options are unknown here: say what is missing instead.
    if args.command == "serve" and (unavailable := getattr(args, "unavailable", "")):
        print(f"clusterops: {unavailable}", file=sys.stderr)
        return EXIT_USAGE
    if unknown:  # as parse_args would
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command == "serve":
        from clusterops_server.serve import main as serve_main

        return serve_main(args)
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
