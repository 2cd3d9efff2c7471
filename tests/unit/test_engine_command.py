"""The orchestrator's pure decisions: environment, engine commands (with resume), which Nextflow session a
retry or recovery resumes, the Nextflow config render and its merge order, input staging paths, what the
Snakemake work dir sync keeps, and how a run's outcome is reported."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from arc_reactor.core.batch_policy import TASK_RETRIED_EXIT_STATUSES
from arc_reactor.core.config_policy import check_config
from arc_reactor.core.config_syntax import Token, tokenize
from arc_reactor.core.engine_command import (
    SNAKEMAKE_RERUN_TRIGGERS,
    Workspace,
    gs_cells,
    local_input_path,
    localize_rows,
    pipeline_source,
    pipeline_spec,
    resume_session,
    session_from_log,
    session_from_record,
    session_record,
    session_uri,
    snakemake_dag_count,
)
from arc_reactor.core.job_env import env_from
from arc_reactor.core.nextflow_config import (
    TaskPolicy,
    groovy_int,
    groovy_string,
    render_template,
    resource_labels,
    template_values,
)
from arc_reactor.core.registry import ErrorStrategy, load_registry, parse_registry
from arc_reactor.core.run_outcome import Failure, failure_from_log, outcome_args, snakemake_trace
from arc_reactor.errors import OrchestrationError
from arc_reactor.orchestrator.engines import batch_of, engine_for
from arc_reactor.orchestrator.workdir_sync import is_synced, safe_relative
from arc_reactor.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = (ROOT / "orchestrator" / "nextflow.config.template").read_text(encoding="utf-8")
WS = Workspace.at(Path("/tmp/arc-run.abc"))
SESSION = "5a1e55e5-0000-4000-8000-00000000abcd"
HOOK = ("/usr/bin/python3", "/opt/arc/orchestrator/update_status.py")


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


def nextflow_argv(session: str | None = None, **overrides: str) -> list[str]:
    env = env_from(environ(**overrides))
    spec = pipeline_spec(load_registry(), env)
    return engine_for(env.engine).command(
        env, spec, pipeline_source(spec, ROOT), WS, cores=2, session=session
    )


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
        ("CACHE_DIR", "/tmp/cache", "CACHE_DIR: not a gs:// URI"),
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


def test_registry_error_strategy_is_parsed_and_checked():
    scrnaseq = load_registry().get("nf-core/scrnaseq")
    assert scrnaseq is not None
    rule = scrnaseq.error_strategy
    assert rule.retry_exit_codes == (104, *range(130, 146), 175, 176, 177)
    assert (rule.max_retries, rule.otherwise) == (1, "finish")
    assert load_registry().get("arc/fastq-stats").error_strategy == ErrorStrategy()  # type: ignore[union-attr]
    base = {"engine": "nextflow", "source": "x/y", "revisions": ["1"]}
    for bad, message in (
        ({"retry_exit_codes": ["145-130"]}, "not an exit code or a range"),
        ({"retry_exit_codes": ["1;2"]}, "not an exit code or a range"),
        ({"retry_exit_codes": [300]}, "must be 0-255"),
        ({"retry_exit_codes": "137"}, "must be a list"),
        ({"otherwise": "explode"}, "otherwise must be one of"),
        ({"max_retries": 99}, "max_retries must be an integer 0-10"),
        ({"max_retries": True}, "max_retries must be an integer 0-10"),
        ({"retries": 1}, "takes retry_exit_codes, max_retries and otherwise"),
    ):
        with pytest.raises(ValueError, match=f"x/y: error_strategy.*{message}"):
            parse_registry({"pipelines": {"x/y": {**base, "error_strategy": bad}}})


def test_only_nextflow_pipelines_may_take_https_inputs():
    """Nextflow reads https:// itself; a Snakemake run's inputs are staged from gs:// only, so the opt-in
    is refused for it when the registry is read, not when a run's Snakefile finds a URL for a file."""
    base = {"source": "x/y", "revisions": ["1"], "input_url_schemes": ["gs", "https"]}
    assert parse_registry({"pipelines": {"x/y": {**base, "engine": "nextflow"}}}).pipelines[
        "x/y"
    ].input_url_schemes == ("gs", "https")
    with pytest.raises(ValueError, match="x/y: input_url_schemes may add https for Nextflow pipelines only"):
        parse_registry({"pipelines": {"x/y": {**base, "engine": "snakemake"}}})


