"""Samplesheet reading (CSV structure) and row validation against an nf-schema input schema (pure)."""

from __future__ import annotations

import csv
import io
import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from jsonschema import ValidationError

from arc_reactor.core.schemas import cached_validator
from arc_reactor.core.textfile import decode_text
from arc_reactor.errors import BundleInvalid, Problem

SAMPLESHEET = "samplesheet.csv"
_INT_RE = re.compile(r"^[+-]?\d+$")
_NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class Samplesheet:
    """A parsed samplesheet: its column names, its data rows and the CSV line each row starts on."""

    header: tuple[str, ...]
    rows: list[dict[str, str]]
    lines: tuple[int, ...]


def read_samplesheet(
    data: bytes, *, max_rows: int, max_bytes: int | None = None, file: str = SAMPLESHEET
) -> Samplesheet:
    """Decode and parse a samplesheet; raise BundleInvalid listing every structural problem."""
    text, problems = decode_text(data, file, max_bytes)
    sheet = None
    if text is not None:
        sheet, problems = parse_samplesheet(text, max_rows=max_rows, file=file)
    if problems or sheet is None:
        raise BundleInvalid(problems=problems)
    return sheet


def _records(text: str, file: str) -> tuple[list[tuple[int, list[str]]], Problem | None]:
    """(first line, fields) of each CSV record, or the problem that stopped the csv module."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for fields in reader:
            records.append((start, fields))
            start = reader.line_num + 1
    except csv.Error as exc:
        # The csv module cannot resynchronise after bad quoting, so this is reported alone.
        return records, Problem(file, f"malformed CSV: {exc}", line=reader.line_num or 1)
    return records, None


def _header_problems(header: list[str], file: str) -> tuple[list[Problem], bool]:
    """Problems of the header row, and whether the header is still usable for building rows."""
    problems: list[Problem] = []
    usable = True
    first_seen: dict[str, int] = {}
    for col, name in enumerate(header, start=1):
        if not name.strip():
            problems.append(Problem(file, f"column {col} of the header has no name", line=1))
            usable = False
        elif name != name.strip():
            problems.append(Problem(file, f"column name {name!r} has leading or trailing spaces", line=1))
        if name in first_seen and name.strip():
            msg = f"duplicate column name {name!r} (columns {first_seen[name]} and {col})"
            problems.append(Problem(file, msg, line=1))
            usable = False
        first_seen.setdefault(name, col)
    return problems, usable


def _blank(fields: list[str]) -> bool:
    return not any(f.strip() for f in fields)


def parse_samplesheet(
    text: str, *, max_rows: int, file: str = SAMPLESHEET
) -> tuple[Samplesheet | None, list[Problem]]:
    """Comma-separated, header row first; the sheet is None when no usable header was found."""
    records, broken = _records(text, file)
    if broken is not None:
        return None, [broken]
    while records and _blank(records[-1][1]):
        records.pop()  # trailing empty lines (and Excel's trailing ",,,,") mean nothing
    if not records:
        return None, [
            Problem(file, "samplesheet is empty: it needs a header row and at least one sample row")
        ]
    _, header = records[0]
    problems, usable = _header_problems(header, file)
    rows, lines = _data_rows(records[1:], header, file, problems)
    count = len(records) - 1
    if count == 0:
        problems.append(Problem(file, "samplesheet has a header but no sample rows"))
    elif count > max_rows:
        problems.append(Problem(file, f"samplesheet has {count} sample rows; the limit is {max_rows}"))
    if not usable:
        return None, problems
    return Samplesheet(tuple(header), rows[:max_rows], tuple(lines[:max_rows])), problems


def _data_rows(
    records: list[tuple[int, list[str]]], header: list[str], file: str, problems: list[Problem]
) -> tuple[list[dict[str, str]], list[int]]:
    """Rows with the header's field count as dicts; the others are reported in `problems`."""
    rows: list[dict[str, str]] = []
    lines: list[int] = []
    for line, fields in records:
        if _blank(fields):
            problems.append(Problem(file, "blank line among the sample rows; remove it", line=line))
        elif len(fields) != len(header):
            msg = f"row has {len(fields)} fields; the header has {len(header)}"
            problems.append(Problem(file, msg, line=line))
        else:
            rows.append(dict(zip(header, fields, strict=True)))
            lines.append(line)
    return rows, lines


