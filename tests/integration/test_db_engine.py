"""The service's engine (adapters/db.get_engine) on real PostgreSQL: autocommit without pre-ping, so a
hot-path statement is one round trip; multi-statement writes still commit together or not at all; and a
pooled connection the database closed is replaced on first use, without an error reaching the caller (a
real outage between the two: tests/outage.py)."""

import pytest
from flow import run_row
from outage import Outage
from sqlalchemy import event, insert, make_url, select

from arc_reactor.adapters import runs_repo
from arc_reactor.adapters.tables import runs
from arc_reactor.core.status import RunStatus
from arc_reactor.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def service_engine(engine, database_url):
    """db.get_engine's engine, through a forwarder that can cut its connections."""
    from arc_reactor.adapters import db

    u = make_url(database_url)
    sock = u.query.get("unix_sock")
    outage = Outage(sock if isinstance(sock, str) else (u.host or "127.0.0.1", u.port or 5432))
    url = u.set(
        host="127.0.0.1", port=outage.port, query={k: v for k, v in u.query.items() if k != "unix_sock"}
    )
    eng = db.get_engine(Settings(database_url=url.render_as_string(hide_password=False), db_pool_size=1))
    yield eng, outage
    db.dispose_engines()
    outage.stop()


def test_a_transition_is_one_statement_and_no_transaction_round_trips(service_engine):
    eng, _ = service_engine
    runs_repo.insert_run(eng, run_row("r0engine0000000001"))
    sent: list[str] = []
    event.listen(eng, "before_cursor_execute", lambda c, cur, sql, *a: sent.append(sql))
    assert runs_repo.transition(eng, "r0engine0000000001", RunStatus.SUBMITTED, "test").applied
    assert len(sent) == 1 and sent[0].lstrip().startswith("WITH cur")
    sent.clear()  # a duplicate: one statement too, and it answers without asking again under a lock
    assert not runs_repo.transition(eng, "r0engine0000000001", RunStatus.SUBMITTED, "test").applied
    assert len(sent) == 1
    with eng.connect() as conn:
        assert conn.connection.dbapi_connection.autocommit is True


def test_statements_that_belong_together_commit_together(service_engine):
    eng, _ = service_engine
    with pytest.raises(RuntimeError), runs_repo._transaction(eng) as conn:
        conn.execute(insert(runs).values(**run_row("r0engine0000000002")))
        raise RuntimeError("the second statement failed")
    with eng.connect() as conn:
        assert conn.execute(select(runs.c.id).where(runs.c.id == "r0engine0000000002")).first() is None


def test_a_connection_the_database_closed_is_replaced_on_first_use(service_engine):
    eng, outage = service_engine
    runs_repo.insert_run(eng, run_row("r0engine0000000003"))
    assert runs_repo.get_run(eng, "r0engine0000000003").status == "pending"
    outage.down()  # the pooled connection dies (a restart, an idle timeout) ...
    outage.up()  # ... and the database is back
    assert runs_repo.get_run(eng, "r0engine0000000003").status == "pending"
    assert runs_repo.transition(eng, "r0engine0000000003", RunStatus.SUBMITTED, "test").applied


def _flushes(monkeypatch) -> list[int]:
    """Count what pg8000 sends: each flush of its socket is one message batch the server answers."""
    from pg8000 import core

    count: list[int] = []
    real = core._flush
    monkeypatch.setattr(core, "_flush", lambda sock: (count.append(1), real(sock))[1])
    return count


