"""`clusterops serve`: run the server until SIGTERM or SIGINT, then shut down cleanly."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import signal
import socket
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, DBAPIError

from clusterops_server.app import App, CannotListen, ServerConfig, TlsConfig
from clusterops_server.auth.tokens import TokenStore
from clusterops_server.demo import seed_demo_fleet
from clusterops_server.domain.addon_catalogue import AddonCatalogue
from clusterops_server.domain.addons import ReconcileSettings
from clusterops_server.domain.notifications import WebhookSettings
from clusterops_server.domain.upgrade_workflows import UpgradeSettings
from clusterops_server.engine.context import EngineSettings
from clusterops_server.providers.simulated import ACTIONS, SimulationSettings
from clusterops_server.store.database import default_sqlite_url, normalize_url
from clusterops_server.tls import TlsFileError, check_tls_files

log = logging.getLogger("clusterops")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Defaults come from the environment as strings: argparse converts them with `type`,
    # so a bad value is a usage error naming the flag, not a traceback.
    env = os.environ.get
    parser.add_argument(
        "--host",
        default=env("CLUSTEROPS_HOST", "127.0.0.1"),
        help="address to listen on (env CLUSTEROPS_HOST; default 127.0.0.1)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=env("CLUSTEROPS_PORT", "50051"),
        help="port to listen on, 0 for any free port (env CLUSTEROPS_PORT; default 50051)",
    )
    parser.add_argument(
        "--database-url",
        default=env("CLUSTEROPS_DATABASE_URL", ""),
        help="SQLAlchemy URL, e.g. postgresql://user@host/db "
        "(env CLUSTEROPS_DATABASE_URL; default: SQLite file ./clusterops.db)",
    )
    parser.add_argument(
        "--demo", action="store_true", help="seed a small simulated fleet on first start"
    )
    parser.add_argument(
        "--sim-step-seconds",
        type=float,
        default=env("CLUSTEROPS_SIM_STEP_SECONDS"),
        help="seconds each simulated provider action takes "
        "(env CLUSTEROPS_SIM_STEP_SECONDS; default 2 with --demo, else 0)",
    )
    parser.add_argument(
        "--sim-action-seconds",
        action="append",
        default=[],
        metavar="ACTION=SECONDS",
        help="seconds one simulated provider action takes, instead of --sim-step-seconds "
        "(repeatable), e.g. upgrade:PreCheck=60; actions: " + ", ".join(ACTIONS),
    )
    parser.add_argument(
        "--event-retention-hours",
        type=float,
        default=env("CLUSTEROPS_EVENT_RETENTION_HOURS", "24"),
        help="how long watch history is kept for resuming "
        "(env CLUSTEROPS_EVENT_RETENTION_HOURS; default 24)",
    )
    parser.add_argument(
        "--compaction-interval-minutes",
        type=float,
        default=env("CLUSTEROPS_COMPACTION_INTERVAL_MINUTES", "5"),
        help="how often watch history older than --event-retention-hours is dropped; it is "
        "also dropped at start (env CLUSTEROPS_COMPACTION_INTERVAL_MINUTES; default 5)",
    )
    parser.add_argument(
        "--auth-config",
        type=Path,
        default=_path(env("CLUSTEROPS_AUTH_CONFIG")),
        help="JSON file of bearer tokens, groups and policies (env CLUSTEROPS_AUTH_CONFIG)",
    )
    parser.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="serve without authentication (implied by --demo without --auth-config); "
        "never expose such a server",
    )
    parser.add_argument(
        "--tls-cert",
        type=Path,
        default=_path(env("CLUSTEROPS_TLS_CERT")),
        help="PEM certificate chain; enables TLS (env CLUSTEROPS_TLS_CERT)",
    )
    parser.add_argument(
        "--tls-key",
        type=Path,
        default=_path(env("CLUSTEROPS_TLS_KEY")),
        help="PEM private key (env CLUSTEROPS_TLS_KEY)",
    )
    parser.add_argument(
        "--tls-client-ca",
        type=Path,
        default=_path(env("CLUSTEROPS_TLS_CLIENT_CA")),
        help="PEM CA that signs client certificates; requires them: mutual TLS "
        "(env CLUSTEROPS_TLS_CLIENT_CA)",
    )
    parser.add_argument(
        "--pre-check-validity-minutes",
        type=float,
        default=env("CLUSTEROPS_PRE_CHECK_VALIDITY_MINUTES", "60"),
        help="how long an upgrade PreCheck result stays valid before it must run again "
        "(env CLUSTEROPS_PRE_CHECK_VALIDITY_MINUTES; default 60)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=env("CLUSTEROPS_METRICS_PORT"),
        help="serve Prometheus metrics at http://HOST:PORT/metrics (env CLUSTEROPS_METRICS_PORT)",
    )
    parser.add_argument(
        "--lease-seconds",
        type=float,
        default=env("CLUSTEROPS_LEASE_SECONDS", "30"),
        help="how long a server's claim on running work lasts unless renewed: another "
        "replica takes over a crashed server's work this long after the crash "
        "(env CLUSTEROPS_LEASE_SECONDS; default 30)",
    )
    parser.add_argument(
        "--grace-seconds",
        type=float,
        default=env("CLUSTEROPS_GRACE_SECONDS", "10"),
        help="how long shutdown waits for in-flight calls (env CLUSTEROPS_GRACE_SECONDS; "
        "default 10)",
    )
    parser.add_argument(
        "--addon-catalogue",
        default=env("CLUSTEROPS_ADDON_CATALOGUE", ""),
        help="JSON file of the add-ons offered, re-read when it changes "
        "(env CLUSTEROPS_ADDON_CATALOGUE; default: the built-in catalogue)",
    )
    # The add-on reconciler's intervals; the defaults are OKE's (ReconcileSettings).
    oke = ReconcileSettings()
    parser.add_argument(
        "--addon-check-hours",
        type=float,
        default=env("CLUSTEROPS_ADDON_CHECK_HOURS", _in(oke.active_interval, hours=1)),
        help="how often an ACTIVE add-on is checked for drift "
        "(env CLUSTEROPS_ADDON_CHECK_HOURS; default 12)",
    )
    parser.add_argument(
        "--addon-attention-first-minutes",
        type=float,
        default=env(
            "CLUSTEROPS_ADDON_ATTENTION_FIRST_MINUTES",
            _in(oke.attention_first_interval, minutes=1),
        ),
        help="when a NEEDS_ATTENTION add-on is first checked again "
        "(env CLUSTEROPS_ADDON_ATTENTION_FIRST_MINUTES; default 2)",
    )
    parser.add_argument(
        "--addon-attention-growth",
        type=float,
        default=env("CLUSTEROPS_ADDON_ATTENTION_GROWTH", str(oke.attention_growth)),
        help="each further NEEDS_ATTENTION interval is the one before times this "
        "(env CLUSTEROPS_ADDON_ATTENTION_GROWTH; default 1.25)",
    )
    parser.add_argument(
        "--addon-attention-max-minutes",
        type=float,
        default=env(
            "CLUSTEROPS_ADDON_ATTENTION_MAX_MINUTES", _in(oke.attention_max_interval, minutes=1)
        ),
        help="the longest interval between NEEDS_ATTENTION checks "
        "(env CLUSTEROPS_ADDON_ATTENTION_MAX_MINUTES; default 120)",
    )
    parser.add_argument(
        "--addon-attention-window-hours",
        type=float,
        default=env("CLUSTEROPS_ADDON_ATTENTION_WINDOW_HOURS", _in(oke.attention_window, hours=1)),
        help="how long NEEDS_ATTENTION checks go on before they stop "
        "(env CLUSTEROPS_ADDON_ATTENTION_WINDOW_HOURS; default 12.5)",
    )
    parser.add_argument(
        "--addon-work-request-timeout-minutes",
        type=float,
        default=env(
            "CLUSTEROPS_ADDON_WORK_REQUEST_TIMEOUT_MINUTES",
            _in(oke.work_request_timeout, minutes=1),
        ),
        help="when the work request of an add-on that has not recovered FAILS (checks go on) "
        "(env CLUSTEROPS_ADDON_WORK_REQUEST_TIMEOUT_MINUTES; default 30)",
    )
    hooks = WebhookSettings()
    parser.add_argument(
        "--webhook-suspend-after-hours",
        type=float,
        default=env("CLUSTEROPS_WEBHOOK_SUSPEND_AFTER_HOURS"),
        help="suspend a webhook subscription whose deliveries have failed this long; "
        "shorter than --event-retention-hours, so that a resumed subscription finds the "
        "events it missed (env CLUSTEROPS_WEBHOOK_SUSPEND_AFTER_HOURS; default "
        f"{_in(hooks.suspend_after, hours=1)}, or half the retention if that is shorter)",
    )
    parser.add_argument(
        "--webhook-max-backoff-seconds",
        type=float,
        default=env("CLUSTEROPS_WEBHOOK_MAX_BACKOFF_SECONDS", _in(hooks.max_backoff, seconds=1)),
        help="the longest wait between retries of a failed delivery "
        "(env CLUSTEROPS_WEBHOOK_MAX_BACKOFF_SECONDS; default 300)",
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=env("CLUSTEROPS_LOG_LEVEL", "INFO"),
        help="(env CLUSTEROPS_LOG_LEVEL; default INFO)",
    )


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _in(duration: timedelta, **unit: float) -> str:
    """A default duration as the string of a number of `unit`, e.g. _in(2h, minutes=1) = "120"."""
    return f"{duration / timedelta(**unit):g}"


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


class ConfigError(Exception):
    """The flags do not describe a server we are willing to start."""


def _tls(args: argparse.Namespace, now: datetime) -> TlsConfig | None:
    if args.tls_cert is None and args.tls_key is None:
        if args.tls_client_ca is not None:
            raise ConfigError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if args.tls_cert is None or args.tls_key is None:
        raise ConfigError("TLS needs both --tls-cert and --tls-key")
    try:
        check_tls_files(args.tls_cert, args.tls_key, args.tls_client_ca, now)
    except TlsFileError as error:
        raise ConfigError(str(error)) from None
    return TlsConfig(args.tls_cert, args.tls_key, args.tls_client_ca)


def _tokens(args: argparse.Namespace) -> TokenStore | None:
    if args.auth_config is not None:
        try:
            return TokenStore.load(args.auth_config)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise ConfigError(f"--auth-config {args.auth_config}: {_oneline(error)}") from None
    if args.insecure_no_auth or args.demo:
        return None
    raise ConfigError(
        "refusing to serve without authentication: pass --auth-config FILE "
        "(see README), or --insecure-no-auth for a local experiment"
    )


def _oneline(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return f"cannot read it ({error.strerror})"
    text = " ".join(str(error).split())
    return text[:300] or type(error).__name__


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _number(
    args: argparse.Namespace, name: str, *, positive: bool = True, at_least: float | None = None
) -> float:
    """A finite number of the flag `name`: positive, or not negative, or at least `at_least`."""
    value = float(getattr(args, name))
    if not math.isfinite(value):
        raise ConfigError(f"{_flag(name)} must be a finite number, not {value}")
    if at_least is not None:
        if value < at_least:
            raise ConfigError(f"{_flag(name)} must be at least {at_least:g}, not {value:g}")
    elif positive and value <= 0:
        raise ConfigError(f"{_flag(name)} must be positive, not {value:g}")
    elif value < 0:
        raise ConfigError(f"{_flag(name)} must not be negative, not {value:g}")
    return value


def _action_seconds(args: argparse.Namespace) -> dict[str, float]:
    """--sim-action-seconds ACTION=SECONDS, each naming a simulated action."""
    found: dict[str, float] = {}
    for item in args.sim_action_seconds:
        action, equals, text = item.partition("=")
        if not equals or action not in ACTIONS:
            raise ConfigError(
                f"--sim-action-seconds {item!r}: expected ACTION=SECONDS with ACTION one of "
                + ", ".join(ACTIONS)
            )
        try:
            seconds = float(text)
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds) or seconds < 0:
            raise ConfigError(
                f"--sim-action-seconds {item!r}: SECONDS must be a finite number, not negative"
            )
        found[action] = seconds
    return found


def _port(value: int | None, name: str) -> None:
    if value is not None and not 0 <= value <= 65535:
        raise ConfigError(f"{_flag(name)} must be a port from 0 to 65535, not {value}")


def _host(value: str) -> str:
    """A host the server can listen on; grpc would only say the port is busy."""
    if not value.strip():
        raise ConfigError(
            "--host must not be empty: 0.0.0.0 or :: listens on every address, "
            "localhost on this machine only"
        )
    try:
        socket.getaddrinfo(value, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise ConfigError(f"--host {value}: cannot resolve it ({reason})") from None
    return value


def _webhooks(args: argparse.Namespace, retention: timedelta) -> WebhookSettings:
    # Suspension must come while the missed events are still kept: a subscription
    # resumed after them could only be suspended again, as compacted.
    if args.webhook_suspend_after_hours is None:
        suspend_after = min(WebhookSettings.suspend_after, retention / 2)
    else:
        suspend_after = timedelta(hours=_number(args, "webhook_suspend_after_hours"))
        if suspend_after >= retention:
            raise ConfigError(
                f"--webhook-suspend-after-hours ({args.webhook_suspend_after_hours:g}) must "
                f"be shorter than --event-retention-hours ({args.event_retention_hours:g}), "
                "so that a resumed subscription still finds the events it missed"
            )
    return WebhookSettings(
        suspend_after=suspend_after,
        max_backoff=timedelta(seconds=_number(args, "webhook_max_backoff_seconds")),
    )


def _reconcile(args: argparse.Namespace) -> ReconcileSettings:
    for flag in (
        "addon_check_hours",
        "addon_attention_first_minutes",
        "addon_attention_max_minutes",
        "addon_attention_window_hours",
        "addon_work_request_timeout_minutes",
    ):
        _number(args, flag)
    _number(args, "addon_attention_growth", at_least=1)
    return ReconcileSettings(
        active_interval=timedelta(hours=args.addon_check_hours),
        attention_first_interval=timedelta(minutes=args.addon_attention_first_minutes),
        attention_growth=args.addon_attention_growth,
        attention_max_interval=timedelta(minutes=args.addon_attention_max_minutes),
        attention_window=timedelta(hours=args.addon_attention_window_hours),
        work_request_timeout=timedelta(minutes=args.addon_work_request_timeout_minutes),
    )


def _database_url(args: argparse.Namespace) -> str:
    url = args.database_url or default_sqlite_url("clusterops.db")
    try:
        parsed = normalize_url(url)
    except ArgumentError:
        raise ConfigError(
            "--database-url: cannot parse it; use e.g. sqlite:///clusterops.db or "
            "postgresql://user@host/db"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"--database-url: {backend!r} databases are not supported; use sqlite:///FILE "
            "or postgresql://user@host/db"
        )
    if backend == "sqlite" and _in_memory(parsed):
        raise ConfigError(
            "--database-url: an in-memory SQLite database lives in one connection and "
            "the server uses several, so nothing would be kept; give a file, e.g. "
            "sqlite:///clusterops.db"
        )
    return url


def _in_memory(url: URL) -> bool:
    database = url.database or ""
    return (
        database in ("", ":memory:")
        or database.startswith("file::memory:")
        or url.query.get("mode") == "memory"
    )


def _catalogue(args: argparse.Namespace) -> Path | None:
    if not args.addon_catalogue:
        return None
    path = Path(args.addon_catalogue)
    try:
        AddonCatalogue.load(path)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ConfigError(f"--addon-catalogue {path}: {_oneline(error)}") from None
    return path


def config_from(args: argparse.Namespace, *, now: datetime | None = None) -> ServerConfig:
    """The server's configuration; ConfigError, one line naming the setting, for any bad
    value, so nothing fails later with a traceback."""
    _number(args, "lease_seconds")
    _number(args, "grace_seconds", positive=False)
    _port(args.port, "port")
    _port(args.metrics_port, "metrics_port")
    if args.metrics_port is not None and args.metrics_port == args.port != 0:
        raise ConfigError(
            f"--metrics-port must differ from --port ({args.port}): gRPC and the "
            "metrics' HTTP cannot share a port"
        )
    retention = timedelta(hours=_number(args, "event_retention_hours"))
    step: float
    if args.sim_step_seconds is None:
        step = 2.0 if args.demo else 0.0
    else:
        step = _number(args, "sim_step_seconds", positive=False)
    simulation = SimulationSettings(default_seconds=step, seconds=_action_seconds(args))
    return ServerConfig(
        database_url=_database_url(args),
        host=_host(args.host),
        port=args.port,
        simulation=simulation,
        engine=EngineSettings(lease_seconds=args.lease_seconds),
        event_retention=retention,
        maintenance_interval_seconds=60 * _number(args, "compaction_interval_minutes"),
        tokens=_tokens(args),
        tls=_tls(args, now or datetime.now(UTC)),
        metrics_port=args.metrics_port,
        upgrades=UpgradeSettings(
            pre_check_validity=timedelta(minutes=_number(args, "pre_check_validity_minutes"))
        ),
        reconcile=_reconcile(args),
        webhooks=_webhooks(args, retention),
        addon_catalogue_path=_catalogue(args),
    )


async def serve(args: argparse.Namespace) -> int:
    try:
        config = config_from(args)
    except ConfigError as error:
        print(f"clusterops serve: {error}", file=sys.stderr)
        return 2
    if config.tokens is None:
        log.warning("serving WITHOUT authentication: anyone who can connect can do anything")
    app = App(config)
    try:
        port = await app.start()
    except CannotListen as error:
        print(f"clusterops serve: {error}", file=sys.stderr)
        return 1
    except (OSError, DBAPIError) as error:
        shown = app.database.url.render_as_string(hide_password=True)
        print(
            f"clusterops serve: --database-url {shown}: cannot use it: "
            f"{_oneline(getattr(error, 'orig', None) or error)}",
            file=sys.stderr,
        )
        return 1
    if args.demo:
        await seed_demo_fleet(app)
    # Tests and scripts read this line to find a port chosen with --port 0.
    print(f"clusterops listening on {args.host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await app.stop(grace=args.grace_seconds)
    print("clusterops stopped", flush=True)
    return 0


def main(args: argparse.Namespace) -> int:
    # argparse checks choices only for a value given on the command line, not for
    # the default it took from CLUSTEROPS_LOG_LEVEL.
    level = str(args.log_level).upper()
    if level not in LOG_LEVELS:
        print(
            f"clusterops serve: --log-level (env CLUSTEROPS_LOG_LEVEL) must be one of "
            f"{', '.join(LOG_LEVELS)}, not {args.log_level!r}",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return asyncio.run(serve(args))