def test_path_source_resolves_under_pipelines_root():
    spec = load_registry().get("arc/fastq-stats")
    assert spec is not None
    assert pipeline_source(spec, ROOT) == str(ROOT / "examples" / "pipelines" / "fastq-stats")


# --- commands --------------------------------------------------------------------------------------------


# What every Snakemake command ends with, on Batch or not.
BOTH_MODES = [
    "--keep-going",
    "--rerun-incomplete",
    "--rerun-triggers", "code", "input", "params", "software-env",
    "--nolock",
    "--show-failed-logs",
    "--logger", "arc",
]  # fmt: skip


def test_snakemake_command():
    env = env_from(environ(ENGINE="snakemake", PIPELINE="arc/fastq-stats", PIPELINE_VERSION="1.0.0"))
    spec = pipeline_spec(load_registry(), env)
    argv = engine_for(env.engine).command(
        env, spec, "/opt/arc/examples/pipelines/fastq-stats", WS, cores=4, session=None
    )
    assert argv == [
        "snakemake",
        "--snakefile", "/opt/arc/examples/pipelines/fastq-stats/Snakefile",
        "--directory", "/tmp/arc-run.abc/run",
        "--configfile", "/tmp/arc-run.abc/run/.arc/params.yaml",
        "--cores", "4",
        *BOTH_MODES,
    ]  # fmt: skip
    assert "mtime" not in SNAKEMAKE_RERUN_TRIGGERS  # restored files all have fresh mtimes


def test_snakemake_on_batch_command(tmp_path):
    """On Batch: our executor plugin, the storage plugin on the lineage's work/ prefix, only the sources and
    the software shared with the task jobs, and paths relative to the run dir (a task has no other)."""
    ws = Workspace.at(tmp_path)
    ws.root.mkdir(parents=True, exist_ok=True)
    context = "gs://arc-runs/work/r0abc/.arc/context/ab12.tar.gz"
    ws.task_context.write_text(context, encoding="utf-8")
    env = env_from(
        environ(ENGINE="snakemake", PIPELINE="arc/fastq-stats", PIPELINE_VERSION="1.0.0",
                WORK_DIR="gs://arc-runs/work/r0abc/")
    )  # fmt: skip
    spec = pipeline_spec(load_registry(), env)
    argv = engine_for(env.engine).command(env, spec, "/opt/arc/p", ws, cores=4, session=None)
    assert argv == [
        "snakemake",
        "--snakefile", "/opt/arc/p/Snakefile",
        "--configfile", ".arc/params.yaml",
        "--executor", "arc",
        "--arc-context", context,
        "--jobs", "100",
        "--seconds-between-status-checks", "10",
        "--default-storage-provider", "gcs",
        "--default-storage-prefix", "gs://arc-runs/work/r0abc",
        "--storage-gcs-project", "arc-local",
        "--shared-fs-usage", "sources", "software-deployment",
        *BOTH_MODES,
    ]  # fmt: skip
    assert not any(str(tmp_path) in a for a in argv)  # nothing a task job could not find
    dry = snakemake_dag_count("/opt/arc/p", ws, batch_of(env, ws))
    assert dry[: len(argv)] == argv and dry[len(argv) :][:2] == ["--dry-run", "--forceall"]


def test_snakemake_resume_is_the_same_command_in_the_restored_dir():
    """Snakemake resumes by running again in its (restored) working dir: only what is missing is redone."""
    base = {"ENGINE": "snakemake", "PIPELINE": "arc/fastq-stats", "PIPELINE_VERSION": "1.0.0"}
    spec = load_registry().get("arc/fastq-stats")
    assert spec is not None
    snakemake = engine_for("snakemake")
    first = snakemake.command(env_from(environ(**base)), spec, "/src", WS, cores=2, session=None)
    again = env_from(environ(**base, IS_RECOVERY="true", BATCH_TASK_RETRY_ATTEMPT="1"))
    assert again.resume
    resumed = snakemake.command(again, spec, "/src", WS, cores=2, session=SESSION)
    # ... and the logger plugin counts the jobs it skips as cached, from the whole DAG's counts.
    assert resumed == [*first, "--logger-arc-dag-counts", str(WS.dag_counts)]
    dry = snakemake_dag_count("/src", WS)
    assert dry[: len(first)] == [*first[:8], "1", *first[9:]]  # one core: it runs nothing
    assert dry[len(first) :] == ["--dry-run", "--forceall", "--logger-arc-dag-counts", str(WS.dag_counts)]


