"""The cached placeholder conversion (adapters/db.cache_paramstyle_conversion) gives exactly what pg8000's
own scanner gives, for any SQL text, and leaves the arguments as they are."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arc_reactor.adapters.db import cache_paramstyle_conversion

PIECES = [
    "SELECT ",
    "%s",
    "%%",
    "'it''s %s'",
    '"col%s"',
    "E'\\'%s'",
    "$$ %s $$",
    "-- c %s\n",
    ":name",
    " x ",
    "\n",
]


@pytest.fixture(scope="module")
def convert():
    import pg8000.legacy

    cache_paramstyle_conversion()
    cache_paramstyle_conversion()  # idempotent: wraps once
    patched = pg8000.legacy.convert_paramstyle
    assert patched.arc_cached and not getattr(patched.original, "arc_cached", False)
    return patched


@given(st.lists(st.sampled_from(PIECES), max_size=30))
def test_cached_conversion_equals_pg8000s(convert, pieces):
    query = "".join(pieces)
    args = (1, "two")
    try:
        expected = convert.original("format", query, args)
    except Exception as exc:  # noqa: BLE001 - the same error must come from the cached path
        with pytest.raises(type(exc)):
            convert("format", query, args)
        return
    assert convert("format", query, args) == expected
    assert convert("format", query, args) == expected  # from the cache


def test_other_styles_take_pg8000s_own_path(convert):
    assert convert("named", "SELECT :a, :b, :a", {"a": 1, "b": 2}) == ("SELECT $1, $2, $1", (1, 2))
