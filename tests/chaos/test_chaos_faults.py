"""Faults while runs go through the real parts: the database cut at each step of a submission, at
reconcile and under the orchestrator's hook; storage cut while a submission is read and while the
orchestrator downloads and uploads; Batch UNAVAILABLE, out of quota, refusing permission, or creating a job
although the client saw an error; notifications dropped, duplicated and reordered; the orchestrator
killed; a spot preemption mid-run. Outages are real: a loopback forwarder in front of PostgreSQL or the
storage emulator resets every connection (tests/outage.py). Each scenario ends with exactly one run
in the state it must be in, and at most one Batch job."""

from __future__ import annotations

import itertools
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from flow import binary_event, finalize_event, function_client, upload_bundle, upload_demo_data
from outage import Outage
from sqlalchemy import create_engine, make_url, text
from tally import Tally, Trial, assert_clean

from arc_reactor.core.events import pubsub_cloudevent

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
TOPIC = "projects/arc-test/topics/batch"


@dataclass
class Faulty:
    """The real apps, with the database and storage each behind an Outage."""

    db: Outage
    storage: Outage
    batch: object
    engine: object  # direct, for the test's own reads
    gcs: object
    procs: list[subprocess.Popen[bytes]]
    last: str = ""

    def new_submission(self, folder: str) -> str:
        """Upload a demo bundle as `folder`; later judgement is about this submission."""
        from hostile import demo

        self.batch.notifications.items.clear()
        self.last = upload_bundle(self.gcs, folder, demo())
        return self.last

    def submit(self, manifest: str) -> int:
        headers, body = finalize_event(self.gcs, manifest)
        return function_client("submit_bundle").post("/", headers=headers, data=body).status_code

    def deliver(self, messages: list[tuple[dict, bytes]]) -> list[int]:
        client = function_client("reconcile_batch_event")
        codes = []
        for attributes, data in messages:
            event = pubsub_cloudevent(TOPIC, uuid.uuid4().hex, attributes, data, datetime.now(UTC))
            headers, body = binary_event(*event)
            codes.append(client.post("/", headers=headers, data=body).status_code)
        return codes

    def runs(self) -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(text("SELECT * FROM runs ORDER BY created_at"))]

    def transitions(self, run_id: str) -> list[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT to_status FROM run_events WHERE run_id = :r AND kind = 'transition' ORDER BY id"
                ),
                {"r": run_id},
            )
            return [r[0] for r in rows]

    def jobs(self) -> list:
        return self.batch.jobs()

    def finish(self) -> list[tuple[dict, bytes]]:
        """Wait for every job to end; the notifications so far."""
        for job in self.jobs():
            self.batch.wait_for_job(job.name, timeout=30)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not self._settled():
            time.sleep(0.05)
        return list(self.batch.notifications.items)

    def _settled(self) -> bool:
        """The last submission's job has said it ended (notifications are cleared per submission)."""
        return any(a.get("NewJobState") in ("SUCCEEDED", "FAILED") for a, _ in self.batch.notifications.items)


def _db_target(url: str) -> tuple[str, int] | str:
    u = make_url(url)
    sock = u.query.get("unix_sock")
    if sock:
        return sock if isinstance(sock, str) else sock[0]
    return (u.host or "127.0.0.1", u.port or 5432)


@pytest.fixture
def faulty(
    engine, gcs, batch_server, storage_emulator, nf_schemas, database_url, monkeypatch
) -> Iterator[Faulty]:
    from arc_reactor.adapters import db
    from arc_reactor.wiring import reset_deps

    db_outage = Outage(_db_target(database_url))
    host = storage_emulator.endpoint.split("://", 1)[-1]
    st_outage = Outage((host.split(":")[0], int(host.split(":")[1])))
    u = make_url(database_url)
    proxied = u.set(
        host="127.0.0.1", port=db_outage.port, query={k: v for k, v in u.query.items() if k != "unix_sock"}
    )
    upload_demo_data(gcs)
    monkeypatch.setenv("DATABASE_URL", proxied.render_as_string(hide_password=False))
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{st_outage.port}")
    monkeypatch.setenv("ARC_LOCAL", "true")
    monkeypatch.setenv("ARC_BATCH_ENDPOINT", batch_server.address)
    monkeypatch.setenv("ARC_BATCH_TOPIC", TOPIC)
    monkeypatch.setenv("ARC_PROJECT", "arc-test")
    reset_deps()
    db.dispose_engines()
    yield Faulty(db_outage, st_outage, batch_server, engine, gcs, batch_server.launched)
    db_outage.stop()
    st_outage.stop()
    reset_deps()
    db.dispose_engines()


