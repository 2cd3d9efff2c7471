"""nf-schema `exists: true` for gs:// values in a bundle (samplesheet cells and params), checked through
the storage client before any job exists: a missing or unreadable object is a problem naming its place."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from arc_reactor.adapters.storage import Storage
from arc_reactor.adapters.storage_pool import storage_map
from arc_reactor.core.bundle import ValidBundle
from arc_reactor.core.layout import split_gs_uri
from arc_reactor.core.params import PARAMS, SERVICE_PARAMS, parse_params
from arc_reactor.core.samplesheet import PATH_FORMATS, SAMPLESHEET, parse_samplesheet
from arc_reactor.core.textfile import BOM
from arc_reactor.errors import Problem, StorageForbidden
from arc_reactor.wiring import Deps

MAX_EXISTS_CHECKS = 1000  # distinct gs:// objects checked per submission


def _must_exist(prop: Any) -> bool:
    """An nf-schema property whose value must name an existing file or folder (`exists: true`)."""
    return (
        isinstance(prop, dict) and prop.get("exists") in (True, "true") and prop.get("format") in PATH_FORMATS
    )


def _schema_properties(schema: Mapping[str, Any] | None) -> dict[str, Any]:
    """Properties of a params schema (top level and each `$defs` group) or of a samplesheet's rows."""
    if not schema:
        return {}
    groups = [schema, schema.get("items")]
    for key in ("$defs", "definitions"):
        defs = schema.get(key)
        groups.extend(defs.values() if isinstance(defs, dict) else [])
    props: dict[str, Any] = {}
    for group in groups:
        if isinstance(group, dict) and isinstance(group.get("properties"), dict):
            props.update(group["properties"])
    return props


def _gs_targets(deps: Deps, bundle: ValidBundle) -> dict[tuple[str, str], list[Problem]]:
    """(gs:// URI, format) -> where the bundle names it (file, line, field), for `exists: true` values."""
    spec, rev = bundle.pipeline, bundle.manifest.revision
    targets: dict[tuple[str, str], list[Problem]] = {}

    def want(value: Any, prop: dict[str, Any], where: Problem) -> None:
        if isinstance(value, str) and value.startswith("gs://"):
            targets.setdefault((value, str(prop["format"])), []).append(where)

    sheet_schema = deps.schemas.get(spec, rev, spec.input_schema) if spec.input_schema else None
    columns = {k: v for k, v in _schema_properties(sheet_schema).items() if _must_exist(v)}
    if columns:
        sheet, _ = parse_samplesheet(
            bundle.samplesheet.decode("utf-8"), max_rows=len(bundle.samplesheet_rows)
        )
        for row, line in zip(sheet.rows if sheet else [], sheet.lines if sheet else [], strict=True):
            for col, prop in columns.items():
                want(row.get(col), prop, Problem(SAMPLESHEET, "", line=line, field=col))
    params_schema = deps.schemas.get(spec, rev, spec.params_schema) if spec.params_schema else None
    text = (bundle.params_yaml or b"").removeprefix(BOM).decode("utf-8")
    lines = parse_params(text)[1] if text else {}
    for name, prop in _schema_properties(params_schema).items():
        if _must_exist(prop) and name not in SERVICE_PARAMS:
            want(bundle.params.get(name), prop, Problem(PARAMS, "", line=lines.get(name), field=name))
    return targets


def missing_objects(deps: Deps, bundle: ValidBundle) -> list[Problem]:
    """nf-schema `exists: true` for gs:// values, checked through the storage client: a problem, naming
    the row and column (or parameter), for every object or folder that is missing or unreadable."""
    targets = _gs_targets(deps, bundle)
    checked = list(targets)[:MAX_EXISTS_CHECKS]  # bounded: the rest is left to the pipeline itself
    if not checked:
        return []
    storage = deps.storage  # created once, before the threads share it
    verdicts = storage_map(lambda t: _object_problem(storage, *t), checked)
    problems = [
        replace(where, message=why)
        for t, why in zip(checked, verdicts, strict=True)
        if why
        for where in targets[t]
    ]
    return sorted(problems, key=lambda p: (p.file, p.line or 0, p.field or ""))


def _object_problem(storage: Storage, uri: str, fmt: str) -> str | None:
    """Why `uri` cannot be used (missing, unreadable, malformed), or None when it exists."""
    try:
        bucket, name = split_gs_uri(uri)
        if fmt == "directory-path":
            found = bool(storage.list_names(bucket, name.rstrip("/") + "/", limit=1))
        else:
            found = storage.stat(bucket, name) is not None if name else False
            if not found and fmt == "path":
                found = bool(storage.list_names(bucket, name.rstrip("/") + "/", limit=1))
    except ValueError:
        return f"{uri} is not a valid gs:// path"
    except StorageForbidden:
        return f"{uri} cannot be read by Arc Reactor (permission denied)"
    return None if found else f"{uri} does not exist"
