"""Add-ons: install, read, update, disable, and the catalogue of what can be installed."""

from __future__ import annotations

from dataclasses import dataclass

from clusterops_server.auth.policy import Family, Verb
from clusterops_server.clock import Clock
from clusterops_server.domain.addon_catalogue import AddonOption, CatalogueFile
from clusterops_server.domain.addons import (
    SETTLED_STATES,
    Addon,
    AddonState,
    addon_resource_id,
    work_request_resources,
)
from clusterops_server.domain.errors import (
    AlreadyExists,
    EtagMismatch,
    FailedPrecondition,
    NotFound,
    ResourceBusy,
    Unavailable,
)
from clusterops_server.domain.inventory import Cluster
from clusterops_server.domain.listing import (
    Cursor,
    KeyKind,
    KeySpec,
    Page,
    PageRequest,
    fingerprint,
)
from clusterops_server.domain.work_requests import OperationType, WorkRequest
from clusterops_server.engine.reconciler import open_reconciliation, supersede_reconciliation
from clusterops_server.operations.params import (
    AddonParams,
    DisableAddonParams,
    EnableAddonParams,
    PreviousAddon,
    UpdateAddonParams,
)
from clusterops_server.operations.start import (
    OperationStart,
    require_active_cluster,
    start_operation,
)
from clusterops_server.providers.base import Provider, ProviderError
from clusterops_server.services.idempotency import Remembered, run_once
from clusterops_server.services.inventory import require_cluster, require_not_deleting
from clusterops_server.services.work_requests import get_work_request
from clusterops_server.store.uow import Store, UnitOfWork

Configurations = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class InstallAddonCommand:
    cluster_id: str
    name: str
    version: str = ""
    configurations: Configurations = ()
    override_existing: bool = False
    request_id: str = ""


@dataclass(frozen=True)
class UpdateAddonCommand:
    cluster_id: str
    name: str
    etag: str = ""
    version: str = ""
    follow_latest: bool = False
    configurations: Configurations = ()
    replace_configurations: bool = False
    request_id: str = ""


@dataclass(frozen=True)
class DisableAddonCommand:
    cluster_id: str
    name: str
    remove_existing: bool = False
    etag: str = ""
    request_id: str = ""


async def require_addon(
    uow: UnitOfWork, cluster_id: str, name: str, *, for_update: bool = False
) -> Addon:
    addon = await uow.addons.get(cluster_id, name, for_update=for_update)
    if addon is None or addon.lifecycle_state is AddonState.DELETED:
        raise NotFound("addon", addon_resource_id(cluster_id, name))
    return addon


async def _lock_addon(uow: UnitOfWork, cluster_id: str, name: str) -> Addon:
    """The add-on, locked after the work request of its open reconciliation, in the store's
    lock order (a reconciliation's steps lock their work request, then the add-on).

    A reconciliation opened between the look and the lock holds the add-on: ResourceBusy,
    since superseding it now would lock its work request out of order.
    """
    seen = await require_addon(uow, cluster_id, name)
    if seen.reconciliation_id:
        await uow.work_requests.get(seen.reconciliation_id, for_update=True)
    addon = await require_addon(uow, cluster_id, name, for_update=True)
    if addon.reconciliation_id and addon.reconciliation_id != seen.reconciliation_id:
        raise ResourceBusy(addon.resource_id, addon.reconciliation_id)
    return addon


def _check_etag(addon: Addon, given: str) -> None:
    if given and given != addon.etag:
        raise EtagMismatch("addon", addon.resource_id, addon.etag)