def test_snakemake_workspace_paths_are_relative_to_the_run_dir():
    assert WS.inputs_dir.parent == WS.run_dir and WS.results_dir.parent == WS.run_dir
    # the samplesheet and params a task job needs as the Snakefile is parsed: the task context
    assert WS.samplesheet.relative_to(WS.run_dir).as_posix() == ".arc/samplesheet.csv"
    assert WS.local_params.relative_to(WS.run_dir).as_posix() == ".arc/params.yaml"
    assert WS.context_dir == WS.run_dir / ".arc"


def test_nextflow_command():
    assert nextflow_argv(CACHE_DIR="gs://arc-runs/cache/r0abc/") == [
        "env", "NXF_ANSI_LOG=false", "NXF_CLOUDCACHE_PATH=gs://arc-runs/cache/r0abc/",
        "nextflow", "run", "nf-core/scrnaseq",
        "-r", "4.0.0",
        "-c", "/tmp/arc-run.abc/config/arc.config",
        "-params-file", "/tmp/arc-run.abc/config/params.yaml",
        "-work-dir", "gs://arc-runs/work/r0abc/",
        "-with-trace", "/tmp/arc-run.abc/logs/trace.txt",
        "-with-timeline", "/tmp/arc-run.abc/logs/timeline.html",
        "-with-report", "/tmp/arc-run.abc/logs/report.html",
    ]  # fmt: skip


def test_nextflow_resumes_the_given_session_from_the_cloud_cache():
    argv = nextflow_argv(SESSION, CACHE_DIR="gs://arc-runs/cache/r0abc/", IS_RECOVERY="true")
    assert argv[-2:] == ["-resume", SESSION] and argv.count("-resume") == 1
    # a fresh VM has no .nextflow/history: Nextflow must take the id on trust and read the cloud cache
    assert "NXF_IGNORE_RESUME_HISTORY=true" in argv[: argv.index("nextflow")]


@pytest.mark.parametrize("overrides", [{}, {"IS_RECOVERY": "true"}, {"BATCH_TASK_RETRY_ATTEMPT": "2"}])
def test_nextflow_never_resumes_without_a_session(overrides):
    """A bare -resume means "the last run in local history", which a fresh VM does not have."""
    argv = nextflow_argv(None, **overrides)
    assert "-resume" not in argv and "NXF_IGNORE_RESUME_HISTORY=true" not in argv


def test_nextflow_profile():
    argv = nextflow_argv(PROFILE="test")
    assert argv[argv.index("-profile") + 1] == "test"


# --- which session to resume -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "recorded", "expected"),
    [
        ({}, SESSION, None),  # a first attempt starts afresh, whatever is recorded
        ({"BATCH_TASK_RETRY_ATTEMPT": "1"}, SESSION, SESSION),  # retry: the first attempt's session
        ({"BATCH_TASK_RETRY_ATTEMPT": "1"}, None, None),  # the first attempt never got to start Nextflow
        ({"IS_RECOVERY": "true", "PARENT_SESSION_ID": "parent-s"}, SESSION, "parent-s"),  # the parent's
        ({"IS_RECOVERY": "true"}, SESSION, SESSION),  # parent's row has none: the lineage's record
        ({"IS_RECOVERY": "true", "BATCH_TASK_RETRY_ATTEMPT": "1", "PARENT_SESSION_ID": "p"}, SESSION, "p"),
    ],
)
def test_resume_session(overrides, recorded, expected):
    assert resume_session(env_from(environ(**overrides)), recorded) == expected


def test_session_from_nextflow_log():
    log = (
        "Nov-22 10:00:00.000 [main] DEBUG nextflow.cli.Launcher - $> nextflow run x\n"
        f"Nov-22 10:00:01.000 [main] DEBUG nextflow.Session - Session UUID: {SESSION.upper()}\n"
    )
    assert session_from_log(log) == SESSION
    assert session_from_log(f"DEBUG nextflow.Session - Session uuid: {SESSION}") == SESSION
    assert session_from_log("DEBUG nextflow.Session - Run name: happy_turing") is None


def test_session_record_round_trip():
    env = env_from(environ(CACHE_DIR="gs://arc-runs/cache/r0abc/"))
    assert session_uri(env) == "gs://arc-runs/cache/r0abc/arc-session.json"  # outside work/
    assert session_uri(env_from(environ())) is None
    assert session_from_record(session_record(SESSION, "r0abc", "T")) == SESSION
    for bad in ("", "[]", '{"session_id": "x; rm -rf /"}', "not json"):
        assert session_from_record(bad) is None


