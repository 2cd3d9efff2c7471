"""The orchestrator's pure decisions: environment, engine commands (with resume), the Nextflow config
render and its hooks, input staging paths, and how a run's outcome is reported."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from arc_reactor.core.engine_command import (
    Failure,
    OrchestrationError,
    Workspace,
    engine_command,
    env_from,
    failure_from_log,
    groovy_string,
    gs_cells,
    local_input_path,
    localize_rows,
    outcome_args,
    pipeline_source,
    pipeline_spec,
    render_template,
    resource_labels,
    snakemake_trace,
    template_values,
)
from arc_reactor.core.registry import load_registry

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = (ROOT / "orchestrator" / "nextflow.config.template").read_text(encoding="utf-8")
WS = Workspace.at(Path("/tmp/arc-run.abc"))


def environ(**overrides: str) -> dict[str, str]:
    base = {
        "RUN_ID": "r0abc",
        "PIPELINE": "nf-core/scrnaseq",
        "PIPELINE_VERSION": "4.0.0",
        "ENGINE": "nextflow",
        "PARAMS_GCS_PATH": "gs://arc-runs/runs/r0abc/inputs/params.yaml",
        "CONFIG_GCS_PATH": "",
        "WORK_DIR": "gs://arc-runs/work/r0abc/",
        "IS_RECOVERY": "false",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def nextflow_argv(**overrides: str) -> list[str]:
    env = env_from(environ(**overrides))
    spec = pipeline_spec(load_registry(), env)
    return engine_command(env, spec, pipeline_source(spec, ROOT), WS, cores=2)


# --- environment ---------------------------------------------------------------------------------------


def test_env_names_every_missing_variable():
    with pytest.raises(OrchestrationError, match="RUN_ID, PIPELINE") as err:
        env_from({"PIPELINE_VERSION": "1", "ENGINE": "snakemake"})
    assert err.value.code == "bad_environment"


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("ENGINE", "cromwell", "ENGINE must be"),
        ("IS_RECOVERY", "maybe", "IS_RECOVERY must be true or false"),
        ("BATCH_TASK_RETRY_ATTEMPT", "-1", "BATCH_TASK_RETRY_ATTEMPT"),
        ("PARAMS_GCS_PATH", "/local/params.yaml", "PARAMS_GCS_PATH: not a gs:// URI"),
        ("WORK_DIR", "", "WORK_DIR is required"),
    ],
)
def test_env_rejects_bad_values(key, value, match):
    with pytest.raises(OrchestrationError, match=match):
        env_from(environ(**{key: value}))


def test_snakemake_needs_no_work_dir():
    env = env_from(
        environ(ENGINE="snakemake", PIPELINE="arc/fastq-stats", PIPELINE_VERSION="1.0.0", WORK_DIR="")
    )
    assert env.work_dir == "" and not env.resume


# --- registry --------------------------------------------------------------------------------------------


def test_pipeline_not_in_registry_is_refused():
    with pytest.raises(OrchestrationError, match="not in the registry") as err:
        pipeline_spec(load_registry(), env_from(environ(PIPELINE="evil/pipeline")))
    assert err.value.code == "pipeline_not_allowed"


def test_revision_not_allowed_is_refused():
    with pytest.raises(OrchestrationError, match=r"revision 9\.9\.9"):
        pipeline_spec(load_registry(), env_from(environ(PIPELINE_VERSION="9.9.9")))


def test_engine_must_match_registry():
    with pytest.raises(OrchestrationError, match="registry runs nf-core/scrnaseq with nextflow"):
        pipeline_spec(load_registry(), env_from(environ(ENGINE="snakemake")))


def test_path_source_resolves_under_pipelines_root():
    spec = load_registry().get("arc/fastq-stats")
    assert spec is not None
    assert pipeline_source(spec, ROOT) == str(ROOT / "examples" / "pipelines" / "fastq-stats")


# --- commands --------------------------------------------------------------------------------------------


def test_snakemake_command():
    env = env_from(environ(ENGINE="snakemake", PIPELINE="arc/fastq-stats", PIPELINE_VERSION="1.0.0"))
    spec = pipeline_spec(load_registry(), env)
    argv = engine_command(env, spec, "/opt/arc/examples/pipelines/fastq-stats", WS, cores=4)
    assert argv == [
        "snakemake",
        "--snakefile", "/opt/arc/examples/pipelines/fastq-stats/Snakefile",
        "--directory", "/tmp/arc-run.abc/run",
        "--configfile", "/tmp/arc-run.abc/config/params.local.yaml",
        "--cores", "4",
        "--rerun-incomplete",
        "--nolock",
    ]  # fmt: skip


def test_snakemake_resume_is_the_same_command():
    """Snakemake resumes by re-running in the same dir: only incomplete or missing outputs are redone."""
    base = {"ENGINE": "snakemake", "PIPELINE": "arc/fastq-stats", "PIPELINE_VERSION": "1.0.0"}
    spec = load_registry().get("arc/fastq-stats")
    assert spec is not None
    first = engine_command(env_from(environ(**base)), spec, "/src", WS, 2)
    again = engine_command(
        env_from(environ(**base, IS_RECOVERY="true", BATCH_TASK_RETRY_ATTEMPT="1")), spec, "/src", WS, 2
    )
    assert first == again and "--rerun-incomplete" in again


def test_nextflow_command():
    assert nextflow_argv() == [
        "nextflow", "run", "nf-core/scrnaseq",
        "-r", "4.0.0",
        "-c", "/tmp/arc-run.abc/config/arc.config",
        "-params-file", "/tmp/arc-run.abc/config/params.yaml",
        "-work-dir", "gs://arc-runs/work/r0abc/",
        "-with-trace", "/tmp/arc-run.abc/logs/trace.txt",
        "-with-timeline", "/tmp/arc-run.abc/logs/timeline.html",
        "-with-report", "/tmp/arc-run.abc/logs/report.html",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "expected_tail"),
    [
        ({"IS_RECOVERY": "true", "PARENT_SESSION_ID": "5a1e-55"}, ["-resume", "5a1e-55"]),
        ({"BATCH_TASK_RETRY_ATTEMPT": "1", "PARENT_SESSION_ID": "5a1e-55"}, ["-resume", "5a1e-55"]),
        ({"BATCH_TASK_RETRY_ATTEMPT": "2"}, ["-resume"]),
        ({"IS_RECOVERY": "TRUE"}, ["-resume"]),
    ],
)
def test_nextflow_resumes_on_recovery_or_retry(overrides, expected_tail):
    argv = nextflow_argv(**overrides)
    assert argv[-len(expected_tail) :] == expected_tail
    assert argv.count("-resume") == 1


@pytest.mark.parametrize("overrides", [{}, {"BATCH_TASK_RETRY_ATTEMPT": "0"}, {"PARENT_SESSION_ID": "5a1e"}])
def test_nextflow_does_not_resume_a_first_attempt(overrides):
    assert "-resume" not in nextflow_argv(**overrides)


def test_nextflow_profile_and_cloud_cache():
    argv = nextflow_argv(PROFILE="test", CACHE_DIR="gs://arc-runs/cache/r0abc/")
    assert argv[:3] == ["env", "NXF_CLOUDCACHE_PATH=gs://arc-runs/cache/r0abc/", "nextflow"]
    assert argv[argv.index("-profile") + 1] == "test"


# --- config template --------------------------------------------------------------------------------------


def rendered(run_id: str = "r0abc", user_config: Path | None = None, **env: str) -> str:
    update_status = "/opt/arc/orchestrator/update_status.py"
    values = template_values(
        env_from(environ(RUN_ID=run_id, **env)), WS, "/usr/bin/python3", update_status, user_config
    )
    return render_template(TEMPLATE, values)


def test_template_renders_every_placeholder():
    text = rendered()
    assert "{{" not in text and "}}" not in text
    assert "params.run_id = 'r0abc'" in text
    assert "file      = '/tmp/arc-run.abc/logs/trace.txt'" in text
    assert "includeConfig '/dev/null'" in text


def test_template_render_fails_on_a_missing_placeholder():
    values = template_values(env_from(environ()), WS, "python3", "/u.py", None)
    del values["UPDATE_STATUS"]
    with pytest.raises(OrchestrationError, match="UPDATE_STATUS"):
        render_template(TEMPLATE, values)


def test_template_render_fails_on_a_malformed_placeholder():
    with pytest.raises(OrchestrationError, match="malformed"):
        render_template("params.x = {{ RUN ID }}", {"RUN_ID": "'x'"})


def test_hooks_are_argument_lists_not_shell_strings():
    text = rendered()
    hooks = re.findall(r"workflow\.on(?:Complete|Error) = \{(.*?)\n\}", text, re.DOTALL)
    assert len(hooks) == 2
    for body in hooks:
        assert "def cmd = ['/usr/bin/python3', '/opt/arc/orchestrator/update_status.py', 'r0abc'," in body
        assert ".execute()" in body
        assert '".execute()' not in body and "'.execute()" not in body  # never a string executed by a shell
        assert "cmd.collect { String.valueOf(it) }.execute()" in body
        assert "waitFor(120" in body  # bounded wait
        assert '"' not in body  # no GString anywhere: nothing gets interpolated into a command


def test_values_are_escaped_groovy_literals():
    text = rendered(run_id="r'; rm -rf / ;'\\x")
    assert "params.run_id = 'r\\'; rm -rf / ;\\'\\\\x'" in text
    assert groovy_string("a\nb") == "'a\\nb'"


def test_user_config_is_included_last():
    text = rendered(user_config=Path("/tmp/arc-run.abc/config/nextflow.config"))
    assert text.rstrip().endswith("includeConfig '/tmp/arc-run.abc/config/nextflow.config'")


def test_resource_labels_carry_run_id_and_app():
    env = env_from(environ(ARC_RUN_LABELS='{"app":"other","pipeline":"nf-core_scrnaseq","Team":"Bio Lab"}'))
    assert resource_labels(env) == {
        "app": "arc-reactor", "run-id": "r0abc", "pipeline": "nf-core_scrnaseq", "team": "bio_lab",
    }  # fmt: skip
    assert "resourceLabels = ['app': 'arc-reactor', 'run-id': 'r0abc']" in rendered()


def test_bad_run_labels_json_is_an_error():
    with pytest.raises(OrchestrationError, match="ARC_RUN_LABELS"):
        resource_labels(env_from(environ(ARC_RUN_LABELS="[1, 2]")))


# --- inputs ----------------------------------------------------------------------------------------------


def test_local_input_path_keeps_bucket_and_name():
    assert local_input_path("gs://arc-demo-data/fastq/s1_R1.fastq.gz", Path("/w/inputs")) == Path(
        "/w/inputs/arc-demo-data/fastq/s1_R1.fastq.gz"
    )


@pytest.mark.parametrize(
    "uri", ["gs://b/../../etc/passwd", "gs://b/a/./b", "gs://b/", "gs://b//abs", "gs://b/dir/"]
)
def test_local_input_path_refuses_names_that_could_escape(uri):
    with pytest.raises(OrchestrationError):
        local_input_path(uri, Path("/w/inputs"))


def test_gs_cells_and_localize_rows():
    header = ["sample", "fastq_1", "fastq_2"]
    rows = [
        ["s1", "gs://b/a_1.fq.gz", "gs://b/a_2.fq.gz"],
        ["s2", "gs://b/a_1.fq.gz", ""],
        ["s3", "x.fq", ""],
    ]
    assert gs_cells(rows, header) == [("gs://b/a_1.fq.gz", 2, "fastq_1"), ("gs://b/a_2.fq.gz", 2, "fastq_2")]
    staged = {"gs://b/a_1.fq.gz": Path("/i/b/a_1.fq.gz"), "gs://b/a_2.fq.gz": Path("/i/b/a_2.fq.gz")}
    assert localize_rows(rows, staged) == [
        ["s1", "/i/b/a_1.fq.gz", "/i/b/a_2.fq.gz"], ["s2", "/i/b/a_1.fq.gz", ""], ["s3", "x.fq", ""],
    ]  # fmt: skip


# --- outcome ---------------------------------------------------------------------------------------------


def test_outcome_completed():
    assert outcome_args(0, None, "2026-01-01T00:00:00+00:00") == [
        "completed", "--completed_at", "2026-01-01T00:00:00+00:00",
    ]  # fmt: skip


def test_outcome_failed_carries_code_message_and_task():
    args = outcome_args(1, Failure("pipeline_error", "boom", "stats"), "T")
    assert args == [
        "failed", "--failed_at", "T", "--exit_code", "1", "--error_code", "pipeline_error",
        "--error_message", "boom", "--error_task", "stats",
    ]  # fmt: skip


def test_outcome_failed_before_the_engine_with_exit_zero_is_still_a_failure():
    assert outcome_args(0, Failure("orchestrator_error", "x"), "T")[:5] == [
        "failed",
        "--failed_at",
        "T",
        "--exit_code",
        "1",
    ]


def test_failure_from_snakemake_log():
    log = """Error in rule stats:
    jobid: 2
