"""The rendered errorStrategy, evaluated by real Groovy: which task failures Nextflow retries on Batch.

Nextflow cannot run here (its launcher downloads a jar), so Groovy's own ConfigSlurper stands in for
Nextflow's config parser: it parses the pipeline's config and ours in Nextflow's order, merges them as
Nextflow's ConfigBuilder does (a later file's keys win), and calls the resulting errorStrategy closure
with the task values Nextflow 24.04.4's google-batch executor produces (core/batch_policy.py says which).
Two things are stubbed: the memory/duration units (`500.GB`), and `includeConfig` (a Nextflow addition),
whose line is dropped; a test that needs the included file merges it next, as section (3) of our config
sets nothing about retries. Groovy and Java come from Debian (.ci/run installs groovy); without them the
test skips, except in CI, where it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from arc_reactor.core.batch_policy import NEXTFLOW_UNKNOWN_EXIT_STATUS
from arc_reactor.core.engine_command import Workspace
from arc_reactor.core.job_env import env_from
from arc_reactor.core.nextflow_config import TaskPolicy, render_template, template_values
from arc_reactor.core.registry import ErrorStrategy, load_registry

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = (ROOT / "orchestrator" / "nextflow.config.template").read_text(encoding="utf-8")
ENV = {
    "RUN_ID": "r0abc", "PIPELINE": "nf-core/scrnaseq", "PIPELINE_VERSION": "4.0.0", "ENGINE": "nextflow",
    "PARAMS_GCS_PATH": "gs://arc-runs/runs/r0abc/inputs/params.yaml", "WORK_DIR": "gs://arc-runs/work/r0abc/",
}  # fmt: skip

# nf-core/scrnaseq's conf/base.config, the lines that decide retries (the nf-core template's own).
NF_CORE_BASE = """
process {
    cpus   = { 1      * task.attempt }
    memory = { 6.GB   * task.attempt }
    errorStrategy = { task.exitStatus in ((130..145) + 104 + (175..177)) ? 'retry' : 'finish' }
    maxRetries    = 1
    maxErrors     = '-1'
}
"""

EVALUATE = r"""
import groovy.json.JsonOutput
import groovy.json.JsonSlurper

