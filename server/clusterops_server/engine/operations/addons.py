"""Installing, updating, disabling and reconciling add-ons.

A reconciliation (RECONCILE_ADDON) runs one pass per check: look at what is on the
cluster, repair what drifted, check that its deployments are ready. An add-on that
stays NEEDS_ATTENTION keeps its reconciliation's work request open (parked until the
next check, so nothing sleeps) until it recovers, or until `work_request_timeout` has
passed, when the work request FAILS with the reason; later checks open new ones.

Installing (ENABLE_ADDON) and updating (UPDATE_ADDON) judge what the provider reports
after applying by the same rules. A healthy add-on is ACTIVE and the work request
SUCCEEDS. One that is not (drift the apply could not undo, deployments not ready) is
NEEDS_ATTENTION with its `addon_error`, and its install or update work request carries
on exactly as a reconciliation's would: it stays IN_PROGRESS, checks the add-on on the
NEEDS_ATTENTION schedule, SUCCEEDS if it recovers and FAILS after `work_request_timeout`,
after which the reconciler's own checks continue. As with a waiting reconciliation, an
update or disable of the add-on meanwhile supersedes (cancels) that work request.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from clusterops_server.domain.addon_catalogue import CatalogueFile
from clusterops_server.domain.addon_health import AddonSpec, desired_spec, differences, judge
from clusterops_server.domain.addons import (
    Addon,
    AddonError,
    AddonState,
    PassReport,
    ReconcileSettings,
    incorrect_state,
    provider_failure,
)
from clusterops_server.domain.errors import FailedPrecondition
from clusterops_server.domain.inventory import Cluster, ClusterState
from clusterops_server.domain.work_requests import (
    ActionType,
    EntityType,
    OperationType,
    WorkRequest,
    WorkRequestStatus,
)
from clusterops_server.engine.context import (
    UNEXPECTED_FAILURE,
    Apply,
    OnDone,
    OperationContext,
    StepFailed,
)
from clusterops_server.operations.params import AddonParams, DisableAddonParams, UpdateAddonParams
from clusterops_server.providers.base import Provider, ProviderError
from clusterops_server.store.steps import StepStatus
from clusterops_server.store.uow import UnitOfWork

Wake = Callable[[], None]


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def span(duration: timedelta) -> str:
    """ "30 minutes", "12 hours 30 minutes"."""
    hours, rest = divmod(int(duration.total_seconds()), 3600)
    minutes = rest // 60
    parts = [f"{hours} hours"] if hours else []
    if minutes or not parts:
        parts.append(f"{minutes} minutes")
    return " ".join(parts)


async def reconcile_once(
    provider: Provider, cluster: Cluster, spec: AddonSpec, *, follows_latest: bool
) -> PassReport:
    """Look, repair what drifted, and judge the result."""
    try:
        before = await provider.inspect_addon(cluster, spec.name)
        problems = differences(before, spec, follows_latest=follows_latest)
        after = before
        if problems:
            after = await provider.repair_addon(cluster, spec)
    except ProviderError as error:
        return PassReport(
            False,
            "",
            f"Reconciliation of {spec.name} {spec.version} failed: {error.message}",
            provider_failure(error.code, error.message),
        )
    return judge(after, spec, follows_latest=follows_latest, repaired=problems)


def _addon_key(ctx: OperationContext) -> tuple[str, str]:
    """(cluster id, add-on name): the add-on this operation works on."""
    params = ctx.params_as(AddonParams)
    return params.cluster_id, params.name


def _not_after_start(wr: WorkRequest, doing: str) -> None:
    if wr.status is not WorkRequestStatus.ACCEPTED:
        raise FailedPrecondition(
            f"{doing} an add-on cannot be canceled once it has started",
            violation_type="NOT_CANCELABLE",
            subject=wr.id,
        )


# The step that applies the desired spec and judges the result. (A journal written before
# applies were judged has an "apply" step instead: resuming it runs this step, so the
# apply again, which is safe to repeat.)
APPLY_STEP = "apply-and-check"
Recorded = list[tuple[Addon, datetime | None]]


class _AddonOperation:
    """What the add-on handlers share: loading, changing the add-on with its work request,
    recording what a look at the add-on found, and following a NEEDS_ATTENTION add-on
    check by check (a reconciliation, or an install or update whose add-on came up
    unhealthy)."""

    operation_type: OperationType
    # What the add-on becomes on the work request when the operation ends with it healthy.
    healthy_action = ActionType.UPDATED

    def __init__(
        self,
        provider: Provider,
        catalogue: CatalogueFile,
        settings: ReconcileSettings,
        wake_reconciler: Wake,
    ) -> None:
        self.provider = provider
        self.catalogue = catalogue
        self.settings = settings
        self.wake_reconciler = wake_reconciler

    @staticmethod
    async def load(ctx: OperationContext) -> tuple[Addon, Cluster]:
        async with ctx.store.read() as uow:
            addon = await uow.addons.get(*_addon_key(ctx))
            cluster = await uow.inventory.get_cluster(ctx.params_as(AddonParams).cluster_id)
        assert addon is not None, ctx.id
        assert cluster is not None, ctx.id
        return addon, cluster

    @staticmethod
    def change(
        ctx: OperationContext,
        edit: Callable[[Addon, datetime], None],
        action: ActionType | None = None,
    ) -> Apply:
        async def apply(uow: UnitOfWork, wr: WorkRequest) -> None:
            addon = await uow.addons.get(
                *_addon_key(ctx),
                for_update=True,
            )
            assert addon is not None, ctx.id
            now = ctx.clock.now()
            edit(addon, now)
            addon.touch(now)
            await uow.addons.save(addon)
            if action is not None:
                wr.resource_action(EntityType.ADDON, addon.resource_id, action)

        return apply

    async def fail(self, ctx: OperationContext, failed: StepFailed, log: str) -> None:
        """The provider refused: the add-on is FAILED with OKE's error, and so is the work."""
        error = provider_failure(failed.error.code, failed.error.message)

        def broken(addon: Addon, now: datetime) -> None:
            addon.lifecycle_state = AddonState.FAILED
            addon.error = error

        await ctx.finish(
            WorkRequestStatus.FAILED,
            apply=self.change(ctx, broken, ActionType.FAILED),
            log=log,
            errors=[(failed.error.code, failed.error.message)],
        )

    def record(
        self, ctx: OperationContext, *, label: str = "", recorded: Recorded | None = None
    ) -> OnDone:
        """Record a look's PassReport on the add-on, in its step's transaction, with one log
        line: healthy is ACTIVE and checked in 12 hours, anything else NEEDS_ATTENTION on
        its schedule, followed by this work request. `label` names an apply ("Installed");
        without one the line is a reconciliation's check."""

        async def done(uow: UnitOfWork, wr: WorkRequest, result: dict[str, object]) -> None:
            report = PassReport.from_json(result)
            addon = await uow.addons.get(
                *_addon_key(ctx),
                for_update=True,
            )
            assert addon is not None
            now = ctx.clock.now()
            seen = (addon.lifecycle_state, addon.error, addon.current_installed_version)
            was_attention = addon.lifecycle_state is AddonState.NEEDS_ATTENTION
            line = label or (
                f"Check {addon.attention_checks} in NEEDS_ATTENTION" if was_attention else "Check"
            )
            if report.healthy:
                addon.record_healthy(now, self.settings, report.version)
            else:
                assert report.error is not None
                addon.record_unhealthy(now, self.settings, report.error)
                if report.version:
                    addon.current_installed_version = report.version
                # This work request follows the add-on until it recovers or times out.
                addon.reconciliation_id = ctx.id
            if (addon.lifecycle_state, addon.error, addon.current_installed_version) != seen:
                addon.touch(now)
            await uow.addons.save(addon)
            if recorded is not None:
                recorded.append((addon, wr.time_started))
            if was_attention and addon.lifecycle_state is AddonState.ACTIVE:
                line = "Recovered"
            line = f"{line}: {report.summary}"
            # A healthy apply's work request ends at once and says what comes next itself.
            if not (label and report.healthy):
                line += "; " + (
                    f"next check at {stamp(addon.next_check_at)}"
                    if addon.next_check_at
                    else "checks stop: the add-on stays NEEDS_ATTENTION until it is updated, "
                    "or disabled and reinstalled"
                )
            await uow.work_requests.save(wr, logs=[ctx.log_entry(line)])

        return done

    async def apply_desired(self, ctx: OperationContext, label: str) -> PassReport:
        """Apply the add-on's desired spec and judge what the provider reports afterwards,
        by the reconciler's rules, in one durable step that records the verdict."""

        async def apply() -> dict[str, object]:
            addon, cluster = await self.load(ctx)
            spec = desired_spec(addon, cluster.kubernetes_version, self.catalogue.current())
            if spec is None:
                raise ProviderError(
                    "VersionUnavailable",
                    f"no version of {addon.name} can be installed on Kubernetes "
                    f"{cluster.kubernetes_version}",
                )
            status = await self.provider.apply_addon(cluster, spec)
            return judge(status, spec, follows_latest=addon.follows_latest).to_json()

        result = await ctx.step(APPLY_STEP, apply, done=self.record(ctx, label=label))
        return PassReport.from_json(result)

    async def follow(self, ctx: OperationContext) -> None:
        """Follow the add-on as its reconciliation: look now if this work request has not
        looked yet, else when the next check is due; then conclude or wait."""
        passes = sum(
            1
            for key, record in ctx.journal.items()
            if key.startswith("pass:") and record.status is StepStatus.DONE
        )
        addon, cluster = await self.load(ctx)
        if addon.reconciliation_id != ctx.id:
            await ctx.finish(
                WorkRequestStatus.SUCCEEDED, log="Nothing to reconcile: the add-on has moved on"
            )
            return
        if cluster.lifecycle_state is ClusterState.DELETED:

            def gone(addon: Addon, now: datetime) -> None:
                addon.gone_with_cluster()

            await ctx.finish(
                WorkRequestStatus.SUCCEEDED,
                apply=self.change(ctx, gone, ActionType.DELETED),
                log=f"Cluster {cluster.id} was deleted; {addon.name} went with it",
            )
            return
        looked = passes > 0 or ctx.done(APPLY_STEP)
        # A pass that finished before a restart is not repeated before its next check is due.
        due = addon.next_check_at is not None and addon.next_check_at <= ctx.clock.now()
        if not looked or due:
            recorded = await self._pass(ctx, passes + 1, addon, cluster)
            if recorded is not None:
                await self._conclude(ctx, *recorded)
                return
        # The last look had been recorded before a restart: conclude from what it recorded.
        async with ctx.store.read() as uow:
            wr = await uow.work_requests.get(ctx.id)
            latest = await uow.addons.get(*_addon_key(ctx))
        assert wr is not None
        assert latest is not None
        await self._conclude(ctx, latest, wr.time_started)

    async def _pass(
        self, ctx: OperationContext, number: int, addon: Addon, cluster: Cluster
    ) -> tuple[Addon, datetime | None] | None:
        """One check: look, repair, judge, and record it on the add-on and in the log.
        Returns the add-on as recorded and when its work request started (None if the
        step had already been recorded)."""
        recorded: Recorded = []

        async def look_and_repair() -> dict[str, object]:
            spec = desired_spec(addon, cluster.kubernetes_version, self.catalogue.current())
            if spec is None:
                return PassReport(
                    False,
                    addon.current_installed_version,
                    f"No version of {addon.name} supports Kubernetes {cluster.kubernetes_version}",
                    AddonError("409", "No supported version", "VersionUnavailable"),
                ).to_json()
            report = await reconcile_once(
                self.provider, cluster, spec, follows_latest=addon.follows_latest
            )
            return dict(report.to_json())

        await ctx.step(f"pass:{number}", look_and_repair, done=self.record(ctx, recorded=recorded))
        return recorded[-1] if recorded else None

    async def _conclude(
        self, ctx: OperationContext, addon: Addon, started: datetime | None
    ) -> None:
        """Succeed, fail after the timeout or when checks stop, or wait for the next check."""
        now = ctx.clock.now()
        if addon.lifecycle_state is AddonState.NEEDS_ATTENTION:
            reason = addon.error or incorrect_state()
            errors = [reason.work_request_error()]
            if addon.next_check_at is None:
                await ctx.finish(
                    WorkRequestStatus.FAILED,
                    apply=self._close(ctx, ActionType.FAILED),
                    log=f"{addon.name} did not recover in "
                    f"{span(self.settings.attention_window)}; checks have stopped",
                    errors=errors,
                )
            elif started is not None and now - started >= self.settings.work_request_timeout:
                await ctx.finish(
                    WorkRequestStatus.FAILED,
                    apply=self._close(ctx, ActionType.FAILED),
                    log=f"{addon.name} did not recover within "
                    f"{span(self.settings.work_request_timeout)}; checks go on, the next at "
                    f"{stamp(addon.next_check_at)}",
                    errors=errors,
                )
            else:
                await ctx.park(addon.next_check_at)
        else:
            await ctx.finish(
                WorkRequestStatus.SUCCEEDED,
                apply=self._close(ctx, self.healthy_action),
                log=f"{addon.name} is {addon.lifecycle_state.value}",
            )
        self.wake_reconciler()

    def _close(self, ctx: OperationContext, action: ActionType) -> Apply:
        async def close(uow: UnitOfWork, wr: WorkRequest) -> None:
            addon = await uow.addons.get(
                *_addon_key(ctx),
                for_update=True,
            )
            assert addon is not None
            if addon.reconciliation_id == ctx.id:
                addon.reconciliation_id = ""
                await uow.addons.save(addon)
            wr.resource_action(EntityType.ADDON, addon.resource_id, action)

        return close

    async def abandon(self, ctx: OperationContext, uow: UnitOfWork, wr: WorkRequest) -> None:
        """As when the provider refuses: the add-on is FAILED with the reason."""
        error = provider_failure("InternalError", UNEXPECTED_FAILURE)

        def broken(addon: Addon, now: datetime) -> None:
            addon.lifecycle_state = AddonState.FAILED
            addon.error = error

        await self.change(ctx, broken, ActionType.FAILED)(uow, wr)