def _judge(name: str, f: Faulty, want: str, *, want_error: str = "", detail: str = "") -> Trial:
    """The last submission's story, judged by where it ended: one run in `want` (with `want_error`), at
    most one job, every transition recorded once."""
    runs = [r for r in f.runs() if r["source_object"] == f.last]
    jobs = [j for j in f.jobs() if runs and j.labels.get("run-id") == runs[-1]["id"]]
    if not runs:
        return Trial("fault", name, "lost", detail=f"no run {detail}")
    run = runs[-1]
    seen = f.transitions(run["id"])
    duplicated = len(runs) > 1 or len(jobs) > 1 or len(seen) != len(set(seen))
    if run["status"] != want or (want_error and run["error_code"] != want_error):
        got = f"{run['status']}/{run['error_code']}: {run['error_message']}"
        return Trial(
            "fault", name, "lost", duplicated, detail=f"ended {got}, not {want}/{want_error} {detail}"
        )
    outcome = "refused" if want == "failed" and want_error else "accepted"
    return Trial("fault", name, outcome, duplicated, detail=detail)


def _submit_through(f: Faulty, submission: str, cut: Callable[[], object] | None = None) -> list[int]:
    """Deliver the manifest's event until it is acknowledged (at most 5 times, as Eventarc's retries)."""
    manifest = f.new_submission(submission)
    codes = []
    for attempt in range(5):
        if cut is not None and attempt == 0:
            cut()
        codes.append(f.submit(manifest))
        if codes[-1] == 200:
            break
    return codes


class _CutAfter:
    """Wrap one method of a dependency: call it for real, then cut the outage (a fault 'at that step')."""

    def __init__(self, target: object, method: str, outage: Outage) -> None:
        self._target, self._method, self._outage = target, method, outage
        self.fired = False

    def __getattr__(self, name: str) -> object:
        real = getattr(self._target, name)
        if name != self._method or self.fired:
            return real

        def wrapped(*a: object, **k: object) -> object:
            out = real(*a, **k)
            self.fired = True
            self._outage.down()
            return out

        return wrapped


# ---- the scenarios ----------------------------------------------------------------------------------------
def db_down_before_submit(f: Faulty) -> Trial:
    codes = _submit_through(f, "db-before", cut=f.db.down)
    if codes[0] != 500:
        return Trial(
            "fault",
            "db_down_before_submit",
            "lost",
            detail=f"acknowledged while the database was down: {codes}",
        )
    f.db.up()
    codes += [f.submit(f.last)]
    return _judge("db_down_before_submit", f, "submitted", detail=str(codes))


def db_down_after(f: Faulty, dependency: str, method: str, folder: str) -> Trial:
    """A step of the submission takes effect (the run row is written, or Batch creates the job), then the
    database goes: redeliveries must finish the submission with one run and one job."""
    from arc_reactor.wiring import get_deps

    deps = get_deps()
    setattr(deps, dependency, _CutAfter(getattr(deps, dependency), method, f.db))
    manifest = f.new_submission(folder)
    codes = [f.submit(manifest)]
    f.db.up()
    for _ in range(4):
        if codes[-1] == 200:
            break
        codes.append(f.submit(manifest))
    return _judge(f"db_down_after_{method}", f, "submitted", detail=str(codes))


def db_down_at_reconcile(f: Faulty) -> Trial:
    _submit_through(f, "db-reconcile")
    notes = f.finish()
    with f.db.cut():
        first = f.deliver(notes[:1])
    if first != [500]:
        return Trial(
            "fault",
            "db_down_at_reconcile",
            "lost",
            detail=f"acknowledged while the database was down: {first}",
        )
    f.deliver(notes)
    return _judge("db_down_at_reconcile", f, "completed")