# --- config template: render -------------------------------------------------------------------------------


def rendered(
    run_id: str = "r0abc", user_config: Path | None = None, policy: TaskPolicy | None = None, **env: str
) -> str:
    policy = policy or TaskPolicy(project="arc-prod", location="europe-west4")
    values = template_values(env_from(environ(RUN_ID=run_id, **env)), WS, policy, HOOK, user_config)
    return render_template(TEMPLATE, values)


def test_template_renders_every_placeholder():
    text = rendered()
    assert "{{" not in text and "}}" not in text
    assert "includeConfig '/dev/null'" in text
    assert "params." not in text  # nothing leaks into the pipeline's params (schema validation)


def test_template_render_fails_on_a_missing_placeholder():
    values = template_values(env_from(environ()), WS, TaskPolicy("p", "l"), HOOK, None)
    del values["UPDATE_STATUS"]
    with pytest.raises(OrchestrationError, match="UPDATE_STATUS"):
        render_template(TEMPLATE, values)


def test_template_render_fails_on_a_malformed_placeholder():
    with pytest.raises(OrchestrationError, match="malformed"):
        render_template("params.x = {{ RUN ID }}", {"RUN_ID": "'x'"})


def test_values_are_escaped_groovy_literals():
    text = rendered(run_id="r'; rm -rf / ;'\\x")
    assert "'r\\'; rm -rf / ;\\'\\\\x'" in text
    assert groovy_string("a\nb") == "'a\\nb'"
    with pytest.raises(TypeError):
        groovy_int(True)


def test_policy_comes_from_settings():
    settings = Settings(
        project="arc-prod", region="europe-west4",
        task_service_account="tasks@arc-prod.iam.gserviceaccount.com",
        network="projects/arc-prod/global/networks/arc", subnetwork="regions/europe-west4/subnetworks/arc",
        no_external_ip=True, batch_spot=False, max_spot_attempts=2, boot_disk_gb=200,
    )  # fmt: skip
    policy = TaskPolicy.from_settings(settings)
    assert (policy.project, policy.location, policy.spot, policy.max_spot_attempts) == (
        "arc-prod", "europe-west4", False, 2,
    )  # fmt: skip
    config = evaluate(rendered(policy=policy))
    assert config["google.batch.serviceAccountEmail"] == "'tasks@arc-prod.iam.gserviceaccount.com'"
    assert config["google.batch.network"] == "'projects/arc-prod/global/networks/arc'"
    assert config["google.batch.subnetwork"] == "'regions/europe-west4/subnetworks/arc'"
    assert config["google.batch.usePrivateAddress"] == "true"
    assert config["google.batch.bootDiskSize"] == "200.GB"


# --- config template: parse (Nextflow's merge rule) --------------------------------------------------------


def _text(tokens: list[Token]) -> str:
    out = ""
    for tok in tokens:
        piece = groovy_string(tok.text) if tok.kind == "str" else tok.text
        word = tok.kind in ("name", "num", "str")
        out += (" " if out and word and out[-1].isalnum() else "") + piece
    return out


def evaluate(text: str, scope: tuple[str, ...] = (), into: dict[str, str] | None = None) -> dict[str, str]:
    """Nextflow's config merge, modelled (Nextflow itself cannot run here): statements apply top to bottom,
    a later assignment to the same setting wins, and includeConfig merges the named file in place."""
    out = {} if into is None else into
    toks = [t for t in tokenize(text) if t.kind != "eof"]
    stack, i = [scope], 0
    while i < len(toks):
        tok = toks[i]
        if tok.kind == "nl" or tok.is_op(";"):
            i += 1
        elif tok.is_op("}"):
            stack.pop()
            i += 1
        elif tok.kind == "name" and tok.text == "includeConfig":
            evaluate(Path(toks[i + 1].text).read_text(encoding="utf-8"), stack[-1], out)
            i += 2
        else:  # a.b.c = value | name { | withName: 'X' {
            path, j = [tok.text], i + 1
            while toks[j].is_op(".") or toks[j].is_op(":"):
                sep = toks[j].text
                path[-1:] = (
                    [path[-1] + ":" + toks[j + 1].text] if sep == ":" else [path[-1], toks[j + 1].text]
                )
                j += 2
            if toks[j].is_op("{"):
                stack.append(stack[-1] + tuple(path))
                i = j + 1
                continue
            assert toks[j].is_op("="), f"line {toks[j].line}: expected = after {'.'.join(path)}"
            depth, k = 0, j + 1
            while k < len(toks) and not (depth == 0 and (toks[k].kind == "nl" or toks[k].is_op(";", "}"))):
                depth += 1 if toks[k].is_op("(", "[", "{") else -1 if toks[k].is_op(")", "]", "}") else 0
                k += 1
            out[".".join(stack[-1] + tuple(path))] = _text(toks[j + 1 : k])
            i = k
    return out


