"""The orchestrator for real: orchestrator/entrypoint.sh runs as a process, as in the Batch job, against the
storage emulator and embedded PostgreSQL, and Snakemake runs the demo pipeline on the demo FASTQ files:
success, failures, and a recovery that re-runs only what failed. update_status.py is run as a process too,
with the exit codes it documents. (Nextflow, through a CLI double: test_orchestrator_nextflow.py.)"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from arc_reactor.adapters import runs_repo
from arc_reactor.adapters.tasks_repo import list_tasks
from arc_reactor.core.diagnosis import diagnose
from arc_reactor.core.ids import new_run_id
from arc_reactor.core.layout import RunLocations, run_locations
from arc_reactor.core.status import RunStatus

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "orchestrator" / "entrypoint.sh"
UPDATE_STATUS = ROOT / "orchestrator" / "update_status.py"
DATA = ROOT / "examples" / "data"
BUNDLE = ROOT / "examples" / "demo-bundle"
RUNS_BUCKET = "arc-runs"
DEMO_BUCKET = "arc-demo-data"
FASTQS = sorted(p.name for p in DATA.glob("*.fastq.gz"))


def base_env(database_url: str, emulator_endpoint: str, tmp_path: Path) -> dict[str, str]:
    """The local stack's contract for the orchestrator process (nothing inherited from the test process)."""
    (tmp_path / "home").mkdir(exist_ok=True)
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "TMPDIR": str(tmp_path / "tmp"),
        "PYTHONPATH": str(ROOT / "functions"),
        "DATABASE_URL": database_url,
        "STORAGE_EMULATOR_HOST": emulator_endpoint,
        "ARC_LOCAL": "true",
        "NO_GCE_CHECK": "true",
        "ARC_RUNS_BUCKET": RUNS_BUCKET,
        "ARC_PIPELINES_ROOT": str(ROOT),
        "ARC_PROJECT": "arc-test",
        "GOOGLE_CLOUD_PROJECT": "arc-test",
        # No Batch service here: Snakemake runs its jobs in this process (on Batch: test_snakemake_on_batch)
        "ARC_SNAKEMAKE_EXECUTOR": "local",
    }


def new_run(
    engine,
    status: RunStatus = RunStatus.SUBMITTED,
    pipeline: str = "arc/fastq-stats",
    engine_name: str = "snakemake",
    parent: tuple[str, RunLocations] | None = None,
) -> tuple[str, RunLocations]:
    """A run row, moved to `status`; a recovery of `parent` shares its lineage, work dir and cache."""
    run_id = new_run_id()
    lineage = runs_repo.get_run(engine, parent[0])["lineage_id"] if parent else run_id
    locs = run_locations(RUNS_BUCKET, run_id, lineage)
    revision = "1.0.0" if engine_name == "snakemake" else "4.0.0"
    runs_repo.insert_run(
        engine,
        {
            "id": run_id, "pipeline": pipeline, "revision": revision, "engine": engine_name,
            "lineage_id": lineage, "work_dir": locs.work_dir, "cache_dir": locs.cache_dir,
            "inputs_uri": locs.inputs, "results_uri": locs.results, "logs_uri": locs.logs,
            "submitter": "demo@example.org", "parent_run_id": parent[0] if parent else None,
            "is_recovery": 1 if parent else 0,
        },
    )  # fmt: skip
    if status != RunStatus.PENDING:
        runs_repo.transition(engine, run_id, status, "submit")
    return run_id, locs


