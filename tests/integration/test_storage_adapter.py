"""The Storage adapter's errors (adapters/storage.py) against the emulator and a dead endpoint: SDK
exceptions become the package's, and what the client library itself would retry is transient."""

import socket

import pytest

from arc_reactor.errors import OrchestrationError, StorageObjectMissing, TransientError

pytestmark = pytest.mark.integration


def _dead_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # closed again: nothing listens there


def test_a_missing_object_is_the_packages_error(gcs, tmp_path):
    with pytest.raises(StorageObjectMissing):
        gcs.download_file("gs://arc-runs/nope.txt", tmp_path / "x", retry=None)


def test_a_storage_outage_is_transient_not_a_requests_error(monkeypatch, tmp_path):
    from arc_reactor.adapters.storage import Storage, make_client
    from arc_reactor.settings import Settings

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", _dead_endpoint())
    storage = Storage(make_client(Settings()))
    with pytest.raises(TransientError, match="Cloud Storage unavailable: ConnectionError"):
        storage.download_file("gs://arc-runs/a.txt", tmp_path / "a", retry=None)


def test_the_orchestrator_retries_a_download_through_an_outage_within_its_bounds(monkeypatch, tmp_path):
    from arc_reactor.core.engine_command import Workspace
    from arc_reactor.core.job_env import JobEnv
    from arc_reactor.orchestrator.storage_io import TRANSFER_ATTEMPTS, Context, download
    from arc_reactor.settings import Settings

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", _dead_endpoint())
    sleeps: list[float] = []
    env = JobEnv("r1", "arc/fastq-stats", "1.0.0", "snakemake", "", "gs://arc-runs/p.yaml")
    ctx = Context(env, Workspace.at(tmp_path), Settings(), sleep=sleeps.append)
    with pytest.raises(OrchestrationError) as err:
        download(ctx, "gs://arc-runs/p.yaml", tmp_path / "p.yaml", "params file")
    assert err.value.code == "storage_unavailable"
    assert len(sleeps) == TRANSFER_ATTEMPTS - 1  # retried, bounded


@pytest.fixture
def requests_sent(gcs, monkeypatch):
    """The HTTP requests the storage client sends (a spy on its session: every request still goes to the
    emulator)."""
    sent: list[tuple[str, str]] = []
    session = gcs.client._http
    real = session.request

    def spy(method, url, *args, **kwargs):
        sent.append((method, url))
        return real(method, url, *args, **kwargs)

    monkeypatch.setattr(session, "request", spy)
    return sent


def test_a_file_is_read_in_one_request_at_the_generation_asked_for(gcs, requests_sent):
    gcs.write_bytes("arc-inbox", "one/run.yaml", b"pipeline: x\n")
    info = gcs.stat("arc-inbox", "one/run.yaml")
    requests_sent.clear()
    assert gcs.read_bytes("arc-inbox", "one/run.yaml", max_bytes=100, generation=info.generation) == (
        b"pipeline: x\n"
    )
    assert len(requests_sent) == 1  # no stat before the GET
    assert gcs.read_bytes("arc-inbox", "one/run.yaml", max_bytes=100, generation=info.generation + 1) is None
    assert gcs.read_bytes("arc-inbox", "one/absent.csv", max_bytes=100) is None
    gcs.write_bytes("arc-inbox", "one/empty.csv", b"")
    assert gcs.read_bytes("arc-inbox", "one/empty.csv", max_bytes=100) == b""


def test_an_oversize_file_is_refused_with_its_size_without_being_downloaded_whole(gcs, requests_sent):
    from arc_reactor.adapters.storage import ObjectTooLarge

    gcs.write_bytes("arc-inbox", "big/samplesheet.csv", b"x" * 10_000)
    requests_sent.clear()
    with pytest.raises(ObjectTooLarge) as err:
        gcs.read_bytes("arc-inbox", "big/samplesheet.csv", max_bytes=100)
    assert (err.value.size, err.value.limit) == (10_000, 100)
    assert len(requests_sent) == 2  # the ranged GET (101 bytes), then the stat that names the size
