"""The work request's state machine, as plain Python (domain/work_requests.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from clusterops_server.domain.work_requests import (
    TERMINAL_STATUSES,
    IllegalTransition,
    OperationType,
    WorkRequest,
    WorkRequestStatus,
)

S = WorkRequestStatus
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def accepted() -> WorkRequest:
    return WorkRequest(
        id="wr-1",
        compartment_id="dev",
        operation_type=OperationType.NODEPOOL_CREATE,
        status=S.ACCEPTED,
        time_accepted=T0,
    )


def test_a_finished_work_request_never_moves_again() -> None:
    for terminal in TERMINAL_STATUSES:
        for to in WorkRequestStatus:
            wr = accepted()
            wr.status = terminal
            with pytest.raises(IllegalTransition):
                wr.transition(to, T0)
            assert wr.status is terminal


def test_undoing_can_fail_but_never_turns_into_success() -> None:
    wr = accepted()
    wr.transition(S.CANCELING, T0)
    assert not wr.can_become(S.SUCCEEDED)
    assert not wr.can_become(S.IN_PROGRESS)
    assert wr.can_become(S.CANCELED)
    assert wr.can_become(S.FAILED)


def test_an_illegal_move_is_a_failed_precondition_naming_the_current_status() -> None:
    wr = accepted()
    with pytest.raises(IllegalTransition) as refused:
        wr.transition(S.SUCCEEDED, T0)
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.value.metadata == {"status": "ACCEPTED"}
    (violation,) = refused.value.violations
    assert (violation.type, violation.subject) == ("WORK_REQUEST_STATE", "wr-1")


def test_transitions_stamp_start_and_finish_once_and_success_is_complete() -> None:
    wr = accepted()
    wr.transition(S.IN_PROGRESS, T0 + timedelta(seconds=1))
    wr.percent_complete = 40.0
    wr.transition(S.SUCCEEDED, T0 + timedelta(seconds=5))
    assert wr.time_started == T0 + timedelta(seconds=1)
    assert wr.time_finished == T0 + timedelta(seconds=5)
    assert wr.percent_complete == 100.0


def test_a_work_request_failed_before_it_started_has_both_times() -> None:
    wr = accepted()
    wr.transition(S.FAILED, T0 + timedelta(seconds=2))
    assert wr.time_started == wr.time_finished == T0 + timedelta(seconds=2)
    assert wr.percent_complete == 0.0
