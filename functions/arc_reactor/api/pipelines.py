"""GET /pipelines: what may run here (the pipeline registry): names, engines, revisions and defaults, so a
user can pick a pipeline and revision before writing a bundle (as `tw pipelines list` lets them)."""

from __future__ import annotations

from typing import Any

from arc_reactor.api.http import Call, bad_request, json_response
from arc_reactor.core.registry import PipelineSpec
from arc_reactor.errors import Problem


def pipeline_view(spec: PipelineSpec) -> dict[str, Any]:
    """One registry entry as the API shows it."""
    return {
        "name": spec.name,
        "description": spec.description,
        "engine": spec.engine,
        "revisions": list(spec.revisions),
        "default_revision": spec.default_revision,
        "default_profile": spec.default_profile,
        "input_url_schemes": list(spec.input_url_schemes),
    }


def list_pipelines(call: Call) -> Any:
    """GET /pipelines: every registry entry, by name. Any authenticated caller may read it."""
    if call.request.args:
        raise bad_request(
            "the query is invalid",
            [Problem("query", "unknown parameter", field=k) for k in call.request.args],
        )
    registry = call.deps.registry
    return json_response(
        {"pipelines": [pipeline_view(registry.pipelines[n]) for n in sorted(registry.pipelines)]}
    )