def separator_hint(sheet: Samplesheet) -> str:
    """When a one-column header holds semicolons or tabs, say so: the file is not comma-separated."""
    if len(sheet.header) == 1:
        for sep, name in ((";", "semicolons"), ("\t", "tabs")):
            if sep in sheet.header[0]:
                return f" (the header is separated by {name}; samplesheets must be comma-separated)"
    return ""


# A value that names a place by URL: `scheme://host...`.
_URL_RE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)")
_FORMULA_START = ("=", "+", "-", "@")
# A value that names a file on some machine's disk: absolute, home-relative, `.`/`..`-relative, a Windows
# drive, or a `file:` URL without slashes. No run can read those (and on the orchestrator they would be
# its own files).
_LOCAL_PATH_RE = re.compile(r"^\s*(/|~|\.\.?(/|\\|$)|[A-Za-z]:[\\/]|file:)|(^|[/\\])\.\.([/\\]|$)")
# nf-schema formats of values that name files or folders.
PATH_FORMATS = frozenset({"file-path", "directory-path", "path"})
_INTERNAL_NAMES = ("localhost", "metadata", "metadata.google.internal")


def _host_problem(netloc: str) -> str:
    """Why an https URL's host is not a public one we would fetch from, or ""."""
    host = netloc.rsplit("@", 1)[-1]
    host = host[1:].split("]", 1)[0] if host.startswith("[") else host.rsplit(":", 1)[0]
    host = host.lower().rstrip(".")
    if not host or host in _INTERNAL_NAMES or host.endswith((".internal", ".local", ".localhost")):
        return f"https://{host or '?'} is not a public host"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return ""  # a name: not resolved here; the pipeline's task VMs fetch it from the public internet
    return "" if address.is_global else f"https://{host} is not a public address"


def path_columns(schema: dict[str, Any] | None) -> frozenset[str]:
    """The columns an nf-schema samplesheet schema declares as files or folders."""
    items = schema.get("items") if isinstance(schema, dict) else None
    props = items.get("properties") if isinstance(items, dict) else None
    if not isinstance(props, dict):
        return frozenset()
    return frozenset(k for k, v in props.items() if isinstance(v, dict) and v.get("format") in PATH_FORMATS)


def check_cells(
    sheet: Samplesheet,
    schemes: tuple[str, ...] = ("gs",),
    file: str = SAMPLESHEET,
    paths: frozenset[str] = frozenset(),
) -> list[Problem]:
    """Rules for every pipeline's samplesheet, schema or not. A path given as a URL must be gs://, or
    https:// to a public host when the pipeline's registry entry opts in (`input_url_schemes`): any other
    scheme, or an https URL to a private, loopback or link-local address (a metadata server), could make a
    task VM fetch what it must not, and nothing checks it exists before the run starts. A sample name may
    not start like a spreadsheet formula (=, +, -, @): the names come back in CSV files people open. A
    local path (/..., ~/..., ../...) is refused in any column, and in the `paths` columns (the schema's
    files and folders) every value must be such a URL."""
    problems: list[Problem] = []
    allowed = " or ".join(f"{s}://" for s in schemes)
    for row, line in zip(sheet.rows, sheet.lines, strict=True):
        for column, value in row.items():
            url = _URL_RE.match(value)
            if url is None:
                if _LOCAL_PATH_RE.search(value) or (column in paths and value.strip()):
                    what = "a local path" if _LOCAL_PATH_RE.search(value) else "not a URL"
                    msg = f"{value[:80]!r} is {what}: runs read files from storage only; give it as {allowed}"
                    problems.append(Problem(file, msg, line=line, field=column))
                continue
            scheme = url.group(1).lower()
            if scheme not in schemes:
                msg = f"{scheme}:// paths are not accepted for this pipeline: give the file as {allowed}"
                problems.append(Problem(file, msg, line=line, field=column))
            elif scheme == "https" and (why := _host_problem(url.group(2))):
                problems.append(
                    Problem(file, f"{why}: only public https hosts are accepted", line=line, field=column)
                )
        name = row.get("sample", "")
        if name.startswith(_FORMULA_START):
            msg = f"a sample name may not start with {name[0]!r} (spreadsheets read it as a formula)"
            problems.append(Problem(file, msg, line=line, field="sample"))
    return problems


def check_without_schema(sheet: Samplesheet, file: str = SAMPLESHEET) -> list[Problem]:
    """The rule for pipelines without an input schema: the first column is `sample`."""
    if sheet.header[0] != "sample":
        msg = f"the first column must be named 'sample', not {sheet.header[0]!r}{separator_hint(sheet)}"
        return [Problem(file, msg, line=1)]
    return []


