"""The orchestrator for real: orchestrator/entrypoint.sh runs as a process, as in the Batch job, against the
storage emulator and embedded PostgreSQL, and Snakemake runs the demo pipeline on the demo FASTQ files.
update_status.py is run as a process too, with the exit codes it documents."""

from __future__ import annotations

import csv
import gzip
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from arc_reactor.adapters import runs_repo
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
    }


def new_run(
    engine,
    status: RunStatus = RunStatus.SUBMITTED,
    pipeline: str = "arc/fastq-stats",
    engine_name: str = "snakemake",
) -> tuple[str, RunLocations]:
    """A run row, moved to `status`."""
    run_id = new_run_id()
    locs = run_locations(RUNS_BUCKET, run_id)
    revision = "1.0.0" if engine_name == "snakemake" else "4.0.0"
    runs_repo.insert_run(
        engine,
        {
            "id": run_id, "pipeline": pipeline, "revision": revision, "engine": engine_name,
            "lineage_id": run_id, "work_dir": locs.work_dir, "cache_dir": locs.cache_dir,
            "inputs_uri": locs.inputs, "results_uri": locs.results, "logs_uri": locs.logs,
            "submitter": "demo@example.org",
        },
    )  # fmt: skip
    if status != RunStatus.PENDING:
        runs_repo.transition(engine, run_id, status, "submit")
    return run_id, locs


@pytest.fixture
def launch(engine, gcs, storage_emulator, database_url, tmp_path):
    """launch(pipeline, engine, **env): a submitted run with the demo bundle's inputs in the runs bucket, and
    a function that runs the real entrypoint for it with the local stack's environment."""
    storage_emulator.create_bucket(DEMO_BUCKET)

    def make(pipeline: str = "arc/fastq-stats", engine_name: str = "snakemake", **extra: str):
        run_id, locs = new_run(engine, pipeline=pipeline, engine_name=engine_name)
        gcs.upload_file(BUNDLE / "samplesheet.csv", locs.inputs + "samplesheet.csv")
        params = yaml.safe_load((BUNDLE / "params.yaml").read_text())
        params.update(input=locs.inputs + "samplesheet.csv", outdir=locs.results)
        gcs.write_bytes(RUNS_BUCKET, f"runs/{run_id}/inputs/params.yaml", yaml.safe_dump(params).encode())
        env = base_env(database_url, storage_emulator.endpoint, tmp_path)
        version = "1.0.0" if engine_name == "snakemake" else "4.0.0"
        env.update(
            RUN_ID=run_id, PIPELINE=pipeline, PIPELINE_VERSION=version, ENGINE=engine_name,
            CONFIG_GCS_PATH="", PARAMS_GCS_PATH=locs.inputs + "params.yaml", WORK_DIR=locs.work_dir,
            IS_RECOVERY="false", CACHE_DIR=locs.cache_dir, LOGS_DIR=locs.logs, RESULTS_DIR=locs.results,
            BATCH_TASK_RETRY_ATTEMPT="0",
        )  # fmt: skip
        env.update(extra)

        def run_entrypoint(**override: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["bash", str(ENTRYPOINT)], env={**env, **override}, capture_output=True, text=True,
                timeout=120, check=False,
            )  # fmt: skip

        return run_id, locs, run_entrypoint

    return make


@pytest.fixture
def demo(launch):
    """The demo run (Snakemake): (run id, locations, run the entrypoint)."""
    return launch()


def upload_fastqs(gcs, names: list[str]) -> None:
    for name in names:
        gcs.upload_file(DATA / name, f"gs://{DEMO_BUCKET}/fastq/{name}")


def names_under(gcs, uri: str) -> set[str]:
    prefix = uri.split("/", 3)[3]
    return {n[len(prefix) :] for n in gcs.list_names(RUNS_BUCKET, prefix)}


def transitions(engine, run_id: str) -> list[tuple[str | None, str, str]]:
    return [
        (e["from_status"], e["to_status"], e["source"])
        for e in runs_repo.list_events(engine, run_id)
        if e["kind"] == "transition"
    ]


def test_demo_pipeline_runs_and_completes(engine, gcs, demo, tmp_path):
    run_id, locs, run_entrypoint = demo
    upload_fastqs(gcs, FASTQS)

    proc = run_entrypoint()

    assert proc.returncode == 0, proc.stderr
    run = runs_repo.get_run(engine, run_id)
    assert run["status"] == "completed"
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

    for line in filter(None, proc.stderr.splitlines()):  # every log line is structured, with the run id
        entry = json.loads(line)
        assert entry["severity"] and entry["message"] and entry["run_id"] == run_id
    assert not list((tmp_path / "tmp").iterdir())  # the local work dir is cleaned up