class EnableAddon(_AddonOperation):
    operation_type = OperationType.ENABLE_ADDON
    healthy_action = ActionType.CREATED

    async def check_cancel(self, uow: UnitOfWork, wr: WorkRequest) -> None:
        _not_after_start(wr, "installing")

    async def run(self, ctx: OperationContext) -> None:
        name = ctx.params_as(AddonParams).name
        try:
            report = await self.apply_desired(ctx, "Installed")
        except StepFailed as failed:
            await self.fail(ctx, failed, f"Installing {name} failed")
            return
        if not report.healthy:
            # NEEDS_ATTENTION: this work request follows it as a reconciliation would.
            await self.follow(ctx)
            return
        await ctx.finish(
            WorkRequestStatus.SUCCEEDED,
            apply=self._close(ctx, ActionType.CREATED),
            log=f"{name} {report.version} is ACTIVE",
        )
        self.wake_reconciler()

    async def undo(self, ctx: OperationContext) -> None:
        def gone(addon: Addon, now: datetime) -> None:
            addon.lifecycle_state = AddonState.DELETED

        await ctx.finish(
            WorkRequestStatus.CANCELED,
            apply=self.change(ctx, gone, ActionType.DELETED),
            log="Canceled before it began",
        )


class UpdateAddon(_AddonOperation):
    operation_type = OperationType.UPDATE_ADDON

    async def check_cancel(self, uow: UnitOfWork, wr: WorkRequest) -> None:
        _not_after_start(wr, "updating")

    async def run(self, ctx: OperationContext) -> None:
        name = ctx.params_as(AddonParams).name
        try:
            report = await self.apply_desired(ctx, "Updated")
        except StepFailed as failed:
            error = provider_failure(failed.error.code, failed.error.message)

            def attention(addon: Addon, now: datetime) -> None:
                addon.record_unhealthy(now, self.settings, error)

            await ctx.finish(
                WorkRequestStatus.FAILED,
                apply=self.change(ctx, attention, ActionType.FAILED),
                log=f"Updating {name} failed; it NEEDS_ATTENTION and will be checked again",
                errors=[(failed.error.code, failed.error.message)],
            )
            self.wake_reconciler()
            return
        if not report.healthy:
            # NEEDS_ATTENTION: this work request follows it as a reconciliation would.
            await self.follow(ctx)
            return

        async def reconcile_now(uow: UnitOfWork, wr: WorkRequest) -> None:
            addon = await uow.addons.get(
                *_addon_key(ctx),
                for_update=True,
            )
            assert addon is not None
            # Updating triggers a reconciliation at once (set as the lock is released, so
            # the reconciler cannot find the add-on due but busy in between).
            addon.next_check_at = ctx.clock.now()
            await uow.addons.save(addon)
            wr.resource_action(EntityType.ADDON, addon.resource_id, ActionType.UPDATED)

        await ctx.finish(
            WorkRequestStatus.SUCCEEDED,
            apply=reconcile_now,
            log=f"{name} is now {report.version}; reconciling it",
        )
        self.wake_reconciler()

    async def undo(self, ctx: OperationContext) -> None:
        previous = ctx.params_as(UpdateAddonParams).previous

        def restore(addon: Addon, now: datetime) -> None:
            addon.version = previous.version
            addon.configurations = dict(previous.configurations)
            addon.lifecycle_state = previous.state
            addon.next_check_at = now

        await ctx.finish(
            WorkRequestStatus.CANCELED,
            apply=self.change(ctx, restore, ActionType.UPDATED),
            log="Canceled before it began; the previous version and configuration stay",
        )
        self.wake_reconciler()

    async def abandon(self, ctx: OperationContext, uow: UnitOfWork, wr: WorkRequest) -> None:
        """As when the update fails: NEEDS_ATTENTION, and the reconciler checks it again."""
        error = provider_failure("InternalError", UNEXPECTED_FAILURE)

        def attention(addon: Addon, now: datetime) -> None:
            addon.record_unhealthy(now, self.settings, error)

        await self.change(ctx, attention, ActionType.FAILED)(uow, wr)
        self.wake_reconciler()