def _types(prop: dict[str, Any]) -> list[str]:
    """The JSON types a property allows, including those of its anyOf/oneOf branches."""
    kinds: list[Any] = []
    for schema in [prop, *prop.get("anyOf", []), *prop.get("oneOf", [])]:
        kind = schema.get("type") if isinstance(schema, dict) else None
        kinds.extend(kind if isinstance(kind, list) else [kind])
    return [k for k in kinds if isinstance(k, str)]


def _coerce(value: str, prop: Any) -> Any:
    """CSV cells are strings: cast to the property's non-string type when the text fits it (nf-schema)."""
    if not isinstance(prop, dict):
        return value
    for kind in _types(prop):
        if kind == "integer" and _INT_RE.match(value):
            return int(value)
        if kind == "number" and _NUMBER_RE.match(value):
            number = float(value)
            return int(number) if _INT_RE.match(value) else number
        if kind == "boolean" and value.lower() in ("true", "false"):
            return value.lower() == "true"
    return value


def _instance(sheet: Samplesheet, properties: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows as nf-schema sees them: empty cells absent, typed columns cast."""
    return [
        {key: _coerce(value, properties.get(key)) for key, value in row.items() if value != ""}
        for row in sheet.rows
    ]


def _message(error: ValidationError) -> str:
    """The property's nf-schema `errorMessage` when it has one, else jsonschema's own message."""
    custom = error.schema.get("errorMessage") if isinstance(error.schema, dict) else None
    if isinstance(custom, dict):
        custom = custom.get(str(error.validator))
    return custom if isinstance(custom, str) else error.message


def _row_problems(error: ValidationError, sheet: Samplesheet, skip: set[str], file: str) -> list[Problem]:
    """Problems for one jsonschema error, placed on the row's CSV line and the column when known."""
    path = list(error.absolute_path)
    if not path or not isinstance(path[0], int):
        return [Problem(file, _message(error))]  # about the whole sheet (uniqueItems, minItems, ...)
    line = sheet.lines[path[0]]
    if len(path) > 1:
        return [Problem(file, _message(error), line=line, field=str(path[1]))]
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [c for c in error.validator_value if c not in error.instance and c not in skip]
        return [Problem(file, "a value is required (the cell is empty)", line=line, field=c) for c in missing]
    return [Problem(file, _message(error), line=line)]


def check_against_schema(
    sheet: Samplesheet, schema: dict[str, Any], file: str = SAMPLESHEET
) -> list[Problem]:
    """Validate the rows against an nf-schema samplesheet schema (an array of row objects)."""
    items = schema.get("items")
    items = items if isinstance(items, dict) else {}
    properties = items.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    required = [c for c in items.get("required", []) if isinstance(c, str)]
    absent = [c for c in required if c not in sheet.header]
    problems = []
    if absent:
        # One problem for the sheet, not one per row: the fix is adding the column(s).
        msg = f"missing required column{'s' if len(absent) > 1 else ''}: {', '.join(absent)}"
        problems.append(Problem(file, msg + separator_hint(sheet), line=1))
    validator = cached_validator(schema)
    for error in validator.iter_errors(_instance(sheet, properties)):
        problems.extend(_row_problems(error, sheet, set(absent), file))
    problems.extend(_duplicate_entries(sheet, schema.get("uniqueEntries"), file))
    return sorted(problems, key=lambda p: (p.line or 0, _column_index(sheet, p.field)))


def _duplicate_entries(sheet: Samplesheet, columns: Any, file: str) -> list[Problem]:
    """nf-schema's `uniqueEntries`: no two rows may have the same values in all of these columns."""
    if not isinstance(columns, list) or not columns or not all(isinstance(c, str) for c in columns):
        return []
    first: dict[tuple[str, ...], int] = {}
    problems = []
    for row, line in zip(sheet.rows, sheet.lines, strict=True):
        key = tuple(row.get(c, "") for c in columns)
        if key in first:
            same = ", ".join(f"{c} {v!r}" for c, v in zip(columns, key, strict=True))
            msg = f"duplicate entry: {same} is also on line {first[key]}"
            problems.append(Problem(file, msg, line=line, field=columns[0]))
        else:
            first[key] = line
    return problems


def _column_index(sheet: Samplesheet, column: str | None) -> int:
    return sheet.header.index(column) if column in sheet.header else len(sheet.header)
