"""The real orchestrator/entrypoint.sh with ENGINE=nextflow, against the storage emulator and embedded
PostgreSQL. Nextflow cannot be installed here (its launcher downloads a jar), so a Nextflow CLI double on
PATH stands in for it (NEXTFLOW_DOUBLE below): it records its argv and environment, writes .nextflow.log
(with the session id line), trace.txt, timeline.html, report.html and the DAG, and exits with a chosen
code. Asked to, it runs our config's status hooks as Nextflow would: the argument list it executes is the
one in the rendered config (its literal prefix parsed from the onError/onComplete closures), run without a
shell. Everything else is real: the entrypoint, the rendered config, resume, SIGTERM handling, log upload
(through a loopback proxy that injects real HTTP errors) and status reporting through update_status.py."""

from __future__ import annotations

import http.client
import json
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from test_orchestrator import RUNS_BUCKET, Launch, launcher, names_under, transitions

from arc_reactor.adapters import runs_repo
from arc_reactor.adapters.tasks_repo import list_tasks
from arc_reactor.core.status import RunStatus
from arc_reactor.core.trace_file import TRACE_FIELDS

pytestmark = pytest.mark.integration

NEXTFLOW_DOUBLE = r'''#!/usr/bin/env python3
"""A Nextflow CLI double (see the test module's docstring). Behaviour from the environment: NXF_DOUBLE_DIR
(where to record), NXF_DOUBLE_EXIT, NXF_DOUBLE_HOOKS=1 (run the config's hooks), NXF_DOUBLE_ERROR and
NXF_DOUBLE_TASK (workflow.errorMessage and the failing process), NXF_DOUBLE_SESSION (a new run's session
id), NXF_DOUBLE_WAIT=1 (run until SIGTERM, as a long pipeline would). Given -with-tower URL, it reports as
Nextflow's TowerClient does (TOWER_ACCESS_TOKEN as a Bearer token; create, begin, progress, complete) and
stops, as Nextflow does, when create or begin is refused."""
import ast, json, os, re, signal, subprocess, sys, time, urllib.request, uuid
from datetime import datetime, timezone
from pathlib import Path

out, argv = Path(os.environ["NXF_DOUBLE_DIR"]), sys.argv[1:]
out.mkdir(parents=True, exist_ok=True)
(out / "argv.json").write_text(json.dumps(argv))
(out / "env.json").write_text(json.dumps(dict(os.environ)))
config = Path(argv[argv.index("-c") + 1]).read_text()
(out / "arc.config").write_text(config)
resume = argv[argv.index("-resume") + 1] if "-resume" in argv else None
session = resume or os.environ.get("NXF_DOUBLE_SESSION") or str(uuid.uuid4())
Path(".nextflow.log").write_text(
    "Nov-22 10:00:00.000 [main] DEBUG nextflow.cli.Launcher - $> nextflow " + " ".join(argv) + "\n"
    f"Nov-22 10:00:01.000 [main] DEBUG nextflow.Session - Session UUID: {session}\n"
)
def tower(method, path, body):
    """One Tower request as TowerClient sends it; (status, JSON answer)."""
    req = urllib.request.Request(argv[argv.index("-with-tower") + 1] + path, data=json.dumps(body).encode(),
                                 method=method, headers={"Content-Type": "application/json",
                                 "Authorization": "Bearer " + os.environ["TOWER_ACCESS_TOKEN"]})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")

if "-with-tower" in argv:
    ms = lambda: int(time.time() * 1000)
    answers = [tower("POST", "/trace/create", {"sessionId": session, "runName": "happy_turing",
               "projectName": "nf-core/scrnaseq", "repository": "https://github.com/nf-core/scrnaseq",
               "workflowId": None, "instant": ms()})]
    wid = answers[0][1].get("workflowId")
    if answers[0][0] != 200 or not wid:
        print("ERROR ~ Unexpected Seqera Platform API response", flush=True)
        sys.exit(1)
    answers.append(tower("PUT", f"/trace/{wid}/begin", {"workflow": {"id": wid, "runName": "happy_turing"},
                         "processNames": ["FASTQC"], "towerLaunch": False, "instant": ms()}))
    def record(status, **more):
        return {"taskId": 1, "status": status, "hash": "ab/123456", "name": "FASTQC (S1)",
                "process": "FASTQC", "tag": "S1", "attempt": 1, "exit": 2147483647,
                "submit": "2026-12-07T10:15:32.501Z", "start": None, "complete": None, "cpus": 2,
                "memory": 6442450944, "workdir": "gs://w/ab/123456", "nativeId": "nf-ab123456-1733566532",
                "executor": "google-batch", "cloudZone": "us-central1-a", "machineType": "n2-standard-2",
                "priceModel": "spot", **more}
    counts = lambda running, done: {"pending": 0, "submitted": 0, "running": running, "succeeded": done,
                                    "cached": 0, "failed": 0, "aborted": 0, "ignored": 0, "retries": 0}
    process = lambda running, done: [{"index": 1, "name": "FASTQC", **counts(running, done), "stored": 0,
                                      "terminated": bool(done)}]
    answers.append(tower("PUT", f"/trace/{wid}/progress", {"tasks": [record("RUNNING",
                         start="2026-12-07T10:16:00Z")], "progress": {**counts(1, 0),
                         "processes": process(1, 0)}, "instant": ms()}))
    answers.append(tower("PUT", f"/trace/{wid}/progress", {"tasks": [record("COMPLETED", exit=0,
                         start="2026-12-07T10:16:00Z", complete="2026-12-07T10:46:00Z")],
                         "progress": {**counts(0, 1), "processes": process(0, 1)}, "instant": ms()}))
    answers.append(tower("PUT", f"/trace/{wid}/complete", {"workflow": {"id": wid, "success": True},
                         "metrics": [], "progress": {**counts(0, 1), "processes": process(0, 1)},
                         "instant": ms()}))
    (out / "tower.json").write_text(json.dumps(answers))
    if answers[1][0] != 200:
        sys.exit(1)
for flag in ("-with-trace", "-with-timeline", "-with-report"):
    Path(argv[argv.index(flag) + 1]).write_text(flag)
if os.environ.get("NXF_DOUBLE_TRACE"):  # the trace as our config asks Nextflow to write it (raw, our fields)
    Path(argv[argv.index("-with-trace") + 1]).write_text(os.environ["NXF_DOUBLE_TRACE"])
LITERAL = r"'(?:[^'\\]|\\.)*'"
dag = re.search(r"dag \{[^}]*file\s*=\s*(" + LITERAL + ")", config).group(1)
Path(ast.literal_eval(dag)).write_text("dag")
code = int(os.environ.get("NXF_DOUBLE_EXIT", "0"))
message = os.environ.get("NXF_DOUBLE_ERROR", "")
task = os.environ.get("NXF_DOUBLE_TASK", "")

def hook(name, args):
    """Run workflow.<name> as our config defines it: its guard, then its argument list, no shell."""
    if os.environ.get("NXF_DOUBLE_HOOKS") != "1":
        return
    marker = re.search(r"new File\((" + LITERAL + r")\)\.exists\(\)", config).group(1)
    if Path(ast.literal_eval(marker)).exists():
        return
    body = config.split(f"workflow.{name} = {{", 1)[1]
    prefix = re.search(r"def cmd = \[(" + LITERAL + "), (" + LITERAL + "), (" + LITERAL + "),", body)
    subprocess.run([ast.literal_eval(p) for p in prefix.groups()] + args, timeout=60, check=False)

def failure_args():
    args = ["--exit_code", os.environ.get("NXF_DOUBLE_TASK_EXIT", "1"), "--error_code", "pipeline_error",
            "--error_message=" + (message or "the pipeline failed")]
    return args + (["--error_task=" + task] if task else [])

now = lambda: datetime.now(timezone.utc).isoformat()
if os.environ.get("NXF_DOUBLE_WAIT") == "1":
    def on_term(signum, frame):  # Nextflow aborts the session: onError, then exit
        (out / "terminated").write_text("SIGTERM")
        hook("onError", ["failed", "--failed_at", now(), "--session_id", session, *failure_args()])
        sys.exit(143)
    signal.signal(signal.SIGTERM, on_term)
    (out / "started").write_text(session)
    time.sleep(30)
    sys.exit(99)  # never reached in the tests: the SIGTERM comes first
if code:
    print(f"ERROR ~ Error executing process > '{task}'\n\nCaused by:\n  {message}", flush=True)
    hook("onError", ["failed", "--failed_at", now(), "--session_id", session, *failure_args()])
ok = ["completed", "--completed_at", now()] if not code else ["failed", "--failed_at", now()]
metrics = ["--metrics", json.dumps({"succeeded": 3, "failed": 1 if code else 0})]
hook("onComplete", [*ok, "--session_id", session, *metrics, *(failure_args() if code else [])])
sys.exit(code)
'''


