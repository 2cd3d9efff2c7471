"""Samplesheet structure checks and validation against nf-schema input schemas."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shared_fixtures import SCRNASEQ_FIXTURES, requires_scrnaseq_fixtures

from arc_reactor.core.samplesheet import (
    Samplesheet,
    check_against_schema,
    check_without_schema,
    read_samplesheet,
)
from arc_reactor.errors import BundleInvalid, Problem


def problems_of(data: bytes, max_rows: int = 100, max_bytes: int | None = None) -> list[Problem]:
    with pytest.raises(BundleInvalid) as caught:
        read_samplesheet(data, max_rows=max_rows, max_bytes=max_bytes)
    return caught.value.problems


def sheet_of(text: str) -> Samplesheet:
    return read_samplesheet(text.encode(), max_rows=100)


# Structure


def test_simple_sheet_parses_rows_and_lines() -> None:
    sheet = sheet_of("sample,fastq_1\nA,a.fq.gz\nB,b.fq.gz\n")
    assert sheet.header == ("sample", "fastq_1")
    assert sheet.rows == [{"sample": "A", "fastq_1": "a.fq.gz"}, {"sample": "B", "fastq_1": "b.fq.gz"}]
    assert sheet.lines == (2, 3)


def test_crlf_and_quoted_fields_are_fine() -> None:
    sheet = read_samplesheet(b'sample,note\r\n"A,1","say ""hi"""\r\n', max_rows=10)
    assert sheet.rows == [{"sample": "A,1", "note": 'say "hi"'}]


def test_quoted_newline_keeps_physical_line_numbers() -> None:
    sheet = sheet_of('sample,note\n"A","two\nlines"\nB,x\n')
    assert sheet.lines == (2, 4)


def test_utf8_bom_is_accepted_and_stripped() -> None:
    sheet = read_samplesheet(b"\xef\xbb\xbfsample,x\nA,1\n", max_rows=10)
    assert sheet.header == ("sample", "x")


def test_trailing_empty_lines_are_ignored() -> None:
    sheet = sheet_of("sample,x\nA,1\n\n\n,\n")
    assert len(sheet.rows) == 1


def test_malformed_csv_names_the_line() -> None:
    (problem,) = problems_of(b'sample,x\nA,1\nB,"2"3\n')
    assert problem.file == "samplesheet.csv"
    assert problem.line == 3
    assert problem.message.startswith("malformed CSV:")


def test_unclosed_quote_is_malformed() -> None:
    (problem,) = problems_of(b'sample,x\nA,"1\n')
    assert "malformed CSV" in problem.message


def test_ragged_row_names_its_line_and_counts() -> None:
    (problem,) = problems_of(b"sample,x\nA,1\nB,2,3\n")
    assert (problem.line, problem.message) == (3, "row has 3 fields; the header has 2")


def test_duplicate_header_name() -> None:
    (problem,) = problems_of(b"sample,x,x\nA,1,2\n")
    assert problem.line == 1
    assert problem.message == "duplicate column name 'x' (columns 2 and 3)"


def test_empty_header_name() -> None:
    (problem,) = problems_of(b"sample,,x\nA,1,2\n")
    assert (problem.line, problem.message) == (1, "column 2 of the header has no name")


def test_header_name_with_spaces_around() -> None:
    (problem,) = problems_of(b"sample, x\nA,1\n")
    assert "' x' has leading or trailing spaces" in problem.message


def test_blank_line_among_rows() -> None:
    (problem,) = problems_of(b"sample,x\nA,1\n\nB,2\n")
    assert (problem.line, problem.message) == (3, "blank line among the sample rows; remove it")


def test_non_utf8_is_refused_with_line() -> None:
    (problem,) = problems_of(b"sample,x\nA,caf\xe9\n")
    assert problem.line == 2
    assert "not valid UTF-8 (byte 0xe9)" in problem.message


def test_nul_byte_is_refused_with_line() -> None:
    (problem,) = problems_of(b"sample,x\nA,1\nB,\x00\n")
    assert problem.line == 3
    assert "NUL byte" in problem.message


def test_oversize_file_is_refused_before_parsing() -> None:
    (problem,) = problems_of(b"sample,x\n" + b"A,1\n" * 300, max_bytes=1024)
    assert problem.message == "file is 1209 bytes; the limit is 1024 bytes"


