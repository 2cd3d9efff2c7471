"""Property: whatever the interleaving of orchestrator hooks, Batch notifications (late, duplicated, dropped,
reordered) and sweeps, a run ends in the truth, never moves backwards, and records each transition once.

The truth is a job on the local Batch service (jobs held, states set with set_job_state / retry_task); the
notifications are the ones it publishes; reconcile reads the job through the real BatchServiceClient and
writes through the status machine on real PostgreSQL. Hooks go through runs_repo.transition(source="hook")
as orchestrator/update_status.py does. A final sweep stands for the safety net that makes up for drops."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from arc_reactor.adapters import runs_repo
from arc_reactor.core.events import PubSubMessage
from arc_reactor.core.status import TERMINAL, RunStatus
from arc_reactor.local.notifications import NotificationLog

pytestmark = pytest.mark.integration

RANK = {
    RunStatus.PENDING: 0,
    RunStatus.SUBMITTED: 1,
    RunStatus.RUNNING: 2,
    RunStatus.CANCELLING: 3,
    RunStatus.COMPLETED: 4,
    RunStatus.FAILED: 4,
    RunStatus.CANCELLED: 4,
}
TRUTH = {
    "SUCCEEDED": RunStatus.COMPLETED,
    "FAILED": RunStatus.FAILED,
    "PREEMPTED": RunStatus.FAILED,
    "CANCELLED": RunStatus.CANCELLED,
}
ACTIONS = ("advance", "deliver", "deliver", "duplicate", "drop", "hook", "sweep")
_ids = itertools.count()


def settle(log: NotificationLog, job: str, count: int) -> list[dict[str, str]]:
    """The job's notifications once `count` have arrived: the dispatcher must catch up within 5 s."""
    published = log.wait(count, timeout=5, job=job)
    assert len(published) >= count
    return [attributes for attributes, _ in published]


@dataclass
class Scenario:
    outcome: str  # SUCCEEDED | FAILED (pipeline exit 3) | PREEMPTED (retries exhausted) | CANCELLED
    steps: list[tuple[str, str, int | None]]  # ("state", STATE, exit code) or ("retry", "", exit code)
    running_at: int | None  # index of the step after which the orchestrator runs (hooks may fire)
    actions: list[tuple[str, int]] = field(default_factory=list)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    outcome = draw(st.sampled_from(sorted(TRUTH)))
    steps: list[tuple[str, str, int | None]] = []
    if draw(st.booleans()):  # Batch may skip SCHEDULED as far as anyone sees
        steps.append(("state", "SCHEDULED", None))
    running_at = None
    if outcome != "CANCELLED" or draw(st.booleans()):
        steps.append(("state", "RUNNING", None))
        running_at = len(steps) - 1
        retries = 2 if outcome == "PREEMPTED" else draw(st.integers(0, 2 if outcome != "CANCELLED" else 0))
        steps += [("retry", "", 50001)] * retries
    if outcome == "CANCELLED":
        steps += [("state", "CANCELLATION_IN_PROGRESS", None), ("state", "CANCELLED", None)]
    else:
        code = {"SUCCEEDED": 0, "FAILED": 3, "PREEMPTED": 50001}[outcome]
        steps.append(("state", "FAILED" if code else "SUCCEEDED", code))
    actions = draw(st.lists(st.tuples(st.sampled_from(ACTIONS), st.integers(0, 50)), max_size=30))
    return Scenario(outcome, steps, running_at, actions)


@pytest.fixture
def world(engine, gcs) -> Iterator[tuple[object, object, NotificationLog]]:
    from arc_reactor.adapters.batch import BatchService, make_batch_client
    from arc_reactor.local.batch_server import LocalBatchServer
    from arc_reactor.settings import Settings
    from arc_reactor.wiring import Deps

    inbox = NotificationLog()
    server = LocalBatchServer(lambda job, env: None, inbox, run_jobs=False).start()
    s = Settings(
        local=True,
        project="arc-test",
        batch_endpoint=server.address,
        batch_topic="projects/arc-test/topics/batch",
        database_url="",
    )
    client = make_batch_client(s)
    batch = BatchService(client, s, sleep=lambda _: None)
    # The runs bucket on the emulator: a FAILED job's reconcile looks there for the hook's marker.
    deps = Deps(s, engine_override=engine, batch_override=batch, storage_override=gcs)
    yield deps, server, inbox
    client.transport.close()
    server.stop()