@pytest.fixture
def nextflow(engine, gcs, storage_emulator, database_url, tmp_path: Path) -> Callable[..., Launch]:
    """nextflow(parent=None, **env): a submitted nf-core/scrnaseq run whose entrypoint finds the Nextflow
    double first on PATH; NXF_DOUBLE_DIR is tmp_path/record unless given."""
    launch = launcher(engine, gcs, storage_emulator, database_url, tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "nextflow").write_text(NEXTFLOW_DOUBLE)
    (bin_dir / "nextflow").chmod(0o755)

    def make(parent: Launch | None = None, **extra: str) -> Launch:
        path = f"{bin_dir}:{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"
        extra.setdefault("NXF_DOUBLE_DIR", str(tmp_path / "record"))
        return launch("nf-core/scrnaseq", "nextflow", parent=parent, PATH=path, **extra)

    return make


def recorded(directory: str | Path) -> tuple[list[str], dict[str, str], str]:
    """(argv, environment, rendered config) the double saw."""
    folder = Path(directory)
    argv = json.loads((folder / "argv.json").read_text())
    return argv, json.loads((folder / "env.json").read_text()), (folder / "arc.config").read_text()


def session_record(gcs, run: Launch) -> str | None:
    data = gcs.read_bytes(RUNS_BUCKET, run.locs.cache_dir.split("/", 3)[3] + "arc-session.json")
    return json.loads(data)["session_id"] if data else None