def db_down_at_the_hook(f: Faulty, exit_codes: list[int]) -> Trial:
    """The engine failed and the hook cannot reach the database: its marker carries the engine's error to
    the run when Batch's FAILED arrives."""
    sys.path.insert(0, str(ROOT / "orchestrator"))
    try:
        import update_status
    finally:
        sys.path.remove(str(ROOT / "orchestrator"))
    exit_codes.append(3)
    _submit_through(f, "db-hook")
    run_id = f.runs()[-1]["id"]
    with f.db.cut():
        unreachable = create_engine(
            f"postgresql+pg8000://postgres@127.0.0.1:{f.db.port}/postgres", pool_pre_ping=False
        )
        argv = [
            run_id, "failed", "--exit_code", "3", "--error_code", "pipeline_error",
            "--error_message", "rule stats failed for sample2", "--error_task", "stats (sample2)",
        ]  # fmt: skip
        code = update_status.main(argv, engine=unreachable, attempts=2, sleep=lambda _: None)
        unreachable.dispose()
    if code != 5:
        return Trial("fault", "db_down_at_the_hook", "crashed", detail=f"update_status exited {code}, not 5")
    f.deliver(f.finish())
    trial = _judge("db_down_at_the_hook", f, "failed", want_error="pipeline_error")
    if trial.outcome == "refused" and "sample2" not in (f.runs()[-1]["error_message"] or ""):
        return Trial("fault", trial.name, "lost", detail="the engine's error did not reach the run")
    return trial


def storage_down_at_submit(f: Faulty) -> Trial:
    """A 3-second storage outage while the submission is read: the client's retries ride it out."""
    manifest = f.new_submission("st-submit")
    headers, body = finalize_event(f.gcs, manifest)
    f.storage.down_for(3.0)
    codes = [function_client("submit_bundle").post("/", headers=headers, data=body).status_code]
    for _ in range(4):
        if codes[-1] == 200:
            break
        codes.append(f.submit(manifest))
    return _judge("storage_down_at_submit", f, "submitted", detail=str(codes))


def _context(f: Faulty, tmp: Path):
    from arc_reactor.core.engine_command import Workspace
    from arc_reactor.core.job_env import JobEnv
    from arc_reactor.orchestrator.storage_io import Context
    from arc_reactor.settings import Settings

    env = JobEnv("r0chaos", "arc/fastq-stats", "1.0.0", "snakemake", "", "gs://arc-runs/x/params.yaml")
    return Context(env, Workspace.at(tmp), Settings(local=True, database_url=""))


def storage_down_at_prepare(f: Faulty, tmp: Path) -> Trial:
    """A 3-second outage while the orchestrator downloads its inputs: the transfer waits it out."""
    from arc_reactor.errors import OrchestrationError
    from arc_reactor.orchestrator.storage_io import download

    f.gcs.write_bytes("arc-runs", "runs/r0chaos/inputs/samplesheet.csv", b"sample,fastq_1\n")
    ctx = _context(f, tmp)
    f.storage.down_for(3.0)
    dest = tmp / "in" / "samplesheet.csv"
    try:
        download(ctx, "gs://arc-runs/runs/r0chaos/inputs/samplesheet.csv", dest, "samplesheet")
    except OrchestrationError as exc:
        return Trial(
            "fault", "storage_down_at_prepare", "lost", detail=f"the run would fail: {exc.code}: {exc}"
        )
    ok = dest.read_bytes() == b"sample,fastq_1\n"
    return Trial("fault", "storage_down_at_prepare", "accepted" if ok else "lost")


def storage_down_at_copy(f: Faulty, tmp: Path) -> Trial:
    """The same outage while a Snakemake-on-Batch prepare copies an input to the work/ prefix."""
    from arc_reactor.errors import OrchestrationError
    from arc_reactor.orchestrator.storage_io import copy_object

    f.gcs.write_bytes("arc-runs", "runs/r0chaos/inputs/s1.fastq.gz", b"@r1\nACGT\n+\nIIII\n")
    ctx = _context(f, tmp)
    f.storage.down_for(3.0)
    try:
        copy_object(
            ctx,
            "gs://arc-runs/runs/r0chaos/inputs/s1.fastq.gz",
            "gs://arc-runs/work/r0chaos/s1.fastq.gz",
            "input",
        )
    except OrchestrationError as exc:
        return Trial("fault", "storage_down_at_copy", "lost", detail=f"the run would fail: {exc.code}: {exc}")
    ok = f.gcs.read_bytes("arc-runs", "work/r0chaos/s1.fastq.gz") == b"@r1\nACGT\n+\nIIII\n"
    return Trial("fault", "storage_down_at_copy", "accepted" if ok else "lost")