class Run:
    """One run of a scenario: the truth advances, notifications and hooks arrive in the drawn order."""

    def __init__(self, deps, server, inbox: NotificationLog, sc: Scenario) -> None:
        from arc_reactor.core.job_env import JobEnv
        from arc_reactor.core.jobspec import OrchestratorJob

        self.deps, self.server, self.inbox, self.sc = deps, server, inbox, sc
        self.run_id = f"r{next(_ids):018d}"
        runs_repo.insert_run(deps.engine, _run_values(self.run_id))
        spec = OrchestratorJob(JobEnv(self.run_id, "demo", "1", "snakemake", "", "gs://i/p.yaml", "gs://w/"))
        self.job = deps.batch.submit_orchestrator_job(spec)
        runs_repo.transition(deps.engine, self.run_id, RunStatus.SUBMITTED, "submit")
        self.done = 0  # truth steps applied
        self.expected = 1  # notifications the service has published (QUEUED on create)
        self.pending = list(settle(inbox, self.job, 1))
        self.taken = 1
        self.delivered: list[dict[str, str]] = []
        self.seen = [self.status()]

    def status(self) -> RunStatus:
        return RunStatus(runs_repo.get_run(self.deps.engine, self.run_id)["status"])

    def advance(self) -> None:
        if self.done == len(self.sc.steps):
            return
        kind, state, code = self.sc.steps[self.done]
        if kind == "retry":
            self.server.retry_task(self.job, code)
            self.expected += 2  # task FAILED, task RUNNING
        else:
            self.server.set_job_state(self.job, state, exit_code=code)
            self.expected += 1 + (code is not None)  # the task's end, then the job's change
        self.done += 1
        published = settle(self.inbox, self.job, self.expected)
        self.pending += published[self.taken :]
        self.taken = len(published)

    def deliver(self, attrs: dict[str, str]) -> None:
        from arc_reactor.services.reconcile import handle_batch_notification

        msg = PubSubMessage(f"e{next(_ids)}", f"m{next(_ids)}", attrs, b"", datetime.now(UTC))
        handle_batch_notification(self.deps, msg)

    def hook(self) -> None:
        # The orchestrator's hooks: running once it runs, its own outcome once the pipeline has ended
        # (before Batch marks the job finished). A preempted or cancelled orchestrator reports no outcome.
        if self.sc.running_at is None or self.done <= self.sc.running_at:
            return
        target = RunStatus.RUNNING
        if self.sc.outcome in ("SUCCEEDED", "FAILED") and self.done >= len(self.sc.steps) - 1:
            target = TRUTH[self.sc.outcome]
        runs_repo.transition(self.deps.engine, self.run_id, target, "hook")

    def sweep(self) -> None:
        from arc_reactor.services.sweep import sweep

        sweep(self.deps, now=datetime.now(UTC) + timedelta(hours=1))  # every active run counts as stale

    def act(self, action: str, n: int) -> None:
        if action == "advance":
            self.advance()
        elif action == "deliver" and self.pending:
            attrs = self.pending.pop(n % len(self.pending))  # any pending one: out of order
            self.deliver(attrs)
            self.delivered.append(attrs)
        elif action == "duplicate" and self.delivered:
            self.deliver(self.delivered[n % len(self.delivered)])
        elif action == "drop" and self.pending:
            self.pending.pop(n % len(self.pending))
        elif action == "hook":
            self.hook()
        elif action == "sweep":
            self.sweep()
        self.check_monotone()

    def check_monotone(self) -> None:
        now, last = self.status(), self.seen[-1]
        assert RANK[now] >= RANK[last], f"{last} -> {now} went backwards"
        assert last not in TERMINAL or now == last, f"left terminal {last} for {now}"
        self.seen.append(now)


