"""RunRecord's fast decoding of whole result rows gives the same records as its field-by-field one."""

from dataclasses import FrozenInstanceError, fields
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arc_reactor.core.run_record import RunRecord

NAMES = [f.name for f in fields(RunRecord)]
value = st.one_of(
    st.none(),
    st.text(max_size=8),
    st.integers(),
    st.datetimes(timezones=st.just(UTC)),
    st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2),
)


@given(
    st.lists(st.fixed_dictionaries(dict.fromkeys(NAMES, value)), max_size=5),
    st.permutations(NAMES),
    st.lists(st.text(min_size=1, max_size=6).filter(lambda n: n not in NAMES), max_size=2, unique=True),
)
def test_whole_rows_decode_as_from_row_does(rows, order, extra):
    columns = [*order, *extra]  # any column order; columns this version does not know are left out
    tuples = [tuple(row.get(c, "x") for c in columns) for row in rows]
    fast = RunRecord.from_rows(columns, tuples)
    assert fast == [RunRecord.from_row(dict(zip(columns, t, strict=True))) for t in tuples]
    assert [dict(r) for r in fast] == [{n: row[n] for n in NAMES} for row in rows]


def test_partial_rows_take_the_field_by_field_path_with_its_defaults_and_checks():
    required = {"id": "r1", "pipeline": "p", "revision": "1", "engine": "snakemake", "lineage_id": "r1"}
    required |= dict.fromkeys(("work_dir", "cache_dir", "inputs_uri", "results_uri", "logs_uri"), "gs://x/")
    (record,) = RunRecord.from_rows(list(required), [tuple(required.values())])
    assert record.status == "pending" and record.labels == {} and record.created_at is None
    with pytest.raises(TypeError):
        RunRecord.from_rows(["id"], [("r1",)])


def test_fast_records_stay_frozen_and_hashable():
    row = dict.fromkeys(NAMES) | {"id": "r1", "created_at": datetime(2026, 1, 1, tzinfo=UTC)}
    (record,) = RunRecord.from_rows(list(row), [tuple(row.values())])
    with pytest.raises(FrozenInstanceError):
        record.status = "running"  # type: ignore[misc]
    assert record == RunRecord.from_row(row) and hash(record) == hash(RunRecord.from_row(row))
