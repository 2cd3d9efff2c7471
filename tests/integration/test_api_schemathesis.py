"""The API against its own /openapi.json, fuzzed with schemathesis: no server error, and every status code,
content type and body as documented. Bounded: a dozen generated examples per operation (~10 s in all)."""

import itertools

import pytest
import schemathesis
from flow import MAIN
from functions_framework import create_app
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from test_runs_api import active_and_finished

pytestmark = pytest.mark.integration

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

# The real functions-framework app. Its handler builds its dependencies per request from the environment,
# which the app_env fixture sets for each test; loading the document itself needs none of them.
APP = create_app("runs_api", str(MAIN), "http")
schema = schemathesis.openapi.from_wsgi("/openapi.json", APP)
_turn = itertools.count()


@pytest.fixture
def runs(app_env, gcs, engine):
    """Two real runs, so that half the generated ids name one: one running, one failed (with a work dir)."""
    active, finished = active_and_finished(gcs, engine)
    gcs.write_bytes("arc-runs", f"work/{finished}/x", b"1")
    return active, finished


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_the_api_keeps_the_promises_of_its_openapi_document(case, runs):
    active, finished = runs
    if "run_id" in (case.path_parameters or {}) and next(_turn) % 2:
        # An active run's event stream stays open (by design): streams are read from the finished run.
        case.path_parameters["run_id"] = finished if case.operation.path.endswith("/events") else active
    case.call_and_validate(checks=CHECKS)
