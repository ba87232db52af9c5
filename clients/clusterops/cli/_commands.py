"""The resource commands: thin verbs over the SDK's sync Client."""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from google.protobuf.message import Message

from clusterops import (
    Addon,
    AddonOption,
    Client,
    Cluster,
    Fault,
    KubernetesVersion,
    Node,
    NodePool,
    Operation,
    Orchestration,
    OrchestrationOperation,
    Pager,
    Stage,
    Subscription,
    UpgradeWorkflow,
    WorkRequest,
    WorkRequestError,
    WorkRequestLogEntry,
)
from clusterops.cli._output import (
    ADDON_VERSIONS_HEADER,
    Output,
    addon_option_details,
    addon_version_rows,
    enum_label,
    timestamp_label,
)
from clusterops.cli._progress import Progress, bar, status_label
from clusterops.cli._table import LiveTable
from clusterops.v1.orchestrations_pb2 import StageStatus
from clusterops.v1.simulator_pb2 import GetStepTimesResponse, SetStepTimeResponse, StepTime

Handler = Callable[[Client, argparse.Namespace, Output], int]
T = TypeVar("T")
Subparsers = Any  # argparse's private _SubParsersAction


def key_values(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


class KeyValues(argparse.Action):
    """A repeatable KEY=VALUE option collected into a dict; a key given twice is a usage
    error rather than a silent "last one wins"."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        key, value = values
        found: dict[str, str] = dict(getattr(namespace, self.dest, None) or {})
        if key in found:
            raise argparse.ArgumentError(self, f"key {key!r} is given twice")
        found[key] = value
        setattr(namespace, self.dest, found)


def _key_value_option(parser: argparse.ArgumentParser, *names: str, **options: Any) -> None:
    parser.add_argument(
        *names, type=key_values, action=KeyValues, default={}, metavar="KEY=VALUE", **options
    )


def window(text: str) -> tuple[str, str]:
    start, sep, end = text.partition("-")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected HH:MM-HH:MM, got {text!r}")
    return start, end


def selector(text: str) -> dict[str, str]:
    """ "all", or FIELD=VALUE[,FIELD=VALUE...] of RuntimeTarget (region=eu-frankfurt-1)."""
    if text == "all":
        return {"target": "all"}
    found: dict[str, str] = {}
    for key, value in map(key_values, text.split(",")):
        if key in found:
            raise argparse.ArgumentTypeError(f"{key!r} is given twice in {text!r}")
        found[key] = value
    return found


def rfc3339(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an RFC 3339 time such as 2026-01-05T22:00:00Z, got {text!r}"
        ) from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone; add Z for UTC")
    return moment


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def first(pager: Pager[T], limit: int) -> tuple[list[T], bool]:
    """At most `limit` items, and whether the list goes on past them."""
    items: list[T] = []
    for page in pager.pages():
        items.extend(page.items)
        if len(items) >= limit:
            return items[:limit], len(items) > limit or bool(page.next_page_token)
    return items, False


def follow(client: Client, work_request_id: str, args: argparse.Namespace, out: Output) -> int:
    """Show a work request until it finishes; the exit code tells how it ended."""
    client.work_requests.get(work_request_id)  # fail fast on a bad id or unreachable server
    progress = Progress(out)
    with progress.showing_reconnections():
        final = client.work_requests.wait(
            work_request_id, timeout=args.wait_timeout, on_event=progress
        )
    return progress.finish(final)


def started(
    client: Client, operation: Operation[Any], args: argparse.Namespace, out: Output
) -> int:
    """Print what a mutation started; with --watch, follow it to the end."""
    resource = operation.resource
    if out.json:
        if isinstance(resource, Message):
            out.resource(resource, work_request=operation.work_request)
        else:
            out.resource(operation.work_request)
    else:
        if isinstance(resource, Message):
            out.resource(resource)
        out.line(
            f"work request {operation.id} is {status_label(operation.work_request)}; "
            f"follow it with: clusterops work-requests watch {operation.id}"
        )
    if args.watch:
        return follow(client, operation.id, args, out)
    return 0


def _watchable(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--watch", action="store_true", help="follow the work request until it finishes"
    )
    parser.add_argument("--request-id", help="idempotency key (default: a fresh one)")
    _wait_timeout(parser)


def seconds(text: str) -> float:
    """An argparse type: a finite number of seconds above 0 (a usage error otherwise)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, not {text}")
    return value


def _wait_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait-timeout",
        type=seconds,
        default=None,
        metavar="SECONDS",
        help="give up watching after this long (default: no limit)",
    )


def _configurations(parser: argparse.ArgumentParser) -> None:
    _key_value_option(parser, "--config", help="a configuration key's value (repeatable)")


def _limit(parser: argparse.ArgumentParser, default: int = 50) -> None:
    parser.add_argument(
        "--limit", type=positive, default=default, help=f"at most this many (default {default})"
    )


