"""scripts/build-orchestrator.sh (Docker cannot run here): --dry-run prints the commands, a real run calls a
`docker` stub on PATH with the same arguments; settings are checked; and the CI workflow that uses it."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "build-orchestrator.sh"
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
IMAGE = "europe-west4-docker.pkg.dev/arc-prod/arc-images/arc-orchestrator"
DOCKER_STUB = """#!/usr/bin/env bash
printf '%s %s\\n' "$PWD" "$*" >>"$DOCKER_STUB_LOG"
"""


def build(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the script with a `docker` stub first on PATH (it records its argv) and nothing inherited."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "docker").write_text(DOCKER_STUB)
    (bin_dir / "docker").chmod(0o755)
    base = {
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "DOCKER_STUB_LOG": str(tmp_path / "docker.log"),
        "PROJECT": "arc-prod",
        "REGION": "europe-west4",
        "REPOSITORY": "arc-images",
        "VERSION": "v1.2.3",
    }
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env={**base, **env}, cwd=tmp_path, capture_output=True, text=True,
        timeout=30, check=False,
    )  # fmt: skip


def printed(proc: subprocess.CompletedProcess[str]) -> list[list[str]]:
    return [shlex.split(line[2:]) for line in proc.stdout.splitlines() if line.startswith("+ ")]


def docker_calls(tmp_path: Path) -> list[list[str]]:
    """The stub's calls: working directory, then arguments."""
    log = tmp_path / "docker.log"
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


EXPECTED_BUILD = [
    "env", "DOCKER_BUILDKIT=1", "docker", "build", "--platform", "linux/amd64",
    "-f", "orchestrator/Dockerfile.orchestrator",
    "-t", f"{IMAGE}:v1.2.3", "-t", f"{IMAGE}:latest",
    "--label", "org.opencontainers.image.version=v1.2.3", ".",
]  # fmt: skip


def test_dry_run_prints_build_tag_and_push_and_runs_nothing(tmp_path):
    proc = build(tmp_path, "--dry-run")

    assert proc.returncode == 0, proc.stderr
    assert printed(proc) == [
        EXPECTED_BUILD,
        ["docker", "push", f"{IMAGE}:v1.2.3"],
        ["docker", "push", f"{IMAGE}:latest"],
    ]
    assert docker_calls(tmp_path) == []


def test_a_real_run_calls_docker_from_the_repository_root(tmp_path):
    proc = build(tmp_path)  # started from another folder: the script moves to the root itself

    assert proc.returncode == 0, proc.stderr
    assert docker_calls(tmp_path) == [
        [str(ROOT), *EXPECTED_BUILD[3:]],
        [str(ROOT), "push", f"{IMAGE}:v1.2.3"],
        [str(ROOT), "push", f"{IMAGE}:latest"],
    ]


def test_no_push(tmp_path):
    proc = build(tmp_path, "--no-push")
    assert proc.returncode == 0, proc.stderr
    assert [call[1] for call in docker_calls(tmp_path)] == ["build"]


def test_defaults_region_repository_and_version_from_git(tmp_path):
    version = subprocess.run(
        ["git", "describe", "--tags", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True,
        check=False, timeout=30,
    ).stdout.strip() or "dev"  # fmt: skip
    proc = build(
        tmp_path, "--dry-run", PROJECT="", REGION="", REPOSITORY="", VERSION="", ARC_PROJECT="arc-p1"
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        f"us-central1-docker.pkg.dev/arc-p1/arc-orchestrator/arc-orchestrator:{version}" in printed(proc)[0]
    )


def test_image_given_whole_as_terraform_outputs_it(tmp_path):
    image = "europe-west4-docker.pkg.dev/arc-prod/arc-orchestrator/orchestrator"
    proc = build(tmp_path, "--dry-run", PROJECT="", IMAGE=f"{image}:latest")
    assert proc.returncode == 0, proc.stderr
    commands = printed(proc)
    assert commands[0][commands[0].index("-t") + 1] == f"{image}:v1.2.3"
    assert commands[1:] == [["docker", "push", f"{image}:v1.2.3"], ["docker", "push", f"{image}:latest"]]


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        ({"PROJECT": ""}, [], "PROJECT (or ARC_PROJECT) is required"),
        ({"PROJECT": "Arc Prod"}, [], "not a project id"),
        ({"REGION": "europe-west4; rm -rf /"}, [], "not a region"),
        ({"VERSION": "1.0 latest"}, [], "not an image tag"),
        ({"IMAGE": "Bad Image"}, [], "not an image name"),
        ({}, ["--force"], "unknown argument: --force"),
    ],
)
def test_refuses_bad_settings(tmp_path, env, args, message):
    proc = build(tmp_path, "--dry-run", *args, **env)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert printed(proc) == [] and docker_calls(tmp_path) == []


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_clean():
    proc = subprocess.run(
        ["shellcheck", str(SCRIPT), str(ROOT / "orchestrator" / "entrypoint.sh")], capture_output=True,
        text=True, check=False, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout


def test_ci_runs_make_test_on_python_3_11_and_builds_the_image_without_pushing_on_pull_requests():
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "pull_request" in triggers and triggers["push"]["branches"] == ["main"]
    test_steps = workflow["jobs"]["test"]["steps"]
    python = next(s for s in test_steps if s.get("uses", "").startswith("actions/setup-python"))
    assert python["with"]["python-version"] == "3.11"
    assert any(s.get("run", "").startswith("make test") for s in test_steps)
    image_steps = workflow["jobs"]["orchestrator-image"]["steps"]
    builds = [s for s in image_steps if "scripts/build-orchestrator.sh" in s.get("run", "")]
    unconditional = [s for s in builds if "if" not in s]
    assert [s["run"] for s in unconditional] == ["scripts/build-orchestrator.sh --no-push"]
    pushes = [s for s in builds if s not in unconditional]
    assert pushes and all("steps.auth.outcome == 'success'" in s["if"] for s in pushes)
    auth = next(s for s in image_steps if s.get("id") == "auth")
    assert "github.event_name == 'push'" in auth["if"] and "refs/heads/main" in auth["if"]
