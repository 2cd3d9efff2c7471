"""GET /runs query parsing and page tokens (pure parts of api/listing.py)."""

from datetime import UTC, datetime

import pytest
from werkzeug.datastructures import MultiDict

from arc_reactor.api import listing


def _filter(**args):
    q = listing._Query(MultiDict(args))
    return listing.parse_filter(q), q.problems


def test_tokens_round_trip_and_are_opaque():
    created = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
    token = listing.encode_page_token(created, "r123", "fp")
    assert "r123" not in token and "=" not in token
    assert listing.decode_page_token(token) == (created, "r123", "fp")


@pytest.mark.parametrize("token", ["", "!!!", "e30", "W10", "eyJjIjoibm90IGEgZGF0ZSIsImkiOiJyIn0"])
def test_bad_tokens_are_refused(token):
    with pytest.raises(ValueError):
        listing.decode_page_token(token)


def test_filters_parse_and_their_fingerprint_ignores_order():
    where, problems = _filter(status=["running,failed", "running"], label=["b=2", "a=1"], pipeline="p")
    assert problems == []
    assert where.statuses == ("failed", "running")
    assert where.labels == (("a", "1"), ("b", "2"))
    same, _ = _filter(status="failed,running", label=["a=1", "b=2"], pipeline="p")
    assert listing.fingerprint(where) == listing.fingerprint(same)
    other, _ = _filter(status="failed", label=["a=1", "b=2"], pipeline="p")
    assert listing.fingerprint(where) != listing.fingerprint(other)


def test_every_filter_problem_is_reported():
    _, problems = _filter(
        status="nope",
        label="x",
        created_after="yesterday",
        created_before="2026-01-01T00:00:00",
        pipeline=["a", "b"],
    )
    assert sorted(p.field for p in problems) == [
        "created_after",
        "created_before",
        "label",
        "pipeline",
        "status",
    ]
    assert all(p.file == "query" for p in problems)


def test_label_values_may_hold_equals_signs():
    where, problems = _filter(label="expr=a=b")
    assert problems == [] and where.labels == (("expr", "a=b"),)
