"""Manifests, object names, params, schema sources and whole-bundle validation."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from shared_fixtures import SCRNASEQ_FIXTURES, requires_scrnaseq_fixtures

from arc_reactor.core.bundle import Manifest, ValidBundle, check_object_name, parse_manifest, validate_bundle
from arc_reactor.core.params import check_params, parse_params
from arc_reactor.core.registry import Registry, parse_registry
from arc_reactor.core.schemas import DirectorySchemaSource
from arc_reactor.errors import BundleInvalid, Problem

REGISTRY = parse_registry(
    {
        "pipelines": {
            "nf-core/scrnaseq": {
                "engine": "nextflow",
                "source": "nf-core/scrnaseq",
                "revisions": ["4.0.0", "3.0.0"],
                "default_revision": "4.0.0",
                "params_schema": "nextflow_schema.json",
                "input_schema": "assets/schema_input.json",
                "input_url_schemes": ["gs", "https"],
            },
            "arc/demo": {
                "engine": "snakemake",
                "source": "path:demo",
                "revisions": ["1.0.0"],
                "default_profile": "local",
                "params_schema": "params_schema.json",
                "input_schema": "schema_input.json",
            },
        }
    }
)
SCRNASEQ = REGISTRY.pipelines["nf-core/scrnaseq"]
DEMO = REGISTRY.pipelines["arc/demo"]
SHEET = b"sample,fastq_1,fastq_2\nA,gs://b/a_R1.fastq.gz,gs://b/a_R2.fastq.gz\n"
needs_scrnaseq = requires_scrnaseq_fixtures()


def manifest_problems(text: str, registry: Registry = REGISTRY) -> list[Problem]:
    manifest, problems = parse_manifest(text.encode(), registry)
    assert manifest is None
    return problems


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, problems
    return problems[0]


# Manifest


def test_minimal_manifest_takes_registry_defaults() -> None:
    manifest, problems = parse_manifest(b"pipeline: arc/demo\n", REGISTRY)
    assert problems == []
    assert manifest == Manifest("arc/demo", "1.0.0", "snakemake", "local", {}, None, None, None)


def test_full_manifest() -> None:
    text = (
        "pipeline: nf-core/scrnaseq\nrevision: '3.0.0'\nengine: nextflow\nprofile: test,gcb\n"
        "labels: {team: genomics, cost-center: '42'}\nsubmitter: ada@example.org\nname: first try\n"
        "parent_run_id: r0000000000abcdefgh\n"
    )
    manifest, problems = parse_manifest(text.encode(), REGISTRY)
    assert problems == []
    assert manifest == Manifest(
        "nf-core/scrnaseq",
        "3.0.0",
        "nextflow",
        "test,gcb",
        {"team": "genomics", "cost-center": "42"},
        "ada@example.org",
        "first try",
        "r0000000000abcdefgh",
    )


def test_unknown_pipeline_lists_the_known_ones() -> None:
    problem = only(manifest_problems("name: x\npipeline: nf-core/rnaseq\n"))
    assert (problem.file, problem.line, problem.field) == ("run.yaml", 2, "pipeline")
    assert problem.message == "unknown pipeline 'nf-core/rnaseq'; known pipelines: arc/demo, nf-core/scrnaseq"


def test_missing_pipeline_lists_the_known_ones() -> None:
    problem = only(manifest_problems("name: x\n"))
    assert problem.message == "is required; known pipelines: arc/demo, nf-core/scrnaseq"


def test_bad_revision_lists_the_allowed_ones() -> None:
    problem = only(manifest_problems("pipeline: nf-core/scrnaseq\nrevision: 9.9.9\n"))
    assert (problem.line, problem.field) == (2, "revision")
    assert problem.message == "'9.9.9' is not an allowed revision of nf-core/scrnaseq; allowed: 4.0.0, 3.0.0"


def test_numeric_revision_asks_for_quotes() -> None:
    problem = only(manifest_problems("pipeline: nf-core/scrnaseq\nrevision: 4.0\n"))
    assert problem.message == 'must be a string, not a number (quote it: revision: "4.0")'


def test_unknown_key_is_named_with_a_suggestion() -> None:
    problem = only(manifest_problems("pipeline: arc/demo\nrevison: 1.0.0\n"))
    assert (problem.line, problem.field) == (2, "revison")
    assert problem.message.startswith("unknown key; did you mean 'revision'?")


def test_engine_mismatch() -> None:
    problem = only(manifest_problems("pipeline: nf-core/scrnaseq\nengine: snakemake\n"))
    assert problem.message == "'snakemake' does not match nf-core/scrnaseq, which runs on nextflow"


@pytest.mark.parametrize(
    ("labels", "field", "message"),
    [
        ("{team: 1}", "labels.team", "label values must be strings, not a number"),
        ("{team: [a, b]}", "labels.team", "label values must be strings, not a list"),
        ("{team: {x: y}}", "labels.team", "label values must be strings, not a mapping"),
        ("{1: x}", "labels.1", "label names must be strings, not a number"),
        ("[a, b]", "labels", "must be a mapping of name: value, not a list"),
    ],
)
def test_bad_labels(labels: str, field: str, message: str) -> None:
    problem = only(manifest_problems(f"pipeline: arc/demo\nlabels: {labels}\n"))
    assert (problem.line, problem.field, problem.message) == (2, field, message)


def test_too_many_labels() -> None:
    labels = ", ".join(f"k{i}: v" for i in range(33))
    problem = only(manifest_problems(f"pipeline: arc/demo\nlabels: {{{labels}}}\n"))
    assert problem.message == "has 33 labels; at most 32 are allowed"


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        ("profile: 'test; rm -rf /'", "profile", "is not a profile list"),
        ("submitter: not-an-email", "submitter", "'not-an-email' is not an email address"),
        ("name: " + "x" * 201, "name", "is 201 characters; at most 200 are allowed"),
        ("parent_run_id: ../etc", "parent_run_id", "'../etc' is not a run id"),
        ("name: ''", "name", "must not be empty"),
    ],
)
def test_bad_optional_fields(line: str, field: str, message: str) -> None:
    problem = only(manifest_problems(f"pipeline: arc/demo\n{line}\n"))
    assert problem.field == field
    assert message in problem.message


def test_bad_yaml_gives_its_line() -> None:
    problem = only(manifest_problems("pipeline: arc/demo\nlabels: {a: b\nname: x\n"))
    assert problem.line == 3
    assert problem.message.startswith("invalid YAML:")


def test_duplicate_and_alias_yaml_are_refused() -> None:
    assert "given twice" in only(manifest_problems("pipeline: a\npipeline: arc/demo\n")).message
    assert "aliases" in only(manifest_problems("pipeline: &p arc/demo\nname: *p\n")).message


def test_manifest_that_is_not_a_mapping() -> None:
    assert only(manifest_problems("- pipeline\n")).message.endswith("not a list")
    assert only(manifest_problems("")).message.endswith("not empty")


def test_non_utf8_manifest() -> None:
    _, problems = parse_manifest(b"pipeline: arc/demo\nname: caf\xe9\n", REGISTRY)
    assert (only(problems).line, only(problems).file) == (2, "run.yaml")
    assert "not valid UTF-8" in only(problems).message


def test_every_manifest_problem_at_once() -> None:
    problems = manifest_problems("pipeline: nf-core/scrnaseq\nrevision: x\nengine: snakemake\ncolour: red\n")
    assert [p.field for p in problems] == ["revision", "engine", "colour"]


# Object names


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../x", "'..'"),
        ("sub/../../x", "'..'"),
        ("/abs/run.yaml", "absolute path"),
        ("a//b", "empty segment"),
        ("a/", "empty segment"),
        ("a\\b", "backslash"),
        ("a\nb", "control character U+000A"),
        ("a\x00b", "control character U+0000"),
        ("a\x7fb", "control character U+007F"),
        ("", "empty"),
        ("x" * 1025, "1025 bytes; the limit is 1024"),
        ("é" * 513, "1026 bytes"),
    ],
)
def test_unsafe_object_names(name: str, message: str) -> None:
    problem = check_object_name(name)
    assert problem is not None
    assert message in problem


@pytest.mark.parametrize("name", ["sub/run.yaml", "a/b/samplesheet.csv", "x..y/z", "données/run.yaml"])
def test_safe_object_names(name: str) -> None:
    assert check_object_name(name) is None


@given(st.text(max_size=1100))
def test_check_object_name_never_raises(name: str) -> None:
    result = check_object_name(name)
    assert result is None or isinstance(result, str)


# Params


def test_params_must_be_a_mapping() -> None:
    _, _, problems = parse_params("- a\n- b\n")
    assert only(problems).message == "params must be a YAML mapping of name: value, not a list"
    assert parse_params("") == ({}, {}, [])


def test_unknown_params_only_refused_when_additional_properties_false() -> None:
    schema: dict[str, Any] = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert check_params({"a": 1, "b": 2}, schema) == []
    strict = {**schema, "additionalProperties": False}
    problem = only(check_params({"a": 1, "b": 2}, strict, {"a": 1, "b": 2}))
    assert (problem.field, problem.line) == ("b", 2)
    assert problem.message.startswith("unknown parameter")


def test_input_and_outdir_are_not_required() -> None:
    schema = {"$defs": {"io": {"required": ["input", "outdir", "genome"]}}, "allOf": [{"$ref": "#/$defs/io"}]}
    problem = only(check_params({}, schema))
    assert (problem.field, problem.message) == ("genome", "this parameter is required")
    assert schema["$defs"]["io"]["required"] == [
        "input",
        "outdir",
        "genome",
    ]  # the cached schema is untouched


def scrnaseq_params_schema() -> dict[str, Any]:
    return json.loads((SCRNASEQ_FIXTURES / "nextflow_schema.json").read_text())


@needs_scrnaseq
def test_scrnaseq_aligner_outside_the_enum_is_refused() -> None:
    params, lines, _ = parse_params("protocol: 10XV2\naligner: bowtie\n")
    assert params is not None
    problem = only(check_params(params, scrnaseq_params_schema(), lines))
    assert (problem.file, problem.line, problem.field) == ("params.yaml", 2, "aligner")
    assert "'bowtie' is not one of" in problem.message


@needs_scrnaseq
def test_scrnaseq_test_config_params_are_accepted() -> None:
    # The params block of the pipeline's own conf/test.config, read from the fixture.
    text = (SCRNASEQ_FIXTURES / "conf" / "test.config").read_text()
    block = text[text.index("params {") : text.index("}", text.index("params {"))]
    params: dict[str, Any] = {}
    for key, quoted, bare in re.findall(r"^\s*(\w+)\s*=\s*(?:'([^']*)'|(true|false))", block, re.MULTILINE):
        params[key] = quoted if not bare else bare == "true"
    assert {"input", "aligner", "protocol", "skip_cellbender"} <= params.keys()
    assert check_params(params, scrnaseq_params_schema()) == []
    del params["input"]  # the service fills input and outdir
    assert check_params(params, scrnaseq_params_schema()) == []


# Whole bundles


def validate(files: dict[str, bytes | None], **kwargs: Any) -> ValidBundle:
    options: dict[str, Any] = {"max_file_bytes": 4096, "max_rows": 100, **kwargs}
    return validate_bundle(files, REGISTRY, **options)


def bundle_problems(files: dict[str, bytes | None], **kwargs: Any) -> list[Problem]:
    with pytest.raises(BundleInvalid) as caught:
        validate(files, **kwargs)
    return caught.value.problems


def test_valid_bundle_without_schemas() -> None:
    files: dict[str, bytes | None] = {
        "run.yaml": b"pipeline: nf-core/scrnaseq\n",
        "samplesheet.csv": b"\xef\xbb\xbf" + SHEET,
        "params.yaml": b"aligner: star\n",
        "nextflow.config": b"process.cpus = 4\n",
    }
    bundle = validate(files)
    assert bundle.manifest.revision == "4.0.0"
    assert bundle.pipeline is SCRNASEQ
    assert bundle.samplesheet == SHEET
    assert bundle.samplesheet_rows[0]["sample"] == "A"
    assert bundle.params == {"aligner": "star"}
    assert (bundle.params_yaml, bundle.nextflow_config) == (files["params.yaml"], files["nextflow.config"])


def test_optional_files_may_be_absent() -> None:
    bundle = validate({"run.yaml": b"pipeline: arc/demo\n", "samplesheet.csv": SHEET, "params.yaml": None})
    assert (bundle.params, bundle.params_yaml, bundle.nextflow_config) == ({}, None, None)


def test_missing_manifest_and_samplesheet() -> None:
    problems = bundle_problems({"run.yaml": None, "samplesheet.csv": None})
    assert [(p.file, p.message) for p in problems] == [
        ("run.yaml", "this file is required but is not in the bundle"),
        ("samplesheet.csv", "this file is required but is not in the bundle"),
    ]


def test_oversize_file_is_refused_with_size_and_limit() -> None:
    problems = bundle_problems(
        {"run.yaml": b"pipeline: arc/demo\n", "samplesheet.csv": SHEET, "params.yaml": b"#" * 5000}
    )
    assert only(problems) == Problem("params.yaml", "file is 5000 bytes; the limit is 4096 bytes")


def test_every_problem_in_every_file_is_reported_together() -> None:
    problems = bundle_problems(
        {
            "run.yaml": b"pipeline: nf-core/nope\ncolour: red\n",
            "samplesheet.csv": b"sample,x\nA,1,2\n",
            "params.yaml": b"a: [1,\n",
            "nextflow.config": b"params.a = 1\nworkDir = 'gs://x'\n",
        }
    )
    assert [(p.file, p.line) for p in problems] == [
        ("run.yaml", 1),
        ("run.yaml", 2),
        ("samplesheet.csv", 2),
        ("params.yaml", 2),
        ("nextflow.config", 2),
    ]


def test_samplesheet_column_rule_applies_once_the_pipeline_is_known() -> None:
    problems = bundle_problems({"run.yaml": b"pipeline: arc/demo\n", "samplesheet.csv": b"id,x\nA,1\n"})
    assert only(problems).message == "the first column must be named 'sample', not 'id'"


def test_nextflow_config_is_refused_for_a_snakemake_pipeline() -> None:
    files = {
        "run.yaml": b"pipeline: arc/demo\n",
        "samplesheet.csv": SHEET,
        "nextflow.config": b"process.cpus = 2\n",
    }
    assert "does not read a nextflow.config" in only(bundle_problems(files)).message


def test_custom_manifest_name() -> None:
    files = {"go.yaml": b"pipeline: arc/demo\n", "samplesheet.csv": SHEET}
    assert validate(files, manifest_name="go.yaml").manifest.pipeline == "arc/demo"


@needs_scrnaseq
def test_bundle_validated_against_the_scrnaseq_schemas() -> None:
    schemas = DirectorySchemaSource({"nf-core/scrnaseq": SCRNASEQ_FIXTURES})
    files: dict[str, bytes | None] = {
        "run.yaml": b"pipeline: nf-core/scrnaseq\n",
        "samplesheet.csv": (SCRNASEQ_FIXTURES / "assets" / "samplesheet.csv").read_bytes(),
        "params.yaml": b"aligner: star\nprotocol: 10XV2\n",
    }
    bundle = validate(files, schemas=schemas)
    assert len(bundle.samplesheet_rows) == 3

    assert bundle.warnings == ()

    files["params.yaml"] = b"aligner: star\nprotocol: 10XV2\nskip_fastqc: true\nskip_fastq: true\n"
    typo = only(validate(files, schemas=schemas).warnings)  # accepted, and told
    assert (typo.file, typo.line, typo.field) == ("params.yaml", 4, "skip_fastq")
    assert (
        typo.message
        == "the pipeline does not know this parameter, so it would be ignored; did you mean skip_fastqc?"
    )
    strict = parse_registry({"pipelines": {"nf-core/scrnaseq": {
        "engine": "nextflow", "source": "nf-core/scrnaseq", "revisions": ["4.0.0"],
        "params_schema": "nextflow_schema.json", "fail_unrecognised_params": True,
    }}})  # fmt: skip
    with pytest.raises(BundleInvalid) as refused:  # the pipeline asks for failUnrecognisedParams
        validate_bundle(files, strict, max_file_bytes=4096, max_rows=100, schemas=schemas)
    assert [p.field for p in refused.value.problems if p.file == "params.yaml"] == ["skip_fastq"]

    files["samplesheet.csv"] = b"sample,fastq_1\nA B,a.fastq.gz\n"
    files["params.yaml"] = b"aligner: bowtie\n"
    problems = bundle_problems(files, schemas=schemas)
    assert [(p.file, p.line, p.field) for p in problems] == [
        ("samplesheet.csv", 1, None),
        ("samplesheet.csv", 2, "sample"),
        ("samplesheet.csv", 2, "fastq_1"),  # a bare name: not a URL a run can read
        ("params.yaml", 1, "aligner"),
    ]


@pytest.mark.parametrize(
    ("file", "text"),
    [
        ("run.yaml", "pipeline: arc/demo\nname: 2024-13-45\n"),
        ("params.yaml", "when: 2024-13-45\n"),
        ("params.yaml", "at: 2024-01-01 25:61:99\n"),
        ("params.yaml", "big: " + "9" * 5000 + "\n"),
    ],
)
def test_values_python_cannot_build_are_problems_naming_the_file(file: str, text: str) -> None:
    """PyYAML raises ValueError, not YAMLError, for these: a rejection, never a crash."""
    files: dict[str, bytes | None] = {"run.yaml": b"pipeline: arc/demo\n", "samplesheet.csv": SHEET}
    files[file] = text.encode()
    problem = only(bundle_problems(files, max_file_bytes=65536))
    assert (problem.file, problem.message.split(":")[0]) == (file, "invalid value")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("when: 2024-01-02\n", "a YAML date value"),
        ("at: 2024-01-02 03:04:05\n", "a YAML datetime value"),
        ("blob: !!binary aGVsbG8=\n", "a YAML bytes value"),
        ("deep: {a: [1, 2024-01-02]}\n", "a YAML date value"),
        ("odd: {1: x}\n", "a mapping key that is not a string"),
    ],
)
def test_params_yaml_cannot_build_is_refused_naming_the_parameter(text: str, why: str) -> None:
    files: dict[str, bytes | None] = {"run.yaml": b"pipeline: arc/demo\n", "samplesheet.csv": SHEET}
    files["params.yaml"] = text.encode()
    problem = only(bundle_problems(files))
    assert (problem.file, problem.line) == ("params.yaml", 1)
    assert problem.message.startswith(why) and "quote it" in problem.message


@pytest.mark.parametrize(
    ("cell", "pipeline", "message"),
    [
        ("http://example.org/a.fastq.gz", "arc/demo", "http:// paths are not accepted"),
        ("https://example.org/a.fastq.gz", "arc/demo", "https:// paths are not accepted"),
        ("s3://bucket/a.fastq.gz", "nf-core/scrnaseq", "s3:// paths are not accepted"),
        ("https://169.254.169.254/computeMetadata/v1/", "nf-core/scrnaseq", "not a public address"),
        ("https://10.0.0.7/a.fastq.gz", "nf-core/scrnaseq", "not a public address"),
        ("https://[::1]:8443/a", "nf-core/scrnaseq", "not a public address"),
        ("https://metadata.google.internal/x", "nf-core/scrnaseq", "not a public host"),
        ("https://user@localhost/x", "nf-core/scrnaseq", "not a public host"),
    ],
)
def test_samplesheet_urls_are_gs_or_public_https_by_opt_in(cell: str, pipeline: str, message: str) -> None:
    from arc_reactor.core.samplesheet import check_cells, parse_samplesheet

    sheet, _ = parse_samplesheet(f"sample,fastq_1\nA,{cell}\n", max_rows=10)
    assert sheet is not None
    (problem,) = check_cells(sheet, REGISTRY.pipelines[pipeline].input_url_schemes)
    assert (problem.line, problem.field) == (2, "fastq_1") and message in problem.message


def test_public_https_and_gs_pass_and_formula_like_sample_names_do_not() -> None:
    from arc_reactor.core.samplesheet import check_cells, parse_samplesheet

    text = (
        "sample,fastq_1\nA,https://raw.githubusercontent.com/x/a.fq.gz\nB,gs://b/a.fq.gz\n=HYPERLINK(1),x\n"
    )
    sheet, _ = parse_samplesheet(text, max_rows=10)
    assert sheet is not None
    problems = check_cells(sheet, ("gs", "https"))
    assert [(p.line, p.field) for p in problems] == [(4, "sample")]
    assert "formula" in problems[0].message


@pytest.mark.parametrize(
    "cell",
    ["/etc/shadow.fastq.gz", "../../etc/passwd.fq.gz", "~/reads.fq.gz", "data/../../x.fq", "file:/x.fq"],
)
def test_local_paths_are_refused_in_any_column(cell: str) -> None:
    from arc_reactor.core.samplesheet import check_cells, parse_samplesheet

    sheet, _ = parse_samplesheet(f"sample,notes\nA,{cell}\n", max_rows=10)
    assert sheet is not None
    (problem,) = check_cells(sheet, ("gs",))
    assert (problem.line, problem.field) == (2, "notes")
    assert "is a local path" in problem.message and "gs://" in problem.message


def test_in_the_schemas_file_columns_every_value_is_a_url() -> None:
    from arc_reactor.core.samplesheet import check_cells, parse_samplesheet, path_columns

    schema = {"items": {"properties": {"fastq_1": {"type": "string", "format": "file-path"}, "x": {}}}}
    sheet, _ = parse_samplesheet("sample,fastq_1,x\nA,r_R1.fastq.gz,plain\nB,gs://b/r.fq.gz,y\n", max_rows=10)
    assert sheet is not None
    assert path_columns(schema) == {"fastq_1"}
    (problem,) = check_cells(sheet, ("gs",), paths=path_columns(schema))
    assert (problem.line, problem.field) == (2, "fastq_1") and "is not a URL" in problem.message


def test_input_and_outdir_in_params_are_refused_naming_where_they_go() -> None:
    files: dict[str, bytes | None] = {
        "run.yaml": b"pipeline: arc/demo\n",
        "samplesheet.csv": SHEET,
        "params.yaml": b"outdir: gs://mine/results\ninput: gs://mine/sheet.csv\nx: 1\n",
    }
    problems = bundle_problems(files)
    assert [(p.file, p.field, p.line) for p in problems] == [
        ("params.yaml", "input", 2),
        ("params.yaml", "outdir", 1),
    ]
    assert "results folder" in problems[1].message and "remove it" in problems[1].message


class _Broken:
    """A schema source whose samplesheet schema is not a valid JSON schema (a deployment fault)."""

    def get(self, pipeline: object, revision: str, relpath: str) -> dict[str, Any] | None:
        return {"type": 12} if relpath == "schema_input.json" else None


def test_a_check_that_raises_is_a_problem_naming_its_file_and_the_fault_is_kept() -> None:
    files: dict[str, bytes | None] = {"run.yaml": b"pipeline: arc/demo\n", "samplesheet.csv": SHEET}
    with pytest.raises(BundleInvalid) as caught:
        validate(files, schemas=_Broken())
    sheet_problems = [p for p in caught.value.problems if p.file == "samplesheet.csv"]
    assert len(sheet_problems) == 1 and "could not be checked" in sheet_problems[0].message
    assert "fault in Arc Reactor" in sheet_problems[0].message
    ((file, fault),) = caught.value.faults
    assert file == "samplesheet.csv" and isinstance(fault, ValueError)


def test_the_same_mistake_on_many_rows_is_reported_a_bounded_number_of_times() -> None:
    from arc_reactor.core.bundle import MAX_PROBLEMS_PER_FILE

    rows = "".join(f"=bad{i},gs://b/a.fq.gz,\n" for i in range(500))
    files: dict[str, bytes | None] = {
        "run.yaml": b"pipeline: arc/demo\n",
        "samplesheet.csv": b"sample,fastq_1,fastq_2\n" + rows.encode(),
    }
    problems = bundle_problems(files, max_rows=1000, max_file_bytes=1 << 20)
    assert len(problems) == MAX_PROBLEMS_PER_FILE + 1
    assert problems[-1].message == f"and {500 - MAX_PROBLEMS_PER_FILE} more problem(s) in this file"