def test_empty_file() -> None:
    (problem,) = problems_of(b"")
    assert problem.message.startswith("samplesheet is empty")


def test_header_without_rows() -> None:
    (problem,) = problems_of(b"sample,x\n")
    assert problem.message == "samplesheet has a header but no sample rows"


def test_too_many_rows() -> None:
    (problem,) = problems_of(b"sample\n" + b"A\n" * 6, max_rows=5)
    assert problem.message == "samplesheet has 6 sample rows; the limit is 5"


def test_all_structure_problems_are_reported_together() -> None:
    problems = problems_of(b"sample,x\nA,1,2\nB\n")
    assert [p.line for p in problems] == [2, 3]


def test_without_schema_the_first_column_is_sample() -> None:
    assert check_without_schema(sheet_of("sample,x\nA,1\n")) == []
    (problem,) = check_without_schema(sheet_of("id,x\nA,1\n"))
    assert (problem.line, problem.message) == (1, "the first column must be named 'sample', not 'id'")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_reader_raises_only_bundle_invalid_on_any_bytes(data: bytes) -> None:
    with contextlib.suppress(BundleInvalid):
        read_samplesheet(data, max_rows=5, max_bytes=300)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('ab ,"\r\n\ufeff\x00é')), max_size=80))
def test_reader_raises_only_bundle_invalid_on_csv_like_text(text: str) -> None:
    with contextlib.suppress(BundleInvalid):
        read_samplesheet(text.encode("utf-8"), max_rows=3)


# Schema validation (synthetic schema covering the nf-schema conventions)

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "array",
    "uniqueItems": True,
    "items": {
        "type": "object",
        "properties": {
            "sample": {"type": "string", "pattern": "^\\S+$", "errorMessage": "no spaces in sample names"},
            "count": {"type": "integer", "minimum": 1},
            "ratio": {"type": "number"},
            "paired": {"type": "boolean"},
            "bam": {"type": "string", "format": "file-path", "exists": True, "meta": ["bam"]},
            "bai": {"type": "string"},
        },
        "required": ["sample"],
        "dependentRequired": {"bam": ["bai"]},
    },
}


def test_typed_columns_are_coerced_and_empty_cells_are_absent() -> None:
    sheet = sheet_of("sample,count,ratio,paired,bam,bai\nA,3,0.5,TRUE,gs://b/a.bam,gs://b/a.bai\nB,,,,,\n")
    assert check_against_schema(sheet, SCHEMA) == []


def test_error_message_replaces_the_jsonschema_message() -> None:
    (problem,) = check_against_schema(sheet_of("sample\nA B\n"), SCHEMA)
    assert (problem.line, problem.field, problem.message) == (2, "sample", "no spaces in sample names")


def test_uncoercible_value_gets_a_type_error() -> None:
    (problem,) = check_against_schema(sheet_of("sample,count\nA,many\n"), SCHEMA)
    assert (problem.line, problem.field) == (2, "count")
    assert "is not of type 'integer'" in problem.message


def test_missing_required_column_is_one_problem() -> None:
    (problem,) = check_against_schema(sheet_of("count\n1\n2\n3\n"), SCHEMA)
    assert (problem.line, problem.message) == (1, "missing required column: sample")


def test_empty_required_cell_is_a_row_problem() -> None:
    (problem,) = check_against_schema(sheet_of("sample,count\nA,1\n,2\n"), SCHEMA)
    assert (problem.line, problem.field) == (3, "sample")
    assert "required" in problem.message


def test_dependent_required_as_jsonschema_does_it() -> None:
    (problem,) = check_against_schema(sheet_of("sample,bam\nA,a.bam\n"), SCHEMA)
    assert problem.line == 2
    assert "'bai' is a dependency of 'bam'" in problem.message


def test_unique_items_is_a_sheet_problem() -> None:
    (problem,) = check_against_schema(sheet_of("sample\nA\nA\n"), SCHEMA)
    assert problem.line is None
    assert "non-unique" in problem.message


def test_any_of_on_rows() -> None:
    schema = {"type": "array", "items": {"anyOf": [{"required": ["a"]}, {"required": ["b"]}]}}
    (problem,) = check_against_schema(sheet_of("sample,a,b\nS,,\nT,1,\n"), schema)
    assert problem.line == 2
    assert "is not valid under any of the given schemas" in problem.message