LOGS = {"nextflow.log", "trace.txt", "timeline.html", "report.html", "dag.html", "console.log"}


TRACE = "\n".join(
    "\t".join(r)
    for r in [
        TRACE_FIELDS,
        ["1", "ab/123456", "-", "FASTQC", "S1", "FASTQC (S1)", "COMPLETED", "0", "1", "1733566532501",
         "1733566540000", "1733566600000", "60000", "2", "6442450944", "gs://w/ab/123456"],
        ["2", "cd/789012", "-", "STAR", "S1", "STAR (S1)", "CACHED", "0", "1", "1733480132501", "-",
         "1733480200000", "-", "12", "-", "gs://w/cd/789012"],
    ]
)  # fmt: skip


def test_success_reports_through_the_hooks(engine, gcs, nextflow, tmp_path):
    session = str(uuid.uuid4())
    run = nextflow(NXF_DOUBLE_HOOKS="1", NXF_DOUBLE_SESSION=session, NXF_DOUBLE_TRACE=TRACE)

    proc = run.run()

    assert proc.returncode == 0, proc.stderr
    argv, env, config = recorded(tmp_path / "record")
    assert argv[:4] == ["run", "nf-core/scrnaseq", "-r", "4.0.0"]
    assert argv[argv.index("-work-dir") + 1] == run.locs.work_dir
    assert argv.count("-c") == 1 and "-resume" not in argv
    assert env["NXF_CLOUDCACHE_PATH"] == run.locs.cache_dir and "NXF_IGNORE_RESUME_HISTORY" not in env
    assert "{{" not in config and f"'run-id': '{run.run_id}'" in config
    row = runs_repo.get_run(engine, run.run_id)
    assert (row["status"], row["session_id"], row["exit_code"]) == ("completed", session, None)
    assert row["metrics"] == {"succeeded": 3, "failed": 0} and row["started_at"] and row["completed_at"]
    assert transitions(engine, run.run_id)[-2:] == [
        ("submitted", "running", "hook"),
        ("running", "completed", "hook"),
    ]
    assert names_under(gcs, run.locs.logs) >= LOGS
    assert session_record(gcs, run) == session  # kept for a retry or a recovery, outside work/
    assert not list((tmp_path / "tmp").iterdir())  # the local work dir is cleaned up
    ledger = {(t["task_id"], t["process"], t["status"]) for t in list_tasks(engine, run.run_id, limit=10)}
    assert ledger == {("1", "FASTQC", "succeeded"), ("2", "STAR", "cached")}  # read from trace.txt at the end


