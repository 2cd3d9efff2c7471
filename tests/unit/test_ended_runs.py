"""The memo of ended runs (core/ended_runs.py): what it may answer without the database, and its bound."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arc_reactor.core.ended_runs import EndedRuns
from arc_reactor.core.status import TERMINAL, RunStatus, can_transition, is_terminal_conflict

statuses = st.sampled_from(list(RunStatus))


@given(
    ended=st.sampled_from(sorted(TERMINAL)), target=statuses, noted=st.integers(0, 3), seen=st.integers(0, 3)
)
def test_it_answers_only_what_the_status_machine_would_answer_without_writing(ended, target, noted, seen):
    memo = EndedRuns()
    memo.remember("r1", ended, noted)
    answer = memo.settled("r1", target, seen)
    if is_terminal_conflict(ended, target) or seen > noted:
        assert answer is None  # a conflict to record, or a retry to note: the database decides
    else:
        assert answer == ended
        assert not can_transition(ended, target)  # the transition would not have applied


@pytest.mark.parametrize(
    "status", [RunStatus.PENDING, RunStatus.SUBMITTED, RunStatus.RUNNING, RunStatus.CANCELLING]
)
def test_a_run_not_ended_is_not_remembered(status):
    memo = EndedRuns()
    memo.remember("r1", status, 0)
    assert len(memo) == 0
    assert memo.settled("r1", status, 0) is None


def test_unknown_runs_go_to_the_database():
    assert EndedRuns().settled("r1", RunStatus.COMPLETED, 0) is None


def test_it_keeps_at_most_its_capacity_dropping_the_least_recently_used():
    memo = EndedRuns(capacity=2)
    memo.remember("a", RunStatus.COMPLETED, 0)
    memo.remember("b", RunStatus.FAILED, 0)
    assert memo.settled("a", RunStatus.COMPLETED, 0) == RunStatus.COMPLETED  # a is now the most recent
    memo.remember("c", RunStatus.CANCELLED, 0)
    assert len(memo) == 2
    assert memo.settled("b", RunStatus.FAILED, 0) is None
    assert memo.settled("a", RunStatus.COMPLETED, 0) == RunStatus.COMPLETED
    assert memo.settled("c", RunStatus.CANCELLED, 0) == RunStatus.CANCELLED


def test_capacity_zero_remembers_nothing():
    memo = EndedRuns(capacity=0)
    memo.remember("a", RunStatus.COMPLETED, 0)
    assert len(memo) == 0 and memo.settled("a", RunStatus.COMPLETED, 0) is None
