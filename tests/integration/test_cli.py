"""The `arc` CLI against the runs_api function served over loopback HTTP (real PostgreSQL, storage emulator,
local Batch service): submit (through the API and through the inbox), runs list/show/watch/cancel/recover/
logs, and what it prints."""

import json
import re
import tarfile
import threading
import time

import pytest
from flow import DEMO_BUNDLE, binary_event, function_client, upload_demo_data
from test_runs_api import transition

from arc_reactor.cli.main import main

pytestmark = pytest.mark.integration


@pytest.fixture
def api_url(app_env, gcs, tmp_path, monkeypatch):
    from arc_reactor.api import sse
    from arc_reactor.local.functions_host import serve_function, stop_function
    from arc_reactor.settings import get_settings
    from arc_reactor.wiring import reset_deps

    monkeypatch.setenv("ARC_PGSERVER_DIR", str(tmp_path / "state" / "pgdata"))
    monkeypatch.delenv("ARC_API_URL", raising=False)
    monkeypatch.setattr(sse, "POLL_INTERVAL_S", 0.1)
    get_settings.cache_clear()
    reset_deps()
    upload_demo_data(gcs)
    fn = serve_function("runs_api", "http")
    yield fn.url.rstrip("/")
    stop_function(fn)


def arc(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _submitted_id(out):
    return out.split()[1]


def test_submit_list_show(api_url, capsys, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("min_quality: 20\nmin_qualty: 30\n")
    code, out, _ = arc(
        capsys, "submit", str(DEMO_BUNDLE), "--params", str(params), "--api", api_url, "--label", "ticket=42"
    )
    assert code == 0, out
    run_id = _submitted_id(out)
    assert out.splitlines() == [
        f"run {run_id} submitted (arc/fastq-stats 1.0.0)",
        "  warning: params.yaml:2 [min_qualty]: the pipeline does not know this parameter, so it would be "
        "ignored; did you mean min_quality?",
    ]
    code, out, _ = arc(capsys, "runs", "list", "--api", api_url, "--label", "ticket=42")
    assert code == 0
    header, row = out.strip().splitlines()
    assert header.split() == ["ID", "STATUS", "PIPELINE", "CREATED_AT", "DURATION", "SUBMITTER", "NAME"]
    assert row.split()[:3] == [run_id, "submitted", "arc/fastq-stats"]
    assert re.fullmatch(r"\d+m\d\ds", row.split()[5])  # running for seconds so far
    code, out, _ = arc(capsys, "pipelines", "list", "--api", api_url)
    assert code == 0
    assert out.splitlines()[0] == "arc/fastq-stats  [snakemake]  revisions: 1.0.0 (default)"
    assert "nf-core/scrnaseq  [nextflow]  revisions: 4.0.0 (default), 3.0.0, 2.7.1" in out
    code, out, _ = arc(capsys, "runs", "show", run_id, "--api", api_url)
    assert f"run {run_id}  submitted" in out and "submitter:" in out and "history:" in out
    assert "ticket=42" in out and f"gs://arc-runs/work/{run_id}/" in out


def test_submit_problems_are_listed_with_exit_code_2(api_url, capsys, tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "run.yaml").write_text("pipeline: arc/fastq-stats\nrevision: '9'\n")
    (bundle / "samplesheet.csv").write_text("name,x\n")
    code, _, err = arc(capsys, "submit", str(bundle), "--api", api_url)
    assert code == 2
    assert "invalid_bundle" in err
    assert "run.yaml:2 [revision]:" in err and "samplesheet.csv" in err


def test_watch_shows_each_status_until_the_end(api_url, capsys, engine):
    _, out, _ = arc(capsys, "submit", str(DEMO_BUNDLE), "--api", api_url)
    run_id = _submitted_id(out)

    def progress():
        time.sleep(0.5)
        transition(engine, run_id, "running", source="hook")
        time.sleep(0.3)
        transition(engine, run_id, "completed", source="hook")

    threading.Thread(target=progress).start()
    code, out, _ = arc(capsys, "runs", "watch", run_id, "--api", api_url, "--timeout", "30")
    assert code == 0, out
    history, _, after = out.partition(f"run {run_id} ended completed\n")
    lines = [line.split()[1] for line in history.splitlines() if line.startswith("  ")]
    assert lines == ["pending", "submitted", "running", "completed"]
    assert after.splitlines() == [  # where the results are, and how to get them
        f"  results: gs://arc-runs/runs/{run_id}/results/",
        f"  list or download them: arc runs results {run_id} [--download DIR]",
    ]


def test_results_are_listed_and_downloaded(api_url, capsys, engine, gcs, tmp_path):
    _, out, _ = arc(capsys, "submit", str(DEMO_BUNDLE), "--api", api_url)
    run_id = _submitted_id(out)
    files = {"stats.tsv": b"S1\t10\n", "per-sample/S1.json": b'{"reads": 10}'}
    for path, data in files.items():
        gcs.write_bytes("arc-runs", f"runs/{run_id}/results/{path}", data)
    code, out, _ = arc(capsys, "runs", "results", run_id, "--api", api_url)
    assert code == 0, out
    assert out.splitlines() == [
        f"results of run {run_id} in gs://arc-runs/runs/{run_id}/results/ (2 file(s), run is submitted: "
        "more may come)",
        f"  {13:>12}  per-sample/S1.json",
        f"  {6:>12}  stats.tsv",
    ]
    target = tmp_path / "got"
    code, out, _ = arc(capsys, "runs", "results", run_id, "--api", api_url, "--download", str(target))
    assert code == 0, out
    assert f"downloaded 2 file(s), 19 bytes, into {target}" in out
    got = {p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert got == files


def test_cancel_recover_and_logs(api_url, capsys, engine, gcs, tmp_path):
    _, out, _ = arc(capsys, "submit", str(DEMO_BUNDLE), "--api", api_url)
    run_id = _submitted_id(out)
    code, out, _ = arc(capsys, "runs", "cancel", run_id, "--api", api_url)
    assert (code, out.strip()) == (0, f"run {run_id} is cancelling")
    transition(engine, run_id, "cancelled")
    gcs.write_bytes("arc-runs", f"work/{run_id}/.snakemake/metadata/x", b"{}")
    code, _, err = arc(capsys, "runs", "recover", run_id, "--api", api_url, "--set", "min_quality=high")
    assert code == 2  # the problem is named after the option that gave the value, not a generated file
    assert "\n  --set min_quality=high [min_quality]: 'high' is not of type" in err, err
    code, out, _ = arc(capsys, "runs", "recover", run_id, "--api", api_url, "--set", "min_quality=30")
    assert code == 0, out
    child = out.split()[1]
    assert out.strip() == f"run {child} recovers {run_id}: submitted"
    code, _, err = arc(capsys, "runs", "recover", "r000000000000000000", "--api", api_url)
    assert code == 2 and "not_found" in err
    job_dir = tmp_path / "state" / "jobs" / f"arc-{child}"
    job_dir.mkdir(parents=True)
    first = '{"severity": "INFO", "message": "orchestrator starting", "time": "2026-11-22T10:00:00Z"}'
    (job_dir / "attempt-0.log").write_text(first + "\nBuilding DAG\n")
    code, out, _ = arc(capsys, "runs", "logs", child, "--api", api_url, "--page-size", "1")
    assert code == 0
    assert out.splitlines() == ["2026-11-22 10:00:00  orchestrator starting", "Building DAG"]


def test_cancel_by_label_lists_confirms_and_cancels_only_the_selection(api_url, capsys, monkeypatch):
    ids = []
    for label in ("batch=7", "batch=7", "batch=8"):
        _, out, _ = arc(capsys, "submit", str(DEMO_BUNDLE), "--api", api_url, "--label", label)
        ids.append(_submitted_id(out))
    code, out, _ = arc(capsys, "runs", "cancel", "--label", "batch=7", "--dry-run", "--api", api_url)
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()[:-1]] == [ids[1], ids[0]]  # newest first
    assert out.splitlines()[-1] == "2 run(s) would be cancelled (--dry-run: none was)"
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    code, _, err = arc(capsys, "runs", "cancel", "--label", "batch=7", "--api", api_url)
    assert code == 1 and "needs a confirmation: run it in a terminal, or add --yes" in err
    code, out, _ = arc(capsys, "runs", "cancel", "--label", "batch=7", "--yes", "--api", api_url)
    assert code == 0
    assert out.splitlines()[-2:] == [f"run {ids[1]} is cancelling", f"run {ids[0]} is cancelling"]
    code, out, _ = arc(capsys, "runs", "list", "--api", api_url, "--label", "batch=8")
    assert out.splitlines()[1].split()[1] == "submitted"  # not selected, not touched
    code, _, err = arc(capsys, "runs", "cancel", ids[2], "--label", "batch=8", "--api", api_url)
    assert code == 1 and "not both" in err


def test_relaunch_with_an_edited_samplesheet(api_url, capsys, tmp_path):
    _, out, _ = arc(capsys, "submit", str(DEMO_BUNDLE), "--api", api_url)
    run_id = _submitted_id(out)
    sheet = tmp_path / "fixed.csv"
    sheet.write_text("sample,fastq_1\n")  # no fastq_2 column, no rows
    code, _, err = arc(capsys, "runs", "relaunch", run_id, "--samplesheet", str(sheet), "--api", api_url)
    assert code == 2
    assert f"\n  {sheet}" in err  # the problems name the user's file, not the bundle's samplesheet.csv
    rows = (DEMO_BUNDLE / "samplesheet.csv").read_text().splitlines()
    sheet.write_text("\n".join(rows[:2]) + "\n")
    code, out, _ = arc(capsys, "runs", "relaunch", run_id, "--samplesheet", str(sheet), "--api", api_url)
    assert code == 0, out
    new_id = out.split()[1]
    assert out.strip() == f"run {new_id} relaunches {run_id}: submitted"


def test_a_run_is_named_by_a_prefix_of_its_id_or_by_its_name(api_url, capsys):
    ids = []
    for name in ("atlas one", "atlas two"):
        _, out, _ = arc(capsys, "submit", str(DEMO_BUNDLE), "--api", api_url, "--name", name)
        ids.append(_submitted_id(out))
    unique = next(n for n in range(8, 19) if ids[0][:n] != ids[1][:n])
    code, out, _ = arc(capsys, "runs", "show", ids[1][:unique], "--api", api_url)
    assert code == 0 and out.startswith(f"run {ids[1]}  submitted")
    code, out, _ = arc(capsys, "runs", "show", "atlas one", "--api", api_url)
    assert code == 0 and out.startswith(f"run {ids[0]}  submitted")
    common = ids[0][: unique - 1]
    code, _, err = arc(capsys, "runs", "show", common, "--api", api_url)
    assert code == 2 and f"2 runs whose id starts with {common!r}: {ids[1]} (submitted" in err
    code, _, err = arc(capsys, "runs", "cancel", "no such run", "--api", api_url)
    assert code == 2 and "no run whose id starts with or whose name is 'no such run'" in err


def test_tasks_are_listed_from_the_ledger(api_url, capsys, engine, tmp_path):
    from arc_reactor.adapters.tasks_repo import TaskUpdate, upsert_tasks

    _, out, _ = arc(capsys, "submit", str(DEMO_BUNDLE), "--api", api_url)
    run_id = _submitted_id(out)
    upsert_tasks(engine, run_id, [
        TaskUpdate("1", "succeeded", process="stats", tag="sample=sample1", exit_code=0),
        TaskUpdate("2", "failed", process="stats", tag="sample=sample2", exit_code=1),
    ])  # fmt: skip
    code, out, _ = arc(capsys, "runs", "tasks", run_id, "--api", api_url)
    assert code == 0
    assert [line.split() for line in out.splitlines()] == [
        ["TASK_ID", "ATTEMPT", "PROCESS", "STATUS", "EXIT_CODE", "COST", "TAG"],
        ["1", "1", "stats", "succeeded", "0", "0.0", "sample=sample1"],  # never started: nothing spent
        ["2", "1", "stats", "failed", "1", "0.0", "sample=sample2"],
    ]
    code, out, _ = arc(capsys, "runs", "tasks", run_id, "--status", "failed", "--api", api_url)
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["2"]
    upsert_tasks(
        engine, run_id, [TaskUpdate("2", "failed", error_tail="stats.py: Permission denied: gs://x")]
    )
    code, out, _ = arc(capsys, "runs", "why", run_id, "--api", api_url)
    assert code == 0
    assert "  first failed task: stats (sample=sample2), attempt 1, exit code 1" in out
    assert "  hint: permission denied: the task's service account may not read or write a location" in out
    assert "  | stats.py: Permission denied: gs://x" in out
    dump = tmp_path / "support.tar.gz"
    code, out, _ = arc(capsys, "runs", "dump", run_id, "-o", str(dump), "--api", api_url)
    assert code == 0 and out.startswith(f"wrote {dump}: the run, 2 task attempt(s)")
    with tarfile.open(dump) as tar:
        names = sorted(m.name.split("/", 1)[1] for m in tar.getmembers())
        assert names == ["diagnosis.json", "orchestrator.log", "results.json", "run.json", "tasks.json"]
        run = json.loads(tar.extractfile(f"arc-run-{run_id}/run.json").read())  # type: ignore[union-attr]
        assert run["id"] == run_id and run["events"]


def test_submit_through_the_inbox(api_url, capsys, storage_emulator):
    from arc_reactor.core.events import storage_cloudevent

    submit_fn = function_client("submit_bundle")

    def deliver(obj):  # what Eventarc does with the inbox's finalize events
        headers, body = binary_event(*storage_cloudevent(obj))
        submit_fn.post("/", headers=headers, data=body)

    storage_emulator.watch("arc-inbox", deliver)
    code, out, _ = arc(capsys, "submit", str(DEMO_BUNDLE), "--via", "inbox", "--inbox", "arc-inbox",
                       "--submission", "cli-test")  # fmt: skip
    assert code == 0, out
    run_id = _submitted_id(out)
    assert out.strip() == f"run {run_id} submitted (through the inbox, cli-test/)"
    code, out, _ = arc(capsys, "runs", "show", run_id, "--api", api_url, "--json")
    assert '"submitter": "demo@example.org"' in out


def test_no_api_is_a_clear_error(capsys, monkeypatch, tmp_path):
    from arc_reactor.cli import client

    monkeypatch.delenv("ARC_API_URL", raising=False)
    monkeypatch.setattr(client, "LOCAL_INFO", tmp_path / "absent.json")
    code, _, err = arc(capsys, "runs", "list")
    assert code == 1
    assert "arc local up" in err