@pytest.fixture
def runs_api(app_env):
    """runs_api served over loopback, as the relay reaches it (ARC_SERVICE_URL)."""
    from arc_reactor.local.functions_host import serve_function, stop_function

    fn = serve_function("runs_api", "http")
    yield fn.url.rstrip("/")
    stop_function(fn)


def test_nextflow_reports_its_tasks_through_the_relay_to_runs_api(engine, nextflow, runs_api, tmp_path):
    """The run's token reaches Nextflow in its environment, never on its command line; its Tower reports go
    through the orchestrator's loopback relay to runs_api, which fills the ledger and the progress."""
    from arc_reactor.core.tower import run_token

    run = nextflow(NXF_DOUBLE_HOOKS="1", ARC_SERVICE_URL=runs_api)
    token = run_token(runs_repo.signing_key(engine, "tower"), run.run_id)

    proc = run.run(TOWER_ACCESS_TOKEN=token)

    assert proc.returncode == 0, proc.stderr
    argv, env, _ = recorded(tmp_path / "record")
    endpoint = argv[argv.index("-with-tower") + 1]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/tower", endpoint)  # the relay, on loopback
    assert env["TOWER_ACCESS_TOKEN"] == token and token not in " ".join(argv)
    answers = json.loads((tmp_path / "record" / "tower.json").read_text())
    assert [status for status, _ in answers] == [200] * 5, answers
    assert answers[0][1]["workflowId"] == run.run_id
    (task,) = list_tasks(engine, run.run_id, limit=10)
    assert (task["process"], task["status"], task["machine_type"], task["spot"]) == (
        "FASTQC", "succeeded", "n2-standard-2", True,
    )  # fmt: skip
    progress = runs_repo.get_run(engine, run.run_id).progress
    assert (progress["source"], progress["done"], progress["total"]) == ("nextflow", 1, 1)


def test_without_runs_api_nextflow_runs_without_reports(engine, nextflow, tmp_path):
    """Nextflow stops a run whose first report fails: when runs_api does not answer through the relay, the
    run goes on without -with-tower (a warning says so) rather than not at all."""
    from arc_reactor.core.tower import run_token

    run = nextflow(NXF_DOUBLE_HOOKS="1", ARC_SERVICE_URL="http://127.0.0.1:9")  # nothing listens there
    proc = run.run(TOWER_ACCESS_TOKEN=run_token(runs_repo.signing_key(engine, "tower"), run.run_id))

    assert proc.returncode == 0, proc.stderr
    argv, _, _ = recorded(tmp_path / "record")
    assert "-with-tower" not in argv
    assert "Nextflow runs without reporting its tasks" in proc.stderr
    assert runs_repo.get_run(engine, run.run_id)["status"] == "completed"