class DisableAddon(_AddonOperation):
    operation_type = OperationType.DISABLE_ADDON

    async def check_cancel(self, uow: UnitOfWork, wr: WorkRequest) -> None:
        _not_after_start(wr, "disabling")

    async def run(self, ctx: OperationContext) -> None:
        name = ctx.params_as(AddonParams).name
        remove = ctx.params_as(DisableAddonParams).remove_existing

        async def act() -> None:
            _, cluster = await self.load(ctx)
            if remove:
                await self.provider.remove_addon(cluster, name)
            else:
                await self.provider.release_addon(cluster, name)

        try:
            await ctx.step("remove" if remove else "release", act)
        except StepFailed as failed:
            await self.fail(ctx, failed, f"Disabling {name} failed")
            return

        def deleted(addon: Addon, now: datetime) -> None:
            addon.lifecycle_state = AddonState.DELETED
            addon.error = None
            addon.next_check_at = None
            addon.reset_attention()
            if remove:
                addon.current_installed_version = ""

        await ctx.finish(
            WorkRequestStatus.SUCCEEDED,
            apply=self.change(ctx, deleted, ActionType.DELETED),
            log=(
                f"{name} disabled and removed from the cluster"
                if remove
                else f"{name} disabled; what it installed stays on the cluster, unmanaged"
            ),
        )

    async def undo(self, ctx: OperationContext) -> None:
        previous = ctx.params_as(DisableAddonParams).previous_state

        def restore(addon: Addon, now: datetime) -> None:
            addon.lifecycle_state = previous
            if previous is not AddonState.FAILED:
                addon.next_check_at = now

        await ctx.finish(
            WorkRequestStatus.CANCELED,
            apply=self.change(ctx, restore, ActionType.UPDATED),
            log="Canceled before it began; the add-on stays enabled",
        )
        self.wake_reconciler()