HOSTILE_USER_CONFIG = """
params.greeting = 'hello'
process.executor = 'local'
process {
    cpus = 8
    errorStrategy = 'ignore'
    scratch = false
    resourceLimits = [cpus: 999]
    resourceLabels = [app: 'other']
    withName: 'STARSOLO' { memory = 64.GB }
}
google.project = 'evil'
google { location = 'mars-north1'; batch { spot = false; serviceAccountEmail = 'evil@x.iam.com' } }
workDir = 'gs://evil/work'
trace.file = '/tmp/elsewhere.txt'
workflow.onComplete = { 'rm -rf /'.execute() }
workflow.onError = { }
"""


def test_executor_blocks():
    config = evaluate(rendered(ARC_RUN_LABELS='{"pipeline":"nf-core_scrnaseq","user-email":"a-at-b_org"}'))
    assert config["process.executor"] == "'google-batch'"
    assert config["process.scratch"] == "true"
    assert config["process.maxRetries"] == "3"  # no pipeline rule in this render: ours alone
    assert config["process.resourceLimits"] == "[cpus:36,memory:500.GB,time:48.h]"
    codes = ",".join(str(c) for c in TASK_RETRIED_EXIT_STATUSES)
    assert config["process.errorStrategy"].replace("\n", "") == (
        f"{{task.exitStatus in[{codes}]?'retry':task.exitStatus in[]?'retry':'terminate'}}"
    )
    assert codes == "50001,50002,50003,50004,50005,50006,2147483647"  # 2147483647: exit code unknown
    assert config["process.resourceLabels"] == (
        "['pipeline':'nf-core_scrnaseq','user-email':'a-at-b_org','app':'arc-reactor','run-id':'r0abc']"
    )
    assert (config["google.project"], config["google.location"]) == ("'arc-prod'", "'europe-west4'")
    assert config["google.batch.spot"] == "true" and config["google.batch.maxSpotAttempts"] == "3"
    assert config["google.batch.bootDiskSize"] == "100.GB"
    for unset in ("serviceAccountEmail", "network", "subnetwork"):
        assert config[f"google.batch.{unset}"] == "null"
    assert config["google.batch.usePrivateAddress"] == "false"
    assert config["workDir"] == "'gs://arc-runs/work/r0abc/'"
    for report, name in (("trace", "trace.txt"), ("timeline", "timeline.html"), ("report", "report.html"),
                         ("dag", "dag.html")):  # fmt: skip
        assert config[f"{report}.file"] == f"'/tmp/arc-run.abc/logs/{name}'"
        assert config[f"{report}.enabled"] == "true"


def test_user_config_cannot_override_executor_google_workdir_or_hooks(tmp_path):
    ours = evaluate(rendered())
    user = tmp_path / "nextflow.config"
    user.write_text(HOSTILE_USER_CONFIG, encoding="utf-8")
    merged = evaluate(rendered(user_config=user))
    assert evaluate(HOSTILE_USER_CONFIG)["process.executor"] == "'local'"  # the parse sees the override...
    fixed = [k for k in ours if k.split(".")[0] in ("google", "workDir", "workflow", "trace", "dag")]
    fixed += ["process.executor", "process.scratch", "process.resourceLimits", "process.resourceLabels"]
    for key in fixed:  # ...and our later assignments win over it
        assert merged[key] == ours[key], key
    # What a user may tune still applies: it is included after our defaults.
    assert merged["process.cpus"] == "8" and merged["process.errorStrategy"] == "'ignore'"
    assert merged["process.withName:STARSOLO.memory"] == "64.GB"
    assert merged["params.greeting"] == "'hello'"


def test_config_policy_is_the_first_line_of_defence():
    """The structure above holds even for a config the policy would let through by mistake; the policy
    itself refuses every override that the structure neutralises."""
    problems = [p.message for p in check_config(HOSTILE_USER_CONFIG)]
    for key in ("process.executor", "google.project", "google", "workDir", "workflow.onComplete"):
        assert any(m.startswith(f"{key} is not allowed") for m in problems), (key, problems)
    assert check_config("process { cpus = 8\n withName: 'STARSOLO' { memory = 64.GB } }\n") == []


