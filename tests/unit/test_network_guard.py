"""The suite cannot reach beyond loopback: the metadata server and public addresses are refused."""

import socket

import pytest
from network_guard import NetworkForbidden


@pytest.mark.parametrize("host", ["169.254.169.254", "8.8.8.8", "10.0.0.1"])
def test_non_loopback_connections_are_refused(host):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s, pytest.raises(NetworkForbidden):
        s.connect((host, 80))


def test_loopback_is_allowed():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.socket() as client:
            client.connect(server.getsockname())


def test_building_a_cloud_sql_engine_touches_no_network_or_credentials():
    from arc_reactor.adapters.db import database_url, dispose_engines, get_engine
    from arc_reactor.settings import Settings

    settings = Settings(cloudsql_instance="p:r:i", db_iam_user="sa@p.iam")
    assert database_url(settings) == "postgresql+pg8000://"
    engine = get_engine(settings)  # no connection is made until first use
    assert engine.pool.size() == settings.db_pool_size
    dispose_engines()
