"""Where a pipeline's JSON schemas come from: folders on disk, tried in order, cached per file.

A source returns None when the pipeline has no such file. It raises ValueError when the file exists but
is not a JSON object, or when a relative path would leave the pipeline's folder: both are deployment
faults, not problems with a user's bundle. The wiring chains, in order: the folders of `path:` pipelines,
the schema cache folder (ARC_SCHEMA_CACHE_DIR, SchemaCacheDir) and, in the cloud, the runs bucket's cache
of schemas fetched over HTTP (adapters/http_schemas.py).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from jsonschema import Draft202012Validator, SchemaError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from arc_reactor.core.registry import PipelineSpec


class SchemaSource(Protocol):
    """Gives the parsed JSON schema at `relpath` of a pipeline at a revision, or None when absent."""

    def get(self, pipeline: PipelineSpec, revision: str, relpath: str) -> dict[str, Any] | None:
        """The schema, or None when the pipeline has no file at `relpath`."""
        ...


def resolve_inside(base: Path, relpath: str) -> Path:
    """`base/relpath`, refusing absolute paths, backslashes and anything that resolves outside `base`."""
    if not relpath or "\\" in relpath or PurePosixPath(relpath).is_absolute():
        raise ValueError(f"schema path {relpath!r} must be a relative path inside {base}")
    root = base.resolve()
    target = (root / relpath).resolve()
    if not target.is_relative_to(root):
        raise ValueError(f"schema path {relpath!r} leaves {base}")
    return target


def read_schema(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, None when there is no such file; ValueError (naming it) when invalid."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (UnicodeDecodeError, IsADirectoryError) as exc:
        raise ValueError(f"{path}: not a readable UTF-8 JSON file: {exc}") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: a JSON schema must be an object, not {type(doc).__name__}")
    return doc


class _FolderSchemaSource:
    """Shared part of the on-disk sources: resolve inside the pipeline's folder, read, cache."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str, str], dict[str, Any] | None] = {}
        self._lock = threading.Lock()

    def _folder(self, pipeline: PipelineSpec, revision: str) -> Path | None:
        raise NotImplementedError

    def get(self, pipeline: PipelineSpec, revision: str, relpath: str) -> dict[str, Any] | None:
        """The schema at `relpath` in the pipeline's folder, or None."""
        key = (pipeline.name, revision, relpath)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        folder = self._folder(pipeline, revision)
        schema = None if folder is None else read_schema(resolve_inside(folder, relpath))
        with self._lock:
            self._cache[key] = schema
        return schema


class DirectorySchemaSource(_FolderSchemaSource):
    """Pipeline name -> a folder holding that pipeline's files (one revision: the revision is not used)."""

    def __init__(self, mapping: dict[str, Path]) -> None:
        super().__init__()
        self._mapping = dict(mapping)

    def _folder(self, pipeline: PipelineSpec, revision: str) -> Path | None:
        return self._mapping.get(pipeline.name)


class PipelineDirSchemaSource(_FolderSchemaSource):
    """Registry entries whose source is `path:<dir>`: files are read from `<pipelines_root>/<dir>/`."""

    def __init__(self, pipelines_root: Path) -> None:
        super().__init__()
        self._root = pipelines_root

    def _folder(self, pipeline: PipelineSpec, revision: str) -> Path | None:
        local = pipeline.local_path
        return None if local is None else resolve_inside(self._root, local)


def pipeline_slug(name: str) -> str:
    """A pipeline name as one path segment: `nf-core/scrnaseq` -> `nf-core-scrnaseq`."""
    return name.replace("/", "-")


class SchemaCacheDir(_FolderSchemaSource):
    """A folder of pipelines' schemas, so any pipeline is validated offline the same way as in the cloud:
    `<root>/<slug>/<revision>/<file>` (slug: the name with `/` as `-`), or `<root>/<slug>/<file>` for a
    folder holding one set of schemas that stands for every allowed revision (e.g. ../shared/fixtures)."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self._root = root

    def _folder(self, pipeline: PipelineSpec, revision: str) -> Path | None:
        base = resolve_inside(self._root, pipeline_slug(pipeline.name))
        if not base.is_dir():
            return None
        by_revision = base / revision
        return by_revision if by_revision.is_dir() else base


class ChainSchemaSource:
    """Asks each source in turn; the first schema found wins."""

    def __init__(self, *sources: SchemaSource) -> None:
        self._sources = sources

    def get(self, pipeline: PipelineSpec, revision: str, relpath: str) -> dict[str, Any] | None:
        """The first non-None answer, or None."""
        for source in self._sources:
            schema = source.get(pipeline, revision, relpath)
            if schema is not None:
                return schema
        return None


def make_validator(schema: dict[str, Any]) -> Validator:
    """A validator for the schema's draft (2020-12 when it names none); ValueError for a broken schema.

    No format checker: nf-schema's `file-path` formats and `exists` cannot be checked from here.
    """
    validator_class = validator_for(schema, default=Draft202012Validator)
    try:
        validator_class.check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"invalid JSON schema: {exc.message}") from exc
    return validator_class(schema)


MAX_CACHED_VALIDATORS = 64
_validators: OrderedDict[tuple[int, str], tuple[dict[str, Any], Validator]] = OrderedDict()
_validators_lock = threading.Lock()


def cached_validator(
    schema: dict[str, Any],
    variant: str = "",
    prepare: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> Validator:
    """make_validator's answer for this schema object, checked against its metaschema once and reused.

    The schema sources hand out one object per (pipeline, revision, file), so one schema object is one
    pipeline revision's schema; the cache is keyed on that object (kept alive by its entry, so its id
    cannot be reused) and on `variant`, the name of the `prepare` step applied before compiling (params
    relax the service's own parameters). Least recently used entries beyond MAX_CACHED_VALIDATORS go."""
    key = (id(schema), variant)
    with _validators_lock:
        hit = _validators.get(key)
        if hit is not None and hit[0] is schema:
            _validators.move_to_end(key)
            return hit[1]
    validator = make_validator(prepare(schema) if prepare else schema)
    with _validators_lock:
        _validators[key] = (schema, validator)
        while len(_validators) > MAX_CACHED_VALIDATORS:
            _validators.popitem(last=False)
    return validator