def test_hooks_are_argument_lists_not_shell_strings():
    text = rendered()
    hooks = re.findall(r"workflow\.on(?:Complete|Error) = \{(.*?)\n\}", text, re.DOTALL)
    assert len(hooks) == 2
    for body in hooks:
        assert body.lstrip().startswith(
            "if (new File('/tmp/arc-run.abc/terminated').exists()) {\n        return"
        )
        assert "def cmd = ['/usr/bin/python3', '/opt/arc/orchestrator/update_status.py', 'r0abc'," in body
        assert "'--session_id', String.valueOf(workflow.sessionId)" in body
        assert "'--error_message=' + String.valueOf(workflow.errorMessage" in body
        assert "'--exit_code', String.valueOf(workflow.exitStatus" in body
        assert "cmd += ['--error_task=' + task.group(1)]" in body
        assert "cmd.collect { String.valueOf(it) }.execute()" in body
        assert '".execute()' not in body and "'.execute()" not in body  # never a string executed by a shell
        assert "waitFor(120" in body  # bounded wait
        assert '"' not in body  # no GString anywhere: nothing gets interpolated into a command
    parsed = evaluate(text)
    assert parsed["workflow.onComplete"].startswith("{\nif(new File('/tmp/arc-run.abc/terminated')")


def test_resource_labels_carry_run_id_and_app():
    env = env_from(environ(ARC_RUN_LABELS='{"app":"other","pipeline":"nf-core_scrnaseq","Team":"Bio Lab"}'))
    assert resource_labels(env) == {
        "pipeline": "nf-core_scrnaseq", "team": "bio_lab", "app": "arc-reactor", "run-id": "r0abc",
    }  # fmt: skip
    assert "resourceLabels = ['app': 'arc-reactor', 'run-id': 'r0abc']" in rendered()


def test_bad_run_labels_json_is_an_error():
    with pytest.raises(OrchestrationError, match="ARC_RUN_LABELS"):
        resource_labels(env_from(environ(ARC_RUN_LABELS="[1, 2]")))


# --- inputs and the Snakemake work dir sync ----------------------------------------------------------------


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
    staged = {"gs://b/a_1.fq.gz": Path("in/b/a_1.fq.gz"), "gs://b/a_2.fq.gz": Path("in/b/a_2.fq.gz")}
    assert localize_rows(rows, staged) == [
        ["s1", "in/b/a_1.fq.gz", "in/b/a_2.fq.gz"], ["s2", "in/b/a_1.fq.gz", ""], ["s3", "x.fq", ""],
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("rel", "synced"),
    [
        ("results/stats/sample1.json", True),
        ("results/summary.tsv", True),
        ("intermediate/x.bam", True),
        (".snakemake/metadata/cmVzdWx0cw==", True),
        (".snakemake/incomplete/cmVzdWx0cw==", True),
        (".snakemake/log/2026-01-01T000000.snakemake.log", False),  # per attempt
        (".snakemake/locks/0.input.lock", False),
        (".snakemake/iocache/latest.pkl", False),
        ("inputs/arc-demo-data/fastq/s1_R1.fastq.gz", False),  # staged again each time
        (".arc/params.yaml", False),  # the task context: written again each time
        (".arc/samplesheet.csv", False),
        ("arc-workdir.json", False),
    ],
)
def test_what_the_snakemake_work_dir_sync_keeps(rel, synced):
    assert is_synced(rel) is synced


@pytest.mark.parametrize("rel", ["../x", "/etc/passwd", "a//b", "a/./b", "", "results/../../x"])
def test_work_dir_manifest_names_that_could_escape_are_refused(rel):
    assert not safe_relative(rel)


# --- outcome ---------------------------------------------------------------------------------------------


def test_outcome_completed():
    assert outcome_args(0, None, "2026-01-01T00:00:00+00:00") == [
        "completed", "--completed_at", "2026-01-01T00:00:00+00:00",
    ]  # fmt: skip


def test_outcome_failed_carries_code_message_and_task():
    args = outcome_args(1, Failure("pipeline_error", "boom", "stats"), "T")
    assert args == [
        "failed", "--failed_at", "T", "--exit_code", "1", "--error_code=pipeline_error",
        "--error_message=boom", "--error_task=stats",
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