def storage_down_at_upload(f: Faulty, tmp: Path) -> Trial:
    from arc_reactor.orchestrator.storage_io import upload

    ctx = _context(f, tmp)
    src = tmp / "console.log"
    src.write_bytes(b"log line\n" * 1000)
    f.storage.down_for(3.0)
    done = upload(ctx, src, "gs://arc-runs/runs/r0chaos/logs/console.log")
    there = f.gcs.read_bytes("arc-runs", "runs/r0chaos/logs/console.log") == src.read_bytes()
    if done and there and not ctx.failed_uploads:
        return Trial("fault", "storage_down_at_upload", "accepted")
    return Trial("fault", "storage_down_at_upload", "lost", detail=f"uploaded={done}, there={there}")


def batch_unavailable_briefly(f: Faulty) -> Trial:
    f.batch.faults.unavailable_next(2)
    codes = _submit_through(f, "batch-brief")
    return _judge("batch_unavailable_briefly", f, "submitted", detail=str(codes))


def batch_unavailable_for_long(f: Faulty) -> Trial:
    f.batch.faults.unavailable_next(10_000)
    manifest = f.new_submission("batch-long")
    first = f.submit(manifest)
    f.batch.faults.clear()
    if first != 500:
        return _judge("batch_unavailable_for_long", f, "submitted", detail=f"first delivery {first}")
    codes = [first, f.submit(manifest)]
    return _judge("batch_unavailable_for_long", f, "submitted", detail=str(codes))


def batch_refuses(f: Faulty, code: grpc.StatusCode, error: str) -> Trial:
    f.batch.faults.fail_next_create(code, "injected")
    codes = _submit_through(f, f"batch-{error}")
    trial = _judge(f"batch_{error}", f, "failed", want_error=error, detail=str(codes))
    if f.jobs():
        return Trial("fault", trial.name, trial.outcome, True, detail="a refused create left a job")
    return trial


def batch_created_but_client_saw_error(f: Faulty) -> Trial:
    f.batch.faults.fail_next("CreateJob", grpc.StatusCode.UNAVAILABLE, 1, after=True)
    codes = _submit_through(f, "batch-raced")
    return _judge("batch_created_but_client_saw_error", f, "submitted", detail=str(codes))


def notifications_dropped(f: Faulty) -> Trial:
    """Every notification lost: the sweeper finds the finished job."""
    from arc_reactor.services.sweep import sweep
    from arc_reactor.wiring import get_deps

    _submit_through(f, "notes-dropped")
    f.finish()
    sweep(get_deps(), now=datetime.now(UTC) + timedelta(hours=2))
    return _judge("notifications_dropped", f, "completed")


def notifications_duplicated_and_reordered(f: Faulty, seed: int) -> Trial:
    _submit_through(f, f"notes-shuffled-{seed}")
    notes = f.finish()
    doubled = list(itertools.chain.from_iterable(zip(notes, notes, strict=True)))
    random.Random(seed).shuffle(doubled)
    codes = f.deliver(doubled)
    if any(c != 200 for c in codes):
        return Trial("fault", f"notifications_shuffled_{seed}", "crashed", detail=str(codes))
    return _judge(f"notifications_shuffled_{seed}", f, "completed")


def orchestrator_killed(f: Faulty, exit_codes: list[int]) -> Trial:
    """The orchestrator's process is killed (SIGKILL: no hook runs): Batch's FAILED fails the run, saying
    why."""
    exit_codes.append(-1)  # this job's process runs until it is killed
    _submit_through(f, "killed")
    deadline = time.monotonic() + 10
    while not f.procs and time.monotonic() < deadline:
        time.sleep(0.02)
    if not f.procs:
        return Trial("fault", "orchestrator_killed", "lost", detail="the job never started")
    f.procs[-1].send_signal(signal.SIGKILL)
    f.deliver(f.finish())
    trial = _judge("orchestrator_killed", f, "failed")
    run = f.runs()[-1]
    if trial.outcome == "lost":
        return trial
    if not (run["error_code"] and run["error_message"]):
        return Trial("fault", trial.name, "lost", trial.duplicated, detail="failed without saying why")
    why = f"{run['error_code']}: {run['error_message']}"[:200]
    return Trial("fault", trial.name, "refused", trial.duplicated, detail=why)


def preempted_mid_run(f: Faulty) -> Trial:
    f.batch.faults.preempt_next(1)
    _submit_through(f, "preempted")
    f.deliver(f.finish())
    return _judge("preempted_mid_run", f, "completed")