def test_a_statement_seen_before_is_one_round_trip_with_pg8000s_answers(service_engine, monkeypatch):
    eng, _ = service_engine
    runs_repo.insert_run(eng, run_row("r0engine0000000003", labels={"a": "b"}))
    select_run = "SELECT id, labels, created_at FROM runs WHERE id = %s"
    with eng.connect() as conn:
        conn.exec_driver_sql(select_run, ("r0engine0000000003",))  # prepared on this connection
        sent = _flushes(monkeypatch)
        row = conn.exec_driver_sql(select_run, ("r0engine0000000003",)).one()
        assert len(sent) == 1  # Bind, Execute, Sync: no Parse, no Describe
        assert (row.id, row.labels, row.created_at.tzinfo is not None) == (
            "r0engine0000000003",
            {"a": "b"},
            True,
        )
        assert conn.exec_driver_sql(select_run, ("r0none",)).all() == []
        update = "UPDATE runs SET name = %s WHERE id = %s"
        assert conn.exec_driver_sql(update, ("n", "r0engine0000000003")).rowcount == 1
        assert conn.exec_driver_sql(update, ("o", "r0engine0000000003")).rowcount == 1
        assert len(sent) == 5  # the UPDATE's first run prepared it (one more round trip), once
        returned = conn.exec_driver_sql(
            "UPDATE runs SET name = %s WHERE id = %s RETURNING name", ("m", "r0engine0000000003")
        )
        assert returned.scalar() == "m"
        names = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql"
        ).scalar()
        assert names >= 3


def test_prepared_statements_are_bounded_and_follow_a_change_of_the_table(service_engine, monkeypatch):
    from sqlalchemy.exc import DBAPIError

    from arc_reactor.adapters import db

    eng, _ = service_engine
    monkeypatch.setattr(db, "PREPARED_PER_CONNECTION", 5)
    count = "SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql AND name LIKE %s"
    with eng.connect() as conn:
        for i in range(12):
            assert conn.exec_driver_sql(f"SELECT %s::int + {i}", (1,)).scalar() == 1 + i
        assert conn.exec_driver_sql(count, ("pg8000%",)).scalar() <= 5
        conn.exec_driver_sql("CREATE TABLE arc_shape (a int)")
        try:
            conn.exec_driver_sql("INSERT INTO arc_shape VALUES (%s)", (1,))
            star = "SELECT * FROM arc_shape WHERE a = %s"
            assert conn.exec_driver_sql(star, (1,)).one() == (1,)
            conn.exec_driver_sql("ALTER TABLE arc_shape ADD COLUMN b text DEFAULT 'x'")  # as a migration does
            assert conn.exec_driver_sql(star, (1,)).one() == (1, "x")
            conn.exec_driver_sql("ALTER TABLE arc_shape ADD COLUMN c int DEFAULT 2")
            conn.exec_driver_sql("BEGIN")  # inside a transaction block the caller sees it, once
            with pytest.raises(DBAPIError, match="cached plan must not change result type"):
                conn.exec_driver_sql(star, (1,))
            conn.exec_driver_sql("ROLLBACK")
            assert conn.exec_driver_sql(star, (1,)).one() == (1, "x", 2)
        finally:
            conn.exec_driver_sql("DROP TABLE arc_shape")


def test_a_failing_statement_raises_and_leaves_the_connection_usable(service_engine):
    from sqlalchemy.exc import DBAPIError, ProgrammingError, StatementError

    eng, _ = service_engine
    with eng.connect() as conn:
        with pytest.raises(ProgrammingError, match="syntax"):
            conn.exec_driver_sql("SELEC %s", (1,))
        with pytest.raises(DBAPIError, match="invalid input syntax"):  # fails after a good Parse
            conn.exec_driver_sql("SELECT CAST(%s AS integer)", ("not a number",))
        with pytest.raises((TypeError, StatementError)):  # a value pg8000 cannot encode: nothing is sent
            conn.exec_driver_sql("SELECT %s::jsonb", ({"a": object()},))
        assert conn.exec_driver_sql("SELECT %s::int + 1", (1,)).scalar() == 2
    with eng.connect() as conn:  # and a transaction that failed is rolled back as before
        conn.exec_driver_sql("BEGIN")
        with pytest.raises(DBAPIError, match="invalid input syntax"):
            conn.exec_driver_sql("SELECT CAST(%s AS integer)", ("x",))
        with pytest.raises(Exception, match=r"aborted|failed transaction"):
            conn.exec_driver_sql("SELECT %s::int", (1,))
        conn.exec_driver_sql("ROLLBACK")
        assert conn.exec_driver_sql("SELECT %s::int", (3,)).scalar() == 3
