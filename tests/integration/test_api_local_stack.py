"""Cancel and recover end to end on the embedded local stack (LocalStack): the runs_api function served
over HTTP, the local Batch service running the real orchestrator with Snakemake, Batch notifications
reaching the reconcile function. The recovery really resumes: the stats the failed run finished are not
computed again."""

import json
import re

import pytest
from flow import demo_body as _body
from flow import http_session as _session
from flow import task_command, task_jobs, wait_until_ended

pytestmark = pytest.mark.integration

SAMPLES = ("sample1", "sample2", "sample3")


def test_cancel_end_to_end(stack):
    session, base = _session(), stack.url("runs_api").rstrip("/")
    run = session.post(f"{base}/runs", json=_body(), timeout=30).json()
    resp = session.post(f"{base}/runs/{run['id']}:cancel", timeout=30)
    assert resp.status_code in (200, 202), resp.text
    assert wait_until_ended(session, base, run["id"]) == "cancelled"
    final = session.get(f"{base}/runs/{run['id']}", timeout=10).json()
    assert final["status"] == "cancelled" and final["cancelled_at"]
    sources = [(e["to_status"], e["source"]) for e in final["events"] if e["kind"] == "transition"]
    assert ("cancelling", "api") in sources and sources[-1][0] == "cancelled"
    assert session.post(f"{base}/runs/{run['id']}:cancel", timeout=10).status_code == 200


def _stats_run_by(stack, run_id):
    """The samples whose stats job a run's orchestrator started (its console output)."""
    text = "".join(p.read_text() for p in sorted((stack.state_dir / "jobs" / f"arc-{run_id}").glob("*.log")))
    return set(re.findall(r"wildcards: sample=(\w+)", text))


def test_recover_resumes_without_redoing_finished_steps(stack):
    from arc_reactor.wiring import get_deps

    session, base = _session(), stack.url("runs_api").rstrip("/")
    parent = session.post(f"{base}/runs", json=_body(fail_samples=["sample3"]), timeout=30).json()
    progress: list[dict] = []
    assert wait_until_ended(session, base, parent["id"], progress=progress) == "failed"
    # Snakemake filled the ledger and the progress for real, and the stream carried it.
    assert progress and progress[-1]["failed"] == 1 and progress[-1]["total"] == 5, progress
    assert {p["name"] for p in progress[-1]["processes"]} == {"all", "stats", "summary"}
    why = session.get(f"{base}/runs/{parent['id']}/diagnosis", timeout=10).json()
    first = why["first_failed_task"]
    assert (first["process"], first["tag"]) == ("stats", "sample=sample3")
    # the failing rule's own log tail: its task job kept the log, the executor plugin showed it
    assert "failing on purpose" in first["error_tail"]
    failed = [j for j in task_jobs(stack, parent["id"]) if j.status.state.name == "FAILED"]
    assert [j.labels["snakemake-rule"] for j in failed] == ["stats"]
    assert "sample=sample3" in task_command(failed[0])
    storage = get_deps().storage
    finished = {
        n.rsplit("/", 1)[1].removesuffix(".json")
        for n in storage.list_names("arc-runs", f"runs/{parent['id']}/results/stats/")
    }
    assert finished and "sample3" not in finished, finished
    resp = session.post(
        f"{base}/runs/{parent['id']}:recover", json={"params": {"fail_samples": None}}, timeout=30
    )
    assert resp.status_code == 201, resp.text
    child = resp.json()
    assert child["is_recovery"] and child["work_dir"] == parent["work_dir"]
    assert wait_until_ended(session, base, child["id"]) == "completed"
    counts = session.get(f"{base}/runs/{child['id']}", timeout=10).json()["progress"]
    assert (counts["done"], counts["cached"], counts["total"]) == (5, len(finished), 5)  # skipped: cached
    redone = _stats_run_by(stack, child["id"])
    assert "sample3" in redone
    assert not redone & finished, f"finished steps were run again: {sorted(redone & finished)}"
    # ... and only those ran as Batch task jobs: sample3's stats and the summary
    jobs = task_jobs(stack, child["id"])
    assert sorted(j.labels["snakemake-rule"] for j in jobs) == ["stats", "summary"]
    assert "sample=sample3" in task_command(next(j for j in jobs if j.labels["snakemake-rule"] == "stats"))
    rule_logs = storage.list_names("arc-runs", f"runs/{child['id']}/logs/rules/")
    assert f"runs/{child['id']}/logs/rules/stats/sample3.log" in rule_logs
    logs = session.get(f"{base}/runs/{child['id']}/logs", params={"page_size": 1000}, timeout=10).json()
    assert logs["source"] == "local" and any(
        "engine exited with code 0" in ln["message"] for ln in logs["lines"]
    )
    summary = storage.read_bytes("arc-runs", f"runs/{child['id']}/results/summary.tsv")
    assert summary is not None and len(summary.decode().strip().splitlines()) == 1 + len(SAMPLES)


def test_the_demo_submitted_over_wes_runs_to_completion(stack, monkeypatch):
    """GA4GH WES on the local stack: the demo bundle as a WES multipart request, run for real."""
    from arc_reactor.local.demo import DEMO_BUNDLE
    from arc_reactor.settings import get_settings
    from arc_reactor.wiring import reset_deps

    # WES is the subject, not where Snakemake runs its jobs: they stay inside the orchestrator (a deployment
    # setting), which halves the run. Batch task jobs have their own story (test_snakemake_on_batch.py).
    monkeypatch.setenv("ARC_SNAKEMAKE_EXECUTOR", "local")
    get_settings.cache_clear()
    reset_deps()

    session, base = _session(), stack.url("runs_api").rstrip("/")
    fields = {
        "workflow_url": (None, "arc/fastq-stats"), "workflow_type": (None, "SMK"),
        "workflow_type_version": (None, "1.0"), "workflow_params": (None, json.dumps({"min_quality": 20})),
        "workflow_attachment": ("samplesheet.csv", (DEMO_BUNDLE / "samplesheet.csv").read_bytes()),
    }  # fmt: skip
    resp = session.post(f"{base}/ga4gh/wes/v1/runs", files=fields, timeout=30)
    assert resp.status_code == 200, resp.text
    run_id = resp.json()["run_id"]
    assert wait_until_ended(session, base, run_id) == "completed"
    log = session.get(f"{base}/ga4gh/wes/v1/runs/{run_id}", timeout=10).json()
    assert log["state"] == "COMPLETE" and log["outputs"]["results"] == f"gs://arc-runs/runs/{run_id}/results/"
    tasks = session.get(f"{base}/ga4gh/wes/v1/runs/{run_id}/tasks", timeout=10).json()["task_logs"]
    assert sorted(t["name"].split(" ")[0] for t in tasks) == ["all", "stats", "stats", "stats", "summary"]
