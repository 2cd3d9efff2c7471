"""Label sanitization to GCP label rules (core/labels.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arc_reactor.core.labels import (
    KEY_RE,
    MAX_LABELS,
    VALUE_RE,
    label_changes,
    label_filter,
    run_label_filter,
    run_labels,
    sanitize_extra_labels,
    sanitize_label_key,
    sanitize_label_value,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Jane.Doe@Example.org", "jane_doe-at-example_org"),
        ("nf-core/scrnaseq", "nf-core_scrnaseq"),
        ("r0000000000abcdefgh", "r0000000000abcdefgh"),
        ("José Müller", "jose_muller"),
        ("", ""),
        ("UPPER_lower-123", "upper_lower-123"),
        ("a+b c", "a_b_c"),
        ("日本", "__"),
    ],
)
def test_value_mapping(raw: str, expected: str) -> None:
    assert sanitize_label_value(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("team", "team"),
        ("Cost-Center", "cost-center"),
        ("1st", "k1st"),
        ("_x", "k_x"),
        ("", "k"),
        ("é", "e"),
        ("project.name", "project_name"),
    ],
)
def test_key_mapping(raw: str, expected: str) -> None:
    assert sanitize_label_key(raw) == expected


def test_long_values_are_cut_with_a_hash_so_they_stay_distinct() -> None:
    a, b = "x" * 70 + "a", "x" * 70 + "b"
    sa, sb = sanitize_label_value(a), sanitize_label_value(b)
    assert len(sa) == len(sb) == 63
    assert sa != sb
    assert sa.startswith("x" * 54 + "-")
    assert sanitize_label_value(a) == sa  # deterministic


def test_run_labels_fixed_four() -> None:
    labels = run_labels("r0000000000abcdefgh", "nf-core/scrnaseq", "Jane.Doe@Example.org", None)
    assert labels == {
        "app": "arc-reactor",
        "run-id": "r0000000000abcdefgh",
        "pipeline": "nf-core_scrnaseq",
        "user-email": "jane_doe-at-example_org",
    }


def test_run_labels_unknown_user_is_empty_value() -> None:
    assert run_labels("r1", "demo", None)["user-email"] == ""


def test_extras_cannot_override_fixed_labels_or_use_goog_prefix() -> None:
    labels = run_labels(
        "r1", "demo", "a@b.c", {"App": "evil", "run-id": "x", "goog-x": "y", "Team": "Genomics"}
    )
    assert labels["app"] == "arc-reactor"
    assert labels["run-id"] == "r1"
    assert "goog-x" not in labels
    assert labels["team"] == "genomics"


def test_at_most_64_labels() -> None:
    extra = {f"k{i:03d}": str(i) for i in range(100)}
    labels = run_labels("r1", "demo", None, extra)
    assert len(labels) == MAX_LABELS
    assert "k000" in labels  # kept in key order
    assert "k099" not in labels


@given(st.text())
def test_sanitized_values_always_valid(raw: str) -> None:
    assert VALUE_RE.match(sanitize_label_value(raw))


@given(st.text())
def test_sanitized_keys_always_valid(raw: str) -> None:
    assert KEY_RE.match(sanitize_label_key(raw))


@given(st.text(), st.text(), st.none() | st.text(), st.dictionaries(st.text(), st.text(), max_size=80))
def test_run_labels_always_valid(
    run_id: str, pipeline: str, email: str | None, extra: dict[str, str]
) -> None:
    labels = run_labels(run_id, pipeline, email, extra)
    assert len(labels) <= MAX_LABELS
    assert all(KEY_RE.match(k) and VALUE_RE.match(v) for k, v in labels.items())


def test_label_filters_quote_the_key() -> None:
    assert run_label_filter("r0000000000abcdefgh") == 'labels."run-id"="r0000000000abcdefgh"'
    assert (
        label_filter("Cost Center", "Jane.Doe@Example.org")
        == 'labels."cost_center"="jane_doe-at-example_org"'
    )


@given(st.text(), st.text())
def test_label_filters_never_carry_their_own_quotes_or_operators(key: str, value: str) -> None:
    term = label_filter(key, value)
    inner = term.removeprefix('labels."').removesuffix('"')
    k, sep, v = inner.partition('"="')
    assert sep and KEY_RE.match(k) and VALUE_RE.match(v)


def test_every_change_sanitizing_makes_is_reported() -> None:
    from arc_reactor.core.labels import label_changes

    changes = label_changes({"Project": "Atlas Team!", "team": "ok", "app": "mine", "googx": "1"})
    assert changes == [
        {"key": "Project", "value": "Atlas Team!", "became": "project=atlas_team_"},
        {"key": "app", "value": "mine", "dropped": "app is set by Arc Reactor"},
        {"key": "googx", "value": "1", "dropped": "keys starting with goog are reserved by Google"},
    ]
    assert label_changes({"team": "ok"}) == []
    assert label_changes({"Team": "a", "team": "b"}) == [
        {"key": "Team", "value": "a", "became": "team=a"},
        {"key": "team", "value": "b", "dropped": "another label already became team"},
    ]


def test_labels_past_the_limit_are_reported_as_dropped() -> None:
    from arc_reactor.core.labels import MAX_LABELS, RESERVED_KEYS, label_changes

    many = {f"k{i:03d}": "v" for i in range(MAX_LABELS)}
    dropped = [c for c in label_changes(many) if "dropped" in c]
    assert len(dropped) == len(RESERVED_KEYS)
    assert len(run_labels("r1", "p", None, many)) == MAX_LABELS


@given(st.dictionaries(st.text(max_size=12), st.text(max_size=12), max_size=4))
def test_label_changes_kept_per_label_set_are_the_same_answer_in_a_copy_of_its_own(extra):
    first = label_changes(extra)
    assert first == sanitize_extra_labels(extra)[1] == label_changes(dict(reversed(extra.items())))
    for change in first:
        change["key"] = "changed by a caller"
    assert label_changes(extra) == sanitize_extra_labels(extra)[1]