def _listed(kind: type[Message], pager: Pager[Any], args: argparse.Namespace, out: Output) -> int:
    items, more = first(pager, args.limit)
    out.table(kind, items)
    _more(more, args, out)
    return 0


def _more(more: bool, args: argparse.Namespace, out: Output) -> None:
    if more and not out.json:  # JSON: a script asked for --limit and got it
        out.note(f"there are more results; raise --limit (now {args.limit}) to see them")


# --- work requests -------------------------------------------------------------------


def wr_list(client: Client, args: argparse.Namespace, out: Output) -> int:
    items = client.work_requests.list(
        compartment_id=args.compartment,
        resource_id=args.resource,
        resource_type=args.resource_type,
        statuses=args.status,
        filter=args.filter,
        order_by=args.order_by,
        page_size=min(args.limit, 1000),
    )
    return _listed(WorkRequest, items, args, out)


def wr_get(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.resource(client.work_requests.get(args.work_request_id))
    return 0


def wr_logs(client: Client, args: argparse.Namespace, out: Output) -> int:
    items = client.work_requests.list_logs(args.work_request_id, page_size=min(args.limit, 1000))
    return _listed(WorkRequestLogEntry, items, args, out)


def wr_errors(client: Client, args: argparse.Namespace, out: Output) -> int:
    items = client.work_requests.list_errors(args.work_request_id, page_size=min(args.limit, 1000))
    return _listed(WorkRequestError, items, args, out)


_EXIT_USAGE = 2  # main.EXIT_USAGE (main imports this module)


def wr_watch(client: Client, args: argparse.Namespace, out: Output) -> int:
    if args.work_request_id:
        if args.filter or args.compartment or args.status or args.resource or args.until_done:
            out.note("give a work request id, or filters, not both")
            return _EXIT_USAGE
        return follow(client, args.work_request_id, args, out)
    table = LiveTable(out)
    events = client.work_requests.watch_many(
        compartment_id=args.compartment,
        resource_id=args.resource,
        resource_type=args.resource_type,
        statuses=args.status,
        filter=args.filter,
        timeout=args.wait_timeout,
    )
    with events:
        for event in events:
            table(event)
            if args.until_done and table.done:
                return table.exit_code()
    return 0


def wr_cancel(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.resource(client.work_requests.cancel(args.work_request_id, request_id=args.request_id))
    if args.watch:
        return follow(client, args.work_request_id, args, out)
    return 0


def add_work_requests(commands: Subparsers, leaf: Callable[..., argparse.ArgumentParser]) -> None:
    group = commands.add_parser(
        "work-requests", aliases=["wr"], help="list, get, watch and cancel work requests"
    )
    verbs = group.add_subparsers(dest="verb", required=True, metavar="VERB")
    p = leaf(verbs, "list", wr_list, "list work requests, newest first")
    p.add_argument("--compartment", default="")
    p.add_argument("--resource", default="", help="only those affecting this resource id")
    p.add_argument("--resource-type", default="", help="cluster, nodepool, addon, ...")
    p.add_argument(
        "--status", action="append", default=[], help="ACCEPTED, IN_PROGRESS, ... (repeatable)"
    )
    p.add_argument("--filter", default="", help='AIP-160, e.g. "operation_type = NODEPOOL_CREATE"')
    p.add_argument("--order-by", default="", help='"time_accepted" or "time_accepted desc"')
    _limit(p)
    p = leaf(verbs, "get", wr_get, "show one work request")
    p.add_argument("work_request_id")
    p = leaf(verbs, "logs", wr_logs, "list a work request's log entries")
    p.add_argument("work_request_id")
    _limit(p, 1000)
    p = leaf(verbs, "errors", wr_errors, "list a work request's errors")
    p.add_argument("work_request_id")
    _limit(p, 1000)
    p = leaf(
        verbs,
        "watch",
        wr_watch,
        "follow a work request until it finishes (exit 0 SUCCEEDED, 4 FAILED, 5 CANCELED), "
        "or, given filters instead of an id, every matching work request as a live table",
    )
    p.add_argument("work_request_id", nargs="?", default="")
    p.add_argument("--compartment", default="")
    p.add_argument("--resource", default="", help="only those affecting this resource id")
    p.add_argument("--resource-type", default="", help="cluster, nodepool, addon, ...")
    p.add_argument(
        "--status", action="append", default=[], help="ACCEPTED, IN_PROGRESS, ... (repeatable)"
    )
    p.add_argument("--filter", default="", help='AIP-160, e.g. "status = IN_PROGRESS"')
    p.add_argument(
        "--until-done",
        action="store_true",
        help="with filters: stop once every matching work request has finished "
        "(exit 4 if one FAILED)",
    )
    _wait_timeout(p)
    p = leaf(verbs, "cancel", wr_cancel, "ask a work request to stop")
    p.add_argument("work_request_id")
    _watchable(p)


# --- clusters, node pools, nodes -----------------------------------------------------


def cluster_create(client: Client, args: argparse.Namespace, out: Output) -> int:
    operation = client.clusters.create(
        compartment_id=args.compartment,
        name=args.name,
        kubernetes_version=args.kubernetes_version,
        region=args.region,
        plan=args.plan,
        global_account_id=args.global_account,
        sub_account_id=args.sub_account,
        shoot_name=args.shoot_name,
        maintenance_window=args.maintenance_window,
        labels=args.label,
        request_id=args.request_id,
    )
    return started(client, operation, args, out)


def cluster_get(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.resource(client.clusters.get(args.cluster_id))
    return 0


def cluster_list(client: Client, args: argparse.Namespace, out: Output) -> int:
    items = client.clusters.list(
        compartment_id=args.compartment,
        filter=args.filter,
        order_by=args.order_by,
        page_size=min(args.limit, 1000),
    )
    return _listed(Cluster, items, args, out)


def cluster_delete(client: Client, args: argparse.Namespace, out: Output) -> int:
    operation = client.clusters.delete(args.cluster_id, etag=args.etag, request_id=args.request_id)
    return started(client, operation, args, out)


def add_clusters(commands: Subparsers, leaf: Callable[..., argparse.ArgumentParser]) -> None:
    group = commands.add_parser("clusters", help="create, get, list and delete clusters")
    verbs = group.add_subparsers(dest="verb", required=True, metavar="VERB")
    p = leaf(verbs, "create", cluster_create, "start creating a cluster")
    p.add_argument("--compartment", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--kubernetes-version", "--version", required=True, help="e.g. v1.30.4")
    p.add_argument("--region", required=True)
    p.add_argument("--plan", required=True)
    p.add_argument("--global-account", default="")
    p.add_argument("--sub-account", default="")
    p.add_argument("--shoot-name", default="")
    p.add_argument("--maintenance-window", type=window, help="HH:MM-HH:MM in UTC")
    _key_value_option(p, "--label")
    _watchable(p)
    p = leaf(verbs, "get", cluster_get, "show one cluster")
    p.add_argument("cluster_id")
    p = leaf(verbs, "list", cluster_list, "list clusters")
    p.add_argument("--compartment", default="")
    p.add_argument("--filter", default="", help='AIP-160, e.g. "region = eu-frankfurt-1"')
    p.add_argument("--order-by", default="")
    _limit(p)
    p = leaf(verbs, "delete", cluster_delete, "start deleting a cluster without node pools")
    p.add_argument("cluster_id")
    p.add_argument("--etag", default="")
    _watchable(p)


def pool_create(client: Client, args: argparse.Namespace, out: Output) -> int:
    operation = client.clusters.create_node_pool(
        args.cluster,
        name=args.name,
        node_count=args.nodes,
        node_shape=args.shape,
        kubernetes_version=args.kubernetes_version,
        request_id=args.request_id,
    )
    return started(client, operation, args, out)


def pool_get(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.resource(client.clusters.get_node_pool(args.node_pool_id))
    return 0


def pool_list(client: Client, args: argparse.Namespace, out: Output) -> int:
    items = client.clusters.list_node_pools(args.cluster, page_size=min(args.limit, 1000))
    return _listed(NodePool, items, args, out)


def pool_delete(client: Client, args: argparse.Namespace, out: Output) -> int:
    operation = client.clusters.delete_node_pool(
        args.node_pool_id, etag=args.etag, request_id=args.request_id
    )
    return started(client, operation, args, out)


def nodes_list(client: Client, args: argparse.Namespace, out: Output) -> int:
    items = client.clusters.list_nodes(args.node_pool, page_size=min(args.limit, 1000))
    return _listed(Node, items, args, out)


def add_node_pools(commands: Subparsers, leaf: Callable[..., argparse.ArgumentParser]) -> None:
    group = commands.add_parser("node-pools", help="create, get, list and delete node pools")
    verbs = group.add_subparsers(dest="verb", required=True, metavar="VERB")
    p = leaf(verbs, "create", pool_create, "start creating a node pool")
    p.add_argument("--cluster", required=True, help="the cluster's id")
    p.add_argument("--name", required=True)
    p.add_argument("--nodes", type=int, required=True, help="1 to 100")
    p.add_argument("--shape", default="", help="default VM.Standard.E4.Flex")
    p.add_argument("--kubernetes-version", "--version", default="")
    _watchable(p)
    p = leaf(verbs, "get", pool_get, "show one node pool")
    p.add_argument("node_pool_id")
    p = leaf(verbs, "list", pool_list, "list the node pools of a cluster")
    p.add_argument("--cluster", required=True)
    _limit(p)
    p = leaf(verbs, "delete", pool_delete, "start deleting a node pool")
    p.add_argument("node_pool_id")
    p.add_argument("--etag", default="")
    _watchable(p)

    group = commands.add_parser("nodes", help="list the nodes of a node pool")
    verbs = group.add_subparsers(dest="verb", required=True, metavar="VERB")
    p = leaf(verbs, "list", nodes_list, "list the nodes of a node pool")
    p.add_argument("--node-pool", required=True)
    _limit(p, 100)


# --- upgrade workflows ---------------------------------------------------------------


def uw_create(client: Client, args: argparse.Namespace, out: Output) -> int:
    operation = client.upgrade_workflows.create(
        args.cluster,
        target_version=args.target_version,
        name=args.name,
        labels=args.label,
        annotations=args.annotation,
        request_id=args.request_id,
        skip_snapshot=args.skip_snapshot,
    )
    return started(client, operation, args, out)


def uw_get(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.resource(client.upgrade_workflows.get(args.upgrade_workflow_id))
    return 0


def uw_list(client: Client, args: argparse.Namespace, out: Output) -> int:
    items = client.upgrade_workflows.list(
        compartment_id=args.compartment,
        cluster_id=args.cluster,
        phases=args.phase,
        page_size=min(args.limit, 1000),
    )
    return _listed(UpgradeWorkflow, items, args, out)


def uw_cancel(client: Client, args: argparse.Namespace, out: Output) -> int:
    workflow = client.upgrade_workflows.cancel(
        args.upgrade_workflow_id, etag=args.etag, request_id=args.request_id
    )
    out.resource(workflow)
    if args.watch:
        return follow(client, workflow.work_request_id, args, out)
    return 0


def uw_versions(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.table(KubernetesVersion, client.upgrade_workflows.list_kubernetes_versions())
    return 0


def add_upgrade_workflows(
    commands: Subparsers, leaf: Callable[..., argparse.ArgumentParser]
) -> None:
    group = commands.add_parser(
        "upgrade-workflows", aliases=["upgrades"], help="upgrade clusters (CCE-style workflows)"
    )
    verbs = group.add_subparsers(dest="verb", required=True, metavar="VERB")
    p = leaf(verbs, "create", uw_create, "start upgrading a cluster")
    p.add_argument("--cluster", required=True)
    p.add_argument("--target-version", required=True, help="see: upgrade-workflows versions")
    p.add_argument("--name", default="")
    _key_value_option(p, "--label")
    _key_value_option(p, "--annotation")
    p.add_argument(
        "--skip-snapshot",
        action="store_true",
        help="take no snapshot first (then a failed upgrade is not rolled back)",
    )
    _watchable(p)
    p = leaf(verbs, "get", uw_get, "show one upgrade workflow")
    p.add_argument("upgrade_workflow_id")
    p = leaf(verbs, "list", uw_list, "list upgrade workflows")
    p.add_argument("--compartment", default="")
    p.add_argument("--cluster", default="")
    p.add_argument(
        "--phase", action="append", default=[], help="INIT, RUNNING, PENDING, ... (repeatable)"
    )
    _limit(p)
    p = leaf(verbs, "cancel", uw_cancel, "cancel an upgrade before its point of no return")
    p.add_argument("upgrade_workflow_id")
    p.add_argument("--etag", default="")
    _watchable(p)
    leaf(verbs, "versions", uw_versions, "list Kubernetes versions and their upgrade targets")


# --- add-ons -------------------------------------------------------------------------


def addon_install(client: Client, args: argparse.Namespace, out: Output) -> int:
    operation = client.addons.install(
        args.cluster_id,
        args.name,
        version=args.addon_version,
        configurations=args.config,
        override_existing=args.override_existing,
        request_id=args.request_id,
    )
    return started(client, operation, args, out)


def addon_get(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.resource(client.addons.get(args.cluster_id, args.name))
    return 0


def addon_list(client: Client, args: argparse.Namespace, out: Output) -> int:
    items = client.addons.list(
        args.cluster_id, lifecycle_states=args.state, page_size=min(args.limit, 1000)
    )
    return _listed(Addon, items, args, out)


def addon_update(client: Client, args: argparse.Namespace, out: Output) -> int:
    operation = client.addons.update(
        args.cluster_id,
        args.name,
        etag=args.etag,
        version=args.addon_version,
        follow_latest=args.follow_latest,
        configurations=args.config,
        replace_configurations=args.replace_config,
        request_id=args.request_id,
    )
    return started(client, operation, args, out)


def addon_disable(client: Client, args: argparse.Namespace, out: Output) -> int:
    operation = client.addons.disable(
        args.cluster_id,
        args.name,
        remove_existing=args.remove_existing,
        etag=args.etag,
        request_id=args.request_id,
    )
    return started(client, operation, args, out)


def addon_options(client: Client, args: argparse.Namespace, out: Output) -> int:
    options, more = first(
        client.addons.list_options(
            kubernetes_version=args.kubernetes_version,
            addon_name=args.name,
            page_size=min(args.limit, 1000),
        ),
        args.limit,
    )
    if out.json:
        out.table(AddonOption, options)
    elif args.name and options:
        for option in options:
            addon_option_details(option, out)
    else:
        out.grid(ADDON_VERSIONS_HEADER, addon_version_rows(options))
        if options:
            out.note("descriptions and configuration keys: clusterops addons options --name NAME")
    _more(more, args, out)
    return 0


def add_addons(commands: Subparsers, leaf: Callable[..., argparse.ArgumentParser]) -> None:
    group = commands.add_parser("addons", help="install, update and disable cluster add-ons")
    verbs = group.add_subparsers(dest="verb", required=True, metavar="VERB")
    p = leaf(verbs, "install", addon_install, "start installing an add-on")
    p.add_argument("cluster_id")
    p.add_argument("name")
    p.add_argument("--version", dest="addon_version", default="")
    _configurations(p)
    p.add_argument("--override-existing", action="store_true")
    _watchable(p)
    p = leaf(verbs, "get", addon_get, "show one add-on of a cluster")
    p.add_argument("cluster_id")
    p.add_argument("name")
    p = leaf(verbs, "list", addon_list, "list the add-ons of a cluster")
    p.add_argument("cluster_id")
    p.add_argument(
        "--state",
        action="append",
        default=[],
        help="ACTIVE, NEEDS_ATTENTION, DELETED, ... (repeatable)",
    )
    _limit(p)
    p = leaf(verbs, "update", addon_update, "start updating an add-on")
    p.add_argument("cluster_id")
    p.add_argument("name")
    p.add_argument("--version", dest="addon_version", default="")
    p.add_argument("--follow-latest", action="store_true")
    _configurations(p)
    p.add_argument("--replace-config", action="store_true")
    p.add_argument("--etag", default="")
    _watchable(p)
    p = leaf(verbs, "disable", addon_disable, "start disabling an add-on")
    p.add_argument("cluster_id")
    p.add_argument("name")
    p.add_argument("--remove-existing", action="store_true")
    p.add_argument("--etag", default="")
    _watchable(p)
    p = leaf(
        verbs,
        "options",
        addon_options,
        "list the add-on catalogue: each version's status and Kubernetes versions",
    )
    p.add_argument(
        "--kubernetes-version", default="", help="only versions that run on it, e.g. v1.29"
    )
    p.add_argument(
        "--name",
        default="",
        help="only this add-on, with each version's description and configuration keys",
    )
    _limit(p)


# --- orchestrations ------------------------------------------------------------------


_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def duration(text: str) -> timedelta:
    """30m, 1h, 2h30m, 90s, 1d: an argparse type."""
    match = _DURATION.fullmatch(text.strip())
    if not text.strip() or match is None:
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 30m, 1h30m or 90s, got {text!r}"
        )
    days, hours, minutes, secs = (int(g) if g else 0 for g in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=secs)


def budget(text: str) -> int | str:
    """2 (operations) or 10% (of them): an argparse type."""
    number = text[:-1] if text.endswith("%") else text
    if not number.isdigit():
        raise argparse.ArgumentTypeError(
            f"expected a count such as 2 or a percentage such as 10%, got {text!r}"
        )
    return text if text.endswith("%") else int(number)


_STAGE_NAME = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")


def stage_spec(text: str) -> Stage:
    """NAME[:KEY=VALUE,...] with count, percent, workers, soak, budget and the flag
    approval, e.g. "canary:count=1,soak=30m" or "rest:workers=5,approval"."""
    name, _, rest = text.partition(":")
    if _STAGE_NAME.fullmatch(name) is None:
        raise argparse.ArgumentTypeError(
            f"stage {text!r}: start with a name of lowercase letters, digits and '-'"
        )
    fields: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        try:
            if key == "approval" and not sep:
                fields["requires_approval"] = True
            elif key in ("count", "percent", "workers") and sep:
                fields[key] = int(value)
            elif key == "soak" and sep:
                fields["soak"] = duration(value)
            elif key == "budget" and sep:
                fields["failure_budget"] = budget(value)
            else:
                raise ValueError
        except (ValueError, argparse.ArgumentTypeError):
            raise argparse.ArgumentTypeError(
                f"stage {text!r}: {item!r} is not one of count=N, percent=N, workers=N, "
                "soak=DURATION, budget=N|N%, approval"
            ) from None
    return Stage(name, **fields)


def orc_create(client: Client, args: argparse.Namespace, out: Output) -> int:
    operation = client.orchestrations.create(
        args.compartment,
        include=args.target,
        exclude=args.exclude,
        kubernetes_version=args.kubernetes_version,
        workers=args.workers,
        schedule="TIME" if args.schedule_time and args.schedule == "IMMEDIATE" else args.schedule,
        schedule_time=args.schedule_time,
        maintenance_window=args.maintenance_window,
        dry_run=args.dry_run,
        stages=args.stage,
        failure_budget=args.failure_budget,
        pause_at=args.pause_at,
        reason=args.reason,
        request_id=args.request_id,
    )
    return started(client, operation, args, out)


_STAGE_STATE = StageStatus.DESCRIPTOR.file.enum_types_by_name["StageState"]
STAGE_HEADER = ("STAGE", "STATE", "PROGRESS", "DONE", "FAILED", "STARTED", "ENDED", "NOTE")


def stage_rows(orchestration: Orchestration) -> list[list[str]]:
    """One row per stage, with a progress bar of its finished operations."""
    rows = []
    for stage in orchestration.stages:
        c = stage.operation_counts
        done = c.succeeded + c.failed + c.canceled
        percent = 100.0 * done / c.total if c.total else 100.0
        note = ""
        if stage.HasField("soak_end_time"):
            note = f"soak ends {timestamp_label(stage.soak_end_time)}"
        if stage.approved_by:
            note = f"approved by {stage.approved_by}"
        rows.append(
            [
                stage.name,
                enum_label(_STAGE_STATE, stage.state),
                bar(percent, 20),
                f"{done}/{c.total}",
                str(c.failed),
                timestamp_label(stage.start_time) if stage.HasField("start_time") else "",
                timestamp_label(stage.end_time) if stage.HasField("end_time") else "",
                note,
            ]
        )
    return rows


def show_orchestration(orchestration: Orchestration, out: Output) -> None:
    out.resource(orchestration)
    if not out.json and orchestration.stages:
        out.line("progress by stage:")
        out.grid(STAGE_HEADER, stage_rows(orchestration), indent="  ")


def orc_get(client: Client, args: argparse.Namespace, out: Output) -> int:
    show_orchestration(client.orchestrations.get(args.orchestration_id), out)
    return 0


def orc_pause(client: Client, args: argparse.Namespace, out: Output) -> int:
    show_orchestration(
        client.orchestrations.pause(
            args.orchestration_id, reason=args.reason, etag=args.etag, request_id=args.request_id
        ),
        out,
    )
    return 0


def orc_resume(client: Client, args: argparse.Namespace, out: Output) -> int:
    show_orchestration(
        client.orchestrations.resume(
            args.orchestration_id, reason=args.reason, etag=args.etag, request_id=args.request_id
        ),
        out,
    )
    return 0


def orc_approve(client: Client, args: argparse.Namespace, out: Output) -> int:
    show_orchestration(
        client.orchestrations.approve_stage(
            args.orchestration_id,
            args.stage,
            reason=args.reason,
            etag=args.etag,
            request_id=args.request_id,
        ),
        out,
    )
    return 0


def orc_list(client: Client, args: argparse.Namespace, out: Output) -> int:
    items = client.orchestrations.list(
        compartment_id=args.compartment, states=args.state, page_size=min(args.limit, 1000)
    )
    return _listed(Orchestration, items, args, out)


def orc_operations(client: Client, args: argparse.Namespace, out: Output) -> int:
    items = client.orchestrations.list_operations(
        args.orchestration_id, states=args.state, stage=args.stage, page_size=min(args.limit, 100)
    )
    return _listed(OrchestrationOperation, items, args, out)


def orc_operation(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.resource(client.orchestrations.get_operation(args.orchestration_id, args.operation_id))
    return 0


def orc_cancel(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.resource(
        client.orchestrations.cancel(
            args.orchestration_id, etag=args.etag, reason=args.reason, request_id=args.request_id
        )
    )
    return 0


def orc_retry(client: Client, args: argparse.Namespace, out: Output) -> int:
    response = client.orchestrations.retry_operations(
        args.orchestration_id,
        args.operation_ids,
        etag=args.etag,
        reason=args.reason,
        request_id=args.request_id,
    )
    out.resource(response)
    return 0


def add_orchestrations(commands: Subparsers, leaf: Callable[..., argparse.ArgumentParser]) -> None:
    group = commands.add_parser(
        "orchestrations", aliases=["orc"], help="run operations across the fleet (KEB-style)"
    )
    verbs = group.add_subparsers(dest="verb", required=True, metavar="VERB")
    p = leaf(verbs, "create", orc_create, "start an orchestration")
    p.add_argument("--compartment", required=True)
    p.add_argument(
        "--target",
        type=selector,
        action="append",
        required=True,
        metavar="SELECTOR",
        help='"all" or FIELD=VALUE[,...], e.g. region=eu-frankfurt-1 (repeatable)',
    )
    p.add_argument("--exclude", type=selector, action="append", default=[], metavar="SELECTOR")
    p.add_argument("--kubernetes-version", "--version", default="")
    p.add_argument("--workers", type=positive, default=1)
    p.add_argument("--schedule", default="IMMEDIATE", help="IMMEDIATE, NOW or TIME")
    p.add_argument(
        "--schedule-time",
        type=rfc3339,
        default=None,
        metavar="TIME",
        help="start at this RFC 3339 time (implies --schedule TIME)",
    )
    p.add_argument("--maintenance-window", action="store_true")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument(
        "--stage",
        type=stage_spec,
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE,...",
        help="a stage (wave), in order (repeatable): count=N, percent=N, workers=N, "
        "soak=30m, budget=N|N%%, approval; e.g. 'canary:count=1,soak=30m'",
    )
    p.add_argument(
        "--failure-budget",
        type=budget,
        default=None,
        metavar="N|N%",
        help="halt when more operations than this fail",
    )
    p.add_argument(
        "--pause-at", type=rfc3339, default=None, metavar="TIME", help="pause at this time"
    )
    p.add_argument("--reason", default="", help="why; recorded on the work request")
    _watchable(p)
    p = leaf(verbs, "get", orc_get, "show one orchestration (with a table of its stages)")
    p.add_argument("orchestration_id")
    p = leaf(verbs, "pause", orc_pause, "pause: nothing starts until resumed")
    p.add_argument("orchestration_id")
    p.add_argument("--reason", default="")
    p.add_argument("--etag", default="")
    p.add_argument("--request-id")
    p = leaf(verbs, "resume", orc_resume, "resume a paused orchestration")
    p.add_argument("orchestration_id")
    p.add_argument("--reason", default="")
    p.add_argument("--etag", default="")
    p.add_argument("--request-id")
    p = leaf(verbs, "approve", orc_approve, "approve a stage's gate")
    p.add_argument("orchestration_id")
    p.add_argument("stage")
    p.add_argument("--reason", default="")
    p.add_argument("--etag", default="")
    p.add_argument("--request-id")
    p = leaf(verbs, "list", orc_list, "list orchestrations")
    p.add_argument("--compartment", default="")
    p.add_argument("--state", action="append", default=[], help="PENDING, ... (repeatable)")
    _limit(p)
    p = leaf(verbs, "operations", orc_operations, "list an orchestration's operations")
    p.add_argument("orchestration_id")
    p.add_argument("--state", action="append", default=[])
    p.add_argument("--stage", default="", help="only this stage's operations")
    _limit(p, 100)
    p = leaf(verbs, "operation", orc_operation, "show one operation with its configuration")
    p.add_argument("orchestration_id")
    p.add_argument("operation_id")
    p = leaf(verbs, "cancel", orc_cancel, "cancel an orchestration")
    p.add_argument("orchestration_id")
    p.add_argument("--reason", default="")
    p.add_argument("--etag", default="")
    p.add_argument("--request-id")
    p = leaf(verbs, "retry", orc_retry, "retry failed operations (all, or those named)")
    p.add_argument("orchestration_id")
    p.add_argument("operation_ids", nargs="*")
    p.add_argument("--reason", default="")
    p.add_argument("--etag", default="")
    p.add_argument("--request-id")


# --- webhook subscriptions --------------------------------------------------------


def sub_create(client: Client, args: argparse.Namespace, out: Output) -> int:
    secret = args.secret or os.environ.get("CLUSTEROPS_WEBHOOK_SECRET", "")
    out.resource(
        client.subscriptions.create(
            args.compartment,
            url=args.url,
            secret=secret,
            resource_id=args.resource,
            resource_type=args.resource_type,
            statuses=args.status,
            filter=args.filter,
            request_id=args.request_id,
        )
    )
    return 0


def sub_get(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.resource(client.subscriptions.get(args.subscription_id))
    return 0


def sub_list(client: Client, args: argparse.Namespace, out: Output) -> int:
    items = client.subscriptions.list(
        compartment_id=args.compartment, page_size=min(args.limit, 1000)
    )
    return _listed(Subscription, items, args, out)


def sub_delete(client: Client, args: argparse.Namespace, out: Output) -> int:
    client.subscriptions.delete(args.subscription_id)
    if not out.json:
        out.line(f"subscription {args.subscription_id} deleted")
    return 0


def sub_resume(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.resource(client.subscriptions.resume(args.subscription_id, from_head=args.from_head))
    return 0


def add_subscriptions(commands: Subparsers, leaf: Callable[..., argparse.ArgumentParser]) -> None:
    group = commands.add_parser(
        "subscriptions",
        aliases=["sub"],
        help="webhooks: work request changes POSTed as signed CloudEvents",
    )
    verbs = group.add_subparsers(dest="verb", required=True, metavar="VERB")
    p = leaf(verbs, "create", sub_create, "subscribe a URL to a compartment's work requests")
    p.add_argument("--compartment", required=True)
    p.add_argument("--url", required=True, help="https (http only to a loopback address)")
    p.add_argument(
        "--secret",
        default="",
        help="HMAC-SHA256 signing key, 16+ characters (default: $CLUSTEROPS_WEBHOOK_SECRET)",
    )
    p.add_argument("--resource", default="", help="only those affecting this resource id")
    p.add_argument("--resource-type", default="", help="cluster, nodepool, addon, ...")
    p.add_argument("--status", action="append", default=[], help="repeatable")
    p.add_argument("--filter", default="", help='AIP-160, e.g. "status = FAILED"')
    p.add_argument("--request-id", help="idempotency key (default: a fresh one)")
    p = leaf(verbs, "get", sub_get, "show a subscription and how its deliveries are going")
    p.add_argument("subscription_id")
    p = leaf(verbs, "list", sub_list, "list subscriptions with their delivery state")
    p.add_argument("--compartment", default="")
    _limit(p)
    p = leaf(verbs, "delete", sub_delete, "delete a subscription")
    p.add_argument("subscription_id")
    p = leaf(verbs, "resume", sub_resume, "resume a suspended subscription from its cursor")
    p.add_argument("subscription_id")
    p.add_argument(
        "--from-head",
        action="store_true",
        help="if the events after its cursor were compacted, skip them",
    )


# --- the simulator (a demo or test server only) -------------------------------------


def sim_fault_add(client: Client, args: argparse.Namespace, out: Output) -> int:
    times = -1 if args.always else args.times
    fault = client.simulator.add_fault(args.action, args.target, times=times, message=args.message)
    out.resource(fault)
    return 0


def sim_fault_list(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.table(Fault, client.simulator.list_faults())
    return 0


def sim_fault_clear(client: Client, args: argparse.Namespace, out: Output) -> int:
    cleared = client.simulator.clear_faults()
    if out.json:
        out.json_value({"cleared_count": cleared})
    else:
        out.line(f"{cleared} fault(s) cleared")
    return 0


def sim_step_time(client: Client, args: argparse.Namespace, out: Output) -> int:
    times: GetStepTimesResponse | SetStepTimeResponse
    if args.seconds is None and not args.reset:
        times = client.simulator.step_times()
    else:
        times = client.simulator.set_step_time(
            None if args.reset else args.seconds, args.action or ""
        )
    if out.json:
        out.resource(times)
        return 0
    out.line(f"default: {times.default_seconds:g} seconds")
    out.table(StepTime, times.step_times)
    return 0


def sim_break_addon(client: Client, args: argparse.Namespace, out: Output) -> int:
    if args.not_ready is not None:
        breakage, message = "PODS_NOT_READY", args.not_ready
    else:
        breakage, message = ("DEPLOYMENT_STUCK" if args.stuck else "DEPLOYMENT_DELETED"), ""
    found = client.simulator.break_addon(
        args.cluster_id, args.name, breakage, message=message, until=args.until
    )
    if out.json:
        out.resource(found)
    else:
        for problem in [*found.drift, *found.not_ready]:
            out.line(problem)
    return 0


def step_seconds(text: str) -> float:
    """An argparse type: a finite number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds from 0, not {text}")
    return value


def add_simulator(commands: Subparsers, leaf: Callable[..., argparse.ArgumentParser]) -> None:
    group = commands.add_parser(
        "sim",
        help="the simulated fleet of a demo or test server: faults, step times, broken add-ons",
    )
    areas = group.add_subparsers(dest="area", required=True, metavar="COMMAND")
    faults = areas.add_parser("faults", help="inject, list and clear simulated faults")
    verbs = faults.add_subparsers(dest="verb", required=True, metavar="VERB")
    p = leaf(verbs, "add", sim_fault_add, "make a simulated action fail")
    p.add_argument("action", help="e.g. provision_node, upgrade:PostCheck, apply_addon")
    p.add_argument(
        "--target",
        default="",
        help="node, node pool or cluster id, or <cluster id>/<add-on> (default: any)",
    )
    count = p.add_mutually_exclusive_group()
    count.add_argument("--times", type=positive, default=1, help="how many times (default 1)")
    count.add_argument("--always", action="store_true", help="every time, until cleared")
    p.add_argument("--message", default="", help="the failure's message")
    leaf(verbs, "list", sim_fault_list, "list injected faults, used up ones too")
    leaf(verbs, "clear", sim_fault_clear, "forget every fault")
    p = leaf(
        areas,
        "step-time",
        sim_step_time,
        "show how long simulated actions take, or set one (--action; without it the default)",
    )
    p.add_argument("seconds", nargs="?", type=step_seconds, help="seconds (omit to show)")
    p.add_argument("--action", default="", help="the action to set (default: every other)")
    p.add_argument("--reset", action="store_true", help="the action takes the default time again")
    p = leaf(areas, "break-addon", sim_break_addon, "break an add-on behind the service's back")
    p.add_argument("cluster_id")
    p.add_argument("name", help="the add-on's name, e.g. CertManager")
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--stuck", action="store_true", help="its deployment cannot be restored (until --until)"
    )
    how.add_argument(
        "--not-ready", metavar="MESSAGE", help="its pods are not ready, with this reason"
    )
    p.add_argument("--until", type=rfc3339, help="when it heals by itself (RFC 3339)")


REGISTRARS = (
    add_work_requests,
    add_clusters,
    add_node_pools,
    add_upgrade_workflows,
    add_addons,
    add_orchestrations,
    add_subscriptions,
    add_simulator,
)
