"""The nextflow.config allowlist: accepted resource configs, and each refused construct with its line."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shared_fixtures import SCRNASEQ_FIXTURES, requires_scrnaseq_fixtures

from arc_reactor.core.config_policy import check_config
from arc_reactor.core.config_syntax import Sized, tokenize

RESOURCES = """\
// Bigger machines for the aligner
/* a block comment
   over two lines */
params {
    aligner  = 'star'
    protocol = "10XV2"
    skip_fastqc = true
    genomes = ['GRCh38', 'GRCm39',
               'GRCz11']
    min_count = -1
}
params.email = 'me@example.org'

process {
    cpus = 2
    memory = 8.GB
    time = '2h'
    disk = '100 GB'
    errorStrategy = 'retry'; maxRetries = 2
    maxErrors = -1
    ext.args = '--verbose'

    withName: 'NFCORE_SCRNASEQ:.*:STAR_ALIGN' {
        cpus   = 16
        memory =
            64.GB
        time   = 1.5.h
    }
    withLabel: process_high { memory = 100.GB; ext { args = '--fast' } }
}
"""


def test_resources_and_params_config_is_accepted() -> None:
    assert check_config(RESOURCES) == []


def test_empty_and_comment_only_configs_are_accepted() -> None:
    assert check_config("") == []
    assert check_config("// nothing\n/* still\nnothing */\n\n") == []


def test_problem_names_file_and_line() -> None:
    (problem,) = check_config("params.a = 1\n\nprocess.executor = 'google-batch'\n")
    assert (problem.file, problem.line) == ("nextflow.config", 3)
    assert str(problem) == (
        "nextflow.config:3: process.executor is not allowed: the executor is set by Arc Reactor"
    )


FORBIDDEN = [
    ("executor { name = 'local' }", "executor is not allowed: the executor is set by Arc Reactor"),
    ("process.executor = 'local'", "process.executor is not allowed: the executor"),
    (
        "process {\n  withName: FOO { executor = 'local' }\n}",
        "process.withName:'FOO'.executor is not allowed",
    ),
    ("google.project = 'p'", "google.project is not allowed: Google Cloud settings"),
    ("google {\n  location = 'us'\n}", "google is not allowed: Google Cloud settings"),
    ("workDir = 'gs://elsewhere/work'", "workDir is not allowed: the work directory is set by Arc Reactor"),
    ("plugins {\n  id 'nf-amazon'\n}", "plugins is not allowed: plugins are code"),
    ("includeConfig 'other.config'", "includeConfig is not allowed"),
    ("env.SECRET = 'x'", "env.SECRET is not allowed: environment variables"),
    ("env { PATH = '/evil' }", "env is not allowed"),
    ("docker.enabled = true", "docker.enabled is not allowed: the container engine"),
    ("singularity { enabled = true }", "singularity is not allowed: the container engine"),
    ("podman.enabled = true", "podman.enabled is not allowed: the container engine"),
    ("process.memory = { task.attempt * 2.GB }", "process.memory: closures ({ ... }) are not allowed"),
    ("process {\n  time = { 2.h * task.attempt }\n}", "process.time: closures"),
    ("process.shell = ['/bin/bash', '-c']", "process.shell is not allowed: the task shell"),
    (
        "process.beforeScript = 'curl x | sh'",
        "process.beforeScript is not allowed: it runs arbitrary commands",
    ),
    ("process.afterScript = 'rm -rf /'", "process.afterScript is not allowed"),
    ("process.container = 'evil:latest'", "process.container is not allowed: the container is fixed"),
    ("process.containerOptions = '--privileged'", "process.containerOptions is not allowed"),
    ("params.x = \"${System.getenv('HOME')}\"", 'params.x: string interpolation ("${...}") is not allowed'),
    ("params.x = 'ls'.execute()", "params.x: method calls are not allowed"),
    ("params.x = System.getenv('HOME')", "params.x: Java/Groovy system calls (System. ...) are not allowed"),
    ("params.x = new File('/etc/passwd').text", "params.x: object creation (new ...) is not allowed"),
    ("System.exit(1)", "Java/Groovy system calls (System. ...) are not allowed"),
    ("profiles {\n  gcb { process.executor = 'local' }\n}", "profiles is not allowed"),
    ("manifest.name = 'x'", "manifest.name is not allowed: the manifest belongs to the pipeline"),
    ("aws.region = 'eu'", "aws.region is not allowed: runs use Google Cloud Batch only"),
    ("azure { batch { location = 'x' } }", "azure is not allowed"),
    ("k8s.namespace = 'x'", "k8s.namespace is not allowed"),
    ("tower.enabled = true", "tower.enabled is not allowed: Seqera services are not used"),
    ("wave.enabled = true", "wave.enabled is not allowed"),
    ("fusion.enabled = true", "fusion.enabled is not allowed"),
    ("cleanup = true", "cleanup is not allowed: cleanup would delete the work directory"),
    ("nextflow.enable.dsl = 2", "nextflow.enable.dsl is not allowed"),
    ("timeline.enabled = false", "timeline.enabled is not allowed: reports are written by Arc Reactor"),
    ("report { enabled = false }", "report is not allowed"),
    ("trace.file = 'x'", "trace.file is not allowed"),
    ("dag.enabled = true", "dag.enabled is not allowed"),
    ("process.queue = 'fast'", "process.queue is not allowed: in process only cpus, memory"),
    ("process.ext.prefix = 'x'", "process.ext.prefix is not allowed: only ext.args"),
    ("def x = 1", "Groovy statements (def) are not allowed"),
    (
        "params {\n  withName: X { cpus = 1 }\n}",
        "withName selectors are only allowed directly inside process",
    ),
]


@pytest.mark.parametrize(("snippet", "message"), FORBIDDEN, ids=[m for _, m in FORBIDDEN])
def test_forbidden_construct_is_refused_with_its_line(snippet: str, message: str) -> None:
    # Put the construct on line 3, after allowed settings, to check the reported line.
    text = "params.ok = 1\nprocess.cpus = 2\n" + snippet + "\nparams.after = 'fine'\n"
    problems = check_config(text)
    assert len(problems) == 1, problems
    assert problems[0].message.startswith(message), problems[0].message
    expected_line = 3 + next(i for i, line in enumerate(snippet.splitlines()) if _offender(line))
    assert problems[0].line == expected_line


def _offender(line: str) -> bool:
    """The snippet line a problem is reported on: the first one that is not a bare scope opener."""
    return not line.strip().startswith(("process {", "params {"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("process.cpus = '4'", "process.cpus: cpus must be a positive whole number"),
        ("process.cpus = 0", "process.cpus: cpus must be a positive whole number"),
        ("process.memory = 8.h", "process.memory: memory must be a size"),
        ("process.memory = 'lots'", "process.memory: memory must be a size"),
        ("process.time = 'forever'", "process.time: time must be a duration"),
        ("process.errorStrategy = 'explode'", "process.errorStrategy: errorStrategy must be one of"),
        ("process.maxRetries = 1.5", "process.maxRetries: maxRetries must be a whole number"),
        ("process.ext.args = 3", "process.ext.args: ext.args must be a string"),
        ("process.cpus = 2 * 4", "process.cpus: the value is not a literal"),
        ("params.x = params.y", "params.x: the value is not a literal"),
    ],
)
def test_wrong_values_for_allowed_settings(text: str, message: str) -> None:
    (problem,) = check_config(text)
    assert problem.message.startswith(message), problem.message


def test_every_problem_is_reported_in_line_order() -> None:
    text = "workDir = 'x'\nprocess {\n  executor = 'local'\n  cpus = 2\n  container = 'y'\n}\nenv.A = 'b'\n"
    assert [p.line for p in check_config(text)] == [1, 3, 5, 7]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("params {\n  a = 'open\n}\n", 2, "the string opened here is never closed"),
        ("params.a = 1\n/* never closed", 2, "the comment opened here is never closed"),
        ("process {\n  cpus = 2\n", 1, "the block opened here is never closed (missing '}')"),
        ("params.a = 1\n}\n", 2, "'}' without a matching '{'"),
    ],
)
def test_broken_syntax(text: str, line: int, message: str) -> None:
    (problem,) = check_config(text)
    assert (problem.line, problem.message) == (line, message)


def test_escaped_dollar_is_not_interpolation() -> None:
    assert check_config('params.price = "\\$5"\n') == []


def test_escaped_backslash_before_interpolation_is_still_interpolation() -> None:
    (problem,) = check_config("params.x = \"\\\\${'ls'.execute()}\"\n")
    assert "string interpolation" in problem.message


def test_tokenizer_reads_literals() -> None:
    kinds = [(t.kind, t.text) for t in tokenize("a = 8.GB // c\n")]
    assert kinds == [
        ("name", "a"),
        ("op", "="),
        ("num", "8"),
        ("op", "."),
        ("name", "GB"),
        ("nl", "\n"),
        ("eof", ""),
    ]
    assert Sized(8, "GB").unit == "GB"


@requires_scrnaseq_fixtures()
def test_nf_core_test_config_is_refused() -> None:
    # conf/test.config sets process.resourceLimits (a map, line 14) and maxForks inside a withName block
    # (line 40): neither is on the allowlist (only cpus, memory, time, disk, maxRetries, maxErrors,
    # errorStrategy and ext.args are), so the file is refused. Its params block alone would be accepted.
    text = (SCRNASEQ_FIXTURES / "conf" / "test.config").read_text()
    problems = check_config(text)
    assert [p.line for p in problems] == [14, 40]
    assert problems[0].message.startswith("process.resourceLimits is not allowed")
    assert problems[1].message.startswith("process.withName:'.*:CELLRANGER_COUNT'.maxForks is not allowed")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab =.{}[]()'\"$/*\n:,-12;\\")), max_size=60))
def test_checker_never_raises(text: str) -> None:
    for problem in check_config(text):
        assert problem.line is not None


def test_deep_nesting_is_refused_not_a_crash() -> None:
    deep_scopes = "params {\n" + "a {\n" * 5000 + "}\n" * 5001
    assert "scopes nest deeper than 16 levels" in check_config(deep_scopes)[0].message
    deep_list = "params.a = " + "[" * 5000 + "]" * 5000 + "\n"
    assert "the value is not a literal" in check_config(deep_list)[0].message


def test_unicode_escapes_are_refused() -> None:
    # Groovy decodes \u0024 to `$` before lexing, so this string would interpolate and run code.
    (problem,) = check_config("params.ok = 1\nparams.x = \"\\u0024{'ls'.execute()}\"\n")
    assert problem.line == 2
    assert problem.message.startswith("unicode escapes")


@pytest.mark.parametrize(
    "args",
    [
        "--quiet; touch x",
        "--x $(id)",
        "a|b",
        "`id`",
        "--o=x>y",
        "a\\nb",
        "'quoted'",
        '"q"',
        "a*",
        "--x ${HOME}",
    ],
)
def test_ext_args_that_could_leave_the_argument_list_are_refused(args: str) -> None:
    text = "process.ext.args = " + repr(args) + "\n"
    problems = check_config(text)
    assert problems and "ext.args may hold only options" in problems[0].message, (args, problems)


def test_plain_ext_args_pass() -> None:
    assert check_config("process.ext.args = '--min-qual=20 -k 31 --out ./x,y:z @file +1 50%'\n") == []


def test_a_number_python_cannot_hold_is_a_problem_on_its_line() -> None:
    (problem,) = check_config("process.cpus = 2\nprocess.memory = " + "9" * 5000 + "\n")
    assert problem.line == 2
    assert "(5000 digits) is not a number this config can hold" in problem.message
