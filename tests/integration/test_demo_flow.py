"""The whole demo flow on the embedded local stack: the demo bundle goes into the inbox through the storage
emulator's write hook, the submit function (functions-framework, served over HTTP) creates the run and its
Batch job on the local Batch service, which runs the real orchestrator entrypoint with Snakemake on the demo
FASTQ files; Batch notifications reach the reconcile function; the run ends completed with results and logs
in the runs bucket. Nothing is mocked."""

import io

import pytest

pytestmark = pytest.mark.integration


def test_demo_bundle_runs_end_to_end_and_completes(database_url, tmp_path, monkeypatch):
    from arc_reactor.adapters import runs_repo
    from arc_reactor.local import demo
    from arc_reactor.wiring import get_deps

    monkeypatch.setenv("DATABASE_URL", database_url)
    seen = {}
    original_report = demo._report

    def capture(stack, run_id, final, out, started):
        # Read the run and its bucket while the stack is still up.
        engine = get_deps().engine
        seen["run"] = dict(runs_repo.get_run(engine, run_id))
        seen["events"] = [dict(e) for e in runs_repo.list_events(engine, run_id)]
        seen["objects"] = get_deps().storage.list_names(stack.settings.runs_bucket, f"runs/{run_id}/")
        return original_report(stack, run_id, final, out, started)

    monkeypatch.setattr(demo, "_report", capture)
    out = io.StringIO()
    code = demo.run_demo(out=out, state_dir=tmp_path / "state", timeout=240)
    text = out.getvalue()
    assert code == 0, text
    run = seen["run"]
    assert run["status"] == "completed", text
    transitions = [e["to_status"] for e in seen["events"] if e["kind"] == "transition"]
    assert transitions == ["pending", "submitted", "running", "completed"], transitions
    for status in ("pending", "submitted", "running", "completed"):
        assert status in text
    names = {n.split(f"runs/{run['id']}/", 1)[1] for n in seen["objects"]}
    assert "results/summary.tsv" in names
    assert any(n.startswith("logs/") for n in names)
    assert {"inputs/samplesheet.csv", "inputs/params.yaml"} <= names
    summary = (tmp_path / "state" / "demo" / run["id"] / "results" / "summary.tsv").read_text()
    assert len(summary.strip().splitlines()) == 4  # header + 3 samples
