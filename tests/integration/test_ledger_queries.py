"""The ledger's hot queries on real PostgreSQL: what they answer, and that PostgreSQL can serve each from
its index (with sequential scans disabled, the plan must name the index: a query whose predicate does not
match its partial index would fall back to a scan, which is what grows with the ledger; bench/ledger.py
has the figures at 10^6 runs)."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from flow import run_row
from sqlalchemy import text

from arc_reactor.adapters import runs_repo
from arc_reactor.adapters.tables import ACTIVE_SQL
from arc_reactor.core.status import TERMINAL, RunStatus

pytestmark = pytest.mark.integration


def _plan(engine, stmt, off: tuple[str, ...] = ("enable_seqscan",)) -> str:
    compiled = stmt.compile(engine, compile_kwargs={"render_postcompile": True})
    params = tuple(compiled.params[name] for name in compiled.positiontup)
    with engine.connect() as conn:
        for setting in off:
            conn.exec_driver_sql(f"SET {setting} = off")
        lines = conn.exec_driver_sql("EXPLAIN " + str(compiled), params).scalars().all()
        for setting in off:
            conn.exec_driver_sql(f"RESET {setting}")
    return "\n".join(lines)


def test_active_statuses_in_sql_are_the_non_terminal_ones():
    named = {s.value for s in RunStatus if f"'{s.value}'" in ACTIVE_SQL}
    assert named == {s.value for s in RunStatus} - {s.value for s in TERMINAL}


def test_the_lineage_check_and_the_sweeper_are_served_by_their_indexes(engine):
    stale = runs_repo.stale_stmt(datetime.now(UTC), 50)
    assert "ix_runs_active_updated" in _plan(engine, stale)
    assert "ix_runs_lineage" in _plan(engine, runs_repo.lineage_stmt("r0lineage"))


def test_stale_runs_are_the_oldest_active_ones(engine):
    old = datetime.now(UTC) - timedelta(hours=3)
    for i, status in enumerate(["running", "completed", "pending", "cancelling", "failed", "submitted"]):
        runs_repo.insert_run(engine, run_row(f"r0stale{i:012d}"))
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE runs SET status = :s, updated_at = :t WHERE id = :i"),
                {"s": status, "t": old + timedelta(minutes=i), "i": f"r0stale{i:012d}"},
            )
    found = runs_repo.stale_runs(engine, datetime.now(UTC) - timedelta(hours=1), 3)
    assert [r.status for r in found] == ["running", "pending", "cancelling"]


def test_events_after_gives_each_runs_events_after_its_own_cursor_in_id_order(engine):
    for rid in ("r0events000000000a", "r0events000000000b", "r0events000000000c"):
        runs_repo.insert_run(engine, run_row(rid))
        runs_repo.transition(engine, rid, RunStatus.SUBMITTED, source="test")
    events = {
        rid: [e["id"] for e in runs_repo.list_events(engine, rid)]
        for rid in ("r0events000000000a", "r0events000000000b")
    }
    cursors = {
        "r0events000000000a": events["r0events000000000a"][0],
        "r0events000000000b": 0,
        "r0nobody00000000000": 0,
    }
    got = runs_repo.events_after(engine, cursors)
    assert [e["id"] for e in got] == sorted([events["r0events000000000a"][1], *events["r0events000000000b"]])
    assert {e["run_id"] for e in got} == {"r0events000000000a", "r0events000000000b"}
    assert isinstance(got[0]["detail"], dict) and got[0]["created_at"].tzinfo is not None
    assert len(runs_repo.events_after(engine, cursors, limit=1)) == 1
    assert runs_repo.events_after(engine, {}) == []


def test_label_listings_read_run_labels_in_page_order_and_answer_as_containment_does(engine):
    labels = [{"project": "p1", "team": "a"}, {"project": "p2"}, {"project": "p1"}, {}, {"project": "1"}]
    for i, lab in enumerate(labels * 3):
        runs_repo.insert_run(engine, run_row(f"r0label{i:011d}", labels=lab))
    # The trigger follows a change of labels: no writer of the service makes one, but a repair by hand
    # must not leave run_labels behind.
    with engine.begin() as conn:
        conn.execute(text("""UPDATE runs SET labels = '{"project": "p9"}' WHERE id = 'r0label00000000000'"""))
        rows = conn.execute(text("SELECT count(*) FROM run_labels WHERE run_id = 'r0label00000000000'"))
        assert rows.scalar() == 1
    for wanted in [(("project", "p1"),), (("project", "p1"), ("team", "a")), (("project", "p9"),)]:
        where = runs_repo.RunFilter(labels=wanted)
        with engine.connect() as conn:
            expected = (
                conn.execute(
                    text(
                        "SELECT id FROM runs WHERE labels @> CAST(:l AS jsonb) "
                        "ORDER BY created_at DESC, id DESC"
                    ),
                    {"l": json.dumps(dict(wanted))},
                )
                .scalars()
                .all()
            )
        assert expected, wanted
        got, before = [], None
        while page := runs_repo.list_runs(engine, limit=2, where=where, before=before):
            got.extend(r.id for r in page)
            before = (page[-1].created_at, page[-1].id)
        assert got == expected, wanted
    stmt = runs_repo.list_stmt(runs_repo.RunFilter(labels=(("project", "p1"),)), 51)
    assert "run_labels_pkey" in _plan(engine, stmt)


def test_poll_events_merges_cursor_reads_with_the_window_and_gives_the_tables_top(engine):
    assert runs_repo.poll_events(engine, {"r0nobody00000000000": 0}) == runs_repo.EventPoll([], None)
    for rid in ("r0window00000000a", "r0window00000000b", "r0window00000000c"):
        runs_repo.insert_run(engine, run_row(rid))
    first = runs_repo.poll_events(engine, {}, ["r0window00000000a"], None)
    assert first.rows == [] and first.top is not None  # no cursor read, no window: only the top
    for rid in ("r0window00000000a", "r0window00000000b", "r0window00000000c"):
        runs_repo.transition(engine, rid, RunStatus.SUBMITTED, source="test")
    ids = {rid: [e["id"] for e in runs_repo.list_events(engine, rid)] for rid in ("r0window00000000a",)}
    got = runs_repo.poll_events(
        engine, {"r0window00000000a": 0}, ["r0window00000000a", "r0window00000000b"], first.top
    )
    # a: every event after its cursor (both, one of them also in the window, given once); b: the window's
    # event only; c: not watched.
    b_new = runs_repo.list_events(engine, "r0window00000000b")[-1]["id"]
    assert [e["id"] for e in got.rows] == sorted([*ids["r0window00000000a"], b_new])
    assert got.top == max(e["id"] for e in runs_repo.list_events(engine, "r0window00000000c"))
    assert set(got.rows[0]) == set(runs_repo.list_events(engine, "r0window00000000a")[0])
    with pytest.raises(ValueError, match="not a run id"):
        runs_repo.poll_events(engine, {"a,b": 0})


def test_the_same_poll_reads_the_progress_newer_than_each_runs_cursor(engine):
    a, b, c = "r0progress000000a", "r0progress000000b", "r0progress000000c"
    for rid in (a, b, c):
        runs_repo.insert_run(engine, run_row(rid))
    runs_repo.set_progress(engine, a, {"succeeded": 1}, 2000)
    runs_repo.set_progress(engine, b, {"succeeded": 2}, 1000)
    got = runs_repo.poll_events(engine, {}, progress_after={a: 0, b: 1000, c: 0})
    assert got.rows == [] and got.progress == {a: {"succeeded": 1, "instant": 2000}}  # b: seen; c: none
    assert not runs_repo.set_progress(engine, a, {"succeeded": 0}, 1500)  # older: kept out
    runs_repo.set_progress(engine, b, {"succeeded": 3}, 3000)
    assert runs_repo.poll_events(engine, {}, progress_after={a: 2000, b: 1000}).progress == {
        b: {"succeeded": 3, "instant": 3000}
    }
    # The window: the watched runs whose progress was written after a progress_seq, with no probe per run.
    top = runs_repo.poll_events(engine, {}).progress_top
    assert top is not None
    runs_repo.set_progress(engine, c, {"succeeded": 1}, 4000)
    windowed = runs_repo.poll_events(engine, {}, [a, c], None, progress_since=top)
    assert windowed.progress == {c: {"succeeded": 1, "instant": 4000}}  # a: not written since; b: not watched
    assert windowed.progress_top == top + 1


def test_a_run_is_found_by_a_prefix_of_its_id_or_by_its_name_from_an_index(engine):
    for rid, name in (
        ("r0findab0000000001", "atlas"),
        ("r0findab0000000002", "atlas"),
        ("r0findcd0000000003", "x"),
    ):
        runs_repo.insert_run(engine, {**run_row(rid), "name": name})
    by_prefix = runs_repo.RunFilter(id_prefix="r0findc")
    assert [r.id for r in runs_repo.list_runs(engine, limit=5, where=by_prefix)] == ["r0findcd0000000003"]
    by_name = runs_repo.RunFilter(name="atlas")
    assert [r.id for r in runs_repo.list_runs(engine, limit=5, where=by_name)] == [
        "r0findab0000000002", "r0findab0000000001",
    ]  # fmt: skip
    # On a table this small, walking ix_runs_created backwards and filtering is as cheap for LIMIT 2 as
    # any plan, and the planner picks either one: with plain index scans off too, only an index that
    # answers the prefix itself (a bitmap scan) is left, which is what a large table gets.
    no_walk = ("enable_seqscan", "enable_indexscan", "enable_indexonlyscan")
    assert "Bitmap Index Scan on ix_runs_id_pattern" in _plan(
        engine, runs_repo.list_stmt(by_prefix, 2), no_walk
    )
    assert "ix_runs_name" in _plan(engine, runs_repo.list_stmt(by_name, 2))


def test_a_set_of_ids_as_one_parameter_is_split_once_and_served_by_the_index_even_in_a_generic_plan(engine):
    """tables.among passes many run ids as one text (one prepared statement whatever their count). A
    prepared statement's generic plan must still read the index, splitting the text once (an InitPlan),
    never for every row it scans: `= ANY(string_to_array(...))` did that."""
    from sqlalchemy import select

    from arc_reactor.adapters.tables import among, run_events, run_tasks, runs

    # The ledger's two big tables: each id an index condition. (On an empty `runs` the planner may pick
    # any index to avoid the scan it was told not to make, so its plan names no particular one.)
    for table, column, index in (
        (run_tasks, run_tasks.c.run_id, "Index Cond: (run_id = ANY ($0))"),
        (run_events, run_events.c.run_id, "Index Cond: (run_id = ANY ($0))"),
        (runs, runs.c.id, "InitPlan"),
    ):
        compiled = select(table.c.id).where(among(column, ["r0a", "r0b"])).compile(engine)
        sql = str(compiled).replace("%s", "$1")
        with engine.connect() as conn:
            conn.exec_driver_sql(f"PREPARE among_probe(text) AS {sql}")
            conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
            conn.exec_driver_sql("SET enable_seqscan = off")
            plan = "\n".join(conn.exec_driver_sql("EXPLAIN EXECUTE among_probe('r0a,r0b')").scalars().all())
            conn.exec_driver_sql("DEALLOCATE among_probe")
            conn.exec_driver_sql("RESET ALL")
        assert index in plan and "InitPlan" in plan and "string_to_array" not in plan.split("InitPlan")[0], (
            plan
        )
    assert [r.id for r in runs_repo.get_runs(engine, [])] == []
    with pytest.raises(ValueError):
        among(runs.c.id, ["a,b"])