def test_pipeline_failure_message_arrives_intact_and_runs_nothing(engine, gcs, nextflow, tmp_path):
    canary = tmp_path / "pwned"
    message = f"""it's "broken"; touch {canary} && echo $HOME `touch {canary}` $(touch {canary}) '\\n' | x"""
    run = nextflow(
        NXF_DOUBLE_HOOKS="1", NXF_DOUBLE_EXIT="1", NXF_DOUBLE_ERROR=message, NXF_DOUBLE_TASK_EXIT="137",
        NXF_DOUBLE_TASK="NFCORE_SCRNASEQ:STARSOLO (Sample_X)",
    )  # fmt: skip

    proc = run.run()

    assert proc.returncode == 1, proc.stderr  # the engine's exit code
    row = runs_repo.get_run(engine, run.run_id)
    assert (row["status"], row["error_code"], row["exit_code"]) == ("failed", "pipeline_error", 137)
    assert row["error_message"] == message
    assert row["error_task"] == "NFCORE_SCRNASEQ:STARSOLO (Sample_X)"
    assert not canary.exists()
    assert [t for t in transitions(engine, run.run_id) if t[1] == "failed"] == [("running", "failed", "hook")]
    assert names_under(gcs, run.locs.logs) >= LOGS


def test_failure_before_the_hooks_is_reported_by_the_entrypoint(engine, nextflow):
    """The engine dies without running its hooks (say, the JVM runs out of memory)."""
    run = nextflow(
        NXF_DOUBLE_EXIT="3",
        NXF_DOUBLE_TASK="",
        NXF_DOUBLE_ERROR="java.lang.OutOfMemoryError: Java heap space",
    )

    proc = run.run()

    assert proc.returncode == 3
    row = runs_repo.get_run(engine, run.run_id)
    assert (row["status"], row["error_code"], row["exit_code"]) == ("failed", "pipeline_error", 3)
    assert row["error_message"] == "nextflow exited with code 3: java.lang.OutOfMemoryError: Java heap space"


def test_recovery_resumes_the_parent_session(engine, gcs, nextflow, tmp_path):
    """A recovery resumes its parent's session (PARENT_SESSION_ID, from the parent's row) in the parent's
    work dir and cache; its own row gets that session at start. (Without PARENT_SESSION_ID it would take
    the lineage's record in CACHE_DIR: unit-tested, and read back by the retry test below.)"""
    session = str(uuid.uuid4())
    parent = nextflow()
    runs_repo.transition(engine, parent.run_id, RunStatus.FAILED, "hook", fields={"session_id": session})
    child = nextflow(parent=parent, PARENT_SESSION_ID=session, NXF_DOUBLE_DIR=str(tmp_path / "child"))

    proc = child.run(NXF_DOUBLE_EXIT="1")  # no hooks: the session in the row comes from the start

    assert proc.returncode == 1, proc.stderr
    argv, env, _ = recorded(tmp_path / "child")
    assert argv[-2:] == ["-resume", session]
    assert argv[argv.index("-work-dir") + 1] == parent.locs.work_dir
    assert env["NXF_CLOUDCACHE_PATH"] == parent.locs.cache_dir and env["NXF_IGNORE_RESUME_HISTORY"] == "true"
    row = runs_repo.get_run(engine, child.run_id)
    assert (row["status"], row["session_id"], row["parent_run_id"]) == ("failed", session, parent.run_id)