def test_missing_sample_file_fails_the_run_naming_it(engine, gcs, demo):
    run_id, locs, run_entrypoint = demo
    upload_fastqs(gcs, [n for n in FASTQS if n != "sample2_R2.fastq.gz"])

    proc = run_entrypoint()

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
    run_id, locs, run_entrypoint = demo
    upload_fastqs(gcs, [n for n in FASTQS if n != "sample3_R1.fastq.gz"])
    broken = gzip.compress(b"@r1\nACGT\n+\nII\n")  # 4 bases, 2 qualities
    gcs.write_bytes(DEMO_BUCKET, "fastq/sample3_R1.fastq.gz", broken, content_type="application/gzip")

    proc = run_entrypoint()

    assert proc.returncode == 1
    run = runs_repo.get_run(engine, run_id)
    assert run["status"] == "failed"
    assert run["error_code"] == "pipeline_error" and run["error_task"] == "stats" and run["exit_code"] == 1
    assert run["error_message"].startswith("snakemake exited with code 1: ValueError: ")
    assert "sample3_R1.fastq.gz: malformed FASTQ record ending at line 4" in run["error_message"]
    assert {"snakemake.log", "console.log"} <= names_under(gcs, locs.logs)


NEXTFLOW_DOUBLE = """#!/usr/bin/env python3
# A Nextflow CLI double: records its argv, environment and our rendered config, writes the files Nextflow
# would (.nextflow.log in the launch dir, trace/timeline/report where -with-* say), exits NXF_DOUBLE_EXIT.
import json, os, shutil, sys
from pathlib import Path
out, argv = Path(os.environ["NXF_DOUBLE_DIR"]), sys.argv[1:]
(out / "argv.json").write_text(json.dumps(argv))
(out / "env.json").write_text(json.dumps(dict(os.environ)))
shutil.copy(argv[argv.index("-c") + 1], out / "arc.config")
Path(".nextflow.log").write_text("Nov-22 10:00:00.000 [main] DEBUG nextflow.cli.Launcher\\n")
for flag in ("-with-trace", "-with-timeline", "-with-report"):
    Path(argv[argv.index(flag) + 1]).write_text(flag)
code = int(os.environ.get("NXF_DOUBLE_EXIT", "0"))
if code:
    print("ERROR ~ Error executing process > 'NFCORE_SCRNASEQ:STARSOLO (Sample_X)'")
    print("")
    print("Caused by:")
    print("  Process `NFCORE_SCRNASEQ:STARSOLO (Sample_X)` terminated with an error exit status (137)")
sys.exit(code)
"""


@pytest.mark.parametrize("exit_code", [0, 1])
def test_nextflow_run_through_a_cli_double(engine, gcs, launch, tmp_path, exit_code):
    """Nextflow cannot be installed here, so a CLI double on PATH stands in for it (NEXTFLOW_DOUBLE); the
    entrypoint, the rendered config, resume, log upload and status reporting are the real ones."""
    bin_dir, record = tmp_path / "bin", tmp_path / "record"
    bin_dir.mkdir()
    record.mkdir()
    (bin_dir / "nextflow").write_text(NEXTFLOW_DOUBLE)
    (bin_dir / "nextflow").chmod(0o755)
    run_id, locs, run_entrypoint = launch(
        "nf-core/scrnaseq", "nextflow", IS_RECOVERY="true", PARENT_SESSION_ID="5a1e-55",
        NXF_DOUBLE_DIR=str(record), NXF_DOUBLE_EXIT=str(exit_code),
    )  # fmt: skip
    env_path = f"{bin_dir}:{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"

    proc = run_entrypoint(PATH=env_path)

    assert proc.returncode == exit_code, proc.stderr
    argv = json.loads((record / "argv.json").read_text())
    assert argv[:3] == ["run", "nf-core/scrnaseq", "-r"] and argv[3] == "4.0.0"
    assert argv[argv.index("-work-dir") + 1] == locs.work_dir
    assert argv[-2:] == ["-resume", "5a1e-55"]
    assert json.loads((record / "env.json").read_text())["NXF_CLOUDCACHE_PATH"] == locs.cache_dir
    config = (record / "arc.config").read_text()
    assert f"params.run_id = '{run_id}'" in config and "{{" not in config
    assert f"'{UPDATE_STATUS}'" in config

    assert {"nextflow.log", "trace.txt", "timeline.html", "report.html", "console.log"} <= names_under(
        gcs, locs.logs
    )
    run = runs_repo.get_run(engine, run_id)
    if exit_code == 0:
        assert run["status"] == "completed"
    else:
        assert run["status"] == "failed" and run["exit_code"] == 1 and run["error_code"] == "pipeline_error"
        assert run["error_task"] == "NFCORE_SCRNASEQ:STARSOLO (Sample_X)"
        assert run["error_message"].endswith("terminated with an error exit status (137)")


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
