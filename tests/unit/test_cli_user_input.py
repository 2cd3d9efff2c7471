"""The CLI and what users give it: files and YAML they wrote get an error naming the file, the line and the
problem, never a traceback; a listed result path never leaves the download folder."""

import shutil
from pathlib import Path

import pytest

from arc_reactor.cli.main import main
from arc_reactor.cli.runs import _safe_destination

ROOT = Path(__file__).resolve().parents[2]
NO_API = ["--api", "http://127.0.0.1:9"]  # never reached: every case fails before a request


def test_only_relative_paths_inside_the_folder_are_written(tmp_path: Path) -> None:
    assert _safe_destination(tmp_path, "qc/S1.html") == (tmp_path / "qc" / "S1.html").resolve()
    for bad in ("../outside.txt", "/etc/passwd", "a/../../b", "", "qc/../../x"):
        assert _safe_destination(tmp_path, bad) is None, bad
    (tmp_path / "link").symlink_to("/tmp")
    assert _safe_destination(tmp_path, "link/x") is None  # a symlink out of the folder


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["submit", "{bundle}"],
            "arc: {bundle}/run.yaml is not valid YAML (line 3, column 1): found character '\\t' that cannot "
            "start any token: YAML is indented with spaces, never tabs",
        ),
        (["runs", "recover", "r1", "--params", "{missing}"], "arc: {missing}: No such file or directory"),
        (
            ["runs", "recover", "r1", "--params", "{broken}"],
            "arc: {broken} is not valid YAML (line 2, column 1): expected the node content, but found "
            "'<stream end>'",
        ),
        (
            ["runs", "recover", "r1", "--set", "x=[1"],
            "arc: --set x=[1 is not valid YAML (line 1, column 3): expected ',' or ']', but got "
            "'<stream end>'",
        ),
        (
            ["submit", "--pipeline", "arc/fastq-stats", "--samplesheet", "{missing}"],
            "arc: {missing}: No such",
        ),
    ],
)
def test_a_users_mistake_is_one_line_naming_the_file(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(ROOT / "examples" / "demo-bundle", bundle)
    (bundle / "run.yaml").write_text("pipeline: arc/fastq-stats\nlabels:\n\tproject: x\n")
    (tmp_path / "broken.yaml").write_text("a: [\n")
    names = {"bundle": bundle, "missing": tmp_path / "missing.yaml", "broken": tmp_path / "broken.yaml"}
    code = main([arg.format(**names) for arg in argv] + NO_API)
    _, err = capsys.readouterr()
    assert code == 2
    assert err.startswith(message.format(**names)) and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_runs_duration_is_from_its_start_to_its_end_or_now() -> None:
    from datetime import UTC, datetime

    from arc_reactor.cli.runs import duration

    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    run = {"created_at": "2026-12-07T10:00:00+00:00", "started_at": "2026-12-07T10:58:55+00:00"}
    assert duration(run, now) == "1h01m"
    assert duration({**run, "completed_at": "2026-12-07T11:02:00+00:00"}, now) == "3m05s"
    assert duration({"created_at": "2026-12-04T11:00:00+00:00"}, now) == "3d01h"
    assert duration({}, now) == ""


def test_progress_is_told_in_a_line() -> None:
    from arc_reactor.cli.runs import describe_progress

    assert describe_progress({"source": "snakemake", "succeeded": 4, "pending": 1}) == "4 of 5 tasks done"
    counts = {"succeeded": 10, "cached": 3, "running": 2, "failed": 1, "retries": 1, "pending": 0}
    assert describe_progress(counts) == "13 of 16 tasks done (3 cached), 2 running, 1 failed, 1 retried"
    assert describe_progress({"source": "nextflow"}) == "no task yet"
    assert describe_progress({"succeeded": "x", "running": -3, "cached": True}) == "no task yet"


def test_cost_is_told_in_a_line() -> None:
    from arc_reactor.cli.runs import describe_cost

    estimate = {"currency": "USD", "total": 4.1275, "head": 0.1206, "tasks": 4.0069, "wasted": 0.3182,
                "preemptions": 3, "unpriced_tasks": 0, "running": True}  # fmt: skip
    billed = {"total": 4.31, "currency": "USD", "as_of": "2026-12-08T06:00:00+00:00", "error": None}
    assert describe_cost({"estimate": estimate, "billed": billed}) == (
        "~USD 4.13 estimated so far (head job 0.1206, tasks 4.01), 0.3182 wasted in 3 preemption(s); "
        "billed USD 4.31 (export of 2026-12-08T06:00:00+00:00)"
    )
    done = {**estimate, "running": False, "preemptions": 0, "unpriced_tasks": 2}
    failed = {"total": None, "currency": None, "as_of": None, "error": "Forbidden"}
    assert describe_cost({"estimate": done, "billed": failed}) == (
        "~USD 4.13 estimated (head job 0.1206, tasks 4.01), 2 task attempt(s) not priced; "
        "billed cost unavailable (Forbidden)"
    )
    tiny = {**done, "total": 0.00003, "head": 0.00003, "tasks": 0.0, "unpriced_tasks": 0}
    assert describe_cost({"estimate": tiny}) == "~USD < 0.0001 estimated (head job < 0.0001, tasks 0.0000)"
