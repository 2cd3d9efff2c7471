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
