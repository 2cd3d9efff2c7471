"""Schema sources: folders on disk, chained, cached, refusing paths that escape."""

from __future__ import annotations

from pathlib import Path

import pytest

from arc_reactor.core.registry import parse_registry
from arc_reactor.core.schemas import (
    ChainSchemaSource,
    DirectorySchemaSource,
    PipelineDirSchemaSource,
    cached_validator,
    make_validator,
)

REGISTRY = parse_registry(
    {
        "pipelines": {
            "nf-core/scrnaseq": {"engine": "nextflow", "source": "nf-core/scrnaseq", "revisions": ["4.0.0"]},
            "arc/demo": {"engine": "snakemake", "source": "path:demo", "revisions": ["1.0.0"]},
        }
    }
)
SCRNASEQ = REGISTRY.pipelines["nf-core/scrnaseq"]
DEMO = REGISTRY.pipelines["arc/demo"]


def test_directory_source_reads_caches_and_refuses_escapes(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "s.json").write_text('{"type": "array"}')
    (tmp_path / "p" / "bad.json").write_text("{nope")
    (tmp_path / "secret.json").write_text("{}")
    source = DirectorySchemaSource({"arc/demo": tmp_path / "p"})
    first = source.get(DEMO, "1.0.0", "s.json")
    assert first == {"type": "array"}
    assert source.get(DEMO, "1.0.0", "s.json") is first
    assert source.get(DEMO, "1.0.0", "absent.json") is None
    assert source.get(SCRNASEQ, "4.0.0", "s.json") is None
    with pytest.raises(ValueError, match=r"bad\.json: invalid JSON"):
        source.get(DEMO, "1.0.0", "bad.json")
    with pytest.raises(ValueError, match="leaves"):
        source.get(DEMO, "1.0.0", "../secret.json")
    with pytest.raises(ValueError, match="relative path"):
        source.get(DEMO, "1.0.0", str(tmp_path / "secret.json"))


def test_pipeline_dir_source_and_chain(tmp_path: Path) -> None:
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "schema_input.json").write_text('{"from": "pipelines root"}')
    other = tmp_path / "other"
    other.mkdir()
    (other / "schema_input.json").write_text('{"from": "directory"}')
    (other / "only_here.json").write_text('{"from": "second"}')
    pipelines = PipelineDirSchemaSource(tmp_path)
    assert pipelines.get(SCRNASEQ, "4.0.0", "schema_input.json") is None  # not a path: source
    chain = ChainSchemaSource(pipelines, DirectorySchemaSource({"arc/demo": other}))
    assert chain.get(DEMO, "1.0.0", "schema_input.json") == {"from": "pipelines root"}
    assert chain.get(DEMO, "1.0.0", "only_here.json") == {"from": "second"}
    assert chain.get(DEMO, "1.0.0", "nowhere.json") is None


def test_broken_schema_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="invalid JSON schema"):
        make_validator({"type": "not-a-type"})


def test_a_schema_is_checked_against_its_metaschema_once_per_object(monkeypatch) -> None:
    from arc_reactor.core import schemas

    checks: list[object] = []
    real = schemas.make_validator
    monkeypatch.setattr(schemas, "make_validator", lambda s: checks.append(s) or real(s))  # a spy
    schema = {"type": "object", "required": ["a"]}
    first = cached_validator(schema)
    assert cached_validator(schema) is first and len(checks) == 1  # the same revision's schema object
    relaxed = cached_validator(schema, "relaxed", lambda s: {**s, "required": []})
    assert relaxed is not first and relaxed.is_valid({}) and not first.is_valid({})
    assert cached_validator(dict(schema)) is not first  # another object: another pipeline revision
    for _ in range(2):  # a broken schema is refused every time, never cached
        with pytest.raises(ValueError, match="invalid JSON schema"):
            cached_validator({"type": "not-a-type"})


def test_the_schema_cache_folder_prefers_the_revision_then_the_flat_set(tmp_path):
    from arc_reactor.core.registry import load_registry
    from arc_reactor.core.schemas import SchemaCacheDir

    spec = load_registry().get("nf-core/scrnaseq")
    flat = tmp_path / "nf-core-scrnaseq"
    (flat / "3.0.0").mkdir(parents=True)
    (flat / "nextflow_schema.json").write_text('{"title": "flat"}')
    (flat / "3.0.0" / "nextflow_schema.json").write_text('{"title": "3.0.0"}')
    source = SchemaCacheDir(tmp_path)
    assert source.get(spec, "3.0.0", "nextflow_schema.json") == {"title": "3.0.0"}
    assert source.get(spec, "4.0.0", "nextflow_schema.json") == {"title": "flat"}
    assert source.get(spec, "4.0.0", "assets/schema_input.json") is None
    demo = load_registry().get("arc/fastq-stats")
    assert SchemaCacheDir(tmp_path).get(demo, "1.0.0", "params_schema.json") is None
