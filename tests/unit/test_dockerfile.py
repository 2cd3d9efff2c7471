"""The orchestrator image's Dockerfile, parsed (Docker cannot run here): its base, what it copies from the
repository root, its entrypoint, what it installs (and what not: no Cloud SDK), and its build context."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "orchestrator" / "Dockerfile.orchestrator"
IGNORE = ROOT / "orchestrator" / "Dockerfile.orchestrator.dockerignore"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        out.append((keyword.upper(), args.strip()))
        pending = ""
    assert not pending, "a continuation runs off the end of the file"
    return out


STEPS = instructions(DOCKERFILE.read_text(encoding="utf-8"))


def args_of(keyword: str) -> list[str]:
    return [args for kw, args in STEPS if kw == keyword]


def copies() -> list[tuple[str, str]]:
    """(source, destination) of every COPY."""
    pairs = []
    for args in args_of("COPY"):
        parts = shlex.split(args)
        assert not any(p.startswith("--from") for p in parts), "no multi-stage copies expected"
        pairs += [(src, parts[-1]) for src in parts[:-1] if not src.startswith("--")]
    return pairs


def test_base_image_is_nextflow_24_04_4():
    assert STEPS[0] == ("FROM", "nextflow/nextflow:24.04.4")
    assert len(args_of("FROM")) == 1


def test_copies_the_package_from_the_repository_root():
    sources = dict(copies())
    assert sources["functions/arc_reactor"] == "/opt/arc/functions/arc_reactor"
    assert sources["orchestrator/"] == "/opt/arc/orchestrator/"
    assert sources["examples/pipelines"] == "/opt/arc/examples/pipelines"  # the Snakemake demo pipeline
    # Snakemake finds its logger plugin by module name on PYTHONPATH (/opt/arc/functions).
    assert (
        sources["functions/snakemake_logger_plugin_arc"] == "/opt/arc/functions/snakemake_logger_plugin_arc"
    )
    # ... and its executor plugin: the image is also Snakemake's task image
    assert (
        sources["functions/snakemake_executor_plugin_arc"]
        == "/opt/arc/functions/snakemake_executor_plugin_arc"
    )
    for src, _ in copies():
        assert (ROOT / src).exists(), f"COPY {src}: not in the repository (the context is its root)"
    env = [part for args in args_of("ENV") for part in args.split()]
    assert "PYTHONPATH=/opt/arc/functions" in env  # update_status.py imports the copied package


def test_installs_the_projects_dependencies_and_snakemake():
    runs = " ".join(args_of("RUN"))
    assert "python3.11 -m pip install --no-cache-dir -r /opt/arc/functions/requirements.txt" in runs
    pin = re.search(r"^snakemake==\S+$", (ROOT / "requirements.txt").read_text(), re.MULTILINE)
    assert pin is not None and pin.group(0) in runs  # the same Snakemake as the local stack and CI
    storage = re.search(
        r"^snakemake-storage-plugin-gcs==\S+$", (ROOT / "requirements.txt").read_text(), re.MULTILINE
    )
    assert storage is not None and storage.group(0) in runs  # task jobs install nothing
    requirements = (ROOT / "functions" / "requirements.txt").read_text()
    assert "google-cloud-storage==" in requirements and "pg8000==" in requirements  # storage + database


def test_scripts_are_executable_and_entrypoint_is_exec_form():
    runs = " ".join(args_of("RUN"))
    assert "chmod 0755 /opt/arc/orchestrator/entrypoint.sh /opt/arc/orchestrator/update_status.py" in runs
    entrypoints = args_of("ENTRYPOINT")
    assert len(entrypoints) == 1
    assert json.loads(entrypoints[0]) == ["/opt/arc/orchestrator/entrypoint.sh"]  # PID 1 gets SIGTERM
    assert not args_of("CMD")


@pytest.mark.parametrize(
    "word", ["google-cloud-sdk", "google-cloud-cli", "gcloud", "gsutil", "sdk.cloud.google"]
)
def test_no_cloud_sdk(word):
    """Transfers use the Python storage client: the ~1 GB Cloud SDK stays out (docs/orchestrator.md)."""
    assert word not in " ".join(args for _, args in STEPS).lower()


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule, enough for our file: the last matching pattern wins, `!` re-includes,
    and a pattern that matches a folder covers everything under it."""
    result = False
    parts = path.split("/")
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if pat.startswith("**/"):
            hit = any(fnmatch.fnmatchcase(part, pat[3:]) for part in parts)
        else:
            hit = any(fnmatch.fnmatchcase(prefix, pat) for prefix in prefixes)
        if hit:
            result = not negate
    return result


def test_build_context_holds_only_what_is_copied():
    patterns = [
        line.strip()
        for line in IGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for src, _ in copies():
        files = (
            [src] if (ROOT / src).is_file() else [str(p.relative_to(ROOT)) for p in (ROOT / src).rglob("*.*")]
        )
        kept = [f for f in files if "__pycache__" not in f]
        assert kept and not [f for f in kept if ignored(f, patterns)], src
    for secret in (
        ".venv/bin/python",
        ".arc/pgdata/PG_VERSION",
        ".git/config",
        "tests/conftest.py",
        "infra/main.tf",
    ):
        assert ignored(secret, patterns), secret


def test_wes_service_info_names_the_engines_the_image_runs():
    from arc_reactor.api.wes import ENGINE_VERSIONS

    assert STEPS[0] == ("FROM", f"nextflow/nextflow:{ENGINE_VERSIONS['nextflow']}")
    assert f"snakemake=={ENGINE_VERSIONS['snakemake']}" in " ".join(args_of("RUN"))
