"""Run bundles: the manifest (run.yaml) and the validation of a whole bundle before any job exists (pure).

The caller reads the bundle's objects and hands over their bytes; every problem in every file is
collected and raised together as one BundleInvalid, so a user fixes a bundle in one round trip.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from arc_reactor.core.config_policy import CONFIG, check_config
from arc_reactor.core.engines import traits
from arc_reactor.core.ids import RUN_ID_RE
from arc_reactor.core.params import (
    PARAMS,
    SERVICE_PARAM_PLACES,
    SERVICE_PARAMS,
    check_params,
    parse_params,
    unrecognised_params,
)
from arc_reactor.core.registry import PipelineSpec, Registry
from arc_reactor.core.samplesheet import (
    SAMPLESHEET,
    Samplesheet,
    check_against_schema,
    check_cells,
    check_without_schema,
    parse_samplesheet,
    path_columns,
)
from arc_reactor.core.schemas import SchemaSource
from arc_reactor.core.status import clean_message
from arc_reactor.core.textfile import BOM, decode_text, load_yaml
from arc_reactor.errors import BundleInvalid, Problem, TransientError

_T = TypeVar("_T")

__all__ = [
    "Manifest",
    "SchemaSource",
    "ValidBundle",
    "check_object_name",
    "parse_manifest",
    "validate_bundle",
]

MANIFEST_KEYS = ("pipeline", "revision", "engine", "profile", "labels", "submitter", "name", "parent_run_id")
MAX_LABELS = 32
MAX_PROBLEMS_PER_FILE = 50
MAX_NAME_CHARS = 200
MAX_OBJECT_NAME_BYTES = 1024
_PROFILE_RE = re.compile(r"^[A-Za-z0-9_,-]+$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class Manifest:
    """The run.yaml of a bundle, with the registry's defaults filled in (revision, profile)."""

    pipeline: str
    revision: str
    engine: str
    profile: str | None
    labels: dict[str, str]
    submitter: str | None
    name: str | None
    parent_run_id: str | None


@dataclass(frozen=True)
class ValidBundle:
    """A bundle that passed every check, ready to be copied to the run's inputs/ folder."""

    manifest: Manifest
    pipeline: PipelineSpec
    samplesheet: bytes  # the original bytes, BOM stripped
    samplesheet_rows: list[dict[str, str]]
    params: dict[str, Any]  # {} when params.yaml is absent
    params_yaml: bytes | None
    nextflow_config: bytes | None
    # What does not stop the run but is probably a mistake (a parameter the pipeline does not know).
    warnings: tuple[Problem, ...] = ()


def check_object_name(name: str) -> str | None:
    """Why an object name is unsafe to use as a path (.., absolute, backslash, control char...), or None."""
    if not name:
        return "object name is empty"
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_OBJECT_NAME_BYTES:
        return f"object name is {size} bytes; the limit is {MAX_OBJECT_NAME_BYTES}"
    control = next((c for c in name if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F), None)
    if control is not None:
        return f"object name contains the control character U+{ord(control):04X}"
    if any(0xD800 <= ord(c) <= 0xDFFF for c in name):
        return "object name is not valid Unicode (lone surrogate)"
    if "\\" in name:
        return "object name contains a backslash; folders are separated by /"
    if name.startswith("/"):
        return "object name is an absolute path"
    segments = name.split("/")
    if ".." in segments or "." in segments:
        return "object name contains a '.' or '..' segment"
    if "" in segments:
        return "object name contains an empty segment (// or a trailing /)"
    return None


class _Fields:
    """Reads the manifest's fields one by one, collecting a problem per bad field with its line."""

    def __init__(self, doc: dict[Any, Any], lines: dict[str, int], file: str) -> None:
        self.doc, self.lines, self.file = doc, lines, file
        self.problems: list[Problem] = []

    def add(self, field: str, message: str) -> None:
        line = self.lines.get(field, self.lines.get(field.split(".", 1)[0]))
        self.problems.append(Problem(self.file, message, line=line, field=field))

    def string(self, field: str, pattern: re.Pattern[str] | None = None, what: str = "") -> str | None:
        """The field when it is an acceptable string, else None (a problem is added unless absent)."""
        value = self.doc.get(field)
        if value is None:
            return None
        if not isinstance(value, str):
            hint = f' (quote it: {field}: "{value}")' if isinstance(value, int | float) else ""
            self.add(field, f"must be a string, not {_kind(value)}{hint}")
            return None
        if not value.strip():
            self.add(field, "must not be empty")
            return None
        if pattern is not None and not pattern.match(value):
            self.add(field, f"{value!r} is not {what}")
            return None
        return value


