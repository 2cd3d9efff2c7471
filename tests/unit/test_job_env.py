"""The orchestrator job's environment contract (core/job_env.py): what the job spec writes, the
orchestrator reads back, field for field."""

from __future__ import annotations

import string
from dataclasses import fields

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arc_reactor.core.job_env import RETRY_ATTEMPT_VAR, JobEnv, job_env_vars
from arc_reactor.errors import OrchestrationError

_text = st.text(alphabet=string.ascii_letters + string.digits + "-_.,/", min_size=1, max_size=20)
_gs = st.builds(lambda b, p: f"gs://{b}/{p}", st.from_regex(r"[a-z][a-z0-9-]{2,10}", fullmatch=True), _text)
_opt = st.one_of(st.just(""), _text)
_opt_gs = st.one_of(st.just(""), _gs)
_labels = st.dictionaries(st.from_regex(r"[a-z][a-z0-9_-]{0,8}", fullmatch=True), _opt, max_size=4)


@st.composite
def job_envs(draw: st.DrawFn) -> JobEnv:
    engine = draw(st.sampled_from(["nextflow", "snakemake"]))
    return JobEnv(
        run_id=draw(_text),
        pipeline=draw(_text),
        pipeline_version=draw(_text),
        engine=engine,
        config_uri=draw(_opt_gs),
        params_uri=draw(_gs),
        work_dir=draw(_gs) if engine == "nextflow" else draw(_opt_gs),
        is_recovery=draw(st.booleans()),
        parent_session_id=draw(_opt),
        profile=draw(_opt),
        cache_dir=draw(_opt_gs),
        logs_dir=draw(_opt_gs),
        results_dir=draw(_opt_gs),
        labels=draw(_labels),
    )


@given(job_envs(), st.integers(min_value=0, max_value=5))
def test_every_field_survives_the_trip_through_the_job_environment(env: JobEnv, attempt: int) -> None:
    variables = env.to_env()
    assert RETRY_ATTEMPT_VAR not in variables  # Batch sets it, never we
    back = JobEnv.from_env({**variables, RETRY_ATTEMPT_VAR: str(attempt)})
    assert back.retry_attempt == attempt
    assert JobEnv.from_env(variables) == env


def test_every_field_has_its_own_variable() -> None:
    assert len(job_env_vars()) == len(fields(JobEnv))


def test_profile_travels() -> None:
    env = JobEnv(
        "r1", "nf-core/scrnaseq", "4.0.0", "nextflow", "", "gs://b/p.yaml", "gs://b/w/", profile="test"
    )
    assert env.to_env()["PROFILE"] == "test"
    assert JobEnv.from_env(env.to_env()).profile == "test"


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"IS_RECOVERY": "perhaps"}, "IS_RECOVERY must be true or false"),
        ({"WORK_DIR": "s3://x/"}, "WORK_DIR"),
        ({"PARAMS_GCS_PATH": ""}, "PARAMS_GCS_PATH is required"),
        ({"ARC_RUN_LABELS": "[1]"}, "ARC_RUN_LABELS must be a JSON object"),
        ({"ARC_RUN_LABELS": "{"}, "ARC_RUN_LABELS is not JSON"),
        ({RETRY_ATTEMPT_VAR: "x"}, RETRY_ATTEMPT_VAR),
    ],
)
def test_a_bad_variable_is_named(overrides: dict[str, str], match: str) -> None:
    good = JobEnv("r1", "p", "1", "nextflow", "", "gs://b/p.yaml", "gs://b/w/").to_env()
    with pytest.raises(OrchestrationError, match=match) as err:
        JobEnv.from_env({**good, **overrides})
    assert err.value.code == "bad_environment"