# ---- the tests -----------------------------------------------------------------------------------------
SCENARIOS: dict[str, Callable[[Faulty], Trial]] = {
    "db_down_before_submit": db_down_before_submit,
    "db_down_after_insert": lambda f: db_down_after(f, "runs", "insert_run", "db-after-insert"),
    "db_down_after_create_job": lambda f: db_down_after(
        f, "batch", "create_orchestrator_job", "db-after-create"
    ),
    "db_down_at_reconcile": db_down_at_reconcile,
    "storage_down_at_submit": storage_down_at_submit,
    "batch_unavailable_briefly": batch_unavailable_briefly,
    "batch_unavailable_for_long": batch_unavailable_for_long,
    "batch_quota": lambda f: batch_refuses(f, grpc.StatusCode.RESOURCE_EXHAUSTED, "quota_exceeded"),
    "batch_permission": lambda f: batch_refuses(f, grpc.StatusCode.PERMISSION_DENIED, "permission_denied"),
    "batch_created_but_client_saw_error": batch_created_but_client_saw_error,
    "notifications_dropped": notifications_dropped,
    "preempted_mid_run": preempted_mid_run,
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_fault(scenario: str, faulty: Faulty, tally: Tally) -> None:
    assert_clean([tally.record(SCENARIOS[scenario](faulty))])


def test_database_down_at_the_hook(faulty: Faulty, exit_codes: list[int], tally: Tally) -> None:
    assert_clean([tally.record(db_down_at_the_hook(faulty, exit_codes))])


def test_orchestrator_killed(faulty: Faulty, exit_codes: list[int], tally: Tally) -> None:
    assert_clean([tally.record(orchestrator_killed(faulty, exit_codes))])


@pytest.mark.parametrize("where", ["prepare", "copy", "upload"])
def test_storage_down_in_the_orchestrator(where: str, faulty: Faulty, tmp_path: Path, tally: Tally) -> None:
    scenarios = {"prepare": storage_down_at_prepare, "copy": storage_down_at_copy}
    scenario = scenarios.get(where, storage_down_at_upload)
    assert_clean([tally.record(scenario(faulty, tmp_path))])


def test_notifications_duplicated_and_in_any_order(faulty: Faulty, tally: Tally, full: bool) -> None:
    trials = [
        tally.record(notifications_duplicated_and_reordered(faulty, seed))
        for seed in range(20 if full else 3)
    ]
    assert_clean(trials)


def test_burst_of_bundles_each_delivered_twice_concurrently(faulty: Faulty, tally: Tally, full: bool) -> None:
    """Many bundles at once, every finalize event delivered twice, concurrently and shuffled, while Batch
    answers UNAVAILABLE now and then: one run and one job per bundle."""
    from concurrent.futures import ThreadPoolExecutor

    from hostile import demo

    n = 150 if full else 12
    files = demo()
    manifests = [upload_bundle(faulty.gcs, f"burst-{i}", files) for i in range(n)]
    events = [finalize_event(faulty.gcs, m) for m in manifests] * 2
    random.Random(n).shuffle(events)
    faulty.batch.faults.unavailable_next(3)

    def deliver(event: tuple[dict, bytes]) -> int:
        headers, data = event
        for _ in range(5):  # Eventarc redelivers a 500
            code = function_client("submit_bundle").post("/", headers=headers, data=data).status_code
            if code == 200:
                return code
        return code

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(deliver, events))
    runs = {}
    for r in faulty.runs():
        runs.setdefault(r["source_object"], []).append(r)
    jobs: dict[str, int] = {}
    for j in faulty.jobs():
        jobs[j.labels.get("run-id")] = jobs.get(j.labels.get("run-id"), 0) + 1
    trials = []
    for m in manifests:
        mine = runs.get(m, [])
        count = sum(jobs.get(r["id"], 0) for r in mine)
        if not mine or count == 0:
            trials.append(Trial("fault", f"burst/{m}", "lost", detail=f"runs {len(mine)}, jobs {count}"))
        else:
            trials.append(Trial("fault", f"burst/{m}", "accepted", duplicated=len(mine) > 1 or count > 1))
    if any(c != 200 for c in codes):
        trials.append(
            Trial(
                "fault",
                "burst/deliveries",
                "crashed",
                detail=f"{sum(c != 200 for c in codes)} not acknowledged",
            )
        )
    for t in trials:
        tally.record(t)
    assert_clean(trials)
