"""Where the real public fixtures are: ../shared/fixtures beside the checkout (never copied into the repo)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SCRNASEQ_FIXTURES = SHARED / "fixtures" / "nf-core-scrnaseq"


def requires_scrnaseq_fixtures() -> pytest.MarkDecorator:
    """Skip when ../shared/fixtures/nf-core-scrnaseq is not beside the checkout."""
    return pytest.mark.skipif(
        not SCRNASEQ_FIXTURES.is_dir(), reason="../shared/fixtures/nf-core-scrnaseq is not available"
    )
