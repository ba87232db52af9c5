"""The work request state machine, checked by hand and by a hypothesis state machine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from clusterops_server.domain.errors import FailedPrecondition
from clusterops_server.domain.work_requests import (
    IllegalTransition,
    OperationType,
    WorkRequest,
    WorkRequestStatus,
)
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

S = WorkRequestStatus
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def fresh() -> WorkRequest:
    return WorkRequest(
        "wr-00000000000000000001", "dev", OperationType.NODEPOOL_CREATE, S.ACCEPTED, T0
    )


@pytest.mark.parametrize(
    "path",
    [
        [S.IN_PROGRESS, S.SUCCEEDED],
        [S.IN_PROGRESS, S.FAILED],
        [S.IN_PROGRESS, S.CANCELING, S.CANCELED],
        [S.CANCELING, S.CANCELED],
        [S.IN_PROGRESS, S.CANCELING, S.FAILED],
    ],
)
def test_documented_paths_are_allowed(path: list[WorkRequestStatus]) -> None:
    wr = fresh()
    for i, status in enumerate(path):
        wr.transition(status, T0 + timedelta(seconds=i + 1))
    assert wr.status is path[-1]
    assert wr.time_finished is not None
    assert wr.time_started is not None
    assert wr.time_started <= wr.time_finished


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ([S.IN_PROGRESS, S.SUCCEEDED], S.IN_PROGRESS),
        ([S.IN_PROGRESS, S.CANCELING], S.SUCCEEDED),
        ([], S.SUCCEEDED),
        ([], S.CANCELED),
        ([S.IN_PROGRESS, S.FAILED], S.CANCELING),
    ],
)
def test_illegal_transitions_are_refused_as_failed_precondition(
    path: list[WorkRequestStatus], illegal: WorkRequestStatus
) -> None:
    wr = fresh()
    for status in path:
        wr.transition(status, T0)
    with pytest.raises(IllegalTransition) as refused:
        wr.transition(illegal, T0)
    assert isinstance(refused.value, FailedPrecondition)
    assert wr.status is (path[-1] if path else S.ACCEPTED)


class WorkRequestMachine(RuleBasedStateMachine):
    """Any sequence of attempted transitions keeps the record consistent."""

    def __init__(self) -> None:
        super().__init__()
        self.wr = fresh()
        self.now = T0
        self.history = [S.ACCEPTED]

    @rule(status=st.sampled_from(list(WorkRequestStatus)), seconds=st.integers(0, 3600))
    def attempt(self, status: WorkRequestStatus, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)
        before = self.wr.status
        try:
            self.wr.transition(status, self.now)
        except IllegalTransition:
            assert self.wr.status is before
            return
        self.history.append(status)

    @invariant()
    def terminal_is_forever(self) -> None:
        terminal = [i for i, s in enumerate(self.history) if s.is_terminal]
        if terminal:
            assert terminal[0] == len(self.history) - 1

    @invariant()
    def times_follow_status(self) -> None:
        wr = self.wr
        assert (wr.time_finished is not None) == wr.status.is_terminal
        if wr.time_started is not None:
            assert wr.time_accepted <= wr.time_started
            if wr.time_finished is not None:
                assert wr.time_started <= wr.time_finished
        if wr.status is S.SUCCEEDED:
            assert wr.percent_complete == 100

    @invariant()
    def cancel_never_succeeds(self) -> None:
        if S.CANCELING in self.history:
            assert S.SUCCEEDED not in self.history[self.history.index(S.CANCELING) :]


TestWorkRequestMachine = WorkRequestMachine.TestCase
