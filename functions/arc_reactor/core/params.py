"""params.yaml: a YAML mapping checked against the pipeline's nextflow_schema.json when it has one (pure)."""

from __future__ import annotations

import copy
import difflib
import re
from typing import Any

from jsonschema import ValidationError

from arc_reactor.core.schemas import cached_validator
from arc_reactor.core.textfile import load_yaml
from arc_reactor.errors import Problem

PARAMS = "params.yaml"
# Filled in by Arc Reactor for every run (input = the run's samplesheet, outdir = its results folder),
# so a params.yaml without them is complete even though the pipeline's schema marks them required.
SERVICE_PARAM_PLACES = {
    "input": "the run's copy of samplesheet.csv",
    "outdir": "the run's results folder, gs://<runs bucket>/runs/<run id>/results",
}
SERVICE_PARAMS = frozenset(SERVICE_PARAM_PLACES)


def parse_params(
    text: str, file: str = PARAMS
) -> tuple[dict[str, Any] | None, dict[str, int], list[Problem]]:
    """The params mapping ({} for an empty file), the line of each top-level key, and problems."""
    value, lines, problems = load_yaml(text, file)
    if problems:
        return None, {}, problems
    if value is None:
        return {}, {}, []
    if not isinstance(value, dict):
        msg = f"params must be a YAML mapping of name: value, not a {_kind(value)}"
        return None, {}, [Problem(file, msg, line=1)]
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        return None, {}, [Problem(file, f"parameter names must be strings, not {k!r}") for k in bad]
    problems = [
        Problem(
            file, f"{what}: params are stored and passed on as JSON; quote it", line=lines.get(k), field=k
        )
        for k, v in value.items()
        if (what := not_json(v))
    ]
    return (None, {}, problems) if problems else (value, lines, [])


def not_json(value: Any, depth: int = 0) -> str:
    """Why `value` (from YAML) has no JSON form, or "" when it has one: YAML also builds dates, times,
    binary and sets, which neither the database nor Nextflow's params file can carry."""
    if depth > 64:
        return "nested deeper than 64 levels"
    if value is None or isinstance(value, str | bool | int | float):
        return ""
    if isinstance(value, list):
        return next((why for v in value if (why := not_json(v, depth + 1))), "")
    if isinstance(value, dict):
        if any(not isinstance(k, str) for k in value):
            return "a mapping key that is not a string"
        return next((why for v in value.values() if (why := not_json(v, depth + 1))), "")
    return f"a YAML {type(value).__name__} value"


def _kind(value: object) -> str:
    return "list" if isinstance(value, list) else type(value).__name__


def _relax_service_params(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of the schema where input/outdir are not required, at the top and in each group."""
    relaxed = copy.deepcopy(schema)  # schemas are cached by the source: never edit them in place
    groups = [relaxed]
    for defs_key in ("$defs", "definitions"):
        defs = relaxed.get(defs_key)
        if isinstance(defs, dict):
            groups.extend(g for g in defs.values() if isinstance(g, dict))
    for group in groups:
        required = group.get("required")
        if isinstance(required, list):
            group["required"] = [r for r in required if r not in SERVICE_PARAMS]
    return relaxed


def _unexpected(error: ValidationError) -> list[str]:
    """The parameter names an additionalProperties: false error is about."""
    schema = error.schema if isinstance(error.schema, dict) else {}
    known = schema.get("properties") or {}
    patterns = schema.get("patternProperties") or {}
    instance = error.instance if isinstance(error.instance, dict) else {}
    return [k for k in instance if k not in known and not any(re.search(p, k) for p in patterns)]


def _problems(error: ValidationError, lines: dict[str, int], file: str) -> list[Problem]:
    """Problems for one jsonschema error, each naming its parameter and its line."""
    path = [str(p) for p in error.absolute_path]
    if path:
        custom = error.schema.get("errorMessage") if isinstance(error.schema, dict) else None
        message = custom if isinstance(custom, str) else error.message
        return [Problem(file, message, line=lines.get(path[0]), field=".".join(path))]
    if error.validator == "additionalProperties":
        msg = "unknown parameter: the pipeline's schema does not allow parameters it does not list"
        return [Problem(file, msg, line=lines.get(k), field=k) for k in _unexpected(error)]
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [r for r in error.validator_value if r not in error.instance]
        return [Problem(file, "this parameter is required", field=r) for r in missing]
    return [Problem(file, error.message)]


def check_params(
    params: dict[str, Any], schema: dict[str, Any], lines: dict[str, int] | None = None, file: str = PARAMS
) -> list[Problem]:
    """Validate params against an nf-core style schema (`$defs` groups joined by `allOf`).

    Unknown parameters are problems only when the schema says additionalProperties: false (nf-schema
    merely warns otherwise).
    """
    validator = cached_validator(schema, "relaxed", _relax_service_params)
    problems: list[Problem] = []
    for error in validator.iter_errors(params):
        problems.extend(_problems(error, lines or {}, file))
    return sorted(set(problems), key=lambda p: (p.line or 0, p.field or "", p.message))


def known_params(schema: dict[str, Any]) -> frozenset[str]:
    """Every parameter an nf-core style schema lists: its own properties and those of its `$defs` groups."""
    names = set((schema.get("properties") or {}).keys())
    for defs_key in ("$defs", "definitions"):
        for group in (schema.get(defs_key) or {}).values():
            if isinstance(group, dict):
                names.update((group.get("properties") or {}).keys())
    return frozenset(names)


def unrecognised_params(
    params: dict[str, Any], schema: dict[str, Any], lines: dict[str, int] | None = None, file: str = PARAMS
) -> list[Problem]:
    """A Problem for each parameter the schema does not list (a typo such as `min_qualty` would otherwise be
    passed on and silently ignored), with the closest listed name when there is one. nf-schema warns about
    these, or fails the run when the pipeline sets validation.failUnrecognisedParams."""
    known = known_params(schema)
    if not known:
        return []
    out = []
    for name in sorted(set(params) - known - SERVICE_PARAMS):
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]}?" if close else ""
        msg = f"the pipeline does not know this parameter, so it would be ignored{hint}"
        out.append(Problem(file, msg, line=(lines or {}).get(name), field=name))
    return out