async def _require_settled(uow: UnitOfWork, addon: Addon, action: str) -> None:
    """An add-on with an operation in flight answers ABORTED naming its work request."""
    if addon.lifecycle_state not in SETTLED_STATES:
        holder = await uow.work_requests.lock_holder(addon.resource_id)
        if holder is not None:
            raise ResourceBusy(addon.resource_id, holder)
        raise FailedPrecondition(
            f"add-on {addon.name} is {addon.lifecycle_state.value}; {action} needs it ACTIVE, "
            "NEEDS_ATTENTION or FAILED",
            violation_type="ADDON_STATE",
            subject=addon.resource_id,
            metadata={"lifecycle_state": addon.lifecycle_state.value},
        )


def _require_left_by_us(cluster_id: str, name: str, version: str, previous: Addon | None) -> None:
    """Unmanaged software of the add-on's name on the cluster is adopted without
    override_existing only if it is what an earlier disable (without remove_existing)
    left there; anything else was installed, or changed, by hand."""
    left = previous.left_on_cluster if previous else ""
    if left and left == version:
        return
    changed = f", not the {left} it had when it was disabled" if left else ""
    raise FailedPrecondition(
        f"{name} {version} was installed on cluster {cluster_id} by hand{changed}; "
        "set override_existing to take it over",
        violation_type="ADDON_INSTALLED_BY_HAND",
        subject=addon_resource_id(cluster_id, name),
        metadata={"installed_version": version},
    )


