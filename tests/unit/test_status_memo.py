"""The status memo (core/status_memo.py): what it may answer without the database, and its bound."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arc_reactor.core.status import (
    TERMINAL,
    RunStatus,
    can_transition,
    is_terminal_conflict,
    reachable,
)
from arc_reactor.core.status_memo import StatusMemo

statuses = st.sampled_from(list(RunStatus))
counts = st.integers(0, 3)


@given(seen=statuses, target=statuses, noted=counts, retries=counts)
def test_what_it_answers_holds_wherever_the_run_has_moved_since(seen, target, noted, retries):
    """An answer must be the database's for every status the run may be in now (any reachable from the
    one seen): the change applies from none of them, records no conflict, and no retry is new."""
    memo = StatusMemo()
    memo.remember("r1", seen, noted)
    answer = memo.settled("r1", target, retries)
    if answer is not None:
        assert answer == seen and retries <= noted
        for now in reachable(seen):
            assert not can_transition(now, target), (now, target)
            assert not is_terminal_conflict(now, target), (now, target)


@given(ended=st.sampled_from(sorted(TERMINAL)), target=statuses)
def test_a_run_seen_ended_settles_every_delivery_but_a_conflict(ended, target):
    memo = StatusMemo()
    memo.remember("r1", ended, 0)
    expected = None if is_terminal_conflict(ended, target) else ended
    assert memo.settled("r1", target, 0) == expected


@pytest.mark.parametrize(
    ("seen", "target", "settled"),
    [
        (RunStatus.RUNNING, RunStatus.SUBMITTED, True),  # a late QUEUED or SCHEDULED
        (RunStatus.RUNNING, RunStatus.RUNNING, True),  # a duplicate
        (RunStatus.RUNNING, RunStatus.COMPLETED, False),  # may apply: the database decides
        (RunStatus.SUBMITTED, RunStatus.RUNNING, False),
        (RunStatus.PENDING, RunStatus.SUBMITTED, False),
        (RunStatus.CANCELLING, RunStatus.RUNNING, True),
        (RunStatus.CANCELLING, RunStatus.CANCELLED, False),
    ],
)
def test_a_run_seen_going_settles_only_what_lies_behind_it(seen, target, settled):
    memo = StatusMemo()
    memo.remember("r1", seen, 0)
    assert (memo.settled("r1", target, 0) is not None) == settled


def test_a_new_retry_goes_to_the_database():
    memo = StatusMemo()
    memo.remember("r1", RunStatus.COMPLETED, 1)
    assert memo.settled("r1", RunStatus.COMPLETED, 1) == RunStatus.COMPLETED
    assert memo.settled("r1", RunStatus.COMPLETED, 2) is None


def test_a_racing_older_sighting_does_not_move_it_back():
    memo = StatusMemo()
    memo.remember("r1", RunStatus.COMPLETED, 0)
    memo.remember("r1", RunStatus.RUNNING, 2)  # read before the run ended, remembered after
    assert memo.settled("r1", RunStatus.FAILED, 2) is None  # still a conflict with `completed`
    assert memo.settled("r1", RunStatus.COMPLETED, 2) == RunStatus.COMPLETED


def test_unknown_runs_go_to_the_database():
    assert StatusMemo().settled("r1", RunStatus.COMPLETED, 0) is None


def test_it_keeps_at_most_its_capacity_dropping_the_least_recently_used():
    memo = StatusMemo(capacity=2)
    memo.remember("a", RunStatus.COMPLETED, 0)
    memo.remember("b", RunStatus.FAILED, 0)
    assert memo.settled("a", RunStatus.COMPLETED, 0) == RunStatus.COMPLETED  # a is now the most recent
    memo.remember("c", RunStatus.CANCELLED, 0)
    assert len(memo) == 2
    assert memo.settled("b", RunStatus.FAILED, 0) is None
    assert memo.settled("a", RunStatus.COMPLETED, 0) == RunStatus.COMPLETED
    assert memo.settled("c", RunStatus.CANCELLED, 0) == RunStatus.CANCELLED


def test_capacity_zero_remembers_nothing():
    memo = StatusMemo(capacity=0)
    memo.remember("a", RunStatus.COMPLETED, 0)
    assert len(memo) == 0 and memo.settled("a", RunStatus.COMPLETED, 0) is None
