"""The status machine table: every allowed and every refused transition."""

import itertools

import pytest

from arc_reactor.core.status import (
    BATCH_STATE_TO_STATUS,
    PREDECESSORS,
    TERMINAL,
    RunStatus,
    can_transition,
    is_terminal,
    status_for_batch_state,
)

S = RunStatus
ALLOWED = {
    (S.PENDING, S.SUBMITTED),
    (S.PENDING, S.RUNNING),
    (S.PENDING, S.CANCELLING),
    (S.PENDING, S.COMPLETED),
    (S.PENDING, S.FAILED),
    (S.PENDING, S.CANCELLED),
    (S.SUBMITTED, S.RUNNING),
    (S.SUBMITTED, S.CANCELLING),
    (S.SUBMITTED, S.COMPLETED),
    (S.SUBMITTED, S.FAILED),
    (S.SUBMITTED, S.CANCELLED),
    (S.RUNNING, S.CANCELLING),
    (S.RUNNING, S.COMPLETED),
    (S.RUNNING, S.FAILED),
    (S.RUNNING, S.CANCELLED),
    (S.CANCELLING, S.COMPLETED),
    (S.CANCELLING, S.FAILED),
    (S.CANCELLING, S.CANCELLED),
}


@pytest.mark.parametrize(("current", "target"), list(itertools.product(S, S)))
def test_every_pair_is_allowed_or_refused_as_the_table_says(current, target):
    assert can_transition(current, target) == ((current, target) in ALLOWED)


def test_terminal_states_are_final():
    for terminal, target in itertools.product(TERMINAL, S):
        assert not can_transition(terminal, target)
    assert {s for s in S if is_terminal(s)} == {S.COMPLETED, S.FAILED, S.CANCELLED}


def test_nothing_moves_back_to_pending_or_back_from_running():
    assert PREDECESSORS[S.PENDING] == frozenset()
    assert not can_transition(S.RUNNING, S.SUBMITTED)
    assert not can_transition(S.CANCELLING, S.RUNNING)


def test_no_self_transitions_so_duplicates_are_no_ops():
    for s in S:
        assert not can_transition(s, s)


@pytest.mark.parametrize(
    ("state", "status"),
    [
        ("QUEUED", S.SUBMITTED),
        ("SCHEDULED", S.SUBMITTED),
        ("RUNNING", S.RUNNING),
        ("SUCCEEDED", S.COMPLETED),
        ("FAILED", S.FAILED),
        ("CANCELLATION_IN_PROGRESS", S.CANCELLING),
        ("CANCELLED", S.CANCELLED),
        ("DELETION_IN_PROGRESS", None),
        ("STATE_UNSPECIFIED", None),
        ("SOMETHING_NEW", None),
    ],
)
def test_batch_state_mapping(state, status):
    assert status_for_batch_state(state) == status


def test_mapping_covers_design_table_exactly():
    assert set(BATCH_STATE_TO_STATUS) == {
        "QUEUED",
        "SCHEDULED",
        "RUNNING",
        "SUCCEEDED",
        "FAILED",
        "CANCELLATION_IN_PROGRESS",
        "CANCELLED",
    }


def test_terminal_conflicts_are_between_different_ends_only():
    from arc_reactor.core.status import is_terminal_conflict

    assert is_terminal_conflict("completed", "failed")
    assert not is_terminal_conflict("completed", "completed")
    assert not is_terminal_conflict("running", "failed")
    assert not is_terminal_conflict("failed", "running")


def test_a_not_applied_answer_is_final_without_the_row_lock_only_where_no_predecessor_is_reachable():
    """runs_repo's lock-free path for duplicates: from the snapshot's status, a concurrent writer can only
    have moved the run forward: "not applied" holds when no allowed predecessor of the target lies ahead."""
    from arc_reactor.adapters.runs_repo import _FINAL_WITHOUT_LOCK
    from arc_reactor.core.status import PREDECESSORS, TERMINAL, RunStatus

    for status in RunStatus:
        for target in RunStatus:
            if status in PREDECESSORS[target]:
                assert (status, target) not in _FINAL_WITHOUT_LOCK
            if status in TERMINAL or status == target:
                assert (status, target) in _FINAL_WITHOUT_LOCK, (status, target)
    # a pending run may yet become submitted (then running may apply): its answer needs the lock
    assert (RunStatus.PENDING, RunStatus.RUNNING) not in _FINAL_WITHOUT_LOCK