Traceback (most recent call last):
ValueError: /x/s1_R1.fastq.gz: malformed FASTQ record ending at line 8
Shutting down, this might take some time.
Exiting because a job execution failed. Look below for error messages
"""
    failure = failure_from_log("snakemake", 1, log)
    assert failure.task == "stats"
    assert failure.code == "pipeline_error"
    expected = "ValueError: /x/s1_R1.fastq.gz: malformed FASTQ record ending at line 8"
    assert failure.message == f"snakemake exited with code 1: {expected}"


def test_failure_from_nextflow_log():
    log = """ERROR ~ Error executing process > 'NFCORE_SCRNASEQ:STARSOLO (Sample_X)'

Caused by:
  Process `NFCORE_SCRNASEQ:STARSOLO (Sample_X)` terminated with an error exit status (137)
"""
    failure = failure_from_log("nextflow", 1, log)
    assert failure.task == "NFCORE_SCRNASEQ:STARSOLO (Sample_X)"
    assert failure.message.endswith("terminated with an error exit status (137)")


def test_failure_from_an_empty_log():
    assert failure_from_log("nextflow", 3, "").message == "nextflow exited with code 3: no output"


def test_snakemake_trace():
    records = [
        (
            "/w/results/summary.tsv",
            {"rule": "summary", "starttime": 20.0, "endtime": 21.5, "incomplete": False},
        ),
        ("/w/results/stats/s1.json", {"rule": "stats", "starttime": 10.0, "endtime": 12.0}),
        ("/w/results/stats/s2.json", {"rule": "stats", "incomplete": True}),
    ]
    lines = snakemake_trace(records).splitlines()
    assert lines[0] == "output\trule\tstatus\tstart\tcomplete\tduration_s"
    assert lines[1] == "/w/results/stats/s2.json\tstats\tINCOMPLETE\t\t\t"
    assert lines[2].split("\t")[:3] == ["/w/results/stats/s1.json", "stats", "COMPLETED"]
    assert lines[2].endswith("\t2.000") and lines[3].endswith("\t1.500")