def _kind(value: object) -> str:
    kinds = {dict: "a mapping", list: "a list", bool: "true/false", int: "a number", float: "a number"}
    return "empty" if value is None else kinds.get(type(value), f"a {type(value).__name__}")


def _unknown_keys(fields: _Fields) -> None:
    for key in fields.doc:
        if key not in MANIFEST_KEYS:
            close = difflib.get_close_matches(str(key), MANIFEST_KEYS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            fields.add(str(key), f"unknown key; {hint}allowed keys: {', '.join(MANIFEST_KEYS)}")


def _pipeline(fields: _Fields, registry: Registry) -> tuple[PipelineSpec | None, str | None]:
    """The registry entry and revision the manifest names, when both are valid."""
    known = ", ".join(sorted(registry.pipelines)) or "(none)"
    name = fields.string("pipeline")
    revision = fields.string("revision")  # type-checked even when the pipeline is unknown
    if name is None:
        if "pipeline" not in fields.doc or fields.doc["pipeline"] is None:
            fields.add("pipeline", f"is required; known pipelines: {known}")
        return None, None
    spec = registry.get(name)
    if spec is None:
        fields.add("pipeline", f"unknown pipeline {name!r}; known pipelines: {known}")
        return None, None
    if revision is None:
        return spec, None if fields.doc.get("revision") is not None else spec.default_revision
    if revision not in spec.revisions:
        allowed = ", ".join(spec.revisions)
        fields.add("revision", f"{revision!r} is not an allowed revision of {name}; allowed: {allowed}")
        return spec, None
    return spec, revision


def _labels(fields: _Fields) -> dict[str, str]:
    raw = fields.doc.get("labels")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        fields.add("labels", f"must be a mapping of name: value, not {_kind(raw)}")
        return {}
    if len(raw) > MAX_LABELS:
        fields.add("labels", f"has {len(raw)} labels; at most {MAX_LABELS} are allowed")
    labels: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            fields.add(f"labels.{key}", f"label names must be strings, not {_kind(key)}")
        elif not isinstance(value, str):
            fields.add(f"labels.{key}", f"label values must be strings, not {_kind(value)}")
        else:
            labels[key] = value
    return labels


def _other_fields(fields: _Fields, spec: PipelineSpec | None) -> dict[str, str | None]:
    """The optional fields other than pipeline/revision/labels, checked."""
    engine = fields.string("engine")
    if engine is not None and spec is not None and engine != spec.engine:
        fields.add("engine", f"{engine!r} does not match {spec.name}, which runs on {spec.engine}")
    name = fields.string("name")
    if name is not None and len(name) > MAX_NAME_CHARS:
        fields.add("name", f"is {len(name)} characters; at most {MAX_NAME_CHARS} are allowed")
    if name is not None and any(ord(c) < 0x20 for c in name):
        fields.add("name", "must not contain control characters")
    return {
        "engine": engine,
        "name": name,
        "profile": fields.string("profile", _PROFILE_RE, "a profile list (letters, digits, _ , -)"),
        "submitter": fields.string("submitter", _EMAIL_RE, "an email address"),
        "parent_run_id": fields.string("parent_run_id", RUN_ID_RE, "a run id"),
    }


def _read_manifest(
    text: str, registry: Registry, file: str
) -> tuple[Manifest | None, PipelineSpec | None, str | None, list[Problem]]:
    """(manifest when flawless, registry entry and revision when those are valid, problems)."""
    doc, lines, problems = load_yaml(text, file)
    if problems:
        return None, None, None, problems
    if not isinstance(doc, dict):
        msg = f"the manifest must be a YAML mapping with at least `pipeline:`, not {_kind(doc)}"
        return None, None, None, [Problem(file, msg)]
    fields = _Fields(doc, lines, file)
    _unknown_keys(fields)
    spec, revision = _pipeline(fields, registry)
    labels = _labels(fields)
    other = _other_fields(fields, spec)
    if fields.problems or spec is None or revision is None:
        return None, spec, revision, sorted(fields.problems, key=lambda p: p.line or 0)
    manifest = Manifest(
        pipeline=spec.name,
        revision=revision,
        engine=spec.engine,
        profile=other["profile"] if "profile" in doc else spec.default_profile,
        labels=labels,
        submitter=other["submitter"],
        name=other["name"],
        parent_run_id=other["parent_run_id"],
    )
    return manifest, spec, revision, []


def parse_manifest(
    data: bytes, registry: Registry, file: str = "run.yaml"
) -> tuple[Manifest | None, list[Problem]]:
    """The manifest, or None and every problem found in it."""
    text, problems = decode_text(data, file)
    if text is None:
        return None, problems
    manifest, _, _, problems = _read_manifest(text, registry, file)
    return manifest, problems


def manifest_mapping(data: bytes | None) -> dict[str, Any]:
    """A manifest's top-level mapping, best effort and unvalidated ({} when it is not one): for labelling a
    rejected run with what the user meant, or spotting a field before validation runs."""
    text, _ = decode_text(data or b"", "run.yaml")
    doc, _, problems = load_yaml(text or "", "run.yaml")
    return doc if not problems and isinstance(doc, dict) else {}


@dataclass
class _Check:
    """One validation pass over a bundle: decoded texts in, problems and parsed parts out."""

    files: Mapping[str, bytes | None]
    max_file_bytes: int
    schemas: SchemaSource | None
    refused: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.faults: list[tuple[str, BaseException]] = []

    def guarded(self, file: str, check: Callable[[], _T], default: _T) -> _T:
        """Run one file's check; an exception it raises (a fault in a checker or a schema, never the
        user's) becomes a problem naming the file, so the bundle is refused instead of the delivery
        crashing. Transient errors (a schema source that is unavailable) still propagate, for a retry."""
        try:
            return check()
        except TransientError:
            raise
        except Exception as exc:  # noqa: BLE001 - the class of crash the refusal replaces
            self.faults.append((file, exc))
            detail = clean_message(f"{type(exc).__name__}: {exc}", 300)
            msg = (
                f"could not be checked ({detail}); this is a fault in Arc Reactor, reported to its operators"
            )
            self.problems.append(Problem(file, msg))
            return default

    def text(self, file: str, required: bool) -> str | None:
        """The file decoded, or None when absent (a problem if required) or undecodable (a problem)."""
        data = self.files.get(file)
        if data is None:
            if required and file not in self.refused:
                self.problems.append(Problem(file, "this file is required but is not in the bundle"))
            return None
        text, problems = decode_text(data, file, self.max_file_bytes)
        self.problems.extend(problems)
        return text

    def schema(
        self, spec: PipelineSpec | None, revision: str | None, relpath: str | None, file: str
    ) -> dict[str, Any] | None:
        """The pipeline's schema at `relpath`, or None when it declares none (or no source was given). A
        declared schema that cannot be had is a problem on `file`: its checks are never silently skipped."""
        if spec is None or revision is None or relpath is None or self.schemas is None:
            return None
        schema = self.schemas.get(spec, revision, relpath)
        if schema is None:
            self.problems.append(
                Problem(
                    file,
                    f"cannot be checked: the schema {relpath} of {spec.name} {revision} is not available "
                    "here (a deployment problem: see ARC_SCHEMA_CACHE_DIR in docs/decisions.md); the run "
                    "is refused rather than checked less strictly",
                )
            )
        return schema

    def samplesheet(
        self, spec: PipelineSpec | None, revision: str | None, max_rows: int
    ) -> Samplesheet | None:
        text = self.text(SAMPLESHEET, required=True)
        if text is None:
            return None
        sheet, problems = parse_samplesheet(text, max_rows=max_rows)
        self.problems.extend(problems)
        if sheet is None:
            return None
        schemes = spec.input_url_schemes if spec else ("gs",)
        if spec is None or revision is None:
            self.problems.extend(check_cells(sheet, schemes))
            return sheet  # which columns a sheet needs depends on the pipeline
        schema = self.schema(spec, revision, spec.input_schema, SAMPLESHEET)
        if schema is None:
            self.problems.extend(check_without_schema(sheet))
        else:
            self.problems.extend(check_against_schema(sheet, schema))
        self.problems.extend(check_cells(sheet, schemes, paths=path_columns(schema)))
        return sheet

    def params(self, spec: PipelineSpec | None, revision: str | None) -> dict[str, Any]:
        text = self.text(PARAMS, required=False)
        if text is None:
            return {}
        params, lines, problems = parse_params(text)
        self.problems.extend(problems)
        if params is None:
            return {}
        for name in sorted(SERVICE_PARAMS & params.keys()):
            msg = f"is set by Arc Reactor for every run ({SERVICE_PARAM_PLACES[name]}); remove it"
            self.problems.append(Problem(PARAMS, msg, line=lines.get(name), field=name))
        schema = self.schema(spec, revision, spec.params_schema if spec else None, PARAMS)
        if schema is not None:
            self.problems.extend(check_params(params, schema, lines))
            unknown = unrecognised_params(params, schema, lines)
            (self.problems if spec and spec.fail_unrecognised_params else self.warnings).extend(unknown)
        return params

    def config(self, spec: PipelineSpec | None) -> None:
        text = self.text(CONFIG, required=False)
        if text is None:
            return
        if spec is not None and not traits(spec.engine).reads_nextflow_config:
            msg = f"{spec.name} runs on {spec.engine}, which does not read a nextflow.config; remove the file"
            self.problems.append(Problem(CONFIG, msg))
            return
        self.problems.extend(check_config(text))


def _capped(problems: list[Problem]) -> list[Problem]:
    """At most MAX_PROBLEMS_PER_FILE problems of each file, then one saying how many more there are: a
    sheet with the same mistake on 10,000 rows needs one fix, not a 10,000-line report."""
    kept: list[Problem] = []
    extra: dict[str, int] = {}
    for p in problems:
        if sum(k.file == p.file for k in kept) < MAX_PROBLEMS_PER_FILE:
            kept.append(p)
        else:
            extra[p.file] = extra.get(p.file, 0) + 1
    return kept + [Problem(f, f"and {n} more problem(s) in this file") for f, n in extra.items()]


def validate_bundle(
    files: Mapping[str, bytes | None],
    registry: Registry,
    *,
    max_file_bytes: int,
    max_rows: int,
    schemas: SchemaSource | None = None,
    manifest_name: str = "run.yaml",
    refused: Collection[str] = (),
) -> ValidBundle:
    """Check every file of a bundle; raise BundleInvalid listing every problem found in any of them.

    `files` maps run.yaml (or `manifest_name`), samplesheet.csv, params.yaml and nextflow.config to their
    bytes, or None when absent; other names are ignored. `refused` names files the caller could not read and
    already reported (e.g. too large): their absence is not reported again. With a `schemas` source, a schema
    the registry declares that the source cannot give is a problem (never a silent fallback to weaker
    checks); without one (unit tests of structure) no schema checks run. A check that raises (a broken
    schema, a checker's bug) is a problem naming its file, and the exception is kept in `faults`.
    """
    check = _Check(files, max_file_bytes, schemas, frozenset(refused))
    manifest = spec = revision = None
    manifest_text = check.guarded(manifest_name, lambda: check.text(manifest_name, required=True), None)
    if manifest_text is not None:
        read = check.guarded(
            manifest_name, lambda: _read_manifest(manifest_text, registry, manifest_name), None
        )
        manifest, spec, revision, problems = read or (None, None, None, [])
        check.problems.extend(problems)
    sheet = check.guarded(SAMPLESHEET, lambda: check.samplesheet(spec, revision, max_rows), None)
    params: dict[str, Any] = check.guarded(PARAMS, lambda: check.params(spec, revision), {})
    check.guarded(CONFIG, lambda: check.config(spec), None)
    if check.problems or manifest is None or spec is None or sheet is None:
        raise BundleInvalid(problems=_capped(check.problems), faults=check.faults)
    return ValidBundle(
        manifest=manifest,
        pipeline=spec,
        samplesheet=(files[SAMPLESHEET] or b"").removeprefix(BOM),
        samplesheet_rows=sheet.rows,
        params=params,
        params_yaml=files.get(PARAMS),
        nextflow_config=files.get(CONFIG),
        warnings=tuple(_capped(check.warnings)),
    )
