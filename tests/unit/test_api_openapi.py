"""The OpenAPI document and the router describe the same API; a few rules every operation follows."""

import re
from pathlib import Path

from arc_reactor.api.app import DASHBOARD, ROUTES
from arc_reactor.api.openapi import openapi_document
from arc_reactor.api.views import DERIVED_FIELDS, RUN_FIELDS, run_view
from arc_reactor.core.recovery import WORK_RETENTION_DAYS

ROOT = Path(__file__).resolve().parents[2]


def _template_to_path(template):
    return template.replace("{run_id}", "r0000000000000000ab")


def test_every_route_is_documented_and_every_documented_operation_is_routed():
    doc = openapi_document()
    assert doc["openapi"].startswith("3.1")
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    routed = set()
    for path in doc["paths"]:
        concrete = _template_to_path(path)
        for route in ROUTES:
            if route.pattern.match(concrete):
                routed |= {(path, m) for m in route.methods}
    assert routed == documented
    # The GA4GH WES facade has its own, official document (tests/integration/test_wes.py checks it); the
    # dashboard's routes are HTML pages.
    ours = [r for r in ROUTES if not r.pattern.pattern.startswith("^/ga4gh/wes/") and r not in DASHBOARD]
    assert len(documented) == sum(len(r.methods) for r in ours)


def test_operations_have_ids_error_responses_and_public_ones_need_no_token():
    doc = openapi_document()
    ids = []
    for path, ops in doc["paths"].items():
        for op in ops.values():
            ids.append(op["operationId"])
            assert "default" in op["responses"]
            if path in ("/healthz", "/openapi.json", "/tower/service-info"):
                assert op["security"] == []
            elif path.startswith("/tower/"):  # Nextflow's reports: the run's own token, not an ID token
                assert op["security"] == [{"runToken": []}] and "401" in op["responses"]
            else:
                assert "401" in op["responses"] and "security" not in op
    assert len(ids) == len(set(ids))


def test_the_run_schema_lists_every_field_the_api_returns():
    props = openapi_document()["components"]["schemas"]["Run"]["properties"]
    assert set(props) == {*RUN_FIELDS, *DERIVED_FIELDS}
    assert set(run_view(dict.fromkeys(RUN_FIELDS))) == set(props)


def test_refs_resolve():
    doc = openapi_document()
    text = repr(doc)
    for name in set(re.findall(r"#/components/schemas/(\w+)", text)):
        assert name in doc["components"]["schemas"], name


def test_recovery_window_matches_the_work_dir_lifecycle_rule():
    tf = (ROOT / "infra" / "storage.tf").read_text()
    rule = re.search(r"age\s*=\s*(\d+)\s*\n\s*matches_prefix\s*=\s*\[\"work/\"\]", tf)
    assert rule is not None and int(rule.group(1)) == WORK_RETENTION_DAYS