class AddonService:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        provider: Provider,
        catalogue: CatalogueFile,
    ) -> None:
        self.store = store
        self.clock = clock
        self.provider = provider
        self.catalogue = catalogue

    async def _replay(self, uow: UnitOfWork, prior: dict[str, str]) -> tuple[Addon, WorkRequest]:
        addon = await uow.addons.get(prior["cluster_id"], prior["name"])
        assert addon is not None
        return addon, await get_work_request(uow, prior["work_request_id"])

    async def _start(
        self,
        uow: UnitOfWork,
        addon: Addon,
        operation: OperationType,
        params: AddonParams,
        message: str,
    ) -> WorkRequest:
        start = OperationStart(
            addon.compartment_id,
            operation,
            params,
            work_request_resources(addon.cluster_id, addon.name),
            lock=[addon.resource_id],
            log=message,
        )
        await supersede_reconciliation(
            uow, addon, self.clock.now(), f"{operation.value} {start.id}"
        )
        wr = await start_operation(uow, start)
        addon.work_request_id = wr.id
        # The operation sets the next check when it ends.
        addon.next_check_at = None
        return wr

    async def install(self, cmd: InstallAddonCommand) -> tuple[Addon, WorkRequest]:
        async with self.store.read() as uow:
            cluster = await require_cluster(
                uow, cmd.cluster_id, verb=Verb.MANAGE, family=Family.ADDONS
            )
        # Ask the cluster outside any transaction: the provider has its own.
        try:
            found = await self.provider.inspect_addon(cluster, cmd.name)
        except ProviderError as error:
            raise Unavailable(
                f"could not look at cluster {cluster.id} for an existing {cmd.name}: "
                f"{error.message}; retry",
                metadata={"provider_code": error.code},
            ) from error

        async def act(uow: UnitOfWork) -> tuple[tuple[Addon, WorkRequest], Remembered]:
            cluster = await require_cluster(
                uow, cmd.cluster_id, for_update=True, verb=Verb.MANAGE, family=Family.ADDONS
            )
            await require_not_deleting(uow, cluster, "installing an add-on")
            require_active_cluster(cluster, "installing an add-on")
            keys = [k for k, _ in cmd.configurations]
            chosen = self.catalogue.current().resolve(
                cmd.name,
                cmd.version,
                cluster_id=cluster.id,
                kubernetes_version=cluster.kubernetes_version,
                given_keys=keys,
                resulting_keys=keys,
                given_values=[v for _, v in cmd.configurations],
            )
            existing = await uow.addons.get(cluster.id, cmd.name, for_update=True)
            if existing is not None and existing.lifecycle_state is not AddonState.DELETED:
                # Busy (retry later) is a conflict, as for node pools and upgrades;
                # ALREADY_EXISTS is for an add-on that is installed and idle.
                holder = await uow.work_requests.lock_holder(existing.resource_id)
                if holder is not None:
                    raise ResourceBusy(existing.resource_id, holder)
                raise AlreadyExists(
                    "addon",
                    existing.resource_id,
                    f"add-on {cmd.name} is already installed on cluster {cluster.id} "
                    f"({existing.lifecycle_state.value}); update it, or disable it first",
                )
            if found is not None and not found.managed and not cmd.override_existing:
                _require_left_by_us(cluster.id, cmd.name, found.version, existing)
            addon = self._new_addon(cluster, cmd, existing)
            if existing is None:
                await uow.addons.add(addon)
            wr = await self._start(
                uow,
                addon,
                OperationType.ENABLE_ADDON,
                EnableAddonParams(cluster.id, cmd.name, cmd.override_existing),
                f"Installing {cmd.name} {cmd.version or chosen.version_number}"
                + ("" if cmd.version else " (following the newest ACTIVE version)"),
            )
            await uow.addons.save(addon)
            return (addon, wr), {
                "cluster_id": cluster.id,
                "name": cmd.name,
                "work_request_id": wr.id,
            }

        async def replay(uow: UnitOfWork, prior: Remembered) -> tuple[Addon, WorkRequest]:
            return await self._replay(uow, prior)

        return await run_once(self.store, "InstallAddon", cmd, act, replay)

    def _new_addon(
        self, cluster: Cluster, cmd: InstallAddonCommand, previous: Addon | None
    ) -> Addon:
        """A new add-on, or a disabled one brought back (its etags never repeat; what it
        left on the cluster stays known until the install replaces it)."""
        now = self.clock.now()
        return Addon(
            cluster_id=cluster.id,
            compartment_id=cluster.compartment_id,
            name=cmd.name,
            version=cmd.version,
            configurations=dict(cmd.configurations),
            lifecycle_state=AddonState.CREATING,
            create_time=now,
            update_time=now,
            current_installed_version=previous.left_on_cluster if previous else "",
            row_version=previous.row_version + 1 if previous else 1,
        )

    async def get(self, cluster_id: str, name: str) -> Addon:
        async with self.store.read() as uow:
            await require_cluster(uow, cluster_id, verb=Verb.READ, family=Family.ADDONS)
            return await require_addon(uow, cluster_id, name)

    async def list_addons(
        self, cluster_id: str, states: frozenset[AddonState], page: PageRequest
    ) -> Page[Addon]:
        async with self.store.read() as uow:
            await require_cluster(uow, cluster_id, verb=Verb.INSPECT, family=Family.ADDONS)
            return await uow.addons.list_addons(cluster_id, states, page)

    async def update(self, cmd: UpdateAddonCommand) -> tuple[Addon, WorkRequest]:
        async def act(uow: UnitOfWork) -> tuple[tuple[Addon, WorkRequest], Remembered]:
            cluster = await require_cluster(
                uow, cmd.cluster_id, verb=Verb.USE, family=Family.ADDONS
            )
            await require_not_deleting(uow, cluster, "updating an add-on")
            addon = await _lock_addon(uow, cmd.cluster_id, cmd.name)
            _check_etag(addon, cmd.etag)
            await _require_settled(uow, addon, "updating it")
            version = "" if cmd.follow_latest else (cmd.version or addon.version)
            configurations = {} if cmd.replace_configurations else dict(addon.configurations)
            configurations.update(dict(cmd.configurations))
            self.catalogue.current().resolve(
                addon.name,
                version,
                cluster_id=cluster.id,
                kubernetes_version=cluster.kubernetes_version,
                given_keys=[k for k, _ in cmd.configurations],
                resulting_keys=configurations,
                given_values=[v for _, v in cmd.configurations],
            )
            now = self.clock.now()
            previous = PreviousAddon(
                addon.version, dict(addon.configurations), addon.lifecycle_state
            )
            # A person acted: a NEEDS_ATTENTION add-on gets a fresh 12.5 hours of checks.
            addon.reset_attention()
            if version == addon.version and configurations == addon.configurations:
                # Nothing to change: updating still reconciles it at once.
                await supersede_reconciliation(uow, addon, now, "UpdateAddon")
                wr = await open_reconciliation(uow, addon, now, why="requested by UpdateAddon")
            else:
                addon.version = version
                addon.configurations = configurations
                addon.lifecycle_state = AddonState.UPDATING
                wr = await self._start(
                    uow,
                    addon,
                    OperationType.UPDATE_ADDON,
                    UpdateAddonParams(addon.cluster_id, addon.name, previous),
                    f"Updating {addon.name} to "
                    + (version or "the newest ACTIVE version")
                    + (
                        " with a new configuration"
                        if configurations != previous.configurations
                        else ""
                    ),
                )
            addon.touch(now)
            await uow.addons.save(addon)
            return (addon, wr), {
                "cluster_id": addon.cluster_id,
                "name": addon.name,
                "work_request_id": wr.id,
            }

        async def replay(uow: UnitOfWork, prior: Remembered) -> tuple[Addon, WorkRequest]:
            return await self._replay(uow, prior)

        return await run_once(self.store, "UpdateAddon", cmd, act, replay)

    async def disable(self, cmd: DisableAddonCommand) -> tuple[Addon, WorkRequest]:
        async def act(uow: UnitOfWork) -> tuple[tuple[Addon, WorkRequest], Remembered]:
            cluster = await require_cluster(
                uow, cmd.cluster_id, verb=Verb.MANAGE, family=Family.ADDONS
            )
            await require_not_deleting(uow, cluster, "disabling an add-on")
            addon = await _lock_addon(uow, cmd.cluster_id, cmd.name)
            _check_etag(addon, cmd.etag)
            await _require_settled(uow, addon, "disabling it")
            option = self.catalogue.current().get(addon.name)
            if cmd.remove_existing and option is not None and option.is_essential:
                raise FailedPrecondition(
                    f"{addon.name} is essential and cannot be removed from the cluster; "
                    "disable it without remove_existing to stop managing it",
                    violation_type="ADDON_ESSENTIAL",
                    subject=addon.resource_id,
                )
            wr = await self._start(
                uow,
                addon,
                OperationType.DISABLE_ADDON,
                DisableAddonParams(
                    addon.cluster_id, addon.name, cmd.remove_existing, addon.lifecycle_state
                ),
                f"Disabling {addon.name}"
                + (" and removing it from the cluster" if cmd.remove_existing else ""),
            )
            addon.lifecycle_state = AddonState.DELETING
            addon.touch(self.clock.now())
            await uow.addons.save(addon)
            return (addon, wr), {
                "cluster_id": addon.cluster_id,
                "name": addon.name,
                "work_request_id": wr.id,
            }

        async def replay(uow: UnitOfWork, prior: Remembered) -> tuple[Addon, WorkRequest]:
            return await self._replay(uow, prior)

        return await run_once(self.store, "DisableAddon", cmd, act, replay)

    async def list_options(
        self, kubernetes_minor: str, name: str, page: PageRequest
    ) -> Page[AddonOption]:
        """The catalogue, by name, narrowed to a Kubernetes minor version and an add-on."""
        query = fingerprint("addon_options", kubernetes_minor, name)
        tokens = self.store.page_tokens
        cursor = await tokens.open(page.token, query, (KeySpec(KeyKind.TEXT),))
        options = self.catalogue.current().filtered(kubernetes_minor, name)
        if cursor is not None:
            options = [o for o in options if o.name > str(cursor.key[0])]
        items = options[: page.size]
        token = ""
        if len(options) > page.size:
            token = await tokens.issue(Cursor((items[-1].name,)), query)
        return Page(items, token)