class ReconcileAddon(_AddonOperation):
    operation_type = OperationType.RECONCILE_ADDON

    async def check_cancel(self, uow: UnitOfWork, wr: WorkRequest) -> None:
        return None

    async def run(self, ctx: OperationContext) -> None:
        await self.follow(ctx)

    async def undo(self, ctx: OperationContext) -> None:
        async def canceled(uow: UnitOfWork, wr: WorkRequest) -> None:
            addon = await uow.addons.get(
                *_addon_key(ctx),
                for_update=True,
            )
            if addon is None:
                return
            now = ctx.clock.now()
            if addon.reconciliation_id == ctx.id:
                addon.reconciliation_id = ""
            # Canceling a check postpones it rather than repeating it at once.
            if addon.next_check_at is not None and addon.next_check_at <= now:
                addon.next_check_at = now + (
                    self.settings.active_interval
                    if addon.lifecycle_state is AddonState.ACTIVE
                    else self.settings.attention_interval(addon.attention_checks)
                )
            await uow.addons.save(addon)

        await ctx.finish(
            WorkRequestStatus.CANCELED,
            apply=canceled,
            log="Reconciliation canceled; the next check stays scheduled",
        )
        self.wake_reconciler()

    async def abandon(self, ctx: OperationContext, uow: UnitOfWork, wr: WorkRequest) -> None:
        """As when checks fail: the reconciliation lets go of the add-on, whose state stays
        as the last check left it; a check that was due moves to its next interval rather
        than crashing again at once."""
        await self._close(ctx, ActionType.FAILED)(uow, wr)
        addon = await uow.addons.get(*_addon_key(ctx), for_update=True)
        now = ctx.clock.now()
        if addon is not None and addon.next_check_at is not None and addon.next_check_at <= now:
            addon.next_check_at = now + (
                self.settings.active_interval
                if addon.lifecycle_state is AddonState.ACTIVE
                else self.settings.attention_interval(addon.attention_checks)
            )
            await uow.addons.save(addon)
        self.wake_reconciler()
