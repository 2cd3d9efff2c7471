"""The settings object: a deployed function refuses the local stack's parts (no auth, insecure channels)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from arc_reactor.settings import Settings


@pytest.mark.parametrize("var", ["K_SERVICE", "K_REVISION", "K_CONFIGURATION"])
def test_no_auth_is_refused_on_cloud_run(monkeypatch: pytest.MonkeyPatch, var: str) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv(var, "runs-api")
    monkeypatch.setenv("ARC_LOCAL", "true")
    with pytest.raises(
        ValidationError, match=f"ARC_LOCAL=true: local-stack setting.*refused on Cloud Run \\({var}="
    ):
        Settings()


@pytest.mark.parametrize(
    ("var", "value"),
    [("ARC_BATCH_ENDPOINT", "127.0.0.1:5000"), ("STORAGE_EMULATOR_HOST", "http://127.0.0.1:1")],
)
def test_other_local_parts_are_refused_on_cloud_run(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv("K_SERVICE", "submit-bundle")
    monkeypatch.setenv(var, value)
    with pytest.raises(ValidationError, match=var):
        Settings()


def test_the_local_stack_and_the_cloud_both_still_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("ARC_LOCAL", "true")
    assert Settings().local  # not on Cloud Run: the local stack
    monkeypatch.delenv("ARC_LOCAL")
    monkeypatch.setenv("K_SERVICE", "runs-api")
    assert not Settings().local  # on Cloud Run without local parts: fine


def test_a_deployed_runs_api_with_auth_switched_off_serves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real functions-framework app: the instance errors instead of answering unauthenticated calls."""
    from functions_framework import create_app

    from arc_reactor.wiring import reset_deps

    main = Path(__file__).resolve().parents[2] / "functions" / "main.py"

    monkeypatch.setenv("K_SERVICE", "runs-api")
    monkeypatch.setenv("ARC_LOCAL", "true")
    reset_deps()
    try:
        resp = (
            create_app("runs_api", str(main), "http")
            .test_client()
            .get("/runs", headers={"X-Arc-Submitter": "eve@example.org"})
        )
    finally:
        reset_deps()
    assert resp.status_code == 500