def _run_values(run_id: str) -> dict[str, object]:
    return {
        "id": run_id,
        "pipeline": "demo",
        "revision": "1",
        "engine": "snakemake",
        "lineage_id": run_id,
        "work_dir": "gs://w/",
        "cache_dir": "gs://c/",
        "inputs_uri": "gs://i/",
        "results_uri": "gs://r/",
        "logs_uri": "gs://l/",
    }


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sc=scenarios())
# Found by this property: the pipeline failed (hook), an hour passed with the job still RUNNING, and the
# sweeper cancelled it as an orphan; Batch's CANCELLED was then recorded as a conflict with the run's end.
@example(
    sc=Scenario(
        "FAILED", [("state", "RUNNING", None), ("state", "FAILED", 3)], 0,
        [("advance", 0), ("hook", 0), ("sweep", 0), ("deliver", 0)],
    )
)  # fmt: skip
def test_any_interleaving_ends_in_the_truth_without_regressing(world, sc: Scenario) -> None:
    deps, server, inbox = world
    run = Run(deps, server, inbox, sc)
    for action, n in sc.actions:
        run.act(action, n)
    while run.done < len(sc.steps):  # the job finishes whatever was delivered meanwhile
        run.act("advance", 0)
    for attrs in run.pending[::-1]:  # late notifications, newest first
        run.deliver(attrs)
        run.check_monotone()
    run.act("sweep", 0)
    assert run.status() == TRUTH[sc.outcome]
    with deps.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT kind, to_status, detail FROM run_events WHERE run_id = :r ORDER BY id"),
            {"r": run.run_id},
        ).all()
    transitions = [r.to_status for r in rows if r.kind == "transition"]
    assert len(transitions) == len(set(transitions)), transitions
    assert transitions[-1] == TRUTH[sc.outcome].value
    notes = [r.detail for r in rows if r.kind == "note" and r.detail.get("reason") == "task_retry"]
    attempts = [note["attempt"] for note in notes]
    assert len(attempts) == len(set(attempts)) and set(attempts) <= {1, 2}
    assert not [r for r in rows if r.kind == "conflict"]  # hooks and Batch agree in this world


def _statements(engine) -> tuple[list[str], object]:
    """A list that collects the statements `engine` sends, and the listener to remove afterwards."""
    from sqlalchemy import event

    sent: list[str] = []

    def collect(_conn, _cursor, statement, *_rest) -> None:
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", collect)
    return sent, collect


def test_deliveries_whose_answer_is_known_make_no_statement_and_the_rest_still_write(world) -> None:
    """A delivery the run's last seen status settles makes no statement, even after the run moved on
    without this process (the hook ended it); a task retry not yet noted and a terminal conflict still
    reach the database, once each."""
    from sqlalchemy import event

    deps, server, inbox = world
    sc = Scenario("SUCCEEDED", [("state", "RUNNING", None)], 0)
    run = Run(deps, server, inbox, sc)
    run.advance()
    running = run.pending[-1]
    run.deliver(running)  # applies `running`, and the process remembers it
    sent, listener = _statements(deps.engine)
    try:
        run.deliver(running)
        assert sent == []  # a duplicate
        runs_repo.transition(deps.engine, run.run_id, RunStatus.COMPLETED, "hook")  # the pipeline ended
        sent.clear()
        run.deliver(running)
        assert sent == []  # RUNNING cannot apply to a run seen running, wherever it is now
        server.retry_task(run.job, 50001)  # the VM is preempted while the job winds down
        run.deliver(running)
        assert any("'note'" in statement for statement in sent)  # the retry is noted
        sent.clear()
        run.deliver(running)
        assert sent == []  # and remembered as noted
        server.set_job_state(run.job, "FAILED", exit_code=50001)  # Batch gives up: it disagrees
        run.deliver(running)
        run.deliver(running)
    finally:
        event.remove(deps.engine, "before_cursor_execute", listener)
    assert run.status() == RunStatus.COMPLETED  # the first terminal state wins
    events = runs_repo.list_events(deps.engine, run.run_id)
    notes = [e["detail"]["attempt"] for e in events if e["kind"] == "note"]
    conflicts = [(e["source"], e["to_status"]) for e in events if e["kind"] == "conflict"]
    assert notes == [1]
    assert conflicts == [("batch", "failed")]