def wait_for(condition: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_retry_after_preemption_resumes_the_first_attempts_session(engine, gcs, nextflow, tmp_path):
    """Attempt 0 is stopped by SIGTERM (a spot preemption: Batch stops the container) while Nextflow runs;
    the hooks stand down and the run stays running. Attempt 1 (BATCH_TASK_RETRY_ATTEMPT=1) resumes the
    session attempt 0 started, which the entrypoint recorded as soon as Nextflow logged it."""
    session = str(uuid.uuid4())
    run = nextflow(NXF_DOUBLE_HOOKS="1", NXF_DOUBLE_SESSION=session, NXF_DOUBLE_DIR=str(tmp_path / "a0"))

    first = run.start(NXF_DOUBLE_WAIT="1")
    try:
        wait_for(lambda: session_record(gcs, run))
    finally:
        first.send_signal(signal.SIGTERM)  # to the entrypoint only, as Docker stops PID 1
        _, stderr = first.communicate(timeout=60)

    assert first.returncode == 143, stderr
    assert (tmp_path / "a0" / "terminated").read_text() == "SIGTERM"  # forwarded to the engine
    assert "leaving the status to Batch reconciliation" in stderr
    assert runs_repo.get_run(engine, run.run_id)["status"] == "running"  # no hook, no report: Batch decides
    assert "nextflow.log" in names_under(gcs, run.locs.logs)  # logs still uploaded

    second = run.run(BATCH_TASK_RETRY_ATTEMPT="1", NXF_DOUBLE_DIR=str(tmp_path / "a1"))

    assert second.returncode == 0, second.stderr
    argv, env, _ = recorded(tmp_path / "a1")
    assert argv[-2:] == ["-resume", session] and env["NXF_IGNORE_RESUME_HISTORY"] == "true"
    row = runs_repo.get_run(engine, run.run_id)
    assert (row["status"], row["session_id"]) == ("completed", session)


# --- log upload faults --------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    block_on_close = False  # a handler thread ends with its client's connection: do not wait for it


class FaultyStorage:
    """A loopback HTTP proxy in front of the storage emulator that answers chosen upload requests with an
    HTTP error instead of forwarding them: the orchestrator's real storage client sees real failures."""

    HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "host"})

    def __init__(self, upstream: str, fault: Callable[[str, bytes], int | None]) -> None:
        self.upstream = urlsplit(upstream)
        self.fault = fault
        self.server = _Server(("127.0.0.1", 0), self._handler())
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = proxy.fault(self.command, body)
                if status:
                    data = json.dumps({"error": {"code": status, "message": "injected by the test"}}).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                else:
                    conn = http.client.HTTPConnection(
                        proxy.upstream.hostname, proxy.upstream.port, timeout=30
                    )
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in proxy.HOP}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    conn.close()
                    self.send_response(resp.status)
                    for key, value in resp.getheaders():
                        if key.lower() not in proxy.HOP:
                            self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = forward

        return Handler

    def __enter__(self) -> FaultyStorage:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def faulty_storage(
    storage_emulator,
) -> Iterator[Callable[[Callable[[str, bytes], int | None]], FaultyStorage]]:
    proxies: list[FaultyStorage] = []

    def make(fault: Callable[[str, bytes], int | None]) -> FaultyStorage:
        proxies.append(FaultyStorage(storage_emulator.endpoint, fault).__enter__())
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.__exit__()


def test_log_upload_that_fails_twice_then_succeeds(engine, gcs, nextflow, faulty_storage):
    """Two 503s for logs/nextflow.log, then the upload goes through. The storage client's own retry is off
    for orchestrator transfers (retry=None), so the orchestrator's one bounded policy retries them."""
    attempts: list[int] = []

    def fault(method: str, body: bytes) -> int | None:
        if method == "POST" and b"/logs/nextflow.log" in body:
            attempts.append(1)
            return 503 if len(attempts) <= 2 else None
        return None

    proxy = faulty_storage(fault)
    run = nextflow(NXF_DOUBLE_HOOKS="1", STORAGE_EMULATOR_HOST=proxy.endpoint)

    proc = run.run()

    assert proc.returncode == 0, proc.stderr
    assert len(attempts) == 3
    assert names_under(gcs, run.locs.logs) >= LOGS
    assert "could not upload" not in proc.stderr
    assert runs_repo.get_run(engine, run.run_id)["status"] == "completed"


def test_log_upload_that_always_fails_is_a_warning(engine, gcs, nextflow, faulty_storage):
    """Every upload to logs/ is refused (403: the service account may not write there, say): each is a
    warning; the run still completes and the exit code is still the engine's."""
    proxy = faulty_storage(lambda method, body: 403 if method == "POST" and b"/logs/" in body else None)
    run = nextflow(NXF_DOUBLE_HOOKS="1", STORAGE_EMULATOR_HOST=proxy.endpoint)

    proc = run.run()

    assert proc.returncode == 0, proc.stderr
    assert names_under(gcs, run.locs.logs) == set()
    warnings = [json.loads(line) for line in proc.stderr.splitlines() if '"could not upload' in line]
    assert {w["severity"] for w in warnings} == {"WARNING"} and len(warnings) == len(LOGS)
    assert runs_repo.get_run(engine, run.run_id)["status"] == "completed"