@dataclass
class Launch:
    """One run's inputs in the runs bucket and the environment its Batch job would give the entrypoint."""

    run_id: str
    locs: RunLocations
    env: dict[str, str]

    def run(self, timeout: float = 120, **override: str) -> subprocess.CompletedProcess[str]:
        """Run the real entrypoint to the end."""
        return subprocess.run(
            ["bash", str(ENTRYPOINT)], env={**self.env, **override}, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip

    def start(self, **override: str) -> subprocess.Popen[str]:
        """Start the real entrypoint, as Batch starts the container (signals then reach it alone)."""
        return subprocess.Popen(
            ["bash", str(ENTRYPOINT)], env={**self.env, **override}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip


def launcher(engine, gcs, storage_emulator, database_url, tmp_path: Path) -> Callable[..., Launch]:
    """launch(pipeline, engine, params=..., parent=..., **env): a submitted run (a recovery of `parent`)
    with the demo bundle's inputs and `params` in the runs bucket, ready to run the real entrypoint."""
    storage_emulator.create_bucket(DEMO_BUCKET)

    def make(
        pipeline: str = "arc/fastq-stats",
        engine_name: str = "snakemake",
        params: dict | None = None,
        parent: Launch | None = None,
        **extra: str,
    ) -> Launch:
        run_id, locs = new_run(
            engine, pipeline=pipeline, engine_name=engine_name,
            parent=(parent.run_id, parent.locs) if parent else None,
        )  # fmt: skip
        gcs.upload_file(BUNDLE / "samplesheet.csv", locs.inputs + "samplesheet.csv")
        values = yaml.safe_load((BUNDLE / "params.yaml").read_text()) if params is None else dict(params)
        values.update(input=locs.inputs + "samplesheet.csv", outdir=locs.results)
        gcs.write_bytes(RUNS_BUCKET, f"runs/{run_id}/inputs/params.yaml", yaml.safe_dump(values).encode())
        env = base_env(database_url, storage_emulator.endpoint, tmp_path)
        version = "1.0.0" if engine_name == "snakemake" else "4.0.0"
        env.update(
            RUN_ID=run_id, PIPELINE=pipeline, PIPELINE_VERSION=version, ENGINE=engine_name,
            CONFIG_GCS_PATH="", PARAMS_GCS_PATH=locs.inputs + "params.yaml", WORK_DIR=locs.work_dir,
            IS_RECOVERY="true" if parent else "false", CACHE_DIR=locs.cache_dir, LOGS_DIR=locs.logs,
            RESULTS_DIR=locs.results, BATCH_TASK_RETRY_ATTEMPT="0",
            ARC_RUN_LABELS=json.dumps({"app": "arc-reactor", "run-id": run_id, "pipeline": "x"}),
        )  # fmt: skip
        env.update(extra)
        return Launch(run_id, locs, env)

    return make


@pytest.fixture
def launch(engine, gcs, storage_emulator, database_url, tmp_path):
    """See `launcher`."""
    return launcher(engine, gcs, storage_emulator, database_url, tmp_path)


@pytest.fixture
def demo(launch):
    """The demo run (Snakemake)."""
    return launch()


def upload_fastqs(gcs, names: list[str]) -> None:
    for name in names:
        gcs.upload_file(DATA / name, f"gs://{DEMO_BUCKET}/fastq/{name}")


def names_under(gcs, uri: str) -> set[str]:
    prefix = uri.split("/", 3)[3]
    return {n[len(prefix) :] for n in gcs.list_names(RUNS_BUCKET, prefix)}


def read_text(gcs, uri: str) -> str:
    data = gcs.read_bytes(RUNS_BUCKET, uri.split("/", 3)[3])
    assert data is not None, f"{uri} does not exist"
    return data.decode()


def transitions(engine, run_id: str) -> list[tuple[str | None, str, str]]:
    return [
        (e["from_status"], e["to_status"], e["source"])
        for e in runs_repo.list_events(engine, run_id)
        if e["kind"] == "transition"
    ]


def test_demo_pipeline_runs_and_completes(engine, gcs, demo, tmp_path):
    run_id, locs = demo.run_id, demo.locs
    upload_fastqs(gcs, FASTQS)

    proc = demo.run()

    assert proc.returncode == 0, proc.stderr
    run = runs_repo.get_run(engine, run_id)
    assert run["status"] == "completed", (run["error_message"], proc.stderr[-3000:])
    assert run["started_at"] is not None and run["completed_at"] is not None
    assert run["error_message"] is None and run["exit_code"] is None
    assert transitions(engine, run_id)[-2:] == [
        ("submitted", "running", "hook"),
        ("running", "completed", "hook"),
    ]

    results = names_under(gcs, locs.results)
    assert results == {"summary.tsv", "stats/sample1.json", "stats/sample2.json", "stats/sample3.json"}
    bucket_prefix = f"runs/{run_id}/results/"
    for sample in ("sample1", "sample2", "sample3"):
        stats = json.loads(gcs.read_bytes(RUNS_BUCKET, f"{bucket_prefix}stats/{sample}.json"))
        assert stats["read_pairs"] == 2000 and stats["reads"] == 4000 and stats["bases"] == 400_000
        assert stats["files"]["fastq_1"]["reads"] == stats["files"]["fastq_2"]["reads"] == 2000
    summary = list(
        csv.DictReader(
            io.StringIO(gcs.read_bytes(RUNS_BUCKET, bucket_prefix + "summary.tsv").decode()), delimiter="\t"
        )
    )
    assert [(r["sample"], r["reads"], r["read_pairs"]) for r in summary] == [
        ("sample1", "4000", "2000"), ("sample2", "4000", "2000"), ("sample3", "4000", "2000"),
    ]  # fmt: skip
    gc = [float(r["gc_percent"]) for r in summary]
    assert gc == sorted(gc) and 38 < gc[0] < 42 and 58 < gc[2] < 62  # the generator's 40/50/60 % GC

    assert {"snakemake.log", "trace.txt", "console.log"} <= names_under(gcs, locs.logs)
    trace = gcs.read_bytes(RUNS_BUCKET, f"runs/{run_id}/logs/trace.txt").decode()
    assert trace.count("\tstats\tCOMPLETED\t") == 3 and "\tsummary\tCOMPLETED\t" in trace

    # The task ledger, filled by Snakemake itself through `--logger arc` (snakemake_logger_plugin_arc).
    tasks = list_tasks(engine, run_id, limit=50)
    assert sorted((t["process"], t["status"]) for t in tasks) == [
        ("all", "succeeded"), ("stats", "succeeded"), ("stats", "succeeded"), ("stats", "succeeded"),
        ("summary", "succeeded"),
    ]  # fmt: skip
    assert sorted(t["tag"] for t in tasks if t["process"] == "stats") == [
        f"sample=sample{i}" for i in (1, 2, 3)
    ]
    assert all(t["started_at"] and t["completed_at"] >= t["started_at"] for t in tasks)
    progress = runs_repo.get_run(engine, run_id).progress
    assert (progress["source"], progress["succeeded"], progress["total"]) == ("snakemake", 5, 5)  # with `all`
    by_rule = {p["name"]: (p["done"], p["total"], p["cached"]) for p in progress["processes"]}
    assert by_rule == {"stats": (3, 3, 0), "summary": (1, 1, 0), "all": (1, 1, 0)}

    for line in filter(None, proc.stderr.splitlines()):  # every log line is structured, with the run id
        entry = json.loads(line)
        assert entry["severity"] and entry["message"] and entry["run_id"] == run_id
    assert not list((tmp_path / "tmp").iterdir())  # the local work dir is cleaned up


def test_a_run_cancelled_before_its_job_starts_does_not_run(engine, gcs, demo):
    """Cancel won the race with job creation: the entrypoint sees the refusal and never starts the engine."""
    upload_fastqs(gcs, FASTQS)
    runs_repo.transition(engine, demo.run_id, RunStatus.CANCELLED, "api")

    proc = demo.run()

    assert proc.returncode == 0, proc.stderr
    assert "not starting the engine" in proc.stderr
    assert runs_repo.get_run(engine, demo.run_id)["status"] == "cancelled"
    assert names_under(gcs, demo.locs.results) == set()
    assert transitions(engine, demo.run_id)[-1] == ("submitted", "cancelled", "api")


def test_missing_sample_file_fails_the_run_naming_it(engine, gcs, demo):
    run_id, locs = demo.run_id, demo.locs
    upload_fastqs(gcs, [n for n in FASTQS if n != "sample2_R2.fastq.gz"])

    proc = demo.run()

    assert proc.returncode != 0
    run = runs_repo.get_run(engine, run_id)
    assert run["status"] == "failed"
    assert run["error_code"] == "input_missing"
    assert f"gs://{DEMO_BUCKET}/fastq/sample2_R2.fastq.gz" in run["error_message"]
    assert "line 3, fastq_2" in run["error_message"]
    assert run["exit_code"] == proc.returncode
    assert ("submitted", "failed", "hook") in transitions(engine, run_id)
    assert names_under(gcs, locs.results) == set()


def test_pipeline_error_fails_the_run_with_the_engine_message(engine, gcs, demo):
    run_id, locs = demo.run_id, demo.locs
    upload_fastqs(gcs, [n for n in FASTQS if n != "sample3_R1.fastq.gz"])
    broken = gzip.compress(b"@r1\nACGT\n+\nII\n")  # 4 bases, 2 qualities
    gcs.write_bytes(DEMO_BUCKET, "fastq/sample3_R1.fastq.gz", broken, content_type="application/gzip")

    proc = demo.run()

    assert proc.returncode == 1
    run = runs_repo.get_run(engine, run_id)
    assert run["status"] == "failed"
    assert run["error_code"] == "pipeline_error" and run["error_task"] == "stats" and run["exit_code"] == 1
    assert run["error_message"].startswith("snakemake exited with code 1: ValueError: ")
    assert "sample3_R1.fastq.gz: malformed FASTQ record ending at line 4" in run["error_message"]
    assert {"snakemake.log", "console.log"} <= names_under(gcs, locs.logs)
    failed = [t for t in list_tasks(engine, run_id, limit=50) if t["status"] == "failed"]
    assert [(t["process"], t["tag"]) for t in failed] == [("stats", "sample=sample3")]  # the failing rule
    # ... with its own log's tail (the rule's `log:` file), which the diagnosis shows with a hint.
    assert "malformed FASTQ record ending at line 4" in failed[0]["error_tail"]
    assert "Traceback" in failed[0]["error_tail"]  # the job's stderr, not Snakemake's summary of it
    why = diagnose(vars(run), failed)["first_failed_task"]
    assert (why["process"], why["infrastructure"], why["error_tail"]) == (
        "stats",
        None,
        failed[0]["error_tail"],
    )
    assert "rules/stats/sample3.log" in names_under(gcs, locs.logs)  # every rule's log, with the run's logs


# --- Snakemake: retry and recovery resume in the same work dir ---------------------------------------------

RULE_RUN = re.compile(r"^(?:local)?rule (\w+):$", re.MULTILINE)
SAMPLE_RUN = re.compile(r"^\s+wildcards: sample=(\w+)$", re.MULTILINE)


def trace_rows(text: str) -> dict[str, dict[str, str]]:
    """Our Snakemake trace.txt by output path."""
    return {row["output"]: row for row in csv.DictReader(io.StringIO(text), delimiter="\t")}


def test_recovery_reruns_only_what_failed(engine, gcs, launch):
    """Run 1 fails on one sample (fail_samples); run 2, a recovery in the same WORK_DIR, restores the
    working directory (outputs and .snakemake metadata) and re-runs only that sample and the summary; a
    retried task in the same lineage then finds nothing left to do, and a retry of a finished run does
    nothing at all."""
    upload_fastqs(gcs, FASTQS)
    first = launch(params={"min_quality": 20, "fail_samples": ["sample2"]})

    failed = first.run()

    assert failed.returncode == 1, failed.stderr
    run = runs_repo.get_run(engine, first.run_id)
    assert (run["status"], run["error_task"], run["exit_code"]) == ("failed", "stats", 1)
    assert "sample sample2: failing on purpose" in run["error_message"]
    saved = json.loads(read_text(gcs, first.locs.work_dir + "arc-workdir.json"))["files"]
    assert {"results/stats/sample1.json", "results/stats/sample3.json"} <= set(saved)  # --keep-going
    assert not {"results/stats/sample2.json", "results/summary.tsv"} & set(saved)
    assert any(name.startswith(".snakemake/metadata/") for name in saved)
    assert not any(name.startswith(("inputs/", ".snakemake/log/")) for name in saved)
    first_trace = trace_rows(read_text(gcs, first.locs.logs + "trace.txt"))

    second = launch(params={"min_quality": 20}, parent=first)
    assert second.locs.work_dir == first.locs.work_dir and second.locs.cache_dir == first.locs.cache_dir

    recovered = second.run()

    assert recovered.returncode == 0, recovered.stderr
    assert runs_repo.get_run(engine, second.run_id)["status"] == "completed"
    log = read_text(gcs, second.locs.logs + "snakemake.log")
    assert sorted(RULE_RUN.findall(log)) == ["all", "stats", "summary"]  # one stats job: sample2's
    assert SAMPLE_RUN.findall(log) == ["sample2"]
    trace = trace_rows(read_text(gcs, second.locs.logs + "trace.txt"))
    for sample in ("sample1", "sample3"):  # not re-run: run 1's outputs and timings, restored
        output = f"results/stats/{sample}.json"
        assert trace[output]["start"] == first_trace[output]["start"] != ""
        assert read_text(gcs, f"{second.locs.results}stats/{sample}.json") == read_text(
            gcs, f"{first.locs.results}stats/{sample}.json"
        )
    assert trace["results/stats/sample2.json"]["start"] > first_trace["results/stats/sample1.json"]["start"]
    summary = read_text(gcs, second.locs.results + "summary.tsv").splitlines()
    assert [line.split("\t")[0] for line in summary] == ["sample", "sample1", "sample2", "sample3"]
    # The jobs it skipped are counted as cached (from a dry run of the whole DAG): 2 of the 3 stats jobs.
    progress = runs_repo.get_run(engine, second.run_id).progress
    by_rule = {p["name"]: (p["succeeded"], p["cached"], p["total"]) for p in progress["processes"]}
    assert by_rule == {"stats": (1, 2, 3), "summary": (1, 0, 1), "all": (1, 0, 1)}
    assert (progress["done"], progress["total"], progress["cached"], progress["failed"]) == (5, 5, 2, 0)
    assert len(list_tasks(engine, second.run_id, limit=50)) == 3  # the ledger: only what it ran

    # A Batch retry of a task in this lineage (say, preempted while uploading) restores the same work dir
    # and finds nothing left to do.
    third = launch(params={"min_quality": 20}, parent=first)
    again = third.run(BATCH_TASK_RETRY_ATTEMPT="1")
    assert again.returncode == 0, again.stderr
    assert "Nothing to be done" in again.stdout
    assert runs_repo.get_run(engine, third.run_id)["status"] == "completed"
    progress = runs_repo.get_run(engine, third.run_id).progress
    assert (progress["done"], progress["cached"], progress["total"]) == (5, 5, 5)  # all of it reused

    # A retry of run 2's task after its hooks already marked it completed does not start the engine at all.
    late = second.run(BATCH_TASK_RETRY_ATTEMPT="1")
    assert late.returncode == 0, late.stderr
    assert "not starting the engine" in late.stderr
    assert runs_repo.get_run(engine, second.run_id)["status"] == "completed"


# --- update_status.py as a process ----------------------------------------------------------------------


@pytest.fixture
def update_status(database_url, tmp_path):
    env = base_env(database_url, "http://127.0.0.1:9", tmp_path)

    def call(*args: str, pythonpath: bool = True) -> subprocess.CompletedProcess[str]:
        run_env = env if pythonpath else {k: v for k, v in env.items() if k != "PYTHONPATH"}
        return subprocess.run(
            [sys.executable, str(UPDATE_STATUS), *args], env=run_env, capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip

    return call


def test_update_status_exit_codes(engine, update_status):
    run_id, _ = new_run(engine)

    applied = update_status(run_id, "running", "--started_at", "2026-01-02T03:04:05Z", pythonpath=False)
    assert applied.returncode == 0, applied.stderr
    run = runs_repo.get_run(engine, run_id)
    assert run["status"] == "running" and run["started_at"].isoformat() == "2026-01-02T03:04:05+00:00"

    assert update_status(run_id, "running").returncode == 0  # duplicate: harmless no-op
    assert [t for t in transitions(engine, run_id) if t[1] == "running"] == [("submitted", "running", "hook")]

    message = """it's "broken"; rm -rf / && echo $HOME `id`"""
    failed = update_status(
        run_id, "failed", "--exit_code", "3", "--error_code", "pipeline_error", "--error_message", message,
        "--error_task", "STATS (s1)", "--metrics", '{"succeeded": 2, "failed": 1}', "--session_id", "5a1e-55",
    )  # fmt: skip
    assert failed.returncode == 0, failed.stderr
    run = runs_repo.get_run(engine, run_id)
    assert (run["status"], run["error_message"], run["error_task"], run["exit_code"]) == (
        "failed", message, "STATS (s1)", 3,
    )  # fmt: skip
    assert run["metrics"] == {"succeeded": 2, "failed": 1} and run["session_id"] == "5a1e-55"

    refused = update_status(run_id, "completed")  # a terminal run stays as it is
    assert refused.returncode == 3
    assert "refused" in refused.stderr
    assert runs_repo.get_run(engine, run_id)["status"] == "failed"
    assert any(e["kind"] == "conflict" for e in runs_repo.list_events(engine, run_id))
    assert update_status(run_id, "running").returncode == 3

    assert update_status("r0000000000doesnotexist", "running").returncode == 4
    assert update_status(run_id, "finished").returncode == 2
    assert update_status(run_id, "failed", "--failed_at", "yesterday").returncode == 2
    assert update_status(run_id, "failed", "--metrics", "[1]").returncode == 2


def test_update_status_database_unreachable_is_exit_5():
    from sqlalchemy import create_engine

    sys.path.insert(0, str(UPDATE_STATUS.parent))
    try:
        import update_status
    finally:
        sys.path.remove(str(UPDATE_STATUS.parent))
    unreachable = create_engine("postgresql+pg8000://postgres@127.0.0.1:9/postgres", pool_pre_ping=False)
    sleeps: list[float] = []
    code = update_status.main(["r0abc", "running"], engine=unreachable, attempts=3, sleep=sleeps.append)
    assert code == 5
    assert len(sleeps) == 2  # bounded: 3 attempts, 2 waits


def test_engine_text_cannot_forge_or_break_the_outcome_arguments(engine, update_status):
    """A log line carrying NULs and option-like text, through the outcome step's arguments (NUL-terminated,
    as entrypoint.sh reads them with mapfile -d '') and the real update_status.py."""
    from arc_reactor.core.run_outcome import Failure, outcome_args

    run_id, _ = new_run(engine)
    message = "--help\x00--exit_code\x00 0\x00--error_code\x00forged"
    wire = b"".join(
        a.encode() + b"\0"
        for a in outcome_args(7, Failure("pipeline_error", message, "--x"), "2026-01-01T00:00:00+00:00")
    )
    argv = wire.split(b"\0")[:-1]  # what mapfile -d '' gives the script
    done = update_status(run_id, *[a.decode() for a in argv])
    assert done.returncode == 0, done.stderr
    run = runs_repo.get_run(engine, run_id)
    assert (run["status"], run["exit_code"], run["error_code"]) == ("failed", 7, "pipeline_error")
    assert run["error_message"] == "--help--exit_code 0--error_codeforged"
    assert run["error_task"] == "--x"


def test_logs_that_could_not_be_uploaded_are_recorded_on_the_run(engine, gcs, demo):
    """The run still completes (its results are there), but it says which logs are missing, and why."""
    upload_fastqs(gcs, FASTQS)
    proc = demo.run(LOGS_DIR="gs://arc-no-such-bucket/logs/")
    assert proc.returncode == 0, proc.stderr
    run = runs_repo.get_run(engine, demo.run_id)
    assert run.status == "completed" and run.upload_failures >= 2
    (note,) = [
        e for e in runs_repo.list_events(engine, demo.run_id) if e["detail"].get("reason") == "upload_failed"
    ]
    assert {"console.log", "snakemake.log"} <= {f.rsplit("/", 1)[-1] for f in note["detail"]["files"]}
    assert note["detail"]["count"] == run.upload_failures