Number.metaClass.getGB = { -> delegate }
Number.metaClass.getH = { -> delegate }
def job = new JsonSlurper().parse(new File(args[0]))
def results = job.collect { set ->
    def merged = new ConfigObject()
    set.files.each {
        def text = new File(it).text.replaceAll(/(?m)^\s*includeConfig .*$/, '')
        merged.merge(new ConfigSlurper().parse(text))
    }
    def strategy = merged.process.errorStrategy
    def decisions = set.cases.collect { c ->
        if (!(strategy instanceof Closure)) return strategy
        def closure = (Closure) strategy.clone()
        closure.delegate = [task: [exitStatus: c[0] as Integer, attempt: c[1] as Integer]]
        closure.resolveStrategy = Closure.DELEGATE_FIRST
        closure.call()
    }
    [decisions: decisions, maxRetries: merged.process.maxRetries]
}
println JsonOutput.toJson(results)
"""


def _groovy() -> tuple[str, dict[str, str]]:
    groovy, java = shutil.which("groovy"), shutil.which("java")
    if not (groovy and java):
        if os.environ.get("CI"):
            pytest.fail("groovy and java are needed for this test in CI (.ci/run installs groovy)")
        pytest.skip("groovy or java is not installed (apt-get install groovy)")
    env = dict(os.environ)
    env.setdefault("JAVA_HOME", str(Path(java).resolve().parents[1]))
    return groovy, env


def _evaluate(tmp_path: Path, sets: list[tuple[list[str], list[tuple[int, int]]]]) -> list[dict]:
    """Merge each set's config texts in order; ask the merged errorStrategy about each (status, attempt)."""
    groovy, env = _groovy()
    job = []
    for i, (texts, cases) in enumerate(sets):
        files = []
        for j, text in enumerate(texts):
            path = tmp_path / f"set{i}-{j}.config"
            path.write_text(text, encoding="utf-8")
            files.append(str(path))
        job.append({"files": files, "cases": cases})
    (tmp_path / "job.json").write_text(json.dumps(job), encoding="utf-8")
    (tmp_path / "evaluate.groovy").write_text(EVALUATE, encoding="utf-8")
    done = subprocess.run(
        [groovy, str(tmp_path / "evaluate.groovy"), str(tmp_path / "job.json")],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, "\n".join(
        line for line in done.stderr.splitlines() if not line.lstrip().startswith("at ")
    )[:2000]
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def _ours(strategy: ErrorStrategy | None, user_config: Path | None = None) -> str:
    policy = TaskPolicy(project="arc-prod", location="europe-west4", max_retries=3)
    hook = ("/usr/bin/python3", "/opt/arc/orchestrator/update_status.py")
    workspace = Workspace.at(Path("/tmp/arc-run"))
    values = template_values(env_from(ENV), workspace, policy, hook, user_config, pipeline_strategy=strategy)
    return render_template(TEMPLATE, values)


PREEMPTED, UNKNOWN, VM_LOST, OOM, SCRIPT_ERROR = 50001, NEXTFLOW_UNKNOWN_EXIT_STATUS, 50002, 137, 1
CASES = [(PREEMPTED, 1), (UNKNOWN, 1), (VM_LOST, 1), (OOM, 1), (SCRIPT_ERROR, 1), (UNKNOWN, 3), (OOM, 2)]


def test_infrastructure_failures_are_retried_and_the_pipeline_rule_decides_the_rest(tmp_path: Path) -> None:
    scrnaseq = load_registry().get("nf-core/scrnaseq")
    assert scrnaseq is not None
    composed, without_rule, pipeline_alone = _evaluate(
        tmp_path,
        [
            ([NF_CORE_BASE, _ours(scrnaseq.error_strategy)], CASES),
            ([NF_CORE_BASE, _ours(None)], CASES),
            ([NF_CORE_BASE], CASES),
        ],
    )
    # Spot preemption (50001), a VM lost (reported as Integer.MAX_VALUE by Nextflow 24.04.4, or as 50002
    # by a Nextflow that reports Batch's code): retried. An out-of-memory kill: the pipeline's own retry.
    # A script error: the pipeline's own `finish`.
    assert composed["decisions"] == ["retry", "retry", "retry", "retry", "finish", "retry", "retry"]
    assert composed["maxRetries"] == 3 + 1  # ours plus the pipeline's
    # Without the registry's rule a task's own failure ends the run at once (the behaviour before).
    assert without_rule["decisions"] == [
        "retry",
        "retry",
        "retry",
        "terminate",
        "terminate",
        "retry",
        "terminate",
    ]
    assert without_rule["maxRetries"] == 3
    # The pipeline alone never retries a lost VM: Integer.MAX_VALUE is not in its list.
    assert pipeline_alone["decisions"][:2] == ["finish", "finish"]


def test_a_users_error_strategy_replaces_ours(tmp_path: Path) -> None:
    user = tmp_path / "user.config"
    user.write_text("process { errorStrategy = 'ignore'\n maxRetries = 1 }\n", encoding="utf-8")
    ours = _ours(load_registry().get("nf-core/scrnaseq").error_strategy, user)  # type: ignore[union-attr]
    # includeConfig is stubbed in the evaluator: the user's file is merged after ours, as Nextflow includes
    # it in our config's section (2), before section (3) which sets nothing about retries.
    (merged,) = _evaluate(tmp_path, [([NF_CORE_BASE, ours, user.read_text(encoding="utf-8")], CASES[:2])])
    assert merged["decisions"] == ["ignore", "ignore"]
    assert merged["maxRetries"] == 1