# The real nf-core/scrnaseq input schema

needs_scrnaseq = requires_scrnaseq_fixtures()


def scrnaseq_schema() -> dict[str, Any]:
    return json.loads((SCRNASEQ_FIXTURES / "assets" / "schema_input.json").read_text())


@needs_scrnaseq
def test_shipped_scrnaseq_samplesheet_validates() -> None:
    # Its fastq paths are https:// URLs: file-path/exists cannot be checked here and are not.
    sheet = read_samplesheet((SCRNASEQ_FIXTURES / "assets" / "samplesheet.csv").read_bytes(), max_rows=100)
    assert check_against_schema(sheet, scrnaseq_schema()) == []


@needs_scrnaseq
def test_scrnaseq_sample_with_space_gets_the_schema_error_message() -> None:
    sheet = sheet_of("sample,fastq_1,fastq_2\nSample X,gs://b/x_R1.fastq.gz,gs://b/x_R2.fastq.gz\n")
    (problem,) = check_against_schema(sheet, scrnaseq_schema())
    assert (problem.line, problem.field) == (2, "sample")
    assert problem.message == "Sample name must be provided and cannot contain spaces"


@needs_scrnaseq
def test_scrnaseq_missing_fastq_2_column_is_one_problem() -> None:
    sheet = sheet_of("sample,fastq_1\nA,gs://b/a.fastq.gz\nB,gs://b/b.fastq.gz\n")
    assert check_against_schema(sheet, scrnaseq_schema()) == [
        Problem("samplesheet.csv", "missing required column: fastq_2", line=1)
    ]


@needs_scrnaseq
def test_scrnaseq_expected_cells_must_be_an_integer() -> None:
    sheet = sheet_of(
        "sample,fastq_1,fastq_2,expected_cells\nA,a_1.fq.gz,a_2.fq.gz,5000\nB,b_1.fq.gz,b_2.fq.gz,lots\n"
    )
    (problem,) = check_against_schema(sheet, scrnaseq_schema())
    assert (problem.line, problem.field) == (3, "expected_cells")
    assert problem.message == "Expected cells must be an Integer"


def test_types_inside_any_of_are_coerced() -> None:
    schema = {"type": "array", "items": {"properties": {"n": {"anyOf": [{"type": "integer", "minimum": 2}]}}}}
    assert check_against_schema(sheet_of("sample,n\nA,3\n"), schema) == []
    (problem,) = check_against_schema(sheet_of("sample,n\nA,1\n"), schema)
    assert (problem.line, problem.field) == (2, "n")


@pytest.mark.parametrize(("sep", "name"), [(";", "semicolons"), ("\t", "tabs")])
def test_a_sheet_not_separated_by_commas_says_so(sep, name):
    sheet = read_samplesheet(f"sample{sep}fastq_1\na{sep}b.fq\n".encode(), max_rows=10)
    for problems in (check_without_schema(sheet), check_against_schema(sheet, _SCHEMA_NEEDING_FASTQ)):
        assert problems and f"separated by {name}" in problems[0].message


_SCHEMA_NEEDING_FASTQ = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["sample", "fastq_1"],
        "properties": {"sample": {"type": "string"}, "fastq_1": {"type": "string"}},
    },
}


def test_utf16_file_is_named_as_such():
    from arc_reactor.core.textfile import decode_text

    text, problems = decode_text("sample,fastq_1\n".encode("utf-16"), "samplesheet.csv")
    assert text is None
    assert "UTF-16" in problems[0].message and "UTF-8" in problems[0].message


def test_unique_entries_refuses_a_sample_given_twice() -> None:
    """nf-schema's uniqueEntries, as the demo pipeline's schema uses it (its results are one per sample)."""
    schema = {"type": "array", "items": {"type": "object"}, "uniqueEntries": ["sample"]}
    sheet = sheet_of("sample,fastq_1\nA,gs://b/1.fq\nB,gs://b/2.fq\nA,gs://b/3.fq\n")
    (problem,) = check_against_schema(sheet, schema)
    assert (problem.line, problem.field) == (4, "sample")
    assert problem.message == "duplicate entry: sample 'A' is also on line 2"
    assert check_against_schema(sheet_of("sample,fastq_1\nA,x\nB,x\n"), schema) == []
